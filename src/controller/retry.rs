//! How a failing reconcile is retried and reported: per DV exponential backoff with a cap, and a
//! Warning Event per failure that is rate-limited per DV, so that a DV failing every second does
//! not flood the Events API. Pure: the controller keeps one [`Failures`] per DV and asks here.
//!
//! Permanent problems (a bad spec, a lock that does not match) are not failures: validation
//! reports them in conditions and the DV waits for a change.

use std::time::{Duration, Instant};

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries: a DV that keeps failing is still looked at once a minute
/// (a rollout step or a repair that a failed status write interrupted is not left for long).
pub const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// At most one Warning Event per DV this often for the same kind of failure.
pub const EVENT_EVERY: Duration = Duration::from_secs(60);

/// The failures of one DV since its last successful reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failures {
    pub consecutive: u32,
    /// When the last Warning Event was published, and for which category.
    pub last_event: Option<(Instant, &'static str)>,
}

/// What to do about one more failure.
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    pub after: Duration,
    /// Whether to publish a Warning Event for it.
    pub publish: bool,
}

impl Failures {
    /// Records a failure of `category` at `now`: how long until the next try, and whether this
    /// one is worth an Event (the first of its category, or the first after [`EVENT_EVERY`]).
    pub fn failed(&mut self, category: &'static str, now: Instant) -> Retry {
        self.consecutive = self.consecutive.saturating_add(1);
        let publish = match self.last_event {
            Some((at, last)) => last != category || now.duration_since(at) >= EVENT_EVERY,
            None => true,
        };
        if publish {
            self.last_event = Some((now, category));
        }
        Retry {
            after: backoff(self.consecutive),
            publish,
        }
    }
}

/// `FIRST_RETRY * 2^(n - 1)`, at most [`LONGEST_RETRY`].
pub fn backoff(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap() {
        let gaps: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), LONGEST_RETRY);
    }

    #[test]
    fn events_are_published_once_a_minute_per_category() {
        let start = Instant::now();
        let mut failures = Failures::default();
        let first = failures.failed("KeystoreReadFailed", start);
        assert!(first.publish);
        assert_eq!(first.after, Duration::from_secs(1));
        let again = failures.failed("KeystoreReadFailed", start + Duration::from_secs(1));
        assert!(
            !again.publish,
            "the same failure a second later is not another Event"
        );
        assert_eq!(again.after, Duration::from_secs(2));
        assert!(
            failures
                .failed("StatusWriteFailed", start + Duration::from_secs(3))
                .publish,
            "a different failure is"
        );
        assert!(
            failures
                .failed("StatusWriteFailed", start + Duration::from_secs(63))
                .publish,
            "and the same one after a minute"
        );
        assert_eq!(failures.consecutive, 4);
    }
}
