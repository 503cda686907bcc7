//! Answers written on the connection itself, below the router: each in the product's envelope.
//!
//! Two kinds: a connection refused before any request is read (`app::serve`'s per-client
//! limit), and what hyper answers on its own when it cannot read a request head at all (a head
//! over its buffer or with more than 100 fields: 431; a request line or header it cannot parse:
//! 400; a path too long: 414). hyper writes those with no body and closes the connection, before
//! any handler or layer runs. `Enveloped` sits between hyper and the socket and replaces such an
//! answer, recognised by its exact shape, with the same status in the envelope.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

macro_rules! hsts {
    () => {
        "max-age=31536000; includeSubDomains"
    };
}

/// `Strict-Transport-Security`'s value, sent on every answer when the public URL is https.
pub const HSTS: &str = hsts!();

/// The same as a whole header line, for the raw answers' `extra` when the public URL is https.
pub const HSTS_LINE: &str = concat!("strict-transport-security: ", hsts!(), "\r\n");

/// A complete HTTP/1.1 answer in the envelope that closes the connection: status line, JSON
/// content type, the security headers every response carries, `extra` (whole header lines, each
/// ending in CRLF), then the body.
pub fn raw_answer(
    status: u16,
    reason: &str,
    code: &str,
    message: &str,
    details: serde_json::Value,
    extra: &str,
) -> Vec<u8> {
    let body = serde_json::json!({
        "success": false,
        "error": {"code": code, "message": message, "details": details},
        "timestamp": crate::clock::rfc3339_now(),
    })
    .to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{extra}cache-control: no-store\r\n\
         x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n\
         x-frame-options: DENY\r\ncontent-security-policy: {}\r\nconnection: close\r\n\r\n",
        body.len(),
        crate::app::CSP
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The envelope for one of hyper's own bodiless answers, when `bytes` is exactly one: a status
/// line of 400, 414 or 431, then `connection: close`, `content-length: 0` and `date` (in any
/// order, nothing else), then the blank line. `extra` as in `raw_answer`. None of the server's own responses has that
/// shape: each carries the security headers, and every error a body.
fn replacement(bytes: &[u8], extra: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let (code, message) = match status_line {
        "HTTP/1.1 400 Bad Request" => ("BAD_REQUEST", "the request could not be read as HTTP/1.1"),
        "HTTP/1.1 414 URI Too Long" => ("URI_TOO_LONG", "the request's address is too long"),
        "HTTP/1.1 431 Request Header Fields Too Large" => (
            "HEADERS_TOO_LARGE",
            "the request's headers are too large or too many",
        ),
        _ => return None,
    };
    let mut seen = [false; 3];
    for line in lines {
        let slot = match line {
            "connection: close" => 0,
            "content-length: 0" => 1,
            _ if line.starts_with("date: ") && line.len() < 64 => 2,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    if seen != [true; 3] {
        return None;
    }
    let (status, reason) = status_line["HTTP/1.1 ".len()..].split_once(' ')?;
    Some(raw_answer(
        status.parse().ok()?,
        reason,
        code,
        message,
        serde_json::json!({}),
        extra,
    ))
}

/// A connection whose bodiless answers from hyper (see the module) go out in the envelope.
/// Everything else passes through untouched.
pub struct Enveloped<T> {
    inner: T,
    /// Header lines for the replacements (`HSTS_LINE` over https).
    extra: &'static str,
    /// A replacement still being written, and how much of it is out.
    pending: Vec<u8>,
    written: usize,
}

impl<T> Enveloped<T> {
    pub fn new(inner: T, extra: &'static str) -> Self {
        Enveloped {
            inner,
            extra,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> Enveloped<T> {
    /// Writes out what is left of a replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `bytes` as written when they are one of hyper's bodiless answers: its replacement
    /// goes out instead (as much as the socket takes now, the rest before the next write, flush
    /// or close).
    fn replaced(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Option<io::Result<usize>> {
        // Cheap first: only a 4xx status line at the start of a write can be one.
        if !bytes.starts_with(b"HTTP/1.1 4") {
            return None;
        }
        self.pending = replacement(bytes, self.extra)?;
        self.written = 0;
        match self.drain(cx) {
            Poll::Ready(Err(e)) => Some(Err(e)),
            _ => Some(Ok(bytes.len())),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Enveloped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Enveloped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(done) = this.replaced(cx, buf) {
            return Poll::Ready(done);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(done) = this.replaced(cx, only) {
                return Poll::Ready(done);
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{replacement, HSTS, HSTS_LINE};

    const DATE: &str = "date: Mon, 07 Dec 2026 13:07:21 GMT";

    #[test]
    fn hypers_bodiless_answers_are_put_in_the_envelope() {
        for (line, code) in [
            ("HTTP/1.1 400 Bad Request", "BAD_REQUEST"),
            ("HTTP/1.1 414 URI Too Long", "URI_TOO_LONG"),
            (
                "HTTP/1.1 431 Request Header Fields Too Large",
                "HEADERS_TOO_LARGE",
            ),
        ] {
            for order in [
                format!("connection: close\r\ncontent-length: 0\r\n{DATE}"),
                format!("{DATE}\r\ncontent-length: 0\r\nconnection: close"),
            ] {
                let out = replacement(format!("{line}\r\n{order}\r\n\r\n").as_bytes(), "")
                    .unwrap_or_else(|| panic!("{line} / {order} not replaced"));
                let out = String::from_utf8(out).unwrap();
                let (head, body) = out.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with(&format!("{line}\r\n")), "{head}");
                assert!(head.contains("\r\nconnection: close"), "{head}");
                assert!(
                    head.contains("\r\nx-content-type-options: nosniff"),
                    "{head}"
                );
                assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["success"], false);
                assert_eq!(v["error"]["code"], code);
            }
        }
    }

    #[test]
    fn anything_else_passes_through() {
        let ok = format!("connection: close\r\ncontent-length: 0\r\n{DATE}");
        for bytes in [
            // Other statuses, and other reasons.
            format!("HTTP/1.1 404 Not Found\r\n{ok}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Thing\r\n{ok}\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{ok}\r\n\r\n"),
            // A header more, one missing, one twice.
            format!("HTTP/1.1 400 Bad Request\r\n{ok}\r\nx-request-id: 1\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n{DATE}\r\n\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\n{ok}\r\n{DATE}\r\n\r\n"),
            // A body, or not the whole answer.
            format!("HTTP/1.1 400 Bad Request\r\n{ok}\r\n\r\n{{}}"),
            format!("HTTP/1.1 400 Bad Request\r\n{ok}\r\n"),
            // Not at the start.
            format!("x HTTP/1.1 400 Bad Request\r\n{ok}\r\n\r\n"),
        ] {
            assert!(replacement(bytes.as_bytes(), "").is_none(), "{bytes:?}");
        }
        assert!(replacement(&[0xff, 0xfe], "").is_none());
    }

    #[test]
    fn the_replacement_carries_the_extra_lines() {
        let hyper = format!("HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n");
        let plain = String::from_utf8(replacement(hyper.as_bytes(), "").unwrap()).unwrap();
        assert!(!plain.contains("strict-transport-security"), "{plain}");
        let out = String::from_utf8(replacement(hyper.as_bytes(), HSTS_LINE).unwrap()).unwrap();
        let (head, _) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("\r\nstrict-transport-security: {HSTS}\r\n")),
            "{head}"
        );
    }
}
