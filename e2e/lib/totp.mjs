// The authenticator app, in node: RFC 6238 codes (HMAC-SHA1, 30 s steps, 6 digits) from a
// base32 secret (RFC 4648), as a person's phone would show them.

import { createHmac } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
export const STEP_MS = 30_000;

/** `GEZD GNBV…` (spaces, padding and case do not matter) → the secret's bytes. */
export function base32Decode(text) {
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of String(text).replace(/[\s=]/g, '').toUpperCase()) {
    const i = ALPHABET.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${JSON.stringify(ch)}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
      value &= (1 << bits) - 1;
    }
  }
  return Buffer.from(out);
}

/** The 30-second step a time (ms since the epoch) falls in. */
export const stepOf = (ms) => Math.floor(ms / STEP_MS);

/** The 6-digit code for the step that `ms` falls in. */
export function totp(secret, ms = Date.now()) {
  const key = typeof secret === 'string' ? base32Decode(secret) : secret;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(stepOf(ms)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const n = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}
