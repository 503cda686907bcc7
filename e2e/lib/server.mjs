// Starts the release binary on a free port over a fresh data folder, with the SMS outbox on,
// and reads one-time codes from that outbox as a person reads them from their phone.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startServer(extraEnv = {}) {
  const bin = process.env.AURAVITA_BIN || join(REPO, 'target', 'release', 'auravita');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build --release first`);
  const dir = mkdtempSync(join(tmpdir(), 'auravita-e2e-'));
  const outbox = join(dir, 'sms.jsonl');
  const port = await freePort();
  const webDir = process.env.E2E_WEB_DIR;
  const proxyPort = webDir ? await freePort() : null;
  const base = `http://127.0.0.1:${proxyPort || port}`;
  const log = [];
  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      AURAVITA_BIND: `127.0.0.1:${port}`,
      AURAVITA_PUBLIC_URL: base,
      AURAVITA_DATA_DIR: dir,
      AURAVITA_SMS_OUTBOX: outbox,
      // A person waits out the 60 s resend cooldown; a test signing the same phone in again should not.
      AURAVITA_OTP_COOLDOWN_SECS: '2',
      // The two-step story sends its phone six codes in a minute (sign-up, a second device, set-up,
      // a resend, two sign-ins); the product allows 5 an hour.
      AURAVITA_OTP_PER_HOUR: '20',
      AURAVITA_OTP_PHONE_PER_HOUR: '40',
      AURAVITA_AUTH_IP_PER_MINUTE: '600',
      RUST_LOG: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => log.push(String(d)));
  child.stderr.on('data', (d) => log.push(String(d)));
  let exited = null;
  child.on('exit', (code) => { exited = code; });
  for (let i = 0; i < 200; i++) {
    if (exited !== null) throw new Error(`auravita exited with ${exited}:\n${log.join('')}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health/live`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  const proxy = webDir ? await (await import('./devproxy.mjs')).startProxy(webDir, port, proxyPort) : null;
  return {
    base,
    dir,
    log,
    sms() {
      if (!existsSync(outbox)) return [];
      return readFileSync(outbox, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    /** Waits for an SMS to `phone` newer than the `after`-th one, and returns its 6-digit code. */
    async code(phone, after = 0) {
      for (let i = 0; i < 100; i++) {
        const mine = this.sms().filter((m) => m.to === phone);
        if (mine.length > after) return mine[mine.length - 1].body.slice(0, 6);
        await sleep(100);
      }
      throw new Error(`no SMS to ${phone}`);
    },
    count(phone) {
      return this.sms().filter((m) => m.to === phone).length;
    },
    async routes() {
      const doc = await (await fetch(`${base}/openapi.json`)).json();
      return new Set(Object.keys(doc.paths || {}));
    },
    async stop() {
      if (proxy) proxy.close();
      if (exited === null) {
        child.kill('SIGTERM');
        for (let i = 0; i < 50 && exited === null; i++) await sleep(100);
        if (exited === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A valid Indian mobile number nobody else in this run uses (national part and E.164). */
export function newPhone() {
  const national = '98' + String(Math.floor(Math.random() * 1e8)).padStart(8, '0');
  return { national, e164: '+91' + national };
}

/** A suite's `after`: closes its browser, prints the server's log when `E2E_SERVER_LOG` is set, stops the server. */
export async function stopAll(browser, server) {
  await browser?.close();
  if (server) {
    if (process.env.E2E_SERVER_LOG) console.log(server.log.join(''));
    await server.stop();
  }
}
