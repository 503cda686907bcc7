// Debian's Chromium driven by playwright-core; every page collects console errors and page
// errors (any one fails the test unless the step declared it expected), and `check` runs an
// axe-core scan and saves screenshots at phone and desktop widths.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { REPO } from './server.mjs';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const SHOTS = join(REPO, 'ci-artifacts', 'screenshots');
mkdirSync(SHOTS, { recursive: true });

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** A person: one browser context (their own cookies) and one page. */
export async function person(browser, base, label) {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  const allowed = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    const i = allowed.findIndex((re) => re.test(text));
    if (i >= 0) allowed.splice(i, 1);
    else problems.push(`[${label}] console error: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`[${label}] page error: ${e.message}`));
  return {
    label, context, page, problems,
    /** The next console error matching `re` is expected (e.g. the browser logging an intended 4xx). */
    expectConsoleError(re) { allowed.push(re); },
    assertClean() {
      const found = problems.splice(0);
      assert.deepEqual(found, [], found.join('\n'));
    },
  };
}

const seen = new Set();

/** axe-core scan (no serious or critical violation) and screenshots at 375 px and 1280 px. */
export async function check(who, name, { midway = false } = {}) {
  const { page } = who;
  // `midway`: the page is caught in the middle of something (an upload), so do not wait for it.
  if (!midway) await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'), null, { timeout: 10000 });
  // The page's CSP forbids inline scripts, so axe goes in through the DevTools protocol.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [],
    `accessibility violations on ${name}`);
  const file = name.replace(/[^a-z0-9-]+/gi, '-').toLowerCase();
  if (!seen.has(file)) {
    seen.add(file);
    const size = page.viewportSize();
    // Toasts are fixed to the viewport and fade after a few seconds; in a full-page shot they
    // would sit over the middle of the page, so they are left out.
    await page.evaluate(() => { const t = document.getElementById('toasts'); if (t) t.hidden = true; });
    await page.setViewportSize({ width: 375, height: 812 });
    await page.screenshot({ path: join(SHOTS, `${file}-375.png`), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: join(SHOTS, `${file}-1280.png`), fullPage: true });
    await page.setViewportSize(size);
    await page.evaluate(() => { const t = document.getElementById('toasts'); if (t) t.hidden = false; });
  }
  who.assertClean();
}
