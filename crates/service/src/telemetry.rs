//! Logs (tracing; JSON in production) and metrics (Prometheus text at `/metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the log subscriber once per process; later calls (tests) are no-ops.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The process's metrics recorder: the `metrics` facade has one recorder per process, so every
/// app in the process (several in tests) shares it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static buckets are valid")
                // Rules run in microseconds (docs/benchmarks.md): finer buckets.
                .set_buckets_for_metric(
                    Matcher::Full("rule_evaluation_seconds".to_owned()),
                    &[
                        0.000_001,
                        0.000_002_5,
                        0.000_005,
                        0.000_01,
                        0.000_025,
                        0.000_05,
                        0.000_1,
                        0.000_25,
                        0.000_5,
                        0.001,
                        0.01,
                        0.1,
                    ],
                )
                .expect("static buckets are valid")
                // A count of creates, up to the writer's batch of 64: not seconds.
                .set_buckets_for_metric(
                    Matcher::Full("create_batch_size".to_owned()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours stays unused.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The ids a process has reported already, for what is logged and counted once per process
/// however often it is met (an unadoptable check, a legacy template version).
#[derive(Debug, Default)]
pub struct ReportedOnce(std::sync::Mutex<std::collections::HashSet<i64>>);

impl ReportedOnce {
    /// Whether `id` is met for the first time: true once, then false.
    pub fn first(&self, id: i64) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id)
    }

    /// Every id reported so far.
    #[cfg(test)]
    pub fn ids(&self) -> std::collections::HashSet<i64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
