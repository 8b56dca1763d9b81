//! The HTTP/1.1 server loop, with the limits a public listener needs against slow or greedy
//! clients (`EdgeSettings`, docs/runbook.md "Edge limits"):
//!
//! - headers: hyper's header-read timeout, which also runs while a kept-alive connection
//!   waits for its next request;
//! - body: one deadline for the whole body from the end of the headers (tower-http's body
//!   timeout resets on every chunk, so a trickle would pass it); 408 problem+json;
//! - idle: a connection on which no byte moves either way is dropped;
//! - request: the answer must be ready in time; 503 problem+json;
//! - connections: at most `max_connections` at once; the rest wait in the accept queue.
//!
//! Both timeouts that answer also close the connection, so a client cannot keep a socket
//! by sending the rest of a body nobody will read.
use crate::error::ApiError;
use crate::settings::EdgeSettings;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as _, Frame};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Adds the body deadline and the request timeout to `router`.
pub fn with_limits(router: Router, limits: &EdgeSettings) -> Router {
    let (body, request) = (limits.body_timeout, limits.request_timeout);
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        deadlines(req, next, body, request)
    }))
}

/// Runs the request under both deadlines. A body cut by its deadline is the client's
/// slowness (408), whichever deadline the handler noticed first; an answer not ready in time
/// is ours (503).
async fn deadlines(req: Request, next: Next, body: Duration, request: Duration) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let req = if req.body().is_end_stream() {
        req
    } else {
        req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(body)),
                expired: expired.clone(),
            })
        })
    };
    let answer = tokio::time::timeout(request, next.run(req)).await;
    if expired.load(Ordering::Acquire) {
        metrics::counter!("zhilego_http_timeouts_total", "what" => "body").increment(1);
        return closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request body too slow",
            format!(
                "the request body did not arrive within {} ms",
                body.as_millis()
            ),
        ));
    }
    match answer {
        Ok(res) => res,
        Err(_) => {
            metrics::counter!("zhilego_http_timeouts_total", "what" => "request").increment(1);
            tracing::warn!(limit_ms = request.as_millis() as u64, "request timed out");
            closing(ApiError::unavailable(
                "request_timeout",
                "the request took too long to answer",
                1,
            ))
        }
    }
}

/// Refuses a body over `limit` bytes with 413 problem+json: at once when `Content-Length`
/// says so (the body is never read; the connection is closed after the answer), and in
/// place of any bare 413 an extractor gave for a streamed body that grew past the limit
/// (`DefaultBodyLimit`).
pub async fn body_limit(req: Request, next: Next, limit: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return closing(ApiError::too_large(limit));
    }
    let res = next.run(req).await;
    let problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !problem {
        return closing(ApiError::too_large(limit));
    }
    res
}

/// The answer, with the connection closed after it.
fn closing(error: ApiError) -> Response {
    let mut res = error.into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A request body that fails once its deadline passes, however the bytes trickle in.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Raised when the deadline cut the body, so the answer says why.
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new("request body timed out"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &EdgeSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let idle = limits.idle_timeout;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let service = hyper::service::service_fn({
            let router = router.clone();
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(Body::new))
            }
        });
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            loop {
                let quiet = activity.quiet_for();
                if quiet >= idle {
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
                tokio::select! {
                    result = &mut connection => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = tokio::time::sleep(idle - quiet) => {}
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Per-connection accept errors are the peer's business; others (out of file descriptors)
/// get a pause before the next accept instead of a busy loop.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// A TCP stream that records its activity.
struct Watched {
    stream: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
