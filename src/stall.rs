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

/// A request body whose read fails once it has waited `idle` for the client. Only the client's
/// time counts: the wait starts when a read finds nothing there (time the handler spends between
/// reads, on a slow disk say, is not the client's). A body that is empty or already here never
/// starts a timer.
pub struct StallBody<B> {
    inner: B,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs for the current wait.
    waiting: bool,
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
            waiting: false,
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
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = match (this.timer.as_mut(), this.waiting) {
                    (Some(timer), true) => timer,
                    (Some(timer), false) => {
                        timer.as_mut().reset(Instant::now() + idle);
                        timer
                    }
                    (None, _) => this.timer.insert(Box::pin(tokio::time::sleep(idle))),
                };
                this.waiting = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;
    use http_body_util::BodyExt;

    type Sent = Result<Frame<Bytes>, std::convert::Infallible>;

    fn channel(idle: Duration) -> (futures::channel::mpsc::Sender<Sent>, Body) {
        let (tx, rx) = futures::channel::mpsc::channel::<Sent>(8);
        (
            tx,
            StallBody::wrap(http_body_util::StreamBody::new(rx), idle),
        )
    }

    fn piece() -> Sent {
        Ok(Frame::data(Bytes::from_static(b"x")))
    }

    async fn read(body: &mut Body) -> Result<(), String> {
        match body.frame().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("ended".into()),
        }
    }

    #[tokio::test]
    async fn only_the_clients_waits_count() {
        let idle = Duration::from_millis(300);
        let (mut tx, mut body) = channel(idle);
        // Pieces 100 ms apart: three times as long as the timeout in all, never cut.
        let sender = tokio::spawn(async move {
            for _ in 0..9 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(piece()).await.unwrap();
            }
            tx
        });
        for _ in 0..9 {
            read(&mut body).await.unwrap();
        }
        let mut tx = sender.await.unwrap();

        // The handler away for twice the timeout between reads, a piece already there: fine.
        tx.send(piece()).await.unwrap();
        tokio::time::sleep(2 * idle).await;
        read(&mut body).await.unwrap();
        // Away again, then the piece comes 100 ms into the read's wait: fine too.
        tokio::time::sleep(2 * idle).await;
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(piece()).await.unwrap();
            tx
        });
        read(&mut body).await.unwrap();
        let _tx = late.await.unwrap();

        // Nothing for the timeout: the read fails as `Stalled`, which `timed_out` names 408.
        let started = std::time::Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(started.elapsed() >= idle - Duration::from_millis(20));
        let e: &(dyn std::error::Error + 'static) = &e;
        let answer = timed_out(e).expect("a stalled read");
        assert_eq!(answer.status, axum::http::StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn an_empty_body_ends_at_once() {
        let mut body = StallBody::wrap(
            http_body_util::Empty::<Bytes>::new(),
            Duration::from_secs(1),
        );
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }
}
