//! Acting on due monitors (SPEC §12): under a lease, open a session (subscribe until its end,
//! backfill since the window's start, open window 1), or decide the window ends that passed
//! (backfill, then `advance`), writing the new state, the alarms and — when the session is over
//! — the subscription's removal in one transaction, fenced on the lease and the state version.
//! A window end is decided only after its events were backfilled from Megazord, so an event
//! whose delivery is still on the queue resets it all the same.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::Event;
use status_check_engine::monitor::{
    Advance, InvalidWindowState, Monitor, Session, WindowEnding, WindowState, advance,
};
use tracing::Level;

use super::Monitors;
use super::history::{Decided, window_records};
use crate::jobs::Lease;
use crate::store::{NEVER, NewAction, StateChange, StoreError, StoredMonitor};
use crate::subscriptions::{self, SubscribeError};
use crate::upstream::{SubscriptionRequest, UpstreamError};

/// How late a session may be opened and still start at its start (the backfill covers the
/// gap): a scan's delay or a quick restart. Opened later, or by a monitor created or changed
/// since the start, its first window starts then ("late start").
const OPEN_GRACE: TimeDelta = TimeDelta::seconds(60);
/// Most window ends one decision writes (its alarms and history rows in one transaction).
const CATCH_UP_WINDOWS: i32 = 500;
/// When Megazord (or the database) fails, the monitor is due again this much later.
const RETRY_AFTER: TimeDelta = TimeDelta::seconds(5);
/// When Megazord knows no event schema of the watched name, the monitor is tried again this
/// much later (someone has to add the schema, or fix the monitor).
const UNKNOWN_EVENT_RETRY_AFTER: TimeDelta = TimeDelta::minutes(5);
/// How often a decision is made again when the state changed under it (a delivery, an API
/// change) before the monitor is left for the next step.
const STALE_ATTEMPTS: usize = 4;
/// How long after its end a window is decided. Megazord stamps an event before its row is
/// readable: decided at once, the backfill could miss an event of the window's last moment,
/// and the window alarm although the event came (its late delivery then counts for nothing).
pub(super) const SETTLE: TimeDelta = TimeDelta::seconds(2);

/// When the worker decides `window`'s end: [`SETTLE`] after it.
pub(super) fn decided_at(window: &WindowState) -> DateTime<Utc> {
    window.due_at() + SETTLE
}

/// Logs an event of one window at `level` with the fields that name the window (`robot_id`,
/// `rule_id`, `session_date`, `window_number`: what docs/monitors.md promises every window's
/// log line carries), then the event's own fields and message.
macro_rules! window_event {
    ($level:expr, $monitor:expr, $session_date:expr, $window_number:expr, $($event:tt)+) => {
        tracing::event!(
            $level,
            robot_id = $monitor.robot_id(),
            rule_id = %$monitor.rule_id(),
            session_date = %$session_date,
            window_number = $window_number,
            $($event)+
        )
    };
}
pub(super) use window_event;

/// What acting on one monitor came to.
pub(super) enum Acted {
    Opened,
    Decided,
    Waiting,
    Fenced,
    Failed,
}

/// One attempt's end.
enum Attempt {
    Done(Acted),
    /// The state changed since it was read: read it again.
    Stale,
}

#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    State(#[from] InvalidWindowState),
    /// Megazord refused the subscription: it knows no event schema of this name.
    #[error("Megazord knows no event named {0}: the session cannot subscribe to it")]
    UnknownEvent(String),
}

impl From<SubscribeError> for ActError {
    fn from(error: SubscribeError) -> Self {
        match error {
            SubscribeError::Store(e) => ActError::Store(e),
            SubscribeError::Upstream(e) => ActError::Upstream(e),
        }
    }
}

impl Monitors {
    pub(super) async fn act(&self, mut current: StoredMonitor, lease: &Lease) -> Acted {
        for _ in 0..STALE_ATTEMPTS {
            let attempt = match current.state.window {
                None => self.open(&current, lease).await,
                Some(window) => self.decide(&current, window, lease).await,
            };
            match attempt {
                Ok(Attempt::Done(acted)) => return acted,
                Ok(Attempt::Stale) => {}
                Err(e) => {
                    self.failed(&current, lease, &e).await;
                    return Acted::Failed;
                }
            }
            let monitor = &current.monitor;
            match self
                .store
                .get_monitor(monitor.robot_id(), monitor.rule_id().as_str())
                .await
            {
                Ok(Some(again))
                    if again.id == current.id
                        && again.state.lock_id.as_deref() == Some(lease.as_str()) =>
                {
                    current = again;
                }
                Ok(_) => return Acted::Fenced,
                Err(e) => {
                    self.failed(&current, lease, &e.into()).await;
                    return Acted::Failed;
                }
            }
        }
        let kept_changing = ActError::Store(StoreError::Conflict(
            "the monitor's state kept changing while its window was decided".to_owned(),
        ));
        self.failed(&current, lease, &kept_changing).await;
        Acted::Failed
    }

