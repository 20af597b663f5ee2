//! Deliveries for a monitor session's subscription (SPEC §12): a watched event inside the open
//! window restarts it. Only events before the open window's end are taken here; a window end
//! that has passed is the worker's to decide, after backfilling — which finds any later event
//! too, since Megazord stores an event before it fans it out.

use chrono::{DateTime, Utc};
use status_check_engine::Event;
use status_check_engine::monitor::{WindowSpan, WindowState, advance};
use tracing::Level;

use super::history::{Decided, window_records};
use super::windows::{decided_at, window_event};
use super::{MonitorError, Monitors};
use crate::deliveries::{Delivered, DeliveryOutcome, by_subscription};
use crate::store::{StateChange, StoreError, StoredMonitor};

/// How often a group of deliveries is decided again when the state changed meanwhile.
const STALE_ATTEMPTS: usize = 8;

impl Monitors {
    /// The deliveries no check owns, to the monitor sessions of their subscriptions: one
    /// outcome per delivery, in order; `UnknownSubscription` for one no session owns either.
    pub async fn apply_deliveries(
        &self,
        batch: &[(Delivered, String)],
    ) -> Vec<Result<DeliveryOutcome, MonitorError>> {
        let mut outcomes: Vec<Result<DeliveryOutcome, MonitorError>> = batch
            .iter()
            .map(|_| Ok(DeliveryOutcome::UnknownSubscription))
            .collect();
        for group in by_subscription(batch) {
            match self.apply_group(batch, &group).await {
                Ok(applied) => {
                    for (index, outcome) in group.iter().zip(applied) {
                        outcomes[*index] = Ok(outcome);
                    }
                }
                Err(e) => {
                    // One error for the group, its message for each delivery's log line.
                    let message = e.to_string();
                    for &index in &group {
                        outcomes[index] =
                            Err(MonitorError::Store(StoreError::Conflict(message.clone())));
                    }
                }
            }
        }
        outcomes
    }

    /// The deliveries of one subscription (`group`: indices into `batch`), one outcome each.
    async fn apply_group(
        &self,
        batch: &[(Delivered, String)],
        group: &[usize],
    ) -> Result<Vec<DeliveryOutcome>, StoreError> {
        let first = &batch[group[0]].0;
        for _ in 0..STALE_ATTEMPTS {
            let Some(stored) = self
                .store
                .find_monitor_by_subscription(first.robot_id, first.subscription_id)
                .await?
            else {
                return Ok(vec![DeliveryOutcome::UnknownSubscription; group.len()]);
            };
            let Some(window) = stored.state.window else {
                return Ok(vec![DeliveryOutcome::Ended; group.len()]);
            };
            let now = self.now();
            let watched: Vec<(usize, &Event)> = group
                .iter()
                .map(|&index| (index, &batch[index].0.delivery.event))
                .filter(|(_, event)| event.name == stored.monitor.event_type())
                .collect();
            let events: Vec<(usize, DateTime<Utc>)> = watched
                .iter()
                .map(|(index, event)| (*index, event.created_at.min(now)))
                .collect();
            let (after, spans, taken) = take_events(&stored, window, events)?;
            if taken.is_empty() {
                return Ok(vec![DeliveryOutcome::NoChange; group.len()]);
            }
            let counted: Vec<(i64, DateTime<Utc>)> = watched
                .iter()
                .map(|(_, event)| (event.id, event.created_at.min(now)))
                .collect();
            let change = StateChange {
                window: Some(after),
                subscription_id: stored.state.subscription_id,
                due_at: decided_at(&after),
                release_lease: false,
                actions: Vec::new(),
                remove_subscription: None,
                windows: window_records(&Decided {
                    monitor: &stored.monitor,
                    session_date: window.session_date,
                    session_end: window.session_end,
                    subscription_id: stored.state.subscription_id,
                    spans: &spans,
                    open: Some(&after),
                    events: &counted,
                }),
            };
            if !self
                .store
                .write_monitor_state(&stored, None, &change, now)
                .await?
            {
                continue;
            }
            let monitor = &stored.monitor;
            for span in &spans {
                metrics::counter!("monitor_windows_reset_total").increment(1);
                window_event!(
                    Level::DEBUG,
                    monitor,
                    window.session_date,
                    span.number,
                    at = %span.end,
                    "window restarted by a delivered event"
                );
            }
            return Ok(group
                .iter()
                .map(|index| {
                    if taken.contains(index) {
                        DeliveryOutcome::Applied
                    } else {
                        DeliveryOutcome::NoChange
                    }
                })
                .collect());
        }
        Err(StoreError::Conflict(format!(
            "the monitor of subscription {} changed {STALE_ATTEMPTS} times while a delivery was \
             decided",
            first.subscription_id
        )))
    }
}

/// Restarts the open window at each event inside it, in time order; stops at the first event
/// at or after the open window's end (that end is the worker's to decide). The window after,
/// the spans that ended, and which deliveries changed it.
fn take_events(
    stored: &StoredMonitor,
    window: WindowState,
    mut events: Vec<(usize, DateTime<Utc>)>,
) -> Result<(WindowState, Vec<WindowSpan>, Vec<usize>), StoreError> {
    events.sort_by_key(|(index, at)| (*at, *index));
    let mut current = window;
    let mut spans = Vec::new();
    let mut taken = Vec::new();
    for (index, at) in events {
        if at >= current.window_end {
            break;
        }
        let advanced = advance(&current, stored.monitor.window(), &[at], at)
            .map_err(|e| StoreError::Corrupt(format!("status_check_monitor {}: {e}", stored.id)))?;
        let Some(state) = advanced.state else {
            break;
        };
        if state != current {
            taken.push(index);
            spans.extend(advanced.spans);
            current = state;
        }
    }
    Ok((current, spans, taken))
}
