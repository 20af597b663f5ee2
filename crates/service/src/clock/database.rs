//! The database's clock as seen from this replica: sampled over round trips, estimated from
//! the fastest one, and carried forward between samples on this host's monotonic clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::Clock;

/// One reading of the database's clock (`SELECT UTC_TIMESTAMP(6)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// When the statement was sent (this host's monotonic clock).
    pub sent: Instant,
    /// When its answer came back.
    pub received: Instant,
    /// This host's wall clock when the statement was sent.
    pub local_sent: DateTime<Utc>,
    /// What the database answered.
    pub database: DateTime<Utc>,
}

impl ClockSample {
    fn round_trip(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }
}

/// What a set of samples says about the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockEstimate {
    /// A moment of this host's monotonic clock…
    pub at: Instant,
    /// …and the database's time at that moment.
    pub database: DateTime<Utc>,
    /// This host's wall clock minus the database's: positive when this host is ahead.
    pub skew: TimeDelta,
    /// How far the estimate can be off: half the round trip it came from.
    pub uncertainty: Duration,
}

/// Estimates the database's clock from `samples`, `None` without any.
///
/// The database read its clock somewhere within each round trip; taking the middle of the
/// round trip is off by at most half of it. So the fastest round trip decides: a sample held
/// up on the way (a busy connection, a scheduler pause, a retransmit) has a long round trip
/// and, its delay being one-sided, a wrong middle — it is passed over rather than averaged in
/// (NTP's clock filter does the same).
pub fn estimate(samples: &[ClockSample]) -> Option<ClockEstimate> {
    let best = samples.iter().min_by_key(|sample| sample.round_trip())?;
    let half = best.round_trip() / 2;
    let half_delta = TimeDelta::from_std(half).unwrap_or(TimeDelta::MAX);
    Some(ClockEstimate {
        at: best.sent + half,
        database: best.database,
        skew: best.local_sent + half_delta - best.database,
        uncertainty: half,
    })
}

/// How fast this host's monotonic clock may drift from the database's: 100 ppm, a poor quartz
/// oscillator not disciplined by NTP (the host whose time sync broke).
const DRIFT: f64 = 1e-4;

/// The database's clock, as this replica's [`Clock`] (MySQL: every "now" replicas share; SPEC
/// §3.6). It reads no wall clock of this host: from the last estimate it counts forward on
/// the monotonic clock, so a host clock that is wrong, or jumps, changes nothing; only the
/// rate of the host's oscillator matters, re-measured every few seconds ([`super::SkewGuard`]).
#[derive(Debug)]
pub struct DatabaseClock {
    anchor: Mutex<ClockEstimate>,
    /// The latest time `now` answered (µs since the epoch): a correction that moves the
    /// estimate back never makes `now` go back — leases and deadlines compare its answers.
    latest: AtomicI64,
}

impl DatabaseClock {
    pub fn new(estimate: &ClockEstimate) -> Self {
        DatabaseClock {
            anchor: Mutex::new(*estimate),
            latest: AtomicI64::new(i64::MIN),
        }
    }

