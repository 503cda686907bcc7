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
    otp: [u8; 32],
    link: [u8; 32],
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
            otp: derive(master, b"auravita/otp"),
            link: derive(master, b"auravita/link"),
            totp: derive(master, b"auravita/totp-secret"),
        }
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

    /// Signature for a local download link.
    pub fn link_mac(&self, parts: &[&[u8]]) -> String {
        mac_hex(&self.link, parts)
    }
}

fn derive(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(master).expect("hmac takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn mac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
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
    hex::encode(Sha256::digest(data))
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
}
