//! A cache of Micro-Managers' script steps (SPEC §10). A step id's content is fixed within
//! its script version (a new version of a script gets new step ids), so a step once read is
//! kept for a while — bounded in time and in size — and creates at a step the service has
//! seen cost no upstream call. Only answers are cached: an unknown step or a failure is asked
//! again next time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{MicroManagers, ScriptStep, StepRef, UpstreamError};

/// How long and how many steps are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCacheConfig {
    pub ttl: Duration,
    /// Most steps kept; 0 turns the cache off.
    pub capacity: u64,
}

/// [`MicroManagers`] with its steps cached per [`StepRef`] (robot and step).
pub struct CachedMicroManagers {
    inner: Arc<dyn MicroManagers>,
    steps: Cache<StepRef, ScriptStep>,
}

impl CachedMicroManagers {
    /// `inner` itself when the cache is off.
    pub fn wrap(inner: Arc<dyn MicroManagers>, config: StepCacheConfig) -> Arc<dyn MicroManagers> {
        if config.capacity == 0 || config.ttl.is_zero() {
            return inner;
        }
        Arc::new(CachedMicroManagers {
            inner,
            steps: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
        })
    }
}

#[async_trait]
impl MicroManagers for CachedMicroManagers {
    async fn script_step(
        &self,
        step: StepRef,
        call_ref: &str,
    ) -> Result<ScriptStep, UpstreamError> {
        if let Some(cached) = self.steps.get(&step).await {
            metrics::counter!("step_cache_total", "result" => "hit").increment(1);
            return Ok(cached);
        }
        metrics::counter!("step_cache_total", "result" => "miss").increment(1);
        let read = self.inner.script_step(step, call_ref).await?;
        self.steps.insert(step, read.clone()).await;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts calls; answers step 1 and refuses any other as unknown.
    struct Counting(AtomicUsize);

    #[async_trait]
    impl MicroManagers for Counting {
        async fn script_step(
            &self,
            step: StepRef,
            _call_ref: &str,
        ) -> Result<ScriptStep, UpstreamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if step.step_id != 1 {
                return Err(UpstreamError::NotFound {
                    service: "micro-managers",
                });
            }
            Ok(ScriptStep {
                step_id: step.step_id,
                script_version_id: 7,
                step_type: "statusCheck".into(),
                node_type: "statusCheck".into(),
                status_check_name: Some("robot-is-charging".into()),
                past_interval: 0,
                future_interval: 0,
                next_type: "multipleChoice".into(),
                next: Vec::new(),
            })
        }
    }

    fn step(robot_id: i64, step_id: i64) -> StepRef {
        StepRef { robot_id, step_id }
    }

    fn cached(counting: &Arc<Counting>, capacity: u64) -> Arc<dyn MicroManagers> {
        CachedMicroManagers::wrap(
            counting.clone(),
            StepCacheConfig {
                ttl: Duration::from_secs(60),
                capacity,
            },
        )
    }

    #[tokio::test]
    async fn a_step_is_read_once_and_an_unknown_one_every_time() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let steps = cached(&counting, 100);
        for _ in 0..3 {
            assert_eq!(steps.script_step(step(5, 1), "r").await.unwrap().step_id, 1);
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // Per robot: another robot's step 1 is its own read.
        steps.script_step(step(6, 1), "r").await.unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        for _ in 0..2 {
            assert!(steps.script_step(step(5, 2), "r").await.is_err());
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn capacity_zero_turns_the_cache_off() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let steps = cached(&counting, 0);
        for _ in 0..3 {
            steps.script_step(step(5, 1), "r").await.unwrap();
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
    }
}
