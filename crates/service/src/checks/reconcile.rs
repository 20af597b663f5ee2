//! The read at the deadline (SPEC §3.5): Megazord does not retry an SQS send that failed, so a
//! delivery can be lost for good and only a read of the incomings finds its event again. Before
//! a claimed batch is decided, each of its checks still open (`PENDING`, or any `pollUntilEnd`
//! check) reads its future dependencies' incomings since its anchor — one call per name, at
//! most `concurrency` calls in flight across the whole batch, all of them within one time
//! budget. What a check's calls did not bring back within the budget it is decided without:
//! a deadline is never held hostage by an upstream.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream;
use status_check_engine::lifecycle::Check;
use status_check_engine::{CheckPhase, CheckResult, Event, Template};

use crate::upstream::{Megazord, UpstreamError};

/// How the read at the deadline behaves (`DEADLINE_RECONCILE*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Whether open checks read Megazord at their deadline at all.
    pub enabled: bool,
    /// The most a claimed batch waits for its reads; then each check is decided from what it
    /// has.
    pub budget: Duration,
    /// Megazord calls in flight at once for one claimed batch.
    pub concurrency: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            enabled: true,
            budget: Duration::from_millis(500),
            concurrency: 32,
        }
    }
}

/// What one check reads: its future dependencies' incomings since its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Read {
    pub robot_id: i64,
    pub since: DateTime<Utc>,
    /// Each name once, however often the template repeats it.
    pub names: Vec<String>,
}

impl Read {
    pub fn new(robot_id: i64, since: DateTime<Utc>, names: &[String]) -> Read {
        let names: BTreeSet<&String> = names.iter().collect();
        Read {
            robot_id,
            since,
            names: names.into_iter().cloned().collect(),
        }
    }
}

/// The read at the deadline `check` needs, if any (SPEC §3.5): only a check still open in
/// `FUTURE` — `PENDING`, or any `pollUntilEnd` check — reads; one decided otherwise would have
/// ended already. A template without future rules (a legacy version standing in without its
/// rules, SPEC §6.1) would record the events but could not be decided by them: no read. (A
/// check of the Node service not yet adopted is not decided at all, so never gets here.)
pub(super) fn read_for(check: &Check, template: &Template) -> Option<Read> {
    let open = check.result == CheckResult::Pending || check.poll_until_end;
    if check.phase != CheckPhase::Future || !open {
        return None;
    }
    let rules = template.future.as_ref()?;
    if !rules.has_rules() || rules.depends_on.is_empty() {
        return None;
    }
    Some(Read::new(
        check.robot_id,
        check.windows.anchor,
        &rules.depends_on,
    ))
}

/// How one check's read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadEnd {
    /// Every name answered.
    Complete,
    /// A call failed (after the client's retries): decided with the other names' events.
    Failed,
    /// The budget ran out before every name answered: decided with what had come back.
    TimedOut,
}

impl ReadEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadEnd::Complete => "complete",
            ReadEnd::Failed => "failed",
            ReadEnd::TimedOut => "timed_out",
        }
    }
}

/// What one check's read brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadResult {
    pub end: ReadEnd,
    /// Every event the calls that answered returned (the engine skips those already
    /// recorded, out of the window or created after `pollingUntil`).
    pub events: Vec<Event>,
    /// The first error, for the log.
    pub error: Option<String>,
}

/// One call's answer, with the index of the check it reads for.
type Answer = (usize, Result<Vec<Event>, UpstreamError>);

/// Reads every check's incomings (`reads[i]`: `None` when check `i` needs no read), at most
/// `settings.concurrency` calls at once, all within `settings.budget` from now. One result
/// per read asked for, in order.
pub(super) async fn read_all(
    megazord: &dyn Megazord,
    reads: &[Option<Read>],
    settings: ReconcileSettings,
    call_ref: &str,
) -> Vec<Option<ReadResult>> {
    let mut results: Vec<Option<ReadResult>> = reads
        .iter()
        .map(|read| {
            read.as_ref().map(|_| ReadResult {
                end: ReadEnd::Complete,
                events: Vec::new(),
                error: None,
            })
        })
        .collect();
    let mut unanswered: Vec<usize> = reads
        .iter()
        .map(|read| read.as_ref().map_or(0, |read| read.names.len()))
        .collect();
    // Boxed and collected first: a lazy chain of borrowing closures inside the stream makes
    // the scheduler's future not provably `Send`.
    let mut calls: Vec<BoxFuture<'_, Answer>> = Vec::new();
    for (index, read) in reads.iter().enumerate() {
        let Some(read) = read else { continue };
        for name in &read.names {
            calls.push(Box::pin(async move {
                let answer = megazord
                    .incomings(read.robot_id, name, read.since, call_ref)
                    .await;
                (index, answer)
            }));
        }
    }
    let mut answers = stream::iter(calls).buffer_unordered(settings.concurrency.max(1));
    let deadline = tokio::time::Instant::now() + settings.budget;
    loop {
        match tokio::time::timeout_at(deadline, answers.next()).await {
            Ok(Some((index, answer))) => {
                unanswered[index] -= 1;
                let Some(result) = results[index].as_mut() else {
                    continue;
                };
                match answer {
                    Ok(events) => result.events.extend(events),
                    Err(e) => failed(result, &e),
                }
            }
            Ok(None) => break,
            // Out of time: the calls still in flight are dropped (cancelled).
            Err(_) => break,
        }
    }
    for (result, left) in results.iter_mut().zip(unanswered) {
        if let Some(result) = result
            && left > 0
        {
            result.end = ReadEnd::TimedOut;
        }
    }
    results
}