    /// Opens the session due now (or says when the next one starts).
    async fn open(&self, current: &StoredMonitor, lease: &Lease) -> Result<Attempt, ActError> {
        let monitor = &current.monitor;
        let now = self.now();
        if !monitor.enabled() {
            self.wait(current, lease, NEVER).await?;
            return Ok(Attempt::Done(Acted::Waiting));
        }
        let Some(session) = monitor.session_at_or_after(now) else {
            self.wait(current, lease, NEVER).await?;
            return Ok(Attempt::Done(Acted::Waiting));
        };
        if session.start > now {
            self.wait(current, lease, session.start).await?;
            return Ok(Attempt::Done(Acted::Waiting));
        }
        // The grace is for a monitor that was as it is now when the session started; one
        // created, enabled or changed since watches from now (SPEC §12: "its first window
        // starting then") — from the start, it would alarm for windows before it existed.
        let watch_from = if now - session.start <= OPEN_GRACE && current.updated_at <= session.start
        {
            session.start
        } else {
            now
        };
        let Some(mut window) = WindowState::open(&session, monitor.window(), watch_from) else {
            self.wait(current, lease, next_session_start(monitor, session.end))
                .await?;
            return Ok(Attempt::Done(Acted::Waiting));
        };
        // A session opened again the same day (the monitor was changed, or deleted and
        // created) numbers its windows on: a reference id is never used twice.
        window.window_number = self
            .store
            .last_alarm_number(monitor.robot_id(), monitor.rule_id().as_str(), session.date)
            .await?
            + 1;
        let call_ref = uuid::Uuid::new_v4().to_string();
        let event_names = [monitor.event_type().to_owned()];
        let request = SubscriptionRequest {
            event_names: &event_names,
            until: session.end,
            queue: self.settings.queue_suffix.as_deref(),
        };
        let subscribed = match subscriptions::subscribe(
            &self.store,
            self.megazord.as_ref(),
            monitor.robot_id(),
            request,
            now,
            &call_ref,
        )
        .await
        {
            Err(SubscribeError::Upstream(UpstreamError::NotFound { .. })) => {
                return Err(ActError::UnknownEvent(monitor.event_type().to_owned()));
            }
            other => other?,
        };
        let subscription = subscribed.id;
        let (advanced, change) = match self
            .backfilled(
                monitor,
                &window,
                session.end,
                Some(subscription),
                now - SETTLE,
                &call_ref,
            )
            .await
        {
            Ok(backfilled) => backfilled,
            Err(e) => {
                self.drop_subscription(monitor, subscription, "monitor_open_failed")
                    .await;
                return Err(e);
            }
        };
        let written = self
            .store
            .write_monitor_state(current, Some(lease), &change, now)
            .await;
        // The subscribe's record is forgotten only once the subscription is stored, or removed
        // or queued for removal: a replica killed in between leaves the record, by which a
        // delivery for the subscription is still recognised as this service's (SPEC §13).
        let accounted_for = match written {
            Ok(true) => true,
            Ok(false) => {
                self.drop_subscription(monitor, subscription, "monitor_open_failed")
                    .await
            }
            Err(ref e) => {
                self.opened_with(monitor, subscription, e).await
                    || self
                        .drop_subscription(monitor, subscription, "monitor_open_failed")
                        .await
            }
        };
        if accounted_for && let Err(e) = self.store.forget_subscribe_intent(subscribed.intent).await
        {
            tracing::warn!(subscription_id = subscription, error = %e, "could not forget a subscribe's record; purged later");
        }
        match written {
            Ok(true) => {
                self.report_opened(monitor, &session, &window, subscription);
                self.report(monitor, &advanced, now - SETTLE);
                Ok(Attempt::Done(Acted::Opened))
            }
            Ok(false) => Ok(Attempt::Stale),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a session's write that failed had landed after all, with `subscription` (a
    /// connection lost while its COMMIT was in flight): read back, so that the subscription of
    /// an open session is never removed. Unreadable, it is taken as not landed: Megazord never
    /// expires a subscription (SPEC §5.2), while a session that lost its own still decides
    /// each window end from Megazord's read of its events.
    async fn opened_with(&self, monitor: &Monitor, subscription: i64, error: &StoreError) -> bool {
        if !error.is_unavailable() {
            return false;
        }
        let stored = self
            .store
            .get_monitor(monitor.robot_id(), monitor.rule_id().as_str())
            .await;
        matches!(stored, Ok(Some(stored)) if stored.state.subscription_id == Some(subscription))
    }

    /// The open window's events from Megazord (the backfill: an event that happened in the
    /// window counts even if its delivery is still on the queue), and the window advanced
    /// over them up to `horizon`, with the change that writes it. Events after `horizon` are
    /// left to their deliveries or the next backfill (which reads from the open window's start,
    /// never after them).
    async fn backfilled(
        &self,
        monitor: &Monitor,
        window: &WindowState,
        session_end: DateTime<Utc>,
        subscription: Option<i64>,
        horizon: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<(Advance, StateChange), ActError> {
        let events = self
            .megazord
            .incomings(
                monitor.robot_id(),
                monitor.event_type(),
                window.window_start,
                call_ref,
            )
            .await?;
        // At most CATCH_UP_WINDOWS window ends per decision (window ends are a window length
        // apart at least): after downtime, a short window's backlog is worked off over several
        // steps instead of one transaction too large for the operation timeout, which failed
        // and grew for ever. Events after that point are the next decision's.
        let span = monitor.window().as_delta() * (CATCH_UP_WINDOWS - 1);
        let up_to = (window.window_end + span).min(horizon);
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| e.created_at <= up_to)
            .collect();
        let times: Vec<DateTime<Utc>> = events.iter().map(|event| event.created_at).collect();
        let advanced = advance(window, monitor.window(), &times, up_to)?;
        let change = change_after(
            monitor,
            &advanced,
            session_end,
            subscription,
            &counted(&events, up_to),
        );
        Ok((advanced, change))
    }

    /// Decides the window ends up to now, after backfilling the open window's events.
    async fn decide(
        &self,
        current: &StoredMonitor,
        window: WindowState,
        lease: &Lease,
    ) -> Result<Attempt, ActError> {
        let now = self.now();
        if decided_at(&window) > now {
            // Reset by a delivery since it was claimed (or due as stored before SETTLE).
            self.wait(current, lease, decided_at(&window)).await?;
            return Ok(Attempt::Done(Acted::Waiting));
        }
        if !self
            .decide_ends(current, window, Some(lease), now, now - SETTLE)
            .await?
        {
            return Ok(Attempt::Stale);
        }
        Ok(Attempt::Done(Acted::Decided))
    }

    /// Decides the open window's ends up to `horizon` after the backfill and writes the
    /// decision at `now` (under `lease`; without one, a compare-and-set on the state's version
    /// that leaves a worker's lease alone); whether it was written (else another write came
    /// first).
    async fn decide_ends(
        &self,
        current: &StoredMonitor,
        window: WindowState,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
        horizon: DateTime<Utc>,
    ) -> Result<bool, ActError> {
        let monitor = &current.monitor;
        let call_ref = uuid::Uuid::new_v4().to_string();
        let (advanced, mut change) = self
            .backfilled(
                monitor,
                &window,
                window.session_end,
                current.state.subscription_id,
                horizon,
                &call_ref,
            )
            .await?;
        change.release_lease &= lease.is_some();
        let written = self
            .store
            .write_monitor_state(current, lease, &change, now)
            .await?;
        if written {
            self.report(monitor, &advanced, horizon);
        }
        Ok(written)
    }

    /// Decides the window ends `stored`'s session has passed but not decided yet (the worker
    /// is behind, or every replica was down) — after the backfill, as the worker would —
    /// before a change ends the session: their alarms are not lost with it. Without a lease:
    /// the write is a compare-and-set on the state's version (and leaves a worker's lease
    /// alone), so a worker deciding the same ends meanwhile makes this one a no-op. A failure
    /// (Megazord down) is logged and counted, and the change goes on.
    pub(super) async fn decide_overdue(&self, stored: &StoredMonitor) {
        let monitor = &stored.monitor;
        let mut current = stored.clone();
        let mut decided: Result<bool, ActError> = Ok(false);
        // Another write may come first (a late delivery, the worker): read again and decide
        // what is still overdue.
        for _ in 0..STALE_ATTEMPTS {
            let now = self.now();
            let Some(window) = current.state.window.filter(|w| w.window_end <= now) else {
                return;
            };
            // Not settled: the change is about to end the session, and a decision now is
            // better than none.
            decided = self.decide_ends(&current, window, None, now, now).await;
            if !matches!(decided, Ok(false)) {
                break;
            }
            match self
                .store
                .get_monitor(monitor.robot_id(), monitor.rule_id().as_str())
                .await
            {
                Ok(Some(again)) if again.id == stored.id => current = again,
                Ok(_) => return,
                Err(e) => {
                    decided = Err(e.into());
                    break;
                }
            }
        }
        let why = match decided {
            Ok(true) => return,
            Ok(false) => "other writes kept coming first".to_owned(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(
            robot_id = monitor.robot_id(),
            rule_id = %monitor.rule_id(),
            error = %why,
            "could not decide a monitor's overdue window ends before a change ends its \
             session; their alarms are lost with it"
        );
        metrics::counter!("monitor_failures_total", "reason" => "overdue_at_change").increment(1);
    }

    /// Nothing to decide now: the lease is freed, due again at `due_at`.
    pub(super) async fn wait(
        &self,
        current: &StoredMonitor,
        lease: &Lease,
        due_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.store
            .release_monitor(current.id, lease, due_at, None, self.now())
            .await
            .map(drop)
    }

    /// A failure (logged and counted): due again shortly; if even that write fails, the lease
    /// runs stale and the monitor is taken over.
    async fn failed(&self, current: &StoredMonitor, lease: &Lease, error: &ActError) {
        let monitor = &current.monitor;
        if let ActError::UnknownEvent(event_name) = error {
            // Not an outage: retrying every few seconds would change nothing. Said loudly,
            // kept on the monitor's state (the internal API shows it), tried again later.
            tracing::error!(
                robot_id = monitor.robot_id(),
                rule_id = %monitor.rule_id(),
                event_name,
                "monitor cannot open its session: Megazord knows no event of the name it watches"
            );
            metrics::counter!("monitor_failures_total", "reason" => "unknown_event").increment(1);
            let problem = error.to_string();
            let retry = self.now() + UNKNOWN_EVENT_RETRY_AFTER;
            if let Err(e) = self
                .store
                .release_monitor(current.id, lease, retry, Some(&problem), self.now())
                .await
            {
                tracing::warn!(monitor_id = current.id, error = %e, "could not release a monitor's lease");
            }
            return;
        }
        tracing::warn!(
            robot_id = monitor.robot_id(),
            rule_id = %monitor.rule_id(),
            session_date = current.state.window.map(|w| w.session_date.to_string()),
            window_number = current.state.window.map(|w| w.window_number),
            error = %error,
            "could not act on a monitor; retried shortly"
        );
        metrics::counter!("monitor_failures_total", "reason" => "other").increment(1);
        if let Err(e) = self.wait(current, lease, self.now() + RETRY_AFTER).await {
            tracing::warn!(monitor_id = current.id, error = %e, "could not release a monitor's lease");
        }
    }

    /// Removes a subscription no stored session holds: now, or queued for the relay; whether
    /// it was (else it leaks, logged and counted).
    async fn drop_subscription(&self, monitor: &Monitor, subscription: i64, reason: &str) -> bool {
        let robot_id = monitor.robot_id();
        let call_ref = uuid::Uuid::new_v4().to_string();
        if self
            .megazord
            .unsubscribe(robot_id, subscription, &call_ref)
            .await
            .is_ok()
        {
            return true;
        }
        match self
            .store
            .queue_subscription_removal(robot_id, subscription, reason, self.now())
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(robot_id, subscription_id = subscription, error = %e, "a subscription could not be removed nor queued for removal; it leaks");
                metrics::counter!("subscriptions_leaked_total").increment(1);
                false
            }
        }
    }

    fn report_opened(
        &self,
        monitor: &Monitor,
        session: &Session,
        window: &WindowState,
        subscription: i64,
    ) {
        metrics::counter!("monitor_sessions_opened_total").increment(1);
        metrics::counter!("monitor_windows_opened_total").increment(1);
        window_event!(
            Level::INFO,
            monitor,
            session.date,
            window.window_number,
            window_start = %window.window_start,
            window_end = %window.window_end,
            session_end = %session.end,
            subscription_id = subscription,
            "monitor session opened"
        );
    }

    /// Metrics and log lines for what a decision did (after its commit); `horizon`: the
    /// instant it decided up to (lateness is counted from there).
    fn report(&self, monitor: &Monitor, advanced: &Advance, horizon: DateTime<Utc>) {
        let session_date = advanced.session_date;
        for span in &advanced.spans {
            match span.ending {
                WindowEnding::Reset => {
                    metrics::counter!("monitor_windows_reset_total").increment(1);
                    window_event!(Level::DEBUG, monitor, session_date, span.number, at = %span.end, "window restarted by an event");
                }
                WindowEnding::Expired => {
                    metrics::counter!("monitor_windows_expired_total").increment(1);
                    record_lateness(span.end, horizon);
                    window_event!(
                        Level::INFO,
                        monitor,
                        session_date,
                        span.number,
                        window_start = %span.start,
                        window_end = %span.end,
                        reference_id = %monitor.reference_id(session_date, span.number),
                        "window passed without the event: alarm queued"
                    );
                }
                WindowEnding::SessionEnded => {
                    record_lateness(span.end, horizon);
                    window_event!(
                        Level::DEBUG,
                        monitor,
                        session_date,
                        span.number,
                        "window cut short by the session's end: no alarm"
                    );
                }
            }
        }
        let expired = advanced.alarms().count() as u64;
        let opened = match advanced.state {
            Some(_) => expired,
            // The last expired window (if the session ended on one) opened none after it.
            None => expired.saturating_sub(u64::from(
                advanced.spans.last().is_some_and(|span| span.alarms()),
            )),
        };
        metrics::counter!("monitor_windows_opened_total").increment(opened);
        if advanced.state.is_none() {
            metrics::counter!("monitor_sessions_ended_total").increment(1);
            tracing::info!(
                robot_id = monitor.robot_id(),
                rule_id = %monitor.rule_id(),
                session_date = %session_date,
                "monitor session ended"
            );
        }
    }
}

/// What a decision writes: the new open window (or none, the session being over, with its
/// subscription's removal and the next session's start as due time), the alarms of the
/// windows that passed quietly and the session's history. Always frees the lease. `events`:
/// the events `advanced` took in, by id and the time each counted at.
fn change_after(
    monitor: &Monitor,
    advanced: &Advance,
    session_end: DateTime<Utc>,
    subscription: Option<i64>,
    events: &[(i64, DateTime<Utc>)],
) -> StateChange {
    let windows = window_records(&Decided {
        monitor,
        session_date: advanced.session_date,
        session_end,
        subscription_id: subscription,
        spans: &advanced.spans,
        open: advanced.state.as_ref(),
        events,
    });
    let actions = advanced
        .alarms()
        .flat_map(|span| {
            monitor
                .alarms(advanced.session_date, span.number)
                .into_iter()
                .map(|alarm| NewAction {
                    session_date: advanced.session_date,
                    window_number: span.number,
                    window_end: span.end,
                    alarm,
                })
        })
        .collect();
    match advanced.state {
        Some(state) => StateChange {
            window: Some(state),
            subscription_id: subscription,
            due_at: decided_at(&state),
            release_lease: true,
            actions,
            remove_subscription: None,
            windows,
        },
        None => StateChange {
            window: None,
            subscription_id: None,
            due_at: next_session_start(monitor, session_end),
            release_lease: true,
            actions,
            remove_subscription: subscription.map(|id| (id, "monitor_session_ended")),
            windows,
        },
    }
}

/// Megazord's events by id and the time each counts at (one stamped later than our clock
/// counts now, as `advance` takes it).
fn counted(events: &[Event], now: DateTime<Utc>) -> Vec<(i64, DateTime<Utc>)> {
    events
        .iter()
        .map(|event| (event.id, event.created_at.min(now)))
        .collect()
}

/// The start of the first session after one that ended at `session_end`.
fn next_session_start(monitor: &Monitor, session_end: DateTime<Utc>) -> DateTime<Utc> {
    monitor
        .session_at_or_after(session_end)
        .map_or(NEVER, |session| session.start)
}

/// How late a window's end was decided beyond its settle time (the scan interval, a busy
/// worker, downtime): `horizon` is the decision's instant less [`SETTLE`].
fn record_lateness(end: DateTime<Utc>, horizon: DateTime<Utc>) {
    let late = (horizon - end).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!("monitor_window_end_lateness_seconds").record(late);
}