    /// Takes a fresh estimate when it is at least as precise as counting on from the current
    /// one (whose error grows by [`DRIFT`] with its age); returns whether it did. So a reading
    /// whose every round trip was slow (an overloaded database: the middle of a 2 s round trip
    /// may be 1 s off) never makes the clock worse than it was.
    pub fn correct(&self, estimate: &ClockEstimate) -> bool {
        let mut anchor = self.anchor.lock().unwrap_or_else(|e| e.into_inner());
        let age = estimate.at.saturating_duration_since(anchor.at);
        let counted_on = anchor.uncertainty + age.mul_f64(DRIFT);
        let better = estimate.uncertainty <= counted_on;
        if better {
            *anchor = *estimate;
        }
        better
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        let anchor = *self.anchor.lock().unwrap_or_else(|e| e.into_inner());
        let since = TimeDelta::from_std(anchor.at.elapsed()).unwrap_or(TimeDelta::MAX);
        let counted = (anchor.database + since).timestamp_micros();
        let latest = self
            .latest
            .fetch_max(counted, Ordering::Relaxed)
            .max(counted);
        DateTime::from_timestamp_micros(latest).unwrap_or(anchor.database + since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// A sample sent `after` the start of the test, `out` on the way there and `back` on the
    /// way back, from a host whose clock is `skew` ahead of the database.
    fn sample(start: Instant, after: u64, out: u64, back: u64, skew: TimeDelta) -> ClockSample {
        let truth = at("2026-12-01T10:00:00Z") + TimeDelta::milliseconds(after as i64);
        ClockSample {
            sent: start + ms(after),
            received: start + ms(after + out + back),
            local_sent: truth + skew,
            database: truth + TimeDelta::milliseconds(out as i64),
        }
    }

    #[test]
    fn the_round_trip_is_corrected_for() {
        let start = Instant::now();
        // 40 ms each way: the database answered 40 ms after the question left.
        let skew = TimeDelta::seconds(30);
        let estimate = estimate(&[sample(start, 0, 40, 40, skew)]).unwrap();
        assert_eq!(estimate.skew, skew);
        assert_eq!(estimate.uncertainty, ms(40));
        assert_eq!(estimate.at, start + ms(40));
        assert_eq!(estimate.database, at("2026-12-01T10:00:00.040Z"));
    }

    #[test]
    fn a_sample_held_up_on_the_way_is_passed_over() {
        let start = Instant::now();
        let skew = TimeDelta::seconds(-30);
        let samples = [
            // Held up 900 ms on the way there: its middle is 450 ms off.
            sample(start, 0, 905, 5, skew),
            sample(start, 1000, 6, 6, skew),
            // And again.
            sample(start, 2000, 805, 5, skew),
            sample(start, 3000, 3, 3, skew),
        ];
        let estimate = estimate(&samples).unwrap();
        assert_eq!(estimate.skew, skew, "the fastest round trip decides");
        assert_eq!(estimate.uncertainty, ms(3));
        // Averaging the offsets instead would be off by more than 200 ms.
        let naive: i64 = samples
            .iter()
            .map(|s| {
                let half = s.round_trip() / 2;
                (s.local_sent + TimeDelta::from_std(half).unwrap() - s.database - skew)
                    .num_milliseconds()
            })
            .sum::<i64>()
            / samples.len() as i64;
        assert!(naive.abs() > 200, "{naive}");
    }

    #[test]
    fn asymmetric_delay_stays_within_the_stated_uncertainty() {
        let start = Instant::now();
        let estimate = estimate(&[sample(start, 0, 1, 19, TimeDelta::zero())]).unwrap();
        let error = estimate.skew.abs().to_std().unwrap();
        assert!(error <= estimate.uncertainty, "{error:?}");
    }

    #[test]
    fn no_sample_no_estimate() {
        assert_eq!(estimate(&[]), None);
    }

    #[test]
    fn the_database_clock_counts_forward_from_its_estimate() {
        let start = Instant::now();
        let estimate = estimate(&[sample(start, 0, 0, 0, TimeDelta::seconds(30))]).unwrap();
        let clock = DatabaseClock::new(&estimate);
        let before = Instant::now();
        let now = clock.now();
        let elapsed = TimeDelta::from_std(before.elapsed() + start.elapsed()).unwrap();
        // The database's time plus what passed since, whatever this host's wall clock says.
        assert!(now >= estimate.database, "{now}");
        assert!(now <= estimate.database + elapsed, "{now}");
        let later = ClockEstimate {
            at: Instant::now(),
            database: at("2026-12-01T11:00:00Z"),
            ..estimate
        };
        assert!(clock.correct(&later));
        let now = clock.now();
        assert!(now >= later.database && now < later.database + TimeDelta::seconds(1));
    }

    #[test]
    fn a_reading_less_precise_than_counting_on_is_not_taken() {
        let start = Instant::now();
        let skew = TimeDelta::zero();
        let precise = estimate(&[sample(start, 0, 1, 1, skew)]).unwrap();
        let clock = DatabaseClock::new(&precise);
        // 10 s later every round trip took 2 s, and was held up on the way back: 1 s off.
        let slow = estimate(&[sample(start, 10_000, 500, 1500, TimeDelta::seconds(-1))]).unwrap();
        assert!(!clock.correct(&slow));
        assert_eq!(*clock.anchor.lock().unwrap(), precise);
        // A precise one is taken whatever it says (the database's clock was set).
        let set = estimate(&[sample(start, 11_000, 1, 1, TimeDelta::seconds(-5))]).unwrap();
        assert!(clock.correct(&set));
        // Hours on, counting on from it is no better than a slower reading.
        let hours_later = start + Duration::from_secs(4 * 3600);
        let late = ClockEstimate {
            at: hours_later,
            ..slow
        };
        assert!(clock.correct(&late));
    }

    #[test]
    fn a_correction_back_never_turns_now_back() {
        let start = Instant::now();
        let estimate = |database: &str| ClockEstimate {
            at: start,
            database: at(database),
            skew: TimeDelta::zero(),
            uncertainty: Duration::ZERO,
        };
        let clock = DatabaseClock::new(&estimate("2026-12-01T10:00:01Z"));
        let before = clock.now();
        assert!(before >= at("2026-12-01T10:00:01Z"));
        // A better reading puts the database a second earlier: `now` holds still, not back.
        assert!(clock.correct(&estimate("2026-12-01T10:00:00Z")));
        let after = clock.now();
        assert!(after >= before, "{after} < {before}");
        assert!(after < before + TimeDelta::milliseconds(500), "{after}");
    }
}
