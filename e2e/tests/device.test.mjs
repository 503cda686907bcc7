// A stranger who knows the owner's phone number asks for sign-in codes and guesses wrong until the
// phone backs off. The owner's browser, which signed in before, holds the device cookie and signs
// in at once; a browser that never signed in to that phone is asked to wait, like the stranger.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, newPhone } from '../lib/server.mjs';
import { launch, person } from '../lib/browser.mjs';
import { go, signUp, signIn, signOut } from '../lib/flows.mjs';

let server;
let browser;

/** What a script with no cookies sends: a JSON POST, answered in the envelope. */
async function post(path, body) {
  const r = await fetch(server.base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

describe('device cookies', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("a stranger's wrong codes back the phone off, but not the owner's browser", async () => {
    const phone = newPhone();
    const owner = await person(browser, server.base, 'owner');
    await signUp(server, owner, { name: 'Asha Device', phone, role: 'patient' });
    const cookies = await owner.context.cookies();
    const device = cookies.find((c) => c.name.startsWith('auravita_device_'));
    assert.ok(device, `no device cookie among ${cookies.map((c) => c.name)}`);
    assert.equal(device.httpOnly, true);
    assert.equal(device.sameSite, 'Lax');
    assert.equal(device.path, '/');
    assert.ok(device.expires * 1000 > Date.now() + 170 * 86400e3, 'kept for months');
    await signOut(owner);

    // The stranger: a code is sent to the owner's phone, and five guesses kill it.
    await new Promise((r) => setTimeout(r, 2100)); // the e2e server's 2 s cooldown
    const before = server.count(phone.e164);
    const asked = await post('/auth/signin', { phone: phone.e164 });
    assert.equal(asked.status, 200, JSON.stringify(asked.body));
    const real = await server.code(phone.e164, before);
    const wrong = String((Number(real) + 1) % 1e6).padStart(6, '0');
    let last;
    for (let i = 0; i < 5; i++) last = await post(`/auth/signin/verify/${asked.body.data.id}`, { otp: wrong });
    assert.equal(last.body.error.code, 'OTP_DEAD');
    const again = await post('/auth/signin', { phone: phone.e164 });
    assert.equal(again.status, 429);
    assert.equal(again.body.error.code, 'OTP_BACKOFF');

    // The owner's browser signs in as if nothing happened.
    await signIn(server, owner, phone);
    owner.assertClean();

    // A browser that never signed in to this phone shares the phone's back-off.
    const fresh = await person(browser, server.base, 'fresh-browser');
    fresh.expectConsoleError(/429/);
    await go(fresh, '/signin');
    await fresh.page.getByLabel('Phone number').fill(phone.national);
    await fresh.page.getByRole('button', { name: 'Send code' }).click();
    await fresh.page.getByText(/too many wrong codes/i).waitFor();
    assert.equal(await fresh.page.getByLabel('6-digit code').count(), 0);
    fresh.assertClean();
  });
});
