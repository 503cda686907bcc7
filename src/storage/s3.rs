//! S3: SigV4 query-string presigning (GET links with `response-content-disposition`, and the PUT
//! that streams an upload from its temporary file), plus an `object_store` client for the rest.
//! object_store's own `Signer::signed_url` cannot add response-* parameters nor sign at a chosen
//! time, and its payloads are in-memory buffers, so these two requests are signed here.

use std::path::Path as FsPath;

use anyhow::Context;
use hmac::{Hmac, Mac};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::clock::Millis;
use crate::config::Config;

/// RFC 3986 unreserved characters stay; everything else is %XX (SigV4's URI encoding).
const AWS_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct S3Presigner {
    endpoint: url::Url,
    bucket: String,
    region: String,
    key_id: String,
    secret: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for S3Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Presigner")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Presigner {
    pub fn from_config(cfg: &Config, bucket: &str) -> anyhow::Result<S3Presigner> {
        let endpoint = match &cfg.s3_endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://s3.{}.amazonaws.com", cfg.s3_region),
        };
        let endpoint = url::Url::parse(&endpoint).context("AURAVITA_S3_ENDPOINT is not a URL")?;
        let key_id = cfg
            .s3_access_key_id
            .clone()
            .context("AURAVITA_S3_ACCESS_KEY_ID is required for s3:// storage")?;
        let secret = cfg
            .s3_secret_access_key
            .clone()
            .context("AURAVITA_S3_SECRET_ACCESS_KEY is required for s3:// storage")?;
        Ok(S3Presigner {
            endpoint,
            bucket: bucket.to_string(),
            region: cfg.s3_region.clone(),
            key_id,
            secret,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()?,
        })
    }

    pub fn object_store(&self) -> anyhow::Result<AmazonS3> {
        Ok(AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_endpoint(self.endpoint.as_str().trim_end_matches('/'))
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(self.secret.expose_secret())
            .with_allow_http(self.endpoint.scheme() == "http")
            .with_virtual_hosted_style_request(false)
            .build()?)
    }

    /// A presigned GET for `key`, signed as of `at` and valid `expires_secs` from then.
    pub fn presign_get(
        &self,
        key: &str,
        disposition: &str,
        content_type: &str,
        at: Millis,
        expires_secs: u64,
    ) -> String {
        self.presign(
            "GET",
            key,
            &[
                ("response-cache-control", "private, no-store"),
                ("response-content-disposition", disposition),
                ("response-content-type", content_type),
            ],
            at,
            expires_secs,
        )
    }

    /// Path-style SigV4 query signing; only `host` is a signed header, the payload is unsigned.
    pub fn presign(
        &self,
        method: &str,
        key: &str,
        extra: &[(&str, &str)],
        at: Millis,
        expires_secs: u64,
    ) -> String {
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at).unwrap_or_default();
        let amz_date = when.format("%Y%m%dT%H%M%SZ").to_string();
        let day = when.format("%Y%m%d").to_string();
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let host = match self.endpoint.port() {
            Some(p) => format!("{}:{p}", self.endpoint.host_str().unwrap_or("")),
            None => self.endpoint.host_str().unwrap_or("").to_string(),
        };
        let base_path = self.endpoint.path().trim_end_matches('/');
        let mut path = format!("{base_path}/{}", enc(&self.bucket));
        for seg in key.split('/') {
            path.push('/');
            path.push_str(&enc(seg));
        }
        let credential = format!("{}/{scope}", self.key_id);
        let expires = expires_secs.to_string();
        let mut params: Vec<(String, String)> = vec![
            ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("X-Amz-Credential".into(), credential),
            ("X-Amz-Date".into(), amz_date.clone()),
            ("X-Amz-Expires".into(), expires),
            ("X-Amz-SignedHeaders".into(), "host".into()),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut encoded: Vec<(String, String)> =
            params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        encoded.sort();
        let query = encoded
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical = format!("{method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            crate::keys::sha256_hex(canonical.as_bytes())
        );
        let mut k = hmac(
            format!("AWS4{}", self.secret.expose_secret()).as_bytes(),
            day.as_bytes(),
        );
        k = hmac(&k, self.region.as_bytes());
        k = hmac(&k, b"s3");
        k = hmac(&k, b"aws4_request");
        let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
        let origin = self.endpoint.origin().ascii_serialization();
        format!("{origin}{path}?{query}&X-Amz-Signature={sig}")
    }

    /// Streams a file to S3 with a presigned PUT: memory stays flat whatever the file's size.
    pub async fn put_file(&self, key: &str, tmp: &FsPath, size: u64) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let url = self.presign("PUT", key, &[], now, 300);
        let file = tokio::fs::File::open(tmp).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            64 * 1024,
        ));
        let res = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .context("uploading to S3")?;
        let status = res.status();
        if !status.is_success() {
            let text: String = res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(500)
                .collect();
            anyhow::bail!("S3 refused the upload: {status}: {text}");
        }
        Ok(())
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, AWS_SET).to_string()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}
