// Two-step sign-in in a real browser against the release binary: a patient sets it up on the
// profile page (reading the key off the page into a node "authenticator app"), turns it on (which
// signs their other device out), signs in again with the SMS code and then the authenticator
// code (a wrong one first, refused in words), and finally turns it off. Someone else's five wrong
// codes send them back to the phone number with the reason.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, newPhone, stopAll } from '../lib/server.mjs';
import { launch, person, check } from '../lib/browser.mjs';
import { go, signUp, enterCode, signOut } from '../lib/flows.mjs';
import { totp, base32Decode, stepOf, STEP_MS } from '../lib/totp.mjs';

let server;
let browser;
let routes;
let patient;
const P = { name: 'Kavya Rao', phone: newPhone(), role: 'patient' };
const CODE_LABEL = '6-digit code from your authenticator app';
const SMS_LABEL = 'Code from the SMS we sent you';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the page showed and which 30-second steps' codes were used (each works only once).
let secret = null;
let lastUsedStep = null;

function needs(...paths) {
  const missing = paths.filter((p) => !routes.has(p));
  assert.deepEqual(missing, [], `the server does not serve ${missing.join(', ')}`);
}

/** 6-digit codes that are not right for any step the server could accept around now. */
function wrongCodes(key = secret, n = 1) {
  const now = Date.now();
  const near = new Set([-1, 0, 1, 2].map((k) => totp(key, now + k * STEP_MS)));
  return ['000000', '111111', '222222', '333333', '444444', '555555', '666666', '777777', '888888', '999999']
    .filter((c) => !near.has(c)).slice(0, n);
}
const wrongCode = () => wrongCodes()[0];

/** Sign-in with the phone number and the SMS code from the outbox, with no screenshots. */
async function smsSignIn(who, phone) {
  const { page } = who;
  await go(who, '/signin');
  await page.getByLabel('Phone number').fill(phone.national);
  const before = server.count(phone.e164);
  await page.getByRole('button', { name: 'Send code' }).click();
  await enterCode(server, who, phone, before, 'Sign in');
}

/** The two-step card on the profile page, loaded. */
async function twoStepCard(who) {
  await go(who, '/profile');
  const card = who.page.locator('section.two-step');
  await card.getByRole('heading', { name: 'Two-step sign-in', level: 2 }).waitFor();
  await who.page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
  return card;
}

