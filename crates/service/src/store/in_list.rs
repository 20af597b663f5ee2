//! Statements over a list of ids (`… WHERE x IN (?, ?, …)`), so a batch reads in one round
//! trip what it would otherwise read once per item.
//!
//! The statements are built from placeholders only — every value is still bound — and padded
//! to a power of two (the last id repeated, which `IN` ignores), so each backend prepares and
//! caches at most [`SIZES`] texts per statement instead of one per batch length. Each text is
//! built once per process and kept for its lifetime (the `Tx` seam takes `&'static str`).

use std::sync::OnceLock;

/// Most ids one statement takes; longer lists are read in chunks of this many.
pub(crate) const MAX_IDS: usize = 64;

/// Padded lengths: 1, 2, 4, … [`MAX_IDS`].
const SIZES: usize = MAX_IDS.trailing_zeros() as usize + 1;

/// A statement `head` + `(?, …)` + `tail`, for any number of ids up to [`MAX_IDS`].
pub(crate) struct InList {
    head: &'static str,
    tail: &'static str,
    texts: OnceLock<[&'static str; SIZES]>,
}

impl InList {
    pub(crate) const fn new(head: &'static str, tail: &'static str) -> InList {
        InList {
            head,
            tail,
            texts: OnceLock::new(),
        }
    }

    /// The statement for `ids` (1 ≤ len ≤ [`MAX_IDS`]) and the ids to bind, padded to its
    /// placeholders.
    pub(crate) fn for_ids(&self, ids: &[i64]) -> (&'static str, Vec<i64>) {
        assert!(
            !ids.is_empty() && ids.len() <= MAX_IDS,
            "an IN list takes 1 to {MAX_IDS} ids, not {}",
            ids.len()
        );
        let size = ids.len().next_power_of_two();
        let texts = self.texts.get_or_init(|| {
            std::array::from_fn(|exponent| {
                let placeholders = vec!["?"; 1 << exponent].join(", ");
                let text = format!("{}({placeholders}){}", self.head, self.tail);
                &*Box::leak(text.into_boxed_str())
            })
        });
        let mut padded = ids.to_vec();
        padded.resize(size, *ids.last().expect("not empty"));
        (texts[size.trailing_zeros() as usize], padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_padded_to_the_next_power_of_two_with_its_last_id() {
        let list = InList::new("SELECT id FROM t WHERE id IN ", " ORDER BY id");
        let (sql, ids) = list.for_ids(&[7, 3, 5]);
        assert_eq!(sql, "SELECT id FROM t WHERE id IN (?, ?, ?, ?) ORDER BY id");
        assert_eq!(ids, [7, 3, 5, 5]);
        let (sql, ids) = list.for_ids(&[9]);
        assert_eq!(sql, "SELECT id FROM t WHERE id IN (?) ORDER BY id");
        assert_eq!(ids, [9]);
        let many: Vec<i64> = (1..=MAX_IDS as i64).collect();
        let (sql, ids) = list.for_ids(&many);
        assert_eq!(sql.matches('?').count(), MAX_IDS);
        assert_eq!(ids, many);
        // The same length asks for the same text, built once.
        assert!(std::ptr::eq(
            list.for_ids(&[1, 2, 3]).0,
            list.for_ids(&[4, 5, 6]).0
        ));
    }

    #[test]
    #[should_panic(expected = "an IN list takes 1 to 64 ids, not 65")]
    fn a_list_longer_than_a_statement_takes_is_refused() {
        let list = InList::new("SELECT 1 WHERE 1 IN ", "");
        let too_many: Vec<i64> = (0..=MAX_IDS as i64).collect();
        let _ = list.for_ids(&too_many);
    }
}
