//! Simulators of the two upstream services status-check talks to (SPEC §5), as real HTTP
//! servers: [`MicroManagersSim`] (script steps) and [`MegazordSim`] (incoming events,
//! subscriptions, fan-out of outgoing events onto the status queue).
//!
//! They speak the same contract as the real services, so the service cannot tell them apart;
//! `status-check dev`, the end-to-end tests and the load benchmarks all run on them. Besides the
//! contract, each has a few `/sim/…` routes to seed and inspect it (see the module docs).
//!
//! The simulators know nothing of queues: the status queue is a [`StatusSink`] and the robots'
//! queues a [`RobotMailbox`], which the service's dev stack implements over its in-memory queue
//! or SQS.

#![forbid(unsafe_code)]

pub mod megazord;
pub mod micro_managers;
mod problem;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use megazord::{MegazordSim, NewIncoming, NewSubscription, Refusal};
pub use micro_managers::{DemoStep, MicroManagersSim};

/// The simulators' idea of "now" (the system clock, or a test's manual clock).
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_now() -> Now {
    Arc::new(Utc::now)
}

/// Where Megazord sends the envelope of each outgoing event: the status queue
/// (`STATUS_QUEUE_ADDRESS`), or the queue `${STATUS_QUEUE_ADDRESS}-${queue}` of a subscription
/// made with a `queue` suffix.
#[async_trait]
pub trait StatusSink: Send + Sync + 'static {
    /// Sends one message body to the status queue (`queue` is `None`) or to the queue with
    /// that suffix; the error is a short reason. Megazord never retries a failed send.
    async fn send(&self, queue: Option<&str>, body: String) -> Result<(), String>;
}

/// Where robots' notifications can be read (the robot queues), for `GET /sim/robots/{id}/messages`.
#[async_trait]
pub trait RobotMailbox: Send + Sync + 'static {
    /// The messages waiting on one robot's queue, oldest first, as JSON.
    async fn messages(&self, robot_id: i64) -> Result<Vec<serde_json::Value>, String>;
}

/// Serves `router` on `listener` until `shutdown` fires; returns the address it serves on.
pub fn spawn(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, %addr, "simulator stopped");
        }
    });
    Ok(addr)
}
