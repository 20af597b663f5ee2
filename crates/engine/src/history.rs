//! A check's history: the records in the order they were taken in, and the sorted views the
//! rules evaluate over.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::model::{Event, Record, RecordPhase};
use crate::rules::{CelLists, RuleInput, RuleVars};

/// The records of one check plus what evaluating rules over them needs, kept in step.
///
/// Rules see each phase's events sorted by (event time, event id) — "oldest first" — whatever
/// order they arrived in, so a late or reordered delivery cannot change what a rule sees once
/// the same events are in.
#[derive(Debug, Default)]
pub struct History {
    records: Vec<Record>,
    seen: HashSet<i64>,
    past: Vec<Event>,
    future: Vec<Event>,
    /// CEL values of the sorted events, built on first use by an interpreted rule and then
    /// kept in step record by record.
    cel: OnceLock<CelLists>,
}

impl Clone for History {
    fn clone(&self) -> Self {
        History {
            records: self.records.clone(),
            seen: self.seen.clone(),
            past: self.past.clone(),
            future: self.future.clone(),
            cel: self.cel.clone(),
        }
    }
}

impl History {
    /// Rebuilds a history from stored records (any order; they are sorted by `order`).
    pub fn from_records(mut records: Vec<Record>) -> History {
        records.sort_by_key(|record| record.order);
        let mut history = History::default();
        for record in records {
            history.push(record);
        }
        history
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether Megazord's incoming event `id` is already recorded.
    pub fn contains(&self, event_id: i64) -> bool {
        self.seen.contains(&event_id)
    }

    /// The `order` the next record gets.
    pub fn next_order(&self) -> u32 {
        self.records.last().map_or(1, |record| record.order + 1)
    }

    /// Takes in a record. The caller has checked it is not a duplicate.
    pub(crate) fn push(&mut self, record: Record) {
        debug_assert!(!self.contains(record.event.id));
        self.seen.insert(record.event.id);
        let sorted = match record.phase {
            RecordPhase::Past => &mut self.past,
            RecordPhase::Future => &mut self.future,
        };
        let key = |event: &Event| (event.created_at, event.id);
        let index = sorted.partition_point(|event| key(event) <= key(&record.event));
        sorted.insert(index, record.event.clone());
        if let Some(cel) = self.cel.get_mut() {
            cel.insert(record.phase, index, &record.event);
        }
        self.records.push(record);
    }

    /// Sets the result stored on the last `count` records.
    pub(crate) fn set_last_results(&mut self, count: usize, result: crate::model::CheckResult) {
        let start = self.records.len().saturating_sub(count);
        for record in &mut self.records[start..] {
            record.result = result;
        }
    }

    /// What a past rule sees: only the past records.
    pub fn past_input<'a>(&'a self, vars: &'a RuleVars) -> RuleInput<'a> {
        RuleInput::new(&self.past, &self.future, true, vars, &self.cel)
    }

    /// What a future rule sees: every record.
    pub fn full_input<'a>(&'a self, vars: &'a RuleVars) -> RuleInput<'a> {
        RuleInput::new(&self.past, &self.future, false, vars, &self.cel)
    }
}
