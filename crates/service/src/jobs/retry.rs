//! One retry concept for every kind of job: a doubling backoff, capped, and the attempt after
//! which a job is dead-lettered.

use std::time::Duration;

/// How failed jobs of one kind are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles per failure up to `max`.
    pub base: Duration,
    pub max: Duration,
    /// Failed attempts after which the job is dead-lettered; `None`: retried until done.
    pub dead_letter_after: Option<u32>,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryIn(Duration),
    DeadLetter,
}

impl RetryPolicy {
    /// 1 s, doubling up to 5 min: what every kind uses today.
    pub const fn doubling() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            dead_letter_after: None,
        }
    }

    /// The same, dead-lettered after `attempts` failed attempts.
    pub const fn dead_letter_after(self, attempts: u32) -> RetryPolicy {
        RetryPolicy {
            dead_letter_after: Some(attempts),
            ..self
        }
    }

    /// What follows the failure of a job that had failed `attempts` times before.
    pub fn after_failure(&self, attempts: u32) -> Next {
        match self.dead_letter_after {
            Some(last) if attempts.saturating_add(1) >= last => Next::DeadLetter,
            _ => Next::RetryIn(
                self.base
                    .checked_mul(1u32 << attempts.min(20))
                    .unwrap_or(self.max)
                    .min(self.max),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap() {
        let policy = RetryPolicy::doubling();
        let wait = |attempts| policy.after_failure(attempts);
        assert_eq!(wait(0), Next::RetryIn(Duration::from_secs(1)));
        assert_eq!(wait(3), Next::RetryIn(Duration::from_secs(8)));
        assert_eq!(wait(30), Next::RetryIn(Duration::from_secs(300)));
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        let policy = RetryPolicy::doubling().dead_letter_after(3);
        assert_eq!(
            policy.after_failure(1),
            Next::RetryIn(Duration::from_secs(2))
        );
        assert_eq!(policy.after_failure(2), Next::DeadLetter);
        assert_eq!(policy.after_failure(9), Next::DeadLetter);
    }
}
