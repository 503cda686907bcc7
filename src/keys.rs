//! The server secret and the keys derived from it (OTP hashing pepper, signed download links).
//! Taken from `AURAVITA_SECRET`, or generated once and kept in the data folder (mode 0600).

use anyhow::Context;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

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
        Ok(Keys {
            otp: derive(&master, b"auravita/otp"),
            link: derive(&master, b"auravita/link"),
            totp: derive(&master, b"auravita/totp-secret"),
        })
    }

    /// Keyed hash of a one-time code, bound to its challenge so equal codes hash differently.
    pub fn otp_hash(&self, challenge_id: &str, code: &str) -> String {
        mac_hex(&self.otp, &[challenge_id.as_bytes(), b":", code.as_bytes()])
    }

    /// Encrypts an authenticator secret for storage: a fresh 16-byte nonce, then the secret XORed
    /// with HMAC-SHA256(key, nonce) used as a one-time pad (a PRF in counter mode; secrets are
    /// at most 32 bytes, one block). A database dump alone then reveals no second factor.
    pub fn seal_totp(&self, secret: &[u8]) -> String {
        assert!(
            secret.len() <= 32,
            "authenticator secrets are at most 32 bytes"
        );
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let pad = self.totp_pad(&nonce);
        let mut out = nonce.to_vec();
        out.extend(secret.iter().zip(pad.iter()).map(|(s, p)| s ^ p));
        hex::encode(out)
    }

    /// The inverse of `seal_totp`; `None` for anything it did not produce.
    pub fn open_totp(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = hex::decode(sealed).ok()?;
        if raw.len() < 16 || raw.len() > 48 {
            return None;
        }
        let (nonce, body) = raw.split_at(16);
        let pad = self.totp_pad(nonce);
        Some(body.iter().zip(pad.iter()).map(|(c, p)| c ^ p).collect())
    }

    fn totp_pad(&self, nonce: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.totp).expect("hmac takes any key length");
        mac.update(nonce);
        mac.finalize().into_bytes().into()
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
