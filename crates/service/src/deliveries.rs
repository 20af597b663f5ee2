//! Megazord's deliveries (SPEC §3.4, §12), above the checks and the monitors: the vocabulary
//! both take deliveries in ([`Delivered`], [`DeliveryOutcome`], [`by_subscription`]), and
//! [`Deliveries`], which routes each delivery of a batch to the owner of its subscription — the
//! check's, else a monitor session's — before it counts as unknown. The consumer only moves
//! messages and calls this; which owner a delivery belongs to is decided here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use status_check_engine::lifecycle::Delivery;

use crate::checks::{CheckError, Checks};
use crate::clock::Clock;
use crate::monitors::{MonitorError, Monitors};
/// A delivery no check or monitor session owns, and whose subscription it turned out to be
/// (SPEC §13).
pub use crate::store::{UnknownDelivery, UnknownSubscription};

/// One delivery from a status queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub robot_id: i64,
    pub subscription_id: i64,
    pub delivery: Delivery,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The owner took the event in (a check maybe ended, a monitor's window restarted).
    Applied,
    /// Nothing changed: a duplicate, or an event outside the window.
    NoChange,
    /// The check had already ended, or the monitor's session.
    Ended,
    /// No check or monitor session has this subscription (yet, or any more).
    UnknownSubscription,
    /// The check is the Node service's and cannot be adopted now (Micro-Managers down, or
    /// its step gone): the delivery waits.
    NotAdopted,
}

/// Why a delivery could not be applied now (it is left for redelivery).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("a monitor's delivery: {0}")]
    Monitor(#[from] MonitorError),
}

/// The batch's indices grouped by (robot, subscription), each group in arrival order, the
/// groups in order of their first delivery.
pub fn by_subscription(batch: &[(Delivered, String)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<(i64, i64), usize> = HashMap::new();
    for (index, (delivered, _)) in batch.iter().enumerate() {
        let key = (delivered.robot_id, delivered.subscription_id);
        match group_of.get(&key) {
            Some(&group) => groups[group].push(index),
            None => {
                group_of.insert(key, groups.len());
                groups.push(vec![index]);
            }
        }
    }
    groups
}

/// The owners of deliveries, in the order they are asked: the checks, then the monitors.
pub struct Deliveries {
    checks: Arc<Checks>,
    monitors: Arc<Monitors>,
}

impl Deliveries {
    pub fn new(checks: Arc<Checks>, monitors: Arc<Monitors>) -> Self {
        Deliveries { checks, monitors }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.checks.clock()
    }

    /// Applies a batch of deliveries, each with its request id: one outcome per delivery, in
    /// order. The checks take theirs (every check they change written in one transaction);
    /// what no check owns goes to the monitors' sessions; what neither owns is
    /// `UnknownSubscription`.
    pub async fn apply(
        &self,
        batch: &[(Delivered, String)],
    ) -> Vec<Result<DeliveryOutcome, DeliveryError>> {
        let mut outcomes: Vec<Result<DeliveryOutcome, DeliveryError>> = self
            .checks
            .apply_deliveries(batch)
            .await
            .into_iter()
            .map(|outcome| outcome.map_err(DeliveryError::from))
            .collect();
        let unknown: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, outcome)| matches!(outcome, Ok(DeliveryOutcome::UnknownSubscription)))
            .map(|(index, _)| index)
            .collect();
        if unknown.is_empty() {
            return outcomes;
        }
        let items: Vec<(Delivered, String)> =
            unknown.iter().map(|&index| batch[index].clone()).collect();
        for (index, outcome) in unknown
            .into_iter()
            .zip(self.monitors.apply_deliveries(&items).await)
        {
            outcomes[index] = outcome.map_err(DeliveryError::from);
        }
        outcomes
    }

    /// A delivery for an ended check's subscription kept coming past the grace period: its
    /// removal queued (once; asking again changes nothing).
    pub async fn ended_subscription_delivering(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<(), DeliveryError> {
        self.checks
            .ended_subscription_delivering(robot_id, subscription_id)
            .await
            .map_err(|e| CheckError::from(e).into())
    }

    /// A delivery no check or monitor session owns kept coming past the grace period: whose
    /// its subscription is, and its removal queued when it is this service's (SPEC §13).
    pub async fn unknown_subscription(
        &self,
        delivery: UnknownDelivery<'_>,
        grace: Duration,
    ) -> Result<UnknownSubscription, DeliveryError> {
        self.checks
            .unknown_subscription(delivery, grace)
            .await
            .map_err(|e| CheckError::from(e).into())
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use status_check_engine::Event;

    use super::*;

    fn delivered(robot_id: i64, subscription_id: i64, event_id: i64) -> (Delivered, String) {
        let event = Event {
            id: event_id,
            name: "toilet".to_owned(),
            created_at: DateTime::UNIX_EPOCH,
            level: None,
            reference_id: None,
        };
        let delivered = Delivered {
            robot_id,
            subscription_id,
            delivery: Delivery::from(event),
        };
        (delivered, format!("call-{event_id}"))
    }

    #[test]
    fn a_batch_groups_by_robot_and_subscription_in_arrival_order() {
        let batch = [
            delivered(1, 10, 1),
            delivered(2, 10, 2),
            delivered(1, 10, 3),
            delivered(1, 11, 4),
            delivered(2, 10, 5),
        ];
        assert_eq!(
            by_subscription(&batch),
            vec![vec![0, 2], vec![1, 4], vec![3]]
        );
        assert!(by_subscription(&[]).is_empty());
    }
}
