//! The server secret and the keys derived from it (OTP hashing pepper, signed download links).
//! Taken from `AURAVITA_SECRET`, or generated once and kept in the data folder (mode 0600).

use anyhow::Context;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

/// ChaCha20-Poly1305's nonce and tag lengths, around every sealed authenticator secret.
const TOTP_NONCE: usize = 12;
const TOTP_TAG: usize = 16;

pub struct Keys {
    /// Names the secret without revealing it: instances on one database compare it at start.
    fingerprint: String,
    /// HMAC-SHA256 keyed once (its pads hashed); each use clones it.
    otp: HmacSha256,
    link: HmacSha256,
    device: HmacSha256,
    totp: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    pub fn load(cfg: &Config) -> anyhow::Result<Keys> {
        let master: Vec<u8> = match &cfg.secret {
            Some(s) => {
                let s = s.expose_secret();
                anyhow::ensure!(
                    s.len() >= 32,
                    "AURAVITA_SECRET must be at least 32 characters"
                );
                s.as_bytes().to_vec()
            }
            None => {
                let path = cfg.data_dir.join("secret.key");
                match std::fs::read_to_string(&path) {
                    Ok(hexed) => hex::decode(hexed.trim())
                        .with_context(|| format!("reading {}", path.display()))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::fs::create_dir_all(&cfg.data_dir)?;
                        let mut k = [0u8; 32];
                        rand::rngs::OsRng.fill_bytes(&mut k);
                        write_private(&path, &hex::encode(k))?;
                        k.to_vec()
                    }
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
        };
        Ok(Keys::from_master(&master))
    }

    /// Every key, derived from the master secret under its own label.
    fn from_master(master: &[u8]) -> Keys {
        Keys {
            fingerprint: hex::encode(derive(master, b"auravita/fingerprint")),
            otp: keyed(&derive(master, b"auravita/otp")),
            link: keyed(&derive(master, b"auravita/link")),
            device: keyed(&derive(master, b"auravita/device")),
            totp: derive(master, b"auravita/totp-secret"),
        }
    }

    /// A one-way name for the secret (its own derived key, so it tells nothing of the others).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Keyed hash of a one-time code, bound to its challenge so equal codes hash differently.
    pub fn otp_hash(&self, challenge_id: &str, code: &str) -> String {
        mac_hex(&self.otp, &[challenge_id.as_bytes(), b":", code.as_bytes()])
    }

    /// Encrypts an authenticator secret for storage with ChaCha20-Poly1305 (RustCrypto's AEAD):
    /// a fresh 12-byte nonce, then the ciphertext and its tag, hex-encoded. The account's id is
    /// the associated data, so a sealed secret copied onto another account's row does not open,
    /// and any change to the stored text is detected. A database dump alone reveals no second
    /// factor.
    pub fn seal_totp(&self, user_id: &str, secret: &[u8]) -> String {
        let mut nonce = [0u8; TOTP_NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .totp_cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: secret,
                    aad: user_id.as_bytes(),
                },
            )
            .expect("encrypting a short secret in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        hex::encode(out)
    }

    /// The inverse of `seal_totp` for the same account; `None` for anything it did not produce
    /// (another key, another account, or a changed byte).
    pub fn open_totp(&self, user_id: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = hex::decode(sealed).ok()?;
        if raw.len() < TOTP_NONCE + TOTP_TAG {
            return None;
        }
        let (nonce, body) = raw.split_at(TOTP_NONCE);
        self.totp_cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: body,
                    aad: user_id.as_bytes(),
                },
            )
            .ok()
    }

    fn totp_cipher(&self) -> ChaCha20Poly1305 {
        // In scope here only: HMAC's `Mac` has a `new_from_slice` of the same name.
        use chacha20poly1305::KeyInit;
        ChaCha20Poly1305::new((&self.totp).into())
    }

    /// A device cookie's signature (its phone, account, nonce and when it was set) and the tag
    /// in its name (`crate::auth::device`).
    pub fn device_mac(&self, parts: &[&[u8]]) -> String {
        mac_hex(&self.device, parts)
    }

    /// Signature for a local download link.
    pub fn link_mac(&self, parts: &[&[u8]]) -> String {
        mac_hex(&self.link, parts)
    }
}

fn derive(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = keyed(master);
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("hmac takes any key length")
}

/// The MAC of `parts`, each preceded by its length (so no two splits of the same bytes collide),
/// as 64 lowercase hex digits.
fn mac_hex(keyed: &HmacSha256, parts: &[&[u8]]) -> String {
    let mut mac = keyed.clone();
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    hex32(&mac.finalize().into_bytes().into())
}

/// 32 bytes as 64 lowercase hex digits, written into one buffer (`hex::encode` goes a character
/// at a time; this runs for every session cookie and every download link).
fn hex32(bytes: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    hex::encode_to_slice(bytes, &mut out).expect("64 digits for 32 bytes");
    String::from_utf8(out.to_vec()).expect("hex digits are ASCII")
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// SHA-256 hex of a token: what the database keeps instead of the token.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex32(&Sha256::digest(data).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_authenticator_secret_opens_only_for_its_account_and_key() {
        let k = Keys::from_master(b"a master secret of at least 32 characters");
        let secret = b"12345678901234567890";
        let sealed = k.seal_totp("user-a", secret);
        assert!(!sealed.contains(&hex::encode(secret)));
        assert_eq!(k.open_totp("user-a", &sealed).as_deref(), Some(&secret[..]));
        // Fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(sealed, k.seal_totp("user-a", secret));
        // Another account's row, another server key, a flipped byte, a cut or garbled text.
        assert_eq!(k.open_totp("user-b", &sealed), None);
        let other = Keys::from_master(b"another master secret, also 32 characters");
        assert_eq!(other.open_totp("user-a", &sealed), None);
        let mut raw = hex::decode(&sealed).unwrap();
        for i in [0, TOTP_NONCE, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(k.open_totp("user-a", &hex::encode(&raw)), None, "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(k.open_totp("user-a", &sealed[..sealed.len() - 2]), None);
        assert_eq!(k.open_totp("user-a", &sealed[..40]), None);
        assert_eq!(k.open_totp("user-a", "not hex"), None);
    }

    #[test]
    fn a_mac_from_the_keyed_state_matches_a_fresh_hmac_every_time() {
        // Python: hmac.new(bytes(range(32)), digestmod=sha256) over each part's big-endian u64
        // length then its bytes.
        let want = "0bf3b12ea10cdb5aefbef1c4a7de76de184283f46856dba5836d167bf7232791";
        let key: Vec<u8> = (0..32).collect();
        let state = keyed(&key);
        let parts: &[&[u8]] = &[b"download", b"files/ab", b""];
        assert_eq!(mac_hex(&state, parts), want);
        // The kept state is cloned, never advanced: the same parts give the same MAC again, and
        // other parts another.
        assert_eq!(mac_hex(&state, parts), want);
        assert_ne!(mac_hex(&state, &[b"download", b"files/a", b"b"]), want);
    }

    #[test]
    fn sha256_hex_is_the_digest_in_lowercase_hex() {
        // sha256("abc"), FIPS 180-2's example.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
