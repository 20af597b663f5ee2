//! The HTTP server (SPEC §13, resource bounds): HTTP/1.1 and HTTP/2 (prior knowledge) on the
//! listener, with a header read timeout, an idle timeout and a cap on the connections served
//! at once; on shutdown it stops accepting and drains the open connections within a bound.
//!
//! Per connection:
//! - until its first request head has arrived, the header read timeout runs (also for a
//!   connection that sends nothing, and for HTTP/2 before its first stream); HTTP/1 applies it
//!   again while a kept-alive connection waits for its next request (hyper's own
//!   `header_read_timeout`);
//! - with no request in flight for the idle timeout, the connection is closed gracefully
//!   (HTTP/2: GOAWAY); one that does not finish closing within the header read timeout
//!   after that is dropped;
//! - it holds one permit of the connection cap while open; with none free the accept loop
//!   waits, so new connections queue in the listen backlog (the mini-redis pattern).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// The bounds on connections (the request timeout is a middleware of the router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting, lets every open
/// connection finish its in-flight requests, and drops those still open after `drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder(&limits));
    let connections = TaskTracker::new();
    let drop_all = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
        };
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e, &shutdown).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(
            builder.clone(),
            stream,
            router.clone(),
            limits,
            Closing {
                shutdown: shutdown.clone(),
                drop_all: drop_all.clone(),
            },
            permit,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "HTTP drain timed out; dropping the remaining connections"
        );
        drop_all.cancel();
        connections.wait().await;
    }
}

fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Errors of one connection's accept (the peer went away) are skipped; others (e.g. out of
/// file descriptors) are logged and retried after a second, as `axum::serve` does.
async fn accept_failed(error: &io::Error, shutdown: &CancellationToken) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection; retrying in 1 s");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}

/// What ends a connection from outside: the shutdown (graceful), then the end of the drain.
struct Closing {
    shutdown: CancellationToken,
    drop_all: CancellationToken,
}

/// What a connection is doing: requests started, and those whose handler still runs.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    started: u64,
    in_flight: usize,
}

/// One request in flight on a connection, for as long as its handler runs.
struct InFlight(Arc<watch::Sender<Load>>);

impl InFlight {
    fn start(load: &Arc<watch::Sender<Load>>) -> InFlight {
        load.send_modify(|l| {
            l.started += 1;
            l.in_flight += 1;
        });
        InFlight(load.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|l| l.in_flight -= 1);
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Open,
    /// Closing because it idled (or never sent a request head), since then: dropped when it
    /// does not finish within the header read timeout.
    ClosingIdle(Instant),
    /// Closing for the shutdown: the drain bounds it.
    Draining,
}

async fn connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    closing: Closing,
    _permit: OwnedSemaphorePermit,
) {
    let load = Arc::new(watch::Sender::new(Load::default()));
    let mut changes = load.subscribe();
    let service = {
        let load = load.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::start(&load);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let accepted = Instant::now();
    let mut phase = Phase::Open;
    loop {
        let now = *changes.borrow_and_update();
        let deadline = match phase {
            Phase::Open if now.started == 0 => Some(accepted + limits.header_read_timeout),
            Phase::Open if now.in_flight == 0 => Some(Instant::now() + limits.idle_timeout),
            Phase::Open | Phase::Draining => None,
            Phase::ClosingIdle(since) => Some(since + limits.header_read_timeout),
        };
        let timer = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                break;
            }
            // The sender lives in this task (`load`): this never fails.
            _ = changes.changed() => {}
            () = timer => {
                if let Phase::ClosingIdle(_) = phase {
                    tracing::debug!("HTTP connection did not close in time; dropped");
                    break;
                }
                conn.as_mut().graceful_shutdown();
                phase = Phase::ClosingIdle(Instant::now());
            }
            () = closing.shutdown.cancelled(), if matches!(phase, Phase::Open) => {
                conn.as_mut().graceful_shutdown();
                phase = Phase::Draining;
            }
            () = closing.drop_all.cancelled() => break,
        }
    }
    drop(load);
}