fn failed(result: &mut ReadResult, error: &UpstreamError) {
    result.end = ReadEnd::Failed;
    result.error.get_or_insert_with(|| error.to_string());
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use status_check_engine::Limits;
    use status_check_engine::lifecycle::{CheckState, NextSteps, Windows};

    use super::*;
    use crate::upstream::{PostedEvent, Subscription, SubscriptionRequest};

    /// A Megazord whose answer to each name comes after that name's delay (on tokio's clock,
    /// paused in these tests) — or fails.
    #[derive(Default)]
    struct TimedMegazord {
        delays: HashMap<String, Duration>,
        failing: Vec<String>,
        in_flight: Mutex<(usize, usize)>,
    }

    #[async_trait]
    impl Megazord for TimedMegazord {
        async fn incomings(
            &self,
            robot_id: i64,
            event_name: &str,
            created_since: DateTime<Utc>,
            _call_ref: &str,
        ) -> Result<Vec<Event>, UpstreamError> {
            {
                let mut counts = self.in_flight.lock().unwrap();
                counts.0 += 1;
                counts.1 = counts.1.max(counts.0);
            }
            let delay = self.delays.get(event_name).copied().unwrap_or_default();
            tokio::time::sleep(delay).await;
            self.in_flight.lock().unwrap().0 -= 1;
            if self.failing.iter().any(|name| name == event_name) {
                return Err(UpstreamError::NotFound {
                    service: "megazord",
                });
            }
            Ok(vec![Event {
                id: robot_id * 100 + i64::try_from(event_name.len()).unwrap(),
                name: event_name.to_owned(),
                created_at: created_since,
                level: None,
                reference_id: None,
            }])
        }

        async fn subscribe(
            &self,
            _: i64,
            _: SubscriptionRequest<'_>,
            _: &str,
        ) -> Result<Subscription, UpstreamError> {
            unreachable!("the read never subscribes")
        }

        async fn unsubscribe(&self, _: i64, _: i64, _: &str) -> Result<(), UpstreamError> {
            unreachable!("the read never unsubscribes")
        }

        async fn post_incoming(
            &self,
            _: i64,
            _: &PostedEvent,
            _: &str,
        ) -> Result<i64, UpstreamError> {
            unreachable!("the read never posts")
        }
    }

    /// A Megazord that answers `name` after `delay` and every other name at once.
    fn slow_on(name: &str, delay: Duration) -> TimedMegazord {
        TimedMegazord {
            delays: HashMap::from([(name.to_owned(), delay)]),
            ..TimedMegazord::default()
        }
    }

    /// [`read_all`] with call ref `ref`: its results, and how long it took on tokio's clock.
    async fn timed_read_all(
        megazord: &TimedMegazord,
        reads: &[Option<Read>],
        settings: ReconcileSettings,
    ) -> (Vec<Option<ReadResult>>, Duration) {
        let started = tokio::time::Instant::now();
        let results = read_all(megazord, reads, settings, "ref").await;
        (results, started.elapsed())
    }

    fn since() -> DateTime<Utc> {
        "2026-11-20T08:00:00Z".parse().unwrap()
    }

    fn read(robot_id: i64, names: &[&str]) -> Option<Read> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        Some(Read::new(robot_id, since(), &names))
    }

    fn settings(budget_ms: u64, concurrency: usize) -> ReconcileSettings {
        ReconcileSettings {
            enabled: true,
            budget: Duration::from_millis(budget_ms),
            concurrency,
        }
    }

    const CHARGING: &str = include_str!("../../../../templates/robot-is-charging.v1.yaml");
    const TOILET: &str = include_str!("../../../../templates/toilet-activity.v1.yaml");

    fn template(yaml: &str) -> Template {
        Template::from_yaml(yaml, "test", &Limits::default()).unwrap()
    }

    /// A stored check of `template` in `phase` with `result`.
    fn check(template: &Template, phase: CheckPhase, result: CheckResult) -> Check {
        let state = CheckState {
            robot_id: 7,
            planned_at: since(),
            windows: Windows::from_effective(since(), 3600, 600),
            next_steps: NextSteps {
                pass: 1,
                fail: 2,
                unknown: None,
            },
            phase,
            result,
            next_step_id: None,
            records: Vec::new(),
        };
        Check::restore(state, template, Limits::default())
    }

    #[test]
    fn an_open_check_reads_its_future_dependencies_since_its_anchor() {
        let charging = template(CHARGING);
        let read = read_for(
            &check(&charging, CheckPhase::Future, CheckResult::Pending),
            &charging,
        )
        .unwrap();
        assert_eq!(read.robot_id, 7);
        assert_eq!(read.since, since());
        assert_eq!(read.names, ["CHARGING_STARTED"], "future dependencies only");
    }

    #[test]
    fn a_decisive_check_reads_only_with_poll_until_end() {
        let charging = template(CHARGING);
        let toilet = template(TOILET);
        for result in [CheckResult::Pass, CheckResult::Fail, CheckResult::Unknown] {
            let decided = check(&charging, CheckPhase::Future, result);
            assert_eq!(read_for(&decided, &charging), None, "{result:?}");
            let watching = check(&toilet, CheckPhase::Future, result);
            assert!(read_for(&watching, &toilet).is_some(), "{result:?}");
        }
    }

    #[test]
    fn an_ended_check_or_one_without_future_rules_reads_nothing() {
        let charging = template(CHARGING);
        for phase in [CheckPhase::Completed, CheckPhase::Failed, CheckPhase::Past] {
            let ended = check(&charging, phase, CheckResult::Pending);
            assert_eq!(read_for(&ended, &charging), None, "{phase:?}");
        }
        let stand_in = Template::without_rules(charging.definition().clone());
        let open = check(&stand_in, CheckPhase::Future, CheckResult::Pending);
        assert_eq!(read_for(&open, &stand_in), None);
    }

    #[test]
    fn a_repeated_name_is_read_once() {
        let read = read(1, &["B", "A", "B"]).unwrap();
        assert_eq!(read.names, ["A", "B"]);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_within_the_budget_are_complete_and_checks_without_a_read_get_none() {
        let megazord = slow_on("SLOWISH", Duration::from_millis(400));
        let (results, took) = timed_read_all(
            &megazord,
            &[read(1, &["A", "SLOWISH"]), None, read(2, &["A"])],
            settings(500, 8),
        )
        .await;
        assert_eq!(took, Duration::from_millis(400));
        let first = results[0].as_ref().unwrap();
        assert_eq!(first.end, ReadEnd::Complete);
        assert_eq!(first.events.len(), 2);
        assert!(results[1].is_none());
        assert_eq!(results[2].as_ref().unwrap().end, ReadEnd::Complete);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_megazord_costs_the_budget_and_no_more() {
        let megazord = slow_on("SILENT", Duration::from_secs(3600));
        let (results, took) = timed_read_all(
            &megazord,
            &[read(1, &["A", "SILENT"]), read(2, &["A"])],
            settings(500, 8),
        )
        .await;
        assert_eq!(took, Duration::from_millis(500));
        let first = results[0].as_ref().unwrap();
        assert_eq!(first.end, ReadEnd::TimedOut);
        assert_eq!(first.events.len(), 1, "what answered in time is kept");
        assert_eq!(results[1].as_ref().unwrap().end, ReadEnd::Complete);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_across_checks_are_bounded_and_queued_calls_share_the_budget() {
        // Six calls of 200 ms, two at a time: three rounds would take 600 ms, the budget is
        // 500 ms, so the last round's two checks are cut off.
        let megazord = slow_on("A", Duration::from_millis(200));
        let reads: Vec<Option<Read>> = (1..=6).map(|robot| read(robot, &["A"])).collect();
        let (results, took) = timed_read_all(&megazord, &reads, settings(500, 2)).await;
        assert_eq!(took, Duration::from_millis(500));
        assert_eq!(
            megazord.in_flight.lock().unwrap().1,
            2,
            "at most two at once"
        );
        let ends: Vec<ReadEnd> = results.iter().map(|r| r.as_ref().unwrap().end).collect();
        assert_eq!(
            ends.iter().filter(|end| **end == ReadEnd::Complete).count(),
            4
        );
        assert_eq!(
            ends.iter().filter(|end| **end == ReadEnd::TimedOut).count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_keeps_the_other_names_events() {
        let megazord = TimedMegazord {
            failing: vec!["GONE".to_owned()],
            ..TimedMegazord::default()
        };
        let results = read_all(
            &megazord,
            &[read(1, &["A", "GONE"])],
            settings(500, 8),
            "ref",
        )
        .await;
        let result = results[0].as_ref().unwrap();
        assert_eq!(result.end, ReadEnd::Failed);
        assert_eq!(result.events.len(), 1);
        assert!(result.error.as_deref().is_some_and(|e| !e.is_empty()));
    }
}