describe('two-step sign-in', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    routes = await server.routes();
    browser = await launch();
    patient = await person(browser, server.base, 'patient');
  });

  after(() => stopAll(browser, server));

  test('the test’s authenticator agrees with RFC 6238 (appendix B, SHA-1)', () => {
    const seed = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
    assert.equal(base32Decode(seed).toString('latin1'), '12345678901234567890');
    assert.equal(totp(seed, 59_000), '287082');
    assert.equal(totp(seed, 1111111109_000), '081804');
    assert.equal(totp(seed, 1234567890_000), '005924');
    assert.equal(totp(seed, 2000000000_000), '279037');
  });

  test('a patient signs up; a second device signs in too', async () => {
    needs('/protected/user/totp', '/protected/user/totp/setup', '/protected/user/totp/enable',
      '/protected/user/totp/disable', '/auth/signin/totp/{id}');
    await signUp(server, patient, P);
    const other = await person(browser, server.base, 'patient-phone');
    await sleep(2100); // the test server's per-phone resend cooldown
    await smsSignIn(other, P.phone);
    await other.page.locator('#user-tools').waitFor({ state: 'visible' });
    other.assertClean();
    patient.other = other;
  });

  test('the patient sets up two-step sign-in by keyboard and reads the key off the page', async () => {
    const { page } = patient;
    const card = await twoStepCard(patient);
    await card.getByText('Off', { exact: true }).waitFor();
    await check(patient, 'two-step-off');

    const focusedText = () => page.evaluate(() => document.activeElement && document.activeElement.textContent);
    for (let i = 0; i < 60 && (await focusedText()) !== 'Set up'; i++) await page.keyboard.press('Tab');
    assert.equal(await focusedText(), 'Set up', 'Set up is reachable with Tab');
    const smsBefore = server.count(P.phone.e164);
    await page.keyboard.press('Enter');

    const key = page.locator('#totp-secret');
    await key.waitFor();
    assert.equal(await focusedText(), '1. Add Auravita to your authenticator app', 'focus moves to the first step');
    const shown = await key.innerText();
    assert.match(shown, /^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$/, `the key reads in blocks of 4: ${shown}`);
    secret = shown.replace(/\s/g, '');
    assert.equal(base32Decode(secret).length, 20, '160-bit secret');
    assert.equal(await key.evaluate((el) => getComputedStyle(el).userSelect), 'all', 'one click selects the whole key');

    const href = await card.getByRole('link', { name: 'Open in authenticator app' }).getAttribute('href');
    assert.match(href, /^otpauth:\/\/totp\//);
    const uri = new URL(href);
    assert.equal(uri.searchParams.get('secret'), secret);
    assert.equal(uri.searchParams.get('issuer'), 'Auravita');

    const input = page.getByLabel(CODE_LABEL);
    assert.equal(await input.getAttribute('inputmode'), 'numeric');
    assert.equal(await input.getAttribute('autocomplete'), 'one-time-code');

    // Turning it on also takes a code sent by SMS to the account's phone, shown masked.
    patient.smsCode = await server.code(P.phone.e164, smsBefore);
    const sent = await card.locator('.sms-sent').innerText();
    const digits = P.phone.e164;
    assert.match(sent, /^We sent a 6-digit code by SMS to \+\d\d•+\d{4}\./, sent);
    assert.ok(sent.includes(digits.slice(-4)) && !sent.includes(digits.slice(3, -4)), `only the last digits show: ${sent}`);
    const smsInput = page.getByLabel(SMS_LABEL);
    assert.equal(await smsInput.getAttribute('inputmode'), 'numeric');

    // At 375 px nothing sticks out sideways.
    await page.setViewportSize({ width: 375, height: 812 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await page.setViewportSize({ width: 1280, height: 900 });
    assert.equal(overflow, 0, 'no sideways scrolling at 375 px');
    await check(patient, 'two-step-setup');

    // Too short: said next to the field, nothing sent.
    await smsInput.fill(patient.smsCode);
    await input.fill('12');
    await card.getByRole('button', { name: 'Turn on' }).click();
    assert.match(await card.locator('[data-field="code"] > .field-error').innerText(), /6 digits/);

    // A wrong code is refused in words, and the person stays signed in.
    await input.fill(wrongCode());
    patient.expectConsoleError(/status of 403/);
    await card.getByRole('button', { name: 'Turn on' }).click();
    const err = card.locator('[data-field="code"] > .field-error:not([hidden])');
    await err.waitFor();
    assert.match(await err.innerText(), /not right/);
    assert.doesNotMatch(await page.locator('main').innerText(), /[{}]|"code"|TOTP_/, 'no raw JSON on the page');
    assert.equal(await page.locator('#user-tools').isVisible(), true, 'still signed in');
    await check(patient, 'two-step-setup-wrong-code');

    // A wrong SMS code is refused next to its own field, with the tries left.
    const wrongSms = patient.smsCode === '000000' ? '111111' : '000000';
    await smsInput.fill(wrongSms);
    await input.fill(totp(secret, Date.now()));
    patient.expectConsoleError(/status of 403/);
    await card.getByRole('button', { name: 'Turn on' }).click();
    const smsErr = card.locator('[data-field="sms_code"] > .field-error:not([hidden])');
    await smsErr.waitFor();
    assert.match(await smsErr.innerText(), /SMS code is not right.*4 tries left/);
    assert.equal(await smsInput.evaluate((el) => el === document.activeElement), true, 'focus is on the SMS field');
    await check(patient, 'two-step-setup-wrong-sms-code');

    // A new SMS code on request (after the test server's 2 s cooldown); it replaces the first.
    await sleep(2100);
    const beforeResend = server.count(P.phone.e164);
    await card.getByRole('button', { name: 'Send the SMS code again' }).click();
    await card.locator('.sms-sent', { hasText: /^A new code is on its way\. We sent a 6-digit code by SMS to / }).waitFor();
    patient.smsCode = await server.code(P.phone.e164, beforeResend);
  });

  test('the right code turns it on and signs the other device out', async () => {
    const { page } = patient;
    const card = page.locator('section.two-step');
    const now = Date.now();
    await page.getByLabel(SMS_LABEL).fill(patient.smsCode);
    await page.getByLabel(CODE_LABEL).fill(totp(secret, now));
    lastUsedStep = stepOf(now);
    await page.getByLabel(CODE_LABEL).press('Enter');
    const note = card.locator('.note');
    await note.waitFor();
    assert.match(await note.innerText(), /Two-step sign-in is on\. 1 other device was signed out/);
    await card.getByText('On', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.classList.contains('note')), true, 'focus is on the message');
    await check(patient, 'two-step-on');

    const { other } = patient;
    other.expectConsoleError(/status of 401/);
    await go(other, '/profile');
    await other.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    other.assertClean();
    await other.context.close();
  });

  test('signing in again asks for the authenticator code; a wrong one is refused in words, the right one signs in', async () => {
    const { page } = patient;
    await signOut(patient);
    await sleep(2100);
    await smsSignIn(patient, P.phone);

    const input = page.getByLabel(CODE_LABEL);
    await input.waitFor();
    await page.getByRole('heading', { name: 'Two-step sign-in', level: 1 }).waitFor();
    assert.equal(await input.getAttribute('inputmode'), 'numeric');
    assert.equal(await input.getAttribute('autocomplete'), 'one-time-code');
    assert.equal(await input.evaluate((el) => el === document.activeElement), true, 'the code field has focus');
    assert.equal(await page.locator('#user-tools').isVisible(), false, 'not signed in yet');
    patient.expectConsoleError(/status of 401/);
    assert.equal(await page.evaluate(async () => (await fetch('/protected/user/sessionDetail')).status), 401,
      'the SMS code alone gives no session');
    await check(patient, 'signin-two-step');

    await input.fill(wrongCode());
    patient.expectConsoleError(/status of 401/);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const err = page.locator('[data-field="code"] > .field-error:not([hidden])');
    await err.waitFor();
    assert.match(await err.innerText(), /not right.*4 tries left/);
    assert.doesNotMatch(await page.locator('main').innerText(), /[{}]|"code"|TOTP_/, 'no raw JSON on the page');
    await check(patient, 'signin-two-step-wrong-code');

    // The current step's code turned it on, so use the next step's (the server allows one step either side).
    const next = Date.now() + STEP_MS;
    assert.ok(stepOf(next) > lastUsedStep);
    await input.fill(totp(secret, next));
    lastUsedStep = stepOf(next);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#user-tools').waitFor({ state: 'visible' });
    assert.match(await page.locator('#who').innerText(), /Kavya Rao · Patient/);
    const card = await twoStepCard(patient);
    await card.getByText('On', { exact: true }).waitFor();
  });

  test('the patient turns it off with a fresh code; then the SMS code alone signs in', async () => {
    const { page } = patient;
    const card = page.locator('section.two-step');
    const input = page.getByLabel(CODE_LABEL);

    await input.fill(wrongCode());
    patient.expectConsoleError(/status of 403/);
    await card.getByRole('button', { name: 'Turn off' }).click();
    await card.locator('[data-field="code"] > .field-error:not([hidden])').waitFor();
    assert.match(await card.locator('[data-field="code"] > .field-error').innerText(), /not right/);
    await check(patient, 'two-step-off-wrong-code');

    // A code for a step not used yet, within one step of the server's clock: wait (≤ 30 s) for
    // the clock to reach the step used to sign in, then take the one after it.
    while (stepOf(Date.now()) < lastUsedStep) await sleep(500);
    const next = Date.now() + STEP_MS;
    assert.ok(stepOf(next) > lastUsedStep);
    await input.fill(totp(secret, next));
    await card.getByRole('button', { name: 'Turn off' }).click();
    await card.getByText('Two-step sign-in is off. Signing in now needs only the SMS code.').waitFor();
    await card.getByText('Off', { exact: true }).waitFor();
    await check(patient, 'two-step-turned-off');

    await signOut(patient);
    await sleep(2100);
    await smsSignIn(patient, P.phone);
    await page.locator('#user-tools').waitFor({ state: 'visible' });
  });

  test('five wrong authenticator codes end the sign-in: back to the phone number, told why', async () => {
    const who = await person(browser, server.base, 'unlucky');
    const me = { name: 'Arjun Nair', phone: newPhone(), role: 'patient' };
    await signUp(server, who, me);
    // The screens to turn it on are tested above; here the API does it, as the page would.
    const smsBefore = server.count(me.phone.e164);
    const key = await who.page.evaluate(async () => {
      const r = await fetch('/protected/user/totp/setup', { method: 'POST', headers: { Accept: 'application/json' } });
      return (await r.json()).data.secret;
    });
    const smsCode = await server.code(me.phone.e164, smsBefore);
    const status = await who.page.evaluate(async ([code, sms]) => (await fetch('/protected/user/totp/enable', {
      method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify({ code, sms_code: sms }),
    })).status, [totp(key), smsCode]);
    assert.equal(status, 200);
    await signOut(who);
    await sleep(2100);
    await smsSignIn(who, me.phone);
    const { page } = who;
    const input = page.getByLabel(CODE_LABEL);
    await input.waitFor();
    const wrong = wrongCodes(key, 5);
    for (let i = 0; i < 4; i++) {
      await input.fill(wrong[i]);
      who.expectConsoleError(/status of 401/);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('[data-field="code"] > .field-error:not([hidden])', { hasText: `${4 - i} ${i === 3 ? 'try' : 'tries'} left` }).waitFor();
    }
    await input.fill(wrong[4]);
    who.expectConsoleError(/status of 410/);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    const alert = page.locator('main [role="alert"]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /too many wrong authenticator codes.*Start again with your phone number/);
    assert.equal(await page.getByLabel('Phone number').inputValue(), '', 'a fresh start');
    assert.equal(await page.locator('#user-tools').isVisible(), false, 'not signed in');
    await check(who, 'signin-two-step-start-again');
    who.assertClean();
    await who.context.close();
  });

  test('no console errors anywhere', () => {
    patient.assertClean();
  });
});
