// What a person does in the web client, step by step, shared by the tests.

import assert from 'node:assert/strict';
import { check } from './browser.mjs';

export async function go(who, hash) {
  await who.page.goto('/#' + hash);
  await who.page.locator('#page-title').waitFor();
}

/** Sign-up through the form; returns when the app shows the signed-in home. */
export async function signUp(server, who, { name, phone, role }) {
  const { page } = who;
  await go(who, '/signup');
  await check(who, 'signup');
  await page.getByLabel('Full name').fill(name);
  await page.getByLabel('Country code').selectOption('+91');
  await page.getByLabel('Phone number').fill(phone.national);
  await page.getByLabel(role === 'doctor' ? 'Doctor' : 'Patient', { exact: true }).check();
  const before = server.count(phone.e164);
  await page.getByRole('button', { name: 'Send code' }).click();
  await enterCode(server, who, phone, before, 'Create account');
  await page.locator('#user-tools').waitFor({ state: 'visible' });
}

export async function enterCode(server, who, phone, before, button, screenshot) {
  const { page } = who;
  const code = page.getByLabel('6-digit code');
  await code.waitFor();
  // The resend cooldown is shown, and the button waits for it.
  await assert.doesNotReject(page.getByText(/You can ask for a new code in \d+ s\./).waitFor());
  assert.equal(await page.getByRole('button', { name: 'Send a new code' }).isDisabled(), true);
  if (screenshot) await check(who, screenshot);
  await code.fill(await server.code(phone.e164, before));
  await page.getByRole('button', { name: button }).click();
}

export async function signIn(server, who, phone) {
  const { page } = who;
  await go(who, '/signin');
  await page.getByLabel('Phone number').fill(phone.national);
  const before = server.count(phone.e164);
  await page.getByRole('button', { name: 'Send code' }).click();
  await enterCode(server, who, phone, before, 'Sign in', 'signin-code');
  await page.locator('#user-tools').waitFor({ state: 'visible' });
}

export async function signOut(who) {
  await who.page.getByRole('button', { name: 'Sign out' }).click();
  await who.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
}
