//! Crash-only workers: a worker that panics (or returns before the shutdown) is logged and
//! counted, and stops the whole replica (a graceful shutdown, then a non-zero exit) for its
//! orchestrator to restart — rather than run on, ready and serving, without it.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Supervisor {
    /// Cancelled by a worker's panic: the replica's shutdown.
    stop: CancellationToken,
    failed: Arc<Mutex<Vec<&'static str>>>,
}

impl Supervisor {
    pub fn new(stop: CancellationToken) -> Self {
        Supervisor {
            stop,
            failed: Arc::default(),
        }
    }

    /// Runs `worker` as a task of its own, tracked by `tasks`; should it panic or return
    /// before the shutdown, says so and stops the replica.
    pub fn spawn(
        &self,
        tasks: &TaskTracker,
        name: &'static str,
        worker: impl Future<Output = ()> + Send + 'static,
    ) {
        let running = tokio::spawn(worker);
        let stop = self.stop.clone();
        let failed = self.failed.clone();
        tasks.spawn(async move {
            let message = match running.await {
                // Workers run until the shutdown: one that returns before it has stopped
                // working (e.g. a consumer whose batcher died).
                Ok(()) if stop.is_cancelled() => return,
                Ok(()) => "returned before the shutdown".to_owned(),
                Err(error) if error.is_panic() => panic_message(error.into_panic()),
                Err(_) => return,
            };
            tracing::error!(
                worker = name,
                panic = %message,
                "a worker stopped: this replica stops, to be restarted"
            );
            metrics::counter!("worker_failures_total", "worker" => name).increment(1);
            failed.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            stop.cancel();
        });
    }

    /// The workers that failed (panicked, or returned before the shutdown), in order.
    pub fn failed(&self) -> Vec<&'static str> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |m| (*m).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn supervise(
        worker: impl Future<Output = ()> + Send + 'static,
    ) -> (bool, Vec<&'static str>) {
        let stop = CancellationToken::new();
        let supervisor = Supervisor::new(stop.clone());
        let tasks = TaskTracker::new();
        supervisor.spawn(&tasks, "worker", worker);
        tasks.close();
        tasks.wait().await;
        (stop.is_cancelled(), supervisor.failed())
    }

    #[tokio::test]
    async fn a_worker_that_panics_or_returns_early_stops_the_replica() {
        assert_eq!(
            supervise(async { panic!("a bug") }).await,
            (true, vec!["worker"])
        );
        assert_eq!(supervise(async {}).await, (true, vec!["worker"]));
    }

    #[tokio::test]
    async fn a_worker_that_returns_at_the_shutdown_stops_nothing_more() {
        let stop = CancellationToken::new();
        let supervisor = Supervisor::new(stop.clone());
        let tasks = TaskTracker::new();
        let token = stop.clone();
        supervisor.spawn(&tasks, "worker", async move { token.cancelled().await });
        tasks.close();
        stop.cancel();
        tasks.wait().await;
        assert!(supervisor.failed().is_empty());
    }
}
