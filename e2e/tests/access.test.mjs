// What a patient gave and takes back, and keyboard focus through live updates and actions:
// the share page's "Who can open this file now", the "Access you gave" page, revoking from
// either (the doctor's link is refused after), focus that stays on the same control (or moves to
// the next one) when a list re-renders, the doctor search's connection state, and an upload that
// finishes while the patient is elsewhere.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, newPhone, stopAll } from '../lib/server.mjs';
import { launch, person, check } from '../lib/browser.mjs';
import { go, signUp } from '../lib/flows.mjs';

let server;
let browser;
let routes;
let patient;
let doctor;
let other;
const P = { name: 'Kavya Rao', phone: newPhone(), role: 'patient' };
const D = { name: 'Dr Imran Qureshi', phone: newPhone(), role: 'doctor' };
const Q = { name: 'Nikhil Das', phone: newPhone(), role: 'patient' };
const KNEE = 'knee-mri.pdf';
const LIPID = 'lipid-panel.pdf';
let doctorId;
const fileIds = {};

function needs(...paths) {
  const missing = paths.filter((p) => !routes.has(p));
  assert.deepEqual(missing, [], `the server does not serve ${missing.join(', ')}`);
}

/** A JSON API call from the person's own page (their session cookie). */
async function api(who, method, path) {
  return who.page.evaluate(async ([m, p]) => {
    const r = await fetch(p, { method: m, headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await r.json(); } catch { /* no body */ }
    return { status: r.status, data: body && body.data };
  }, [method, path]);
}

async function upload(who, name, size = 0) {
  return who.page.evaluate(async ([n, pad]) => {
    const fd = new FormData();
    fd.append('file', new Blob([`%PDF-1.4\n% ${n}\n${'%'.repeat(pad)}\n%%EOF\n`], { type: 'application/pdf' }), n);
    const r = await fetch('/protected/resource/uploadFile', { method: 'POST', body: fd });
    if (!r.ok) throw new Error(`upload ${n}: ${r.status}`);
    return (await r.json()).data.file.id;
  }, [name, size]);
}

const focused = (who) => who.page.evaluate(() => {
  const a = document.activeElement;
  return a ? (a.getAttribute('aria-label') || a.id || a.className || a.tagName) : null;
});

describe('access given, and focus', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    routes = await server.routes();
    browser = await launch();
    patient = await person(browser, server.base, 'patient');
    doctor = await person(browser, server.base, 'doctor');
    other = await person(browser, server.base, 'other-patient');
    await signUp(server, patient, P);
    await signUp(server, doctor, D);
    await signUp(server, other, Q);
    doctorId = (await api(doctor, 'GET', '/protected/user/sessionDetail')).data.user.id;
  });

  after(() => stopAll(browser, server));

  test('doctor search: a refused request shows one error, however often it is tried; then "Requested"', async () => {
    const { page } = patient;
    await go(patient, '/doctors');
    await page.getByLabel('Doctor’s name or phone').fill('qureshi');
    await page.getByRole('button', { name: 'Search' }).click();
    const btn = page.getByRole('button', { name: `Request to connect with ${D.name}` });
    await btn.waitFor();
    // Meanwhile the request goes out from elsewhere: this page's button is now refused (409).
    assert.ok((await api(patient, 'POST', `/protected/user/connectionRequest/${doctorId}`)).status < 300);
    const row = page.locator('main li', { hasText: D.name });
    for (let i = 0; i < 3; i++) {
      patient.expectConsoleError(/status of 409/);
      await btn.click();
      await page.getByRole('dialog').getByRole('button', { name: 'Send request' }).click();
      await row.locator('.field-error:not([hidden])').waitFor();
      await page.waitForFunction(() => !document.querySelector('main [aria-busy="true"]'));
    }
    assert.equal(await row.locator('.field-error').count(), 1, 'one error, replaced each time');
    assert.match(await row.locator('.field-error').innerText(), /already have a pending request/);
    assert.equal(await focused(patient), `Request to connect with ${D.name}`, 'focus stays on the button');
    // Searched again, the doctor shows as requested, with nothing to press.
    await page.getByRole('button', { name: 'Search' }).click();
    await row.getByText('Requested', { exact: true }).waitFor();
    assert.equal(await btn.count(), 0);
    await check(patient, 'patient-search-requested');
  });

  test('the doctor’s focus stays on "Accept" when a request arrives live, and moves on after each action', async () => {
    const { page } = doctor;
    await go(doctor, '/requests');
    const acceptP = page.getByRole('button', { name: `Accept ${P.name}` });
    await acceptP.focus();
    // A second patient asks while the doctor is on the page: the list redraws by itself.
    const qRequest = await api(other, 'POST', `/protected/user/connectionRequest/${doctorId}`);
    assert.ok(qRequest.status < 300);
    await page.getByRole('button', { name: `Accept ${Q.name}` }).waitFor();
    assert.equal(await focused(doctor), `Accept ${P.name}`, 'focus survives the live redraw');
    // By keyboard: accepting moves focus to the other request's Accept, not to the page's start.
    await page.keyboard.press('Enter');
    await acceptP.waitFor({ state: 'detached' });
    await page.waitForFunction((n) => document.activeElement && document.activeElement.getAttribute('aria-label') === n, `Accept ${Q.name}`);
    await page.keyboard.press('Tab');
    assert.equal(await focused(doctor), `Decline ${Q.name}`);
    await page.keyboard.press('Enter');
    await page.locator('main').getByText('No requests are waiting.').waitFor();
    // The last one gone: focus is on the empty list (inside the page, after the header's controls).
    await page.waitForFunction(() => document.activeElement && document.activeElement.matches('main .state.empty'));
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'signout');
    await check(doctor, 'doctor-requests-done');
  });

  test('the patient shares one file permanently and for 30 minutes and sees both under "Who can open this file now"', async () => {
    needs('/protected/resource/accessGiven');
    fileIds[KNEE] = await upload(patient, KNEE);
    fileIds[LIPID] = await upload(patient, LIPID);
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${KNEE}` }).click();
    const now = page.locator('section', { has: page.getByRole('heading', { name: 'Who can open this file now' }) });
    await now.getByText('Only you can open this file right now.').waitFor();
    await page.getByLabel('Doctor').selectOption({ label: `${D.name} (not verified)` });
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.locator('main').getByText(`Shared with ${D.name} until you revoke it.`).waitFor();
    await now.getByText('Until you revoke it').waitFor();
    await page.getByLabel('For 30 minutes').check();
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    // The end comes from the server's answer.
    await page.locator('main').getByText(new RegExp(`Shared with ${D.name} for 30 minutes \\(until .+\\)\\.`)).waitFor();
    await now.getByText(/For 30 minutes, until .+ · (29|30) min left/).waitFor();
    const item = now.locator('li.access-item');
    assert.equal(await item.count(), 1, 'one doctor, one row');
    assert.match(await item.innerText(), /Not verified/);
    assert.equal(await item.locator('.terms > li').count(), 2, 'the grant and the share');
    await now.getByRole('button', { name: `Revoke ${D.name}` }).waitFor();
    await check(patient, 'patient-share-who-can-open');
    // The other file, for 30 minutes only.
    assert.equal((await api(patient, 'POST', `/protected/resource/tempFileShare/${fileIds[LIPID]}?p=${doctorId}&t=r`)).status, 200);
  });

  test('"Access you gave" lists it all by file; revoking one from it takes it off, and the doctor’s link is refused', async () => {
    needs('/protected/resource/accessGiven', '/protected/resource/sharedFileURL/{access_id}');
    const shared = (await api(doctor, 'GET', '/protected/resource/sharedWithMe')).data.files;
    const ids = (name) => shared.filter((f) => f.file.file_name === name).map((f) => f.access_id);
    assert.equal(ids(LIPID).length, 1);
    assert.equal(ids(KNEE).length, 2);
    assert.equal((await api(doctor, 'GET', `/protected/resource/sharedFileURL/${ids(LIPID)[0]}`)).status, 200);
    // The doctor watches "Shared with me", with focus on the knee scan's Open.
    await go(doctor, '/shared');
    const openKnee = doctor.page.getByRole('button', { name: `Open ${KNEE}` }).first();
    await openKnee.focus();
    await doctor.page.getByRole('button', { name: `Open ${LIPID}` }).waitFor();

    const { page } = patient;
    await page.getByRole('link', { name: 'Access you gave' }).click();
    await page.getByRole('heading', { name: 'Access you gave', level: 1 }).waitFor();
    const lipid = page.locator('main section.access-file', { has: page.getByRole('heading', { name: LIPID }) });
    const knee = page.locator('main section.access-file', { has: page.getByRole('heading', { name: KNEE }) });
    await lipid.waitFor();
    await knee.waitFor();
    assert.match(await lipid.innerText(), /For 30 minutes, until/);
    assert.match(await knee.innerText(), /Until you revoke it/);
    assert.match(await knee.innerText(), /For 30 minutes, until/);
    await page.locator('main').getByText('3 grants and shares in force').waitFor();
    await check(patient, 'patient-access-given');

    const revoke = page.getByRole('button', { name: `Revoke ${D.name}’s access to ${LIPID}` });
    await revoke.focus();
    await page.keyboard.press('Enter');
    await lipid.waitFor({ state: 'detached' });
    assert.equal(await knee.count(), 1, 'the other file is still shared');
    // Focus went to the remaining row's Revoke, not to the top of the page.
    await page.waitForFunction((n) => document.activeElement && document.activeElement.getAttribute('aria-label') === n,
      `Revoke ${D.name}’s access to ${KNEE}`);

    // The doctor's link is refused now; the other file still opens.
    doctor.expectConsoleError(/status of 410/);
    assert.equal((await api(doctor, 'GET', `/protected/resource/sharedFileURL/${ids(LIPID)[0]}`)).status, 410);
    assert.equal((await api(doctor, 'GET', `/protected/resource/sharedFileURL/${ids(KNEE)[0]}`)).status, 200);
    // The doctor's list dropped it by itself, and focus stayed on the knee scan's Open.
    await doctor.page.getByRole('button', { name: `Open ${LIPID}` }).waitFor({ state: 'detached' });
    assert.equal(await focused(doctor), `Open ${KNEE}`);
    doctor.assertClean();
  });

  test('revoking on the share page empties its list; focus lands on it; both of the doctor’s links are refused', async () => {
    needs('/protected/resource/accessGiven');
    const { page } = patient;
    const shared = (await api(doctor, 'GET', '/protected/resource/sharedWithMe')).data.files.map((f) => f.access_id);
    assert.equal(shared.length, 2);
    await page.getByRole('link', { name: `Share settings for ${KNEE}` }).click();
    const now = page.locator('section', { has: page.getByRole('heading', { name: 'Who can open this file now' }) });
    await now.getByRole('button', { name: `Revoke ${D.name}` }).click();
    await now.getByText('Only you can open this file right now.').waitFor();
    await page.waitForFunction(() => document.activeElement && document.activeElement.matches('.access-now .state.empty'));
    for (const id of shared) {
      doctor.expectConsoleError(/status of 410/);
      assert.equal((await api(doctor, 'GET', `/protected/resource/sharedFileURL/${id}`)).status, 410);
    }
    await go(patient, '/access');
    await page.locator('main').getByText('No doctor can open any of your files right now.').waitFor();
    await check(patient, 'patient-access-given-empty');
  });

  test('notifications: "Mark as read" hands focus to the next one, and a live one leaves the others in place', async () => {
    const { page } = doctor;
    await go(doctor, '/notifications');
    const marks = page.getByRole('button', { name: /^Mark as read: / });
    await marks.first().waitFor();
    const n = await marks.count();
    assert.ok(n >= 2, `the doctor has unread notifications (${n})`);
    const second = await marks.nth(1).getAttribute('aria-label');
    await marks.first().focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction((k) => document.querySelectorAll('button[aria-label^="Mark as read: "]').length === k - 1, n);
    assert.equal(await focused(doctor), second, 'focus moved to the next notification’s button');
    // Items already shown are kept, not rebuilt (a rebuilt item would be read out again).
    await page.evaluate(() => { for (const li of document.querySelectorAll('ul.notifications > li')) li.dataset.seen = '1'; });
    const before = await page.locator('ul.notifications > li').count();
    const fresh = await upload(patient, 'ecg-trace.pdf');
    assert.equal((await api(patient, 'POST', `/protected/resource/createFileAccess/${fresh}?p=${doctorId}&t=r`)).status, 200);
    await page.locator('ul.notifications > li').nth(before).waitFor();
    assert.equal(await page.locator('ul.notifications > li:not([data-seen])').count(), 1, 'only the new one is new');
    assert.equal(await focused(doctor), second, 'and focus did not move');
    await check(doctor, 'doctor-notifications-live');
  });

  test('an upload that finishes after the patient went elsewhere does not take them back', async () => {
    const { page } = patient;
    await go(patient, '/upload');
    const dir = await import('node:fs').then((fs) => fs.mkdtempSync(`${process.env.TMPDIR || '/tmp'}/auravita-up-`));
    const { writeFileSync } = await import('node:fs');
    const file = `${dir}/slow-scan.pdf`;
    writeFileSync(file, '%PDF-1.4\n' + '% padding\n'.repeat(40000) + '%%EOF\n');
    await page.getByLabel(/^File( \*)?$/).setInputFiles(file);
    const cdp = await patient.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 128 * 1024 });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForFunction(() => document.getElementById('upload-progress')?.value > 0, null, { polling: 20 });
    await page.getByRole('link', { name: 'Find a doctor' }).click();
    await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
    await page.locator('#toasts').getByText('slow-scan.pdf is uploaded.').waitFor({ timeout: 30000 });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Find a doctor');
    assert.match(page.url(), /#\/doctors$/);
  });

  test('no console errors anywhere', () => {
    patient.assertClean();
    doctor.assertClean();
    other.assertClean();
  });
});
