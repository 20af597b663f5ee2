//! The collaborators the use cases are built from: the store, the upstreams, the clock and
//! the queue. `App` makes them from the configuration; tests and `dev` put in their own.

use std::sync::Arc;

use crate::clock::Clock;
use crate::queue::Queue;
use crate::store::DynStore;
use crate::upstream::{Megazord, MicroManagers};

pub struct Deps {
    pub store: DynStore,
    pub micro_managers: Arc<dyn MicroManagers>,
    pub megazord: Arc<dyn Megazord>,
    pub clock: Arc<dyn Clock>,
    /// The queue the consumer and the relay use (needed by those roles).
    pub queue: Option<Arc<dyn Queue>>,
}
