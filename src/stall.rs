//! Request bodies that stall. hyper bounds how long a client may take over a request's head
//! (`app::serve`), not over its body: a client could send a head and then trickle or withhold the
//! body, holding a task, a socket and (uploading) a temporary file for as long as it liked. Every
//! request body is wrapped in `StallBody`, which fails the read once no bytes have come for the
//! client timeout; the extractors answer that failure with 408 `TIMEOUT` (`timed_out`), and an
//! upload cut that way removes its temporary file like any other failed upload.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::AppError;

/// The error a stalled body reads as.
#[derive(Debug)]
pub struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no bytes of the request body for {:?}", self.0)
    }
}

impl std::error::Error for Stalled {}

/// A request body that fails once `idle` passes without a frame. The timer exists only while a
/// read waits: a body that is empty or already here costs nothing.
pub struct StallBody<B> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> StallBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    /// `inner` as the body handlers read (one allocation, as `Body::new` alone would make).
    pub fn wrap(inner: B, idle: Duration) -> Body {
        Body::new(StallBody {
            inner,
            idle,
            timer: None,
        })
    }
}

impl<B> http_body::Body for StallBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Bytes came: the next wait starts afresh.
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(Stalled(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// 408 `TIMEOUT` when `e` (or what caused it) is a stalled body.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<AppError> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(Stalled(idle)) = c.downcast_ref::<Stalled>() {
            return Some(AppError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "TIMEOUT",
                format!(
                    "the request body stopped arriving (nothing for {} s)",
                    idle.as_secs()
                ),
            ));
        }
        cause = c.source();
    }
    None
}
