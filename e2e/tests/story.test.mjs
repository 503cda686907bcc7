// The whole story in a real browser against the release binary: a patient and a doctor, each in
// their own browser context. Steps whose API routes this server does not serve yet are skipped
// (and say so), so the same file runs the full story once every route is merged.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startServer, newPhone } from '../lib/server.mjs';
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

/** Skips the step unless the server serves every route it needs. */
function needs(t, ...paths) {
  const missing = paths.filter((p) => !routes.has(p));
  if (missing.length) t.skip(`not served yet: ${missing.join(', ')}`);
  return missing.length === 0;
}

describe('web client', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    routes = await server.routes();
    browser = await launch();
    patient = await person(browser, server.base, 'patient');
    doctor = await person(browser, server.base, 'doctor');
  });

  after(async () => {
    await browser?.close();
    if (server) {
      if (process.env.E2E_SERVER_LOG) console.log(server.log.join(''));
      await server.stop();
    }
  });

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

  // ---- the story: each step runs once the routes it needs are served ----

  test('the patient finds the doctor and asks to connect', async (t) => {
    if (!needs(t, '/protected/user/searchDoctorByName', '/protected/user/connectionRequest/{doctor_id}')) return;
    const { page } = patient;
    await go(patient, '/doctors');
    await page.getByLabel('Doctor’s name or phone').fill('ravi');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('Dr Ravi Menon').waitFor();
    await check(patient, 'patient-find-doctor');
    await page.getByRole('button', { name: 'Request to connect with Dr Ravi Menon' }).click();
    // Not verified: the patient is warned first.
    await page.getByRole('dialog').waitFor();
    await check(patient, 'patient-connect-warning');
    await page.getByRole('button', { name: 'Send request' }).click();
    await page.getByText('Request sent').waitFor();
  });

  test('the doctor sees the request and accepts it', async (t) => {
    if (!needs(t, '/protected/user/getConnectionRequests', '/protected/user/acceptConnectionRequest/{request_id}')) return;
    const { page } = doctor;
    await go(doctor, '/requests');
    await page.getByText('Asha Verma').waitFor();
    await check(doctor, 'doctor-requests');
    await page.getByRole('button', { name: 'Accept Asha Verma' }).click();
    await page.getByText('No requests are waiting.').waitFor();
    await go(doctor, '/patients');
    await page.getByText('Asha Verma').waitFor();
    await check(doctor, 'doctor-patients');
  });

  test('the patient sees the connection and the request history', async (t) => {
    if (!needs(t, '/protected/user/connections', '/protected/user/getConnectionRequests')) return;
    await go(patient, '/connections');
    await patient.page.getByText('Dr Ravi Menon').waitFor();
    await check(patient, 'patient-connections');
    await go(patient, '/requests');
    await patient.page.getByText('Accepted').waitFor();
    await check(patient, 'patient-requests');
  });

  test('the patient uploads a file with a progress bar, and a too-large file is refused before sending', async (t) => {
    if (!needs(t, '/protected/resource/uploadFile', '/protected/resource/userFiles')) return;
    const { page } = patient;
    const dir = mkdtempSync(join(tmpdir(), 'auravita-up-'));
    const big = join(dir, 'huge-scan.pdf');
    writeFileSync(big, Buffer.alloc(5 * 1024 * 1024 + 1, 0x25));
    const pdf = join(dir, FILE_NAME);
    writeFileSync(pdf, '%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
    await go(patient, '/upload');
    await page.getByLabel('File', { exact: true }).setInputFiles(big);
    await page.getByText(/the limit is 5\.0 MB/).waitFor();
    await check(patient, 'patient-upload-too-large');
    await page.getByLabel('File', { exact: true }).setInputFiles(pdf);
    await page.getByLabel('Tags').fill('blood test, 2024');
    await page.getByLabel('Kind of document').selectOption('report');
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('heading', { name: 'My files', level: 1 }).waitFor();
    await page.getByText(FILE_NAME).waitFor();
    await page.getByText('blood test', { exact: true }).waitFor();
    await check(patient, 'patient-files');
  });

  test('the patient shares the file with the doctor for 30 minutes; the doctor is notified live', async (t) => {
    if (!needs(t, '/protected/resource/tempFileShare/{file_id}', '/protected/notification/notify')) return;
    await go(doctor, '/shared');
    const badge = doctor.page.locator('#notif-count');
    const before = Number((await badge.innerText()) || 0);
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${FILE_NAME}` }).click();
    await page.getByLabel('Doctor').selectOption({ label: 'Dr Ravi Menon (not verified)' });
    await page.getByLabel('For 30 minutes').check();
    await check(patient, 'patient-share');
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.getByText(/Shared with Dr Ravi Menon for 30 minutes/).waitFor();
    // No reload on the doctor's side: the badge moves by itself.
    await doctor.page.waitForFunction((n) => Number(document.getElementById('notif-count').textContent) > n, before);
    await doctor.page.getByRole('link', { name: /Notifications \d+ unread/ }).click();
    await doctor.page.getByText(/shared/i).first().waitFor();
    await check(doctor, 'doctor-notifications');
  });

  test('the doctor opens the shared file', async (t) => {
    if (!needs(t, '/protected/resource/sharedWithMe', '/protected/resource/sharedFileURL/{access_id}')) return;
    const { page } = doctor;
    await go(doctor, '/shared');
    await page.getByText(FILE_NAME).waitFor();
    await page.getByText(/min left/).waitFor();
    await check(doctor, 'doctor-shared-with-me');
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: `Open ${FILE_NAME}` }).click();
    assert.equal((await download).suggestedFilename(), FILE_NAME);
  });

  test('the patient revokes; the doctor’s next open fails in words', async (t) => {
    if (!needs(t, '/protected/resource/revokeFileAccess/{file_id}', '/protected/resource/sharedWithMe')) return;
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('link', { name: `Share ${FILE_NAME}` }).click();
    await page.getByLabel('Doctor').selectOption({ label: 'Dr Ravi Menon (not verified)' });
    await page.getByRole('button', { name: 'Revoke this doctor’s access' }).click();
    await page.getByText(/is revoked/).waitFor();
    // The doctor's page is still showing the file: the next open must fail and say why.
    doctor.expectConsoleError(/status of 4\d\d/);
    await doctor.page.getByRole('button', { name: `Open ${FILE_NAME}` }).click();
    await doctor.page.locator('.open-error').waitFor();
    await check(doctor, 'doctor-open-refused');
  });

  test('the patient sees the doctor’s reads in the access log', async (t) => {
    if (!needs(t, '/protected/resource/accessLog')) return;
    await go(patient, '/ledger');
    await patient.page.locator('table.ledger').waitFor();
    const text = await patient.page.locator('table.ledger').innerText();
    assert.match(text, /Dr Ravi Menon/);
    await check(patient, 'patient-access-log');
  });

  test('the doctor registers a patient at the clinic', async (t) => {
    if (!needs(t, '/protected/user/createPatient')) return;
    const { page } = doctor;
    await go(doctor, '/register-patient');
    await check(doctor, 'doctor-register-patient');
    await page.getByLabel('Patient’s full name').fill('Meera Iyer');
    await page.getByLabel('Phone number').fill(newPhone().national);
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.getByText('Meera Iyer is registered and connected with you.').waitFor();
  });

  test('everyone sees their signed-in devices and notifications', async (t) => {
    if (!needs(t, '/protected/user/sessions')) return;
    for (const who of [patient, doctor]) {
      await go(who, '/sessions');
      await who.page.getByText('This device').waitFor();
      await check(who, `${who.label}-sessions`);
      await go(who, '/notifications');
      await who.page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
      await check(who, `${who.label}-notifications-page`);
    }
  });

  test('a third person deletes their account after confirming', async (t) => {
    if (!needs(t, '/protected/user/deleteProfile')) return;
    const who = await person(browser, server.base, 'leaver');
    const me = { name: 'Temp Person', phone: newPhone(), role: 'patient' };
    await signUp(server, who, me);
    await go(who, '/profile');
    await who.page.getByRole('button', { name: 'Delete my account' }).click();
    await who.page.getByLabel('Type DELETE to confirm').fill('DELETE');
    await check(who, 'delete-account-dialog');
    await who.page.getByRole('button', { name: 'Delete account' }).click();
    await who.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    who.assertClean();
    await who.context.close();
  });

  test('no console errors anywhere', () => {
    patient.assertClean();
    doctor.assertClean();
  });
});
