//! Making a Megazord subscription the way both checks and monitors must (SPEC §5.2, §13): the
//! event names de-duplicated (Megazord refuses a repeated one), and the subscribe recorded
//! durably before the call, so that a subscription whose answer is lost can still be
//! recognised as this service's and removed (`Store::claim_unknown_subscription`).

use chrono::{DateTime, Utc};

use crate::store::{DynStore, StoreError};
use crate::upstream::{Megazord, Subscription, SubscriptionRequest, UpstreamError};

/// A subscription made, with the record of its subscribe: the caller forgets the record in
/// the write that stores the subscription (or once it queued its removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    pub id: i64,
    pub intent: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The subscribe could not be recorded: it was not made.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The names in their first order, each once.
pub fn unique_names(names: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    unique
}

/// Records the subscribe, then makes it.
pub async fn subscribe(
    store: &DynStore,
    megazord: &dyn Megazord,
    robot_id: i64,
    request: SubscriptionRequest<'_>,
    now: DateTime<Utc>,
    call_ref: &str,
) -> Result<Subscribed, SubscribeError> {
    let event_names = unique_names(request.event_names);
    let intent = store
        .record_subscribe_intent(robot_id, &event_names, request.queue, now)
        .await?;
    let answer = megazord
        .subscribe(
            robot_id,
            SubscriptionRequest {
                event_names: &event_names,
                ..request
            },
            call_ref,
        )
        .await;
    match answer {
        Ok(Subscription { id }) => Ok(Subscribed { id, intent }),
        Err(refused @ UpstreamError::NotFound { .. }) => {
            // A definite refusal (an unknown event): no subscription exists to recognise.
            if let Err(e) = store.forget_subscribe_intent(intent).await {
                tracing::warn!(intent, error = %e, "could not forget a refused subscribe's record; purged later");
            }
            Err(refused.into())
        }
        // Anything else may have made a subscription whose id never came back: the record
        // stays, to recognise its deliveries.
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_once_in_their_first_order() {
        let names: Vec<String> = ["B", "A", "B", "C", "A"].map(String::from).to_vec();
        assert_eq!(unique_names(&names), ["B", "A", "C"]);
    }
}
