// The whole story in a real browser against the release binary: a patient and a doctor, each in
// their own browser context: sign up, request, accept, upload, share for 30 minutes, the live
// notification, opening, revoking, the access log; then the account pages.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startServer, newPhone, stopAll } from '../lib/server.mjs';
import { launch, person, check } from '../lib/browser.mjs';
import { go, signUp, signIn, signOut } from '../lib/flows.mjs';

let server;
let browser;
let routes;
let patient;
let doctor;
const P = { name: 'Asha Verma', phone: newPhone(), role: 'patient' };
const D = { name: 'Dr Ravi Menon', phone: newPhone(), role: 'doctor' };
const FILE_NAME = 'blood-test.pdf';

const PDF_BYTES = '%PDF-1.4\n1 0 obj<<>>endobj\n' + '% padding so the upload takes a moment\n'.repeat(12000) + 'trailer<<>>\n%%EOF\n';

/** Every step runs: a route the server does not serve fails the step. */
function needs(t, ...paths) {
  const missing = paths.filter((p) => !routes.has(p));
  assert.deepEqual(missing, [], `the server does not serve ${missing.join(', ')}`);
}

describe('web client', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    routes = await server.routes();
    browser = await launch();
    patient = await person(browser, server.base, 'patient');
    doctor = await person(browser, server.base, 'doctor');
  });

  after(() => stopAll(browser, server));

  test('a signed-out visitor lands on sign-in, with a skip link and labelled controls', async () => {
    const { page } = patient;
    await go(patient, '/');
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await check(patient, 'signin');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'skip');
  });

  test('a wrong phone is explained next to the phone field', async () => {
    const { page } = patient;
    await go(patient, '/signin');
    await page.getByLabel('Phone number').fill('12');
    patient.expectConsoleError(/status of 422/);
    await page.getByRole('button', { name: 'Send code' }).click();
    const err = page.locator('[data-field="phone"] > .field-error');
    await err.waitFor();
    assert.match(await err.innerText(), /number/i);
    assert.doesNotMatch(await page.locator('main').innerText(), /[{}]|"code"/, 'no raw JSON on the page');
    await check(patient, 'signin-phone-error');
  });

  test('a patient and a doctor sign up in two browsers', async () => {
    await signUp(server, patient, P);
    await signUp(server, doctor, D);
    assert.match(await patient.page.locator('#who').innerText(), /Asha Verma · Patient/);
    assert.match(await doctor.page.locator('#who').innerText(), /Dr Ravi Menon · Doctor/);
    await check(patient, 'patient-home');
    await check(doctor, 'doctor-home');
  });

  test('each sees their profile from sessionDetail', async () => {
    for (const [who, me] of [[patient, P], [doctor, D]]) {
      await go(who, '/profile');
      const details = who.page.locator('dl.details');
      await details.waitFor();
      const text = await details.innerText();
      assert.match(text, new RegExp(me.name));
      assert.match(text, new RegExp(me.phone.e164.replace('+', '\\+')));
      await check(who, `${me.role}-profile`);
    }
    assert.match(await doctor.page.locator('dl.details').innerText(), /Not verified/);
  });

  test('a wrong code is refused in words, then the patient signs out and back in', async () => {
    const { page } = patient;
    await signOut(patient);
    await new Promise((r) => setTimeout(r, 2100)); // the test server's per-phone resend cooldown
    await go(patient, '/signin');
    await page.getByLabel('Phone number').fill(P.phone.national);
    const before = server.count(P.phone.e164);
    await page.getByRole('button', { name: 'Send code' }).click();
    await page.getByLabel('6-digit code').fill('12');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match(await page.locator('[data-field="otp"] > .field-error').innerText(), /6 digits/);
    const code = await server.code(P.phone.e164, before);
    const wrong = code === '000000' ? '111111' : '000000';
    await page.getByLabel('6-digit code').fill(wrong);
    patient.expectConsoleError(/status of 401/);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const err = page.locator('[data-field="otp"] > .field-error:not([hidden])');
    await err.waitFor();
    assert.match(await err.innerText(), /not right.*4 tries left/);
    await check(patient, 'signin-wrong-code');
    await page.getByLabel('6-digit code').fill(code);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#user-tools').waitFor({ state: 'visible' });
    await go(patient, '/profile');
    assert.match(await page.locator('dl.details').innerText(), /Asha Verma/);
  });

  test('a signed-out person asking for a private page is sent to sign in, then on to that page', async () => {
    const { page } = doctor;
    await signOut(doctor);
    await go(doctor, '/profile');
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await new Promise((r) => setTimeout(r, 2100));
    await signIn(server, doctor, D.phone);
    await page.getByRole('heading', { name: 'My profile', level: 1 }).waitFor();
  });

  test('an address with a broken escape shows the page for unknown addresses', async () => {
    await go(doctor, '/patients/%E0');
    await doctor.page.getByRole('heading', { name: 'Page not found', level: 1 }).waitFor();
  });

  // ---- the story ----

  test('the patient finds the doctor and asks to connect', async (t) => {
    needs(t, '/protected/user/searchDoctorByName', '/protected/user/connectionRequest/{doctor_id}');
    const { page } = patient;
    await go(patient, '/doctors');
    await page.getByLabel('Doctor’s name or phone').fill('ravi');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('main').getByText('Dr Ravi Menon').waitFor();
    await check(patient, 'patient-find-doctor');
    // By phone number too.
    await page.getByLabel('Phone number').check();
    await page.getByLabel('Doctor’s name or phone').fill(D.phone.e164);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('button', { name: 'Request to connect with Dr Ravi Menon' }).waitFor();
    assert.equal(await page.locator('main ul.cards > li').count(), 1);
    await page.getByRole('button', { name: 'Request to connect with Dr Ravi Menon' }).click();
    // Not verified: the patient is warned first.
    await page.getByRole('dialog').waitFor();
    await check(patient, 'patient-connect-warning');
    await page.getByRole('button', { name: 'Send request' }).click();
    await page.locator('main').getByText('Request sent').waitFor();
  });

  test('the doctor sees the request and accepts it', async (t) => {
    needs(t, '/protected/user/getConnectionRequests', '/protected/user/acceptConnectionRequest/{request_id}');
    const { page } = doctor;
    await go(doctor, '/requests');
    await page.locator('main').getByText('Asha Verma').waitFor();
    await check(doctor, 'doctor-requests');
    await page.getByRole('button', { name: 'Accept Asha Verma' }).click();
    await page.locator('main').getByText('No requests are waiting.').waitFor();
    await go(doctor, '/patients');
    await page.locator('main').getByText('Asha Verma').waitFor();
    await check(doctor, 'doctor-patients');
  });

  test('the patient sees the connection and the request history', async (t) => {
    needs(t, '/protected/user/connections', '/protected/user/getConnectionRequests');
    await go(patient, '/connections');
    await patient.page.locator('main').getByText('Dr Ravi Menon').waitFor();
    await check(patient, 'patient-connections');
    await go(patient, '/requests');
    await patient.page.locator('main').getByText('Accepted').waitFor();
    await check(patient, 'patient-requests');
  });

  test('the patient uploads a file with a progress bar, and a too-large or wrong file is refused in words', async (t) => {
    needs(t, '/protected/resource/uploadFile', '/protected/resource/userFiles');
    const { page } = patient;
    const dir = mkdtempSync(join(tmpdir(), 'auravita-up-'));
    const big = join(dir, 'huge-scan.pdf');
    writeFileSync(big, Buffer.alloc(5 * 1024 * 1024 + 1, 0x25));
    const fake = join(dir, 'notes.pdf');
    writeFileSync(fake, 'these are not the bytes of a PDF');
    const pdf = join(dir, FILE_NAME);
    writeFileSync(pdf, PDF_BYTES);
    await go(patient, '/upload');
    await page.getByLabel(/^File( \*)?$/).setInputFiles(big);
    await page.locator('main').getByText(/too large to upload: files can be at most 5 MB/).waitFor();
    // Tied to the field and said out loud, not only shown.
    assert.equal(await page.getByLabel(/^File( \*)?$/).getAttribute('aria-invalid'), 'true');
    await page.waitForFunction(() => /too large to upload/.test(document.getElementById('alert-region').textContent));
    await check(patient, 'patient-upload-too-large');
    // A name that says PDF over bytes that are not: the server decides from the bytes (415).
    await page.getByLabel(/^File( \*)?$/).setInputFiles(fake);
    patient.expectConsoleError(/status of 415/);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.locator('main').getByText(/only PDF, PNG, JPEG, WebP and DICOM files are accepted/i).waitFor();
    assert.doesNotMatch(await page.locator('main').innerText(), /[{}]|"code"/, 'no raw JSON on the page');
    await check(patient, 'patient-upload-wrong-type');

    // A slow uplink, so the progress bar is seen moving.
    await page.getByLabel(/^File( \*)?$/).setInputFiles(pdf);
    await page.getByLabel('Tags').fill('blood test, 2024');
    await page.getByLabel('Kind of document').selectOption('report');
    const cdp = await patient.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const bar = page.locator('#upload-progress');
    await bar.waitFor({ state: 'visible' });
    await page.waitForFunction(() => {
      const b = document.getElementById('upload-progress');
      return b && b.value > 0 && b.value < 100;
    }, null, { timeout: 10000, polling: 20 });
    await check(patient, 'patient-upload-progress', { midway: true });
    await page.getByRole('heading', { name: 'My files', level: 1 }).waitFor({ timeout: 30000 });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
    await page.locator('main').getByText(FILE_NAME).waitFor();
    await page.locator('main').getByText('blood test', { exact: true }).waitFor();
    await check(patient, 'patient-files');
    // The owner opens it too: the download gives back the same bytes.
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: `Open ${FILE_NAME}` }).click();
    const got = await download;
    assert.equal(got.suggestedFilename(), FILE_NAME);
    assert.equal(readFileSync(await got.path(), 'latin1'), PDF_BYTES);
  });

  test('the patient shares the file with the doctor for 30 minutes; the doctor is notified live', async (t) => {
    needs(t, '/protected/resource/tempFileShare/{file_id}', '/protected/notification/notify');
    await go(doctor, '/shared');
    await doctor.page.locator('main').getByText('Nothing is shared with you right now.').waitFor();
    const badge = doctor.page.locator('#notif-count');
    const before = Number((await badge.innerText()) || 0);
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${FILE_NAME}` }).click();
    await page.getByLabel('Doctor').selectOption({ label: 'Dr Ravi Menon (not verified)' });
    await page.getByLabel('For 30 minutes').check();
    await check(patient, 'patient-share');
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.locator('main').getByText(/Shared with Dr Ravi Menon for 30 minutes/).waitFor();
    // No reload on the doctor's side: the badge moves by itself.
    const url = doctor.page.url();
    await doctor.page.waitForFunction((n) => Number(document.getElementById('notif-count').textContent) > n, before);
    assert.equal(doctor.page.url(), url);
    // The list on screen picked the new share up too.
    await doctor.page.locator('main').getByRole('button', { name: `Open ${FILE_NAME}` }).waitFor();
    await doctor.page.getByRole('link', { name: /Notifications \d+ unread/ }).click();
    await doctor.page.locator('main').getByText(`${FILE_NAME} was shared with you for 30 minutes`).waitFor();
    await check(doctor, 'doctor-notifications');
  });

  test('the doctor opens the shared file twice, and the download link gives the file', async (t) => {
    needs(t, '/protected/resource/sharedWithMe', '/protected/resource/sharedFileURL/{access_id}');
    const { page } = doctor;
    await page.getByRole('link', { name: 'See shared files' }).first().click();
    await page.getByRole('heading', { name: 'Shared with me', level: 1 }).waitFor();
    await page.locator('main').getByText(FILE_NAME).waitFor();
    await page.locator('main').getByText(/From Asha Verma/).waitFor();
    await page.locator('main').getByText(/(29|30) min left/).waitFor();
    await check(doctor, 'doctor-shared-with-me');
    for (const where of ['shared', 'patient']) {
      if (where === 'patient') {
        await go(doctor, '/patients');
        await page.getByRole('link', { name: 'Shared files from Asha Verma' }).click();
        await page.getByRole('heading', { name: 'Patient files', level: 1 }).waitFor();
        await page.locator('main').getByText(FILE_NAME).waitFor();
        await check(doctor, 'doctor-patient-files');
      }
      const download = page.waitForEvent('download');
      await page.getByRole('button', { name: `Open ${FILE_NAME}` }).click();
      const d = await download;
      assert.equal(d.suggestedFilename(), FILE_NAME);
      assert.equal(readFileSync(await d.path(), 'latin1'), PDF_BYTES);
    }
  });

  test('the patient revokes; a doctor’s page that missed it fails the next open in words', async (t) => {
    needs(t, '/protected/resource/revokeFileAccess/{file_id}', '/protected/resource/sharedWithMe');
    // A page whose live updates are down (the stream is held off here) keeps showing the file.
    const stream = '**/protected/notification/notify';
    await doctor.page.route(stream, (r) => r.fulfill({ status: 200, contentType: 'text/event-stream', body: 'retry: 600000\n\n' }));
    // (A new query string makes it a full page load, which opens the stream again.)
    await doctor.page.goto('/?stale#/shared');
    await doctor.page.getByRole('button', { name: `Open ${FILE_NAME}` }).waitFor();
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${FILE_NAME}` }).click();
    await page.getByLabel('Doctor').selectOption({ label: 'Dr Ravi Menon (not verified)' });
    await page.getByRole('button', { name: 'Revoke this doctor’s access' }).click();
    await page.locator('main').getByText(/is revoked/).waitFor();
    // The doctor's page is still showing the file: the next open must fail and say why.
    doctor.expectConsoleError(/status of 410/);
    await doctor.page.getByRole('button', { name: `Open ${FILE_NAME}` }).click();
    const err = doctor.page.locator('.open-error');
    await err.waitFor();
    assert.match(await err.innerText(), /taken back/);
    assert.doesNotMatch(await err.innerText(), /[{}]|"code"|ACCESS_/);
    await check(doctor, 'doctor-open-refused');
    // Reloaded, the list no longer offers it.
    await doctor.page.unroute(stream);
    await doctor.page.goto('/#/shared');
    await doctor.page.locator('main').getByText('Nothing is shared with you right now.').waitFor();
  });

  test('the patient sees both of the doctor’s reads in the access log', async (t) => {
    needs(t, '/protected/resource/accessLog');
    const doctorId = await doctor.page.evaluate(async () => (await (await fetch('/protected/user/sessionDetail')).json()).data.user.id);
    await go(patient, '/ledger');
    const table = patient.page.locator('table.ledger');
    await table.waitFor();
    const reads = table.locator(`tbody tr[data-action="read"][data-actor="${doctorId}"]`);
    assert.equal(await reads.count(), 2, 'two reads by the doctor');
    for (let i = 0; i < 2; i++) {
      const row = await reads.nth(i).innerText();
      assert.match(row, /Dr Ravi Menon/);
      assert.match(row, /Opened/);
      assert.match(row, new RegExp(FILE_NAME.replace('.', '\\.')));
    }
    const text = await table.innerText();
    assert.match(text, /Shared for 30 minutes · Dr Ravi Menon/);
    assert.match(text, /Revoked · Dr Ravi Menon/);
    await check(patient, 'patient-access-log');
  });

  test('the patient shares until a date; the doctor sees it with the time left, then it is revoked again', async () => {
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${FILE_NAME}` }).click();
    await page.getByLabel('Doctor').selectOption({ label: 'Dr Ravi Menon (not verified)' });
    await page.getByLabel('Until a date').check();
    const isoDay = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`; };
    const input = page.getByLabel('Last day of access');
    // The picker offers today to a year from today; a day past that is refused in words, by the field.
    assert.equal(await input.getAttribute('min'), isoDay(Date.now()));
    assert.ok((await input.getAttribute('max')) >= isoDay(Date.now() + 364 * 86400000));
    await input.fill(isoDay(Date.now() + 400 * 86400000));
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    const fieldError = page.locator('[data-field="until"] > .field-error:not([hidden])');
    await fieldError.waitFor();
    assert.match(await fieldError.innerText(), /no later than .*at most a year/);
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    assert.match(await input.getAttribute('aria-describedby'), new RegExp(await fieldError.getAttribute('id')));
    assert.equal(await page.locator('main .form-error').count(), 0, 'no message above the form');
    assert.doesNotMatch(await page.locator('main').innerText(), /minutes from 1 to 525600/);
    const day = isoDay(Date.now() + 3 * 86400000);
    await input.fill(day);
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.locator('main').getByText(/Shared with Dr Ravi Menon until/).waitFor();
    await go(doctor, '/shared');
    const row = doctor.page.locator('main li', { hasText: FILE_NAME });
    await row.waitFor();
    assert.match(await row.innerText(), /Shared/);
    // The time left, and the end itself.
    assert.match(await row.innerText(), /(days|h \d+ min) left \(until .+\)/);
    // Access ends at the end of the chosen day, not a minute into the next.
    const [end, midnight] = await doctor.page.evaluate(async (d) => {
      const list = (await (await fetch('/protected/resource/sharedWithMe')).json()).data.files;
      const [y, m, dd] = d.split('-').map(Number);
      return [new Date(list[0].expires_at).getTime(), new Date(y, m - 1, dd + 1).getTime()];
    }, day);
    assert.ok(end <= midnight && end > midnight - 2 * 60000, `ends by midnight after ${day}: ${new Date(end).toISOString()}`);
    await check(doctor, 'doctor-shared-until-date');
    await page.getByRole('button', { name: 'Revoke this doctor’s access' }).click();
    await page.locator('main').getByText(/is revoked/).waitFor();
    // The doctor's list, left on screen, drops it by itself when the revoke arrives.
    await doctor.page.locator('main').getByText('Nothing is shared with you right now.').waitFor();
    // Revoking again: nothing is left to take back, and the page says so in words.
    patient.expectConsoleError(/status of 404/);
    await page.getByRole('button', { name: 'Revoke this doctor’s access' }).click();
    await page.locator('main').getByText(/has no access to this file right now/).waitFor();
    await check(patient, 'patient-revoke-nothing-left');
  });

  test('the doctor registers a patient at the clinic', async (t) => {
    needs(t, '/protected/user/createPatient');
    const { page } = doctor;
    await go(doctor, '/register-patient');
    await check(doctor, 'doctor-register-patient');
    await page.getByLabel('Patient’s full name').fill('Meera Iyer');
    await page.getByLabel('Phone number').fill(newPhone().national);
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.locator('main').getByText('Meera Iyer is registered and connected with you.').waitFor();
    await go(doctor, '/patients');
    await page.locator('main').getByText('Meera Iyer').waitFor();
  });

  test('the doctor edits the profile', async (t) => {
    needs(t, '/protected/user/updateProfile');
    const { page } = doctor;
    await go(doctor, '/profile');
    await page.getByLabel('Specialization').fill('Cardiology');
    await page.getByLabel('Years of experience').fill('12');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.locator('dl.details').getByText('Cardiology').waitFor();
    assert.match(await page.locator('dl.details').innerText(), /12/);
    await check(doctor, 'doctor-profile-edited');
    // The patient sees it when searching.
    await go(patient, '/doctors');
    await patient.page.getByLabel('Doctor’s name or phone').fill('ravi');
    await patient.page.getByRole('button', { name: 'Search' }).click();
    await patient.page.locator('main').getByText(/Cardiology/).waitFor();
    // Already connected: no second request is offered.
    await patient.page.locator('main li', { hasText: 'Dr Ravi Menon' }).getByText('Connected', { exact: true }).waitFor();
    assert.equal(await patient.page.getByRole('button', { name: 'Request to connect with Dr Ravi Menon' }).count(), 0);
  });

  test('everyone sees their signed-in devices and notifications; the doctor reads them', async (t) => {
    needs(t, '/protected/user/sessions');
    for (const who of [patient, doctor]) {
      await go(who, '/sessions');
      await who.page.locator('main').getByText('This device').waitFor();
      await check(who, `${who.label}-sessions`);
      await go(who, '/notifications');
      await who.page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
      await check(who, `${who.label}-notifications-page`);
    }
    // Reading one lowers the badge; reading all hides it (and the server agrees).
    const { page } = doctor;
    const count = async () => Number(await page.locator('#notif-count').innerText());
    const before = await count();
    assert.ok(before >= 2, `the doctor has unread notifications (${before})`);
    await page.getByRole('button', { name: /^Mark as read: / }).first().click();
    await page.waitForFunction((n) => Number(document.getElementById('notif-count').textContent) === n - 1, before);
    await page.getByRole('button', { name: 'Mark all as read' }).click();
    await page.locator('#notif-badge').waitFor({ state: 'hidden' });
    const unread = await page.evaluate(async () => (await (await fetch('/protected/notification/list')).json()).data.unread);
    assert.equal(unread, 0);
  });

  test('the doctor signs a second device out from the first', async (t) => {
    needs(t, '/protected/user/sessions', '/protected/user/revokeSession/{id}');
    const other = await person(browser, server.base, 'doctor-phone');
    await new Promise((r) => setTimeout(r, 2100)); // the test server's per-phone resend cooldown
    await signIn(server, other, D.phone);
    // The new device's sign-in alert is for the doctor's other devices: the new one shows it as
    // its own, with no way to mark it read, while the first device shows it as new.
    await go(other, '/notifications');
    const own = other.page.locator('li[data-kind="new_sign_in"]', { hasText: 'the device you are using now' });
    await own.first().waitFor();
    assert.equal(await own.count(), 1);
    assert.equal(await own.getByRole('button', { name: /^Mark as read/ }).count(), 0);
    assert.equal(await own.evaluate((li) => li.classList.contains('unread')), false);
    await go(doctor, '/notifications');
    const news = doctor.page.locator('li.unread[data-kind="new_sign_in"]');
    await news.first().waitFor();
    assert.equal(await news.first().getByRole('button', { name: /^Mark as read/ }).count(), 1);
    const { page } = doctor;
    await go(doctor, '/sessions');
    await page.locator('main').getByText('This device').waitFor();
    const revoke = page.getByRole('button', { name: /^Sign out Chrome/ });
    await revoke.first().waitFor();
    const n = await revoke.count();
    await revoke.first().click();
    await page.waitForFunction((k) => document.querySelectorAll('button[aria-label^="Sign out Chrome"]').length === k - 1, n);
    // The other device, left alone on its page, finds out by itself: the server ends its
    // notification stream, the browser's reconnect is refused, and before trying again the page
    // asks whether its session is still alive (notify.js), so it shows the sign-in page instead
    // of retrying for ever. (The reconnect and that question are each logged as a 401.)
    for (let i = 0; i < 4; i++) other.expectConsoleError(/status of 401/);
    await other.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor({ timeout: 40000 });
    // And its next request finds the session ended too.
    other.expectConsoleError(/status of 401/);
    await go(other, '/profile');
    await other.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    other.assertClean();
    await other.context.close();
  });

  test('by keyboard alone, the patient deletes the file: Escape cancels, then a confirmed delete', async () => {
    const { page } = patient;
    await go(patient, '/files');
    await page.locator('main').getByText(FILE_NAME).waitFor();
    const label = `Delete ${FILE_NAME}`;
    const focused = () => page.evaluate(() => document.activeElement && document.activeElement.getAttribute('aria-label'));
    for (let i = 0; i < 40 && (await focused()) !== label; i++) await page.keyboard.press('Tab');
    assert.equal(await focused(), label, 'the Delete button is reachable with Tab');
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel', 'a destructive dialog starts on Cancel');
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    assert.equal(await focused(), label, 'focus returns to the button that opened the dialog');
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Delete file');
    await check(patient, 'patient-delete-file-dialog');
    await page.keyboard.press('Enter');
    await page.locator('main').getByText('You have not uploaded any files yet.').waitFor();
    await check(patient, 'patient-files-empty');
  });

  test('signing out everywhere ends every session, this one included', async (t) => {
    needs(t, '/protected/user/signoutEverywhere');
    const { page } = patient;
    await go(patient, '/sessions');
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.getByRole('dialog').waitFor();
    await check(patient, 'signout-everywhere-dialog');
    await page.getByRole('dialog').getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await page.locator('#toasts').getByText('You are signed out on every device.').waitFor();
    patient.expectConsoleError(/status of 401/);
    const status = await page.evaluate(async () => (await fetch('/protected/user/sessionDetail')).status);
    assert.equal(status, 401);
  });

  test('a third person deletes their account after confirming', async (t) => {
    needs(t, '/protected/user/deleteProfile');
    const who = await person(browser, server.base, 'leaver');
    const me = { name: 'Temp Person', phone: newPhone(), role: 'patient' };
    await signUp(server, who, me);

    // A request the doctor declines (the patient's list updates live), then one the patient withdraws.
    const ask = async () => {
      await go(who, '/doctors');
      await who.page.getByLabel('Doctor’s name or phone').fill('ravi');
      await who.page.getByRole('button', { name: 'Search' }).click();
      await who.page.getByRole('button', { name: 'Request to connect with Dr Ravi Menon' }).click();
      await who.page.getByRole('dialog').getByRole('button', { name: 'Send request' }).click();
      await who.page.locator('main').getByText('Request sent').waitFor();
    };
    await ask();
    await go(who, '/requests');
    await who.page.locator('main').getByText('Waiting', { exact: true }).waitFor();
    await go(doctor, '/requests');
    await doctor.page.getByRole('button', { name: 'Decline Temp Person' }).click();
    await doctor.page.locator('main').getByText('No requests are waiting.').waitFor();
    await who.page.locator('main').getByText('Declined', { exact: true }).waitFor();
    await ask();
    await go(who, '/requests');
    await who.page.getByRole('button', { name: 'Withdraw request to Dr Ravi Menon' }).click();
    await who.page.getByRole('button', { name: 'Withdraw request to Dr Ravi Menon' }).waitFor({ state: 'detached' });
    await who.page.locator('main').getByText('Declined', { exact: true }).waitFor();
    assert.equal(await who.page.locator('main').getByText('Waiting', { exact: true }).count(), 0);
    await check(who, 'patient-requests-declined');

    // Eleven files make two pages of ten.
    await who.page.evaluate(async () => {
      for (let i = 1; i <= 11; i++) {
        const fd = new FormData();
        fd.append('file', new Blob([`%PDF-1.4\n% file ${i}\n%%EOF\n`], { type: 'application/pdf' }), `scan-${String(i).padStart(2, '0')}.pdf`);
        const r = await fetch('/protected/resource/uploadFile', { method: 'POST', body: fd });
        if (!r.ok) throw new Error(`upload ${i}: ${r.status}`);
      }
    });
    await go(who, '/files');
    await who.page.locator('main').getByText('11 files').waitFor();
    assert.equal(await who.page.locator('main ul.files > li').count(), 10);
    await who.page.locator('main').getByText('Page 1 of 2').waitFor();
    await check(who, 'patient-files-paged');
    await who.page.getByRole('button', { name: 'Next page' }).click();
    await who.page.locator('main').getByText('Page 2 of 2').waitFor();
    assert.equal(await who.page.locator('main ul.files > li').count(), 1);
    await who.page.locator('main').getByText('scan-01.pdf').waitFor();

    await go(who, '/profile');
    await who.page.getByRole('button', { name: 'Delete my account' }).click();
    const confirm = who.page.getByRole('dialog').getByRole('button', { name: 'Delete account' });
    assert.equal(await confirm.isDisabled(), true, 'nothing happens before DELETE is typed');
    await who.page.getByLabel('Type DELETE to confirm').fill('DELETE');
    await check(who, 'delete-account-dialog');
    await confirm.click();
    await who.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    await who.page.locator('#toasts').getByText('Your account has been deleted.').waitFor();
    who.assertClean();
    await who.context.close();
  });

  test('no console errors anywhere', () => {
    patient.assertClean();
    doctor.assertClean();
  });
});
