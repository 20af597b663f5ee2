//! The simulators as real HTTP servers: each test binds `127.0.0.1:0`, serves a simulator's
//! router with `status_check_sim::spawn` and talks to it with reqwest. Time is a manual clock,
//! the status queues a recording (or failing) sink, the robots' queues a canned mailbox.

mod megazord_deliveries;
mod megazord_incomings;
mod megazord_subscriptions;
mod micro_managers;
mod support;
