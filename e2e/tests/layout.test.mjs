// Long names at phone (375 px) and desktop (1280 px) widths: a 100-character name without spaces
// in the header and a confirm dialog, a 98-character file name in the access log and a toast.
// Nothing may be cut off or pushed out of view. And the phone menu reads in the order it shows.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, newPhone } from '../lib/server.mjs';
import { launch, person, check } from '../lib/browser.mjs';
import { go, signUp } from '../lib/flows.mjs';

let server;
let browser;
let patient;
// Wide letters and no place to break a line (no spaces, no hyphens).
const LONG_NAME = 'MWANGIWAMBUGU'.repeat(8).slice(0, 100);
const LONG_FILE = `${'DischargeSummaryManipalHospital'.repeat(4).slice(0, 94)}.pdf`;

/** How far anything in `selector` sticks out of the viewport or of its own box, in px. */
function overflow(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    if (!el) return { missing: sel };
    const r = el.getBoundingClientRect();
    return {
      ownScroll: el.scrollWidth - el.clientWidth,
      left: Math.min(0, Math.floor(r.left)),
      right: Math.max(0, Math.ceil(r.right - document.documentElement.clientWidth)),
      page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    };
  }, selector);
}

const fits = { ownScroll: 0, left: 0, right: 0, page: 0 };

describe('long names', { concurrency: false }, () => {
  before(async () => {
    server = await startServer();
    browser = await launch();
    patient = await person(browser, server.base, 'patient');
    await signUp(server, patient, { name: LONG_NAME, phone: newPhone(), role: 'patient' });
    // The file, and one link issued for it, so the access log has a row naming it.
    await patient.page.evaluate(async (name) => {
      const fd = new FormData();
      fd.append('file', new Blob(['%PDF-1.4\n%%EOF\n'], { type: 'application/pdf' }), name);
      const r = await fetch('/protected/resource/uploadFile', { method: 'POST', body: fd });
      const id = (await r.json()).data.file.id;
      await fetch(`/protected/resource/fileURL/${id}?o=t`);
    }, LONG_FILE);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the header keeps the user tools in view at 1280 px', async () => {
    const { page } = patient;
    await page.setViewportSize({ width: 1280, height: 900 });
    await go(patient, '/files');
    assert.deepEqual(await overflow(page, '#user-tools'), fits);
    assert.deepEqual(await overflow(page, '#signout'), fits);
  });

  test('the access log keeps every column in view at 1280 px and its card whole at 375 px', async () => {
    const { page } = patient;
    await go(patient, '/ledger');
    await page.locator('table.ledger').getByText(LONG_FILE).waitFor();
    assert.deepEqual(await overflow(page, '.table-wrap'), fits);
    assert.deepEqual(await overflow(page, 'table.ledger th:last-child'), fits, 'the Device column is in view');
    await page.setViewportSize({ width: 375, height: 812 });
    assert.deepEqual(await overflow(page, '.table-wrap'), fits);
    assert.deepEqual(await overflow(page, 'table.ledger'), fits);
    await check(patient, 'long-names-access-log');
  });

  test('at 375 px the delete dialog’s title wraps and the toast stays on screen', async () => {
    const { page } = patient;
    await go(patient, '/files');
    await page.getByRole('button', { name: `Delete ${LONG_FILE}` }).click();
    await page.getByRole('dialog').waitFor();
    assert.deepEqual(await overflow(page, 'dialog h2'), fits);
    assert.deepEqual(await overflow(page, 'dialog'), fits);
    await page.getByRole('dialog').getByRole('button', { name: 'Delete file' }).click();
    const toast = page.locator('#toasts .toast', { hasText: 'was deleted' });
    await toast.waitFor();
    assert.deepEqual(await overflow(page, '#toasts .toast'), fits);
  });

  test('at 375 px the open menu comes right after the Menu button, as it reads', async () => {
    const { page } = patient;
    await page.getByRole('button', { name: 'Menu' }).click();
    await page.locator('#nav.open').waitFor();
    const order = await page.evaluate(() => {
      const tops = (sel) => document.querySelector(sel).getBoundingClientRect().top;
      const before = (a, b) => Boolean(document.querySelector(a).compareDocumentPosition(document.querySelector(b)) & Node.DOCUMENT_POSITION_FOLLOWING);
      return { navAboveTools: tops('#nav') < tops('#user-tools'), navFirstInDom: before('#nav', '#user-tools') };
    });
    assert.equal(order.navAboveTools, order.navFirstInDom, 'what shows first is what reads first');
    assert.deepEqual(await overflow(page, '#user-tools'), fits);
    await check(patient, 'long-names-menu-open');
    await page.keyboard.press('Escape');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('no console errors anywhere', () => {
    patient.assertClean();
  });
});
