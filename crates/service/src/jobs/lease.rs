//! Leases: who holds a claimed row (a check's poller, a monitor, a job), parsed once.
//!
//! A lease is the text stored in the row's `lock_id` (`VARCHAR(256)`): its owner — one per
//! replica and role — and a fresh token per claim. Every write that depends on the claim is
//! fenced on the whole text, so when a replica claims a row again (its older lease ran out),
//! a late write made under the older claim no longer matches and changes nothing.

use std::fmt;
use std::sync::Arc;

/// The longest lease a `lock_id` column holds.
pub const MAX_CHARS: usize = 256;

/// The characters a claim's token adds to its owner: `-` and 32 hex digits.
const TOKEN_CHARS: usize = 33;

/// A lease that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lease must be 1 to {MAX_CHARS} characters, not {0}")]
pub struct LeaseError(usize);

/// One claim's lease: a `lock_id` that fits its column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease(Arc<str>);

impl Lease {
    /// A lease read from elsewhere (a stored `lock_id`, a test's name).
    pub fn parse(text: &str) -> Result<Lease, LeaseError> {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_CHARS {
            return Err(LeaseError(chars));
        }
        Ok(Lease(Arc::from(text)))
    }

    /// The text stored in `lock_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who claims: one per replica and role (`relay-<host>-<uuid>`); each claim takes a fresh
/// [`Lease`] from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOwner(Arc<str>);

impl LeaseOwner {
    /// The owner for `role` on `hostname`, unique to this process; the host name is cut so
    /// that every lease fits its column.
    pub fn new(role: &str, hostname: &str) -> LeaseOwner {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let fixed = role.chars().count() + unique.len() + 2;
        let room = MAX_CHARS.saturating_sub(TOKEN_CHARS + fixed);
        let host: String = hostname.chars().take(room).collect();
        let owner: String = format!("{role}-{host}-{unique}")
            .chars()
            .take(MAX_CHARS - TOKEN_CHARS)
            .collect();
        LeaseOwner(Arc::from(owner))
    }

    /// A new claim's lease: this owner and a fresh token.
    pub fn lease(&self) -> Lease {
        Lease(Arc::from(format!(
            "{}-{}",
            self.0,
            uuid::Uuid::new_v4().simple()
        )))
    }

    /// A lease that stays the same for this owner (a handoff's: rows written leased to this
    /// process before any claim).
    pub fn standing_lease(&self, purpose: &str) -> Lease {
        let text: String = format!("{}-{purpose}", self.0)
            .chars()
            .take(MAX_CHARS)
            .collect();
        Lease(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_fits_its_column_whatever_the_host_name() {
        let owner = LeaseOwner::new("relay", &"h".repeat(1_000));
        let lease = owner.lease();
        assert_eq!(lease.as_str().chars().count(), MAX_CHARS);
        assert!(lease.as_str().starts_with(owner.as_str()));
        assert!(Lease::parse(lease.as_str()).is_ok());
        let standing = owner.standing_lease("handoff");
        assert!(standing.as_str().starts_with(owner.as_str()));
        assert!(Lease::parse(standing.as_str()).is_ok(), "fits its column");
    }

    #[test]
    fn each_claim_has_its_own_lease() {
        let owner = LeaseOwner::new("scheduler", "host");
        assert_ne!(owner.lease(), owner.lease());
        assert!(owner.as_str().starts_with("scheduler-host-"));
        assert_ne!(LeaseOwner::new("scheduler", "host"), owner);
    }

    #[test]
    fn parse_refuses_what_no_column_holds() {
        assert_eq!(Lease::parse(""), Err(LeaseError(0)));
        assert_eq!(Lease::parse(&"é".repeat(257)), Err(LeaseError(257)));
        assert_eq!(Lease::parse("a").unwrap().to_string(), "a");
    }
}
