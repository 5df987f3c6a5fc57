//! The arithmetic of quorum: thresholds, fault tolerance and the checks on `(n, t)`.
//!
//! Pure and dependency-free so that every other decision (validation, placement, the restart
//! planner) can lean on one definition.

use std::fmt;

/// Fewest members a cluster may have: below 3 a threshold above n/2 leaves no room for failure.
pub const MIN_MEMBERS: u32 = 3;
/// Most members a cluster may have (Charon's supported maximum, and the CRD's bound).
pub const MAX_MEMBERS: u32 = 32;

/// Default threshold `ceil(2n/3)`: 3 of 4, 5 of 7, 7 of 10 (Charon's default).
pub fn default_threshold(members: u32) -> u32 {
    (2 * members).div_ceil(3)
}

/// Byzantine fault tolerance `f = floor((n - 1) / 3)`: members that may misbehave arbitrarily.
pub fn byzantine_tolerance(members: u32) -> u32 {
    members.saturating_sub(1) / 3
}

/// Liveness budget `n - t`: members that may be down at once while signing continues.
pub fn liveness_budget(members: u32, threshold: u32) -> u32 {
    members.saturating_sub(threshold)
}

/// A checked `(n, t)` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    members: u32,
    threshold: u32,
}

/// Why an `(n, t)` pair cannot be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("{members} members is outside the supported range {MIN_MEMBERS} to {MAX_MEMBERS}")]
    UnsupportedSize { members: u32 },
    #[error(
        "threshold {threshold} of {members} is not more than half of the members: two disjoint groups of {threshold} could both sign; use at least {}",
        members / 2 + 1
    )]
    ThresholdTooLow { members: u32, threshold: u32 },
    #[error(
        "threshold {threshold} of {members} is more than the members: the cluster could never sign"
    )]
    ThresholdTooHigh { members: u32, threshold: u32 },
}

/// An `(n, t)` pair that runs but is weaker than it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumWarning {
    /// `t < ceil(2n/3)`: fewer than `t` Byzantine members cannot be excluded from signing.
    BelowByzantineThreshold { members: u32, threshold: u32 },
    /// `n < 4`: the cluster tolerates no Byzantine member at all.
    NoByzantineTolerance { members: u32 },
}

impl fmt::Display for QuorumWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QuorumWarning::BelowByzantineThreshold { members, threshold } => write!(
                f,
                "threshold {threshold} of {members} is below the Byzantine-safe default {}: a minority of faulty members could sign",
                default_threshold(members)
            ),
            QuorumWarning::NoByzantineTolerance { members } => write!(
                f,
                "{members} members tolerate no Byzantine fault; use at least 4 (n = 3f + 1)"
            ),
        }
    }
}

impl Quorum {
    /// Checks `(n, t)`; the warnings say how the pair is weaker than the default.
    pub fn new(members: u32, threshold: u32) -> Result<(Quorum, Vec<QuorumWarning>), QuorumError> {
        if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&members) {
            return Err(QuorumError::UnsupportedSize { members });
        }
        if threshold > members {
            return Err(QuorumError::ThresholdTooHigh { members, threshold });
        }
        // t <= n/2 (in integers: 2t <= n) lets two disjoint groups each reach t.
        if 2 * threshold <= members {
            return Err(QuorumError::ThresholdTooLow { members, threshold });
        }
        let mut warnings = Vec::new();
        if threshold < default_threshold(members) {
            warnings.push(QuorumWarning::BelowByzantineThreshold { members, threshold });
        }
        if members < 4 {
            warnings.push(QuorumWarning::NoByzantineTolerance { members });
        }
        Ok((Quorum { members, threshold }, warnings))
    }

    /// `(n, ceil(2n/3))`.
    pub fn with_default_threshold(
        members: u32,
    ) -> Result<(Quorum, Vec<QuorumWarning>), QuorumError> {
        Quorum::new(members, default_threshold(members))
    }

    pub fn members(self) -> u32 {
        self.members
    }

    pub fn threshold(self) -> u32 {
        self.threshold
    }

    /// Members that may be down while signing continues.
    pub fn liveness_budget(self) -> u32 {
        liveness_budget(self.members, self.threshold)
    }

    /// Byzantine members the cluster tolerates.
    pub fn byzantine_tolerance(self) -> u32 {
        byzantine_tolerance(self.members)
    }

    /// Whether `ready` members can sign.
    pub fn has_quorum(self, ready: u32) -> bool {
        ready >= self.threshold
    }

    /// Members the operator may still take down: `ready - t`, negative when quorum is lost.
    pub fn disruption_budget(self, ready: u32) -> i64 {
        i64::from(ready) - i64::from(self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full table for every supported size, computed independently of the functions above.
    #[test]
    fn quorum_table_for_every_supported_size() {
        for n in MIN_MEMBERS..=MAX_MEMBERS {
            let t = default_threshold(n);
            // ceil(2n/3) as the smallest t with 3t >= 2n.
            let expected_t = (1..=n).find(|t| 3 * t >= 2 * n).unwrap();
            assert_eq!(t, expected_t, "threshold for n={n}");
            let expected_f = (0..n).rev().find(|f| 3 * f < n).unwrap();
            assert_eq!(byzantine_tolerance(n), expected_f, "f for n={n}");
            assert_eq!(liveness_budget(n, t), n - expected_t, "budget for n={n}");

            let (q, warnings) = Quorum::with_default_threshold(n).unwrap();
            assert_eq!(q.threshold(), t);
            assert_eq!(q.liveness_budget(), n - t);
            assert!(q.has_quorum(t) && !q.has_quorum(t - 1));
            assert_eq!(q.disruption_budget(t - 1), -1);
            // The default threshold is only ever warned about for lack of Byzantine tolerance.
            let expected_warnings = if n < 4 {
                vec![QuorumWarning::NoByzantineTolerance { members: n }]
            } else {
                vec![]
            };
            assert_eq!(warnings, expected_warnings, "warnings for n={n}");
        }
    }

    #[test]
    fn well_known_sizes() {
        let table = [
            (3, 2, 0, 1),
            (4, 3, 1, 1),
            (7, 5, 2, 2),
            (10, 7, 3, 3),
            (13, 9, 4, 4),
        ];
        for (n, t, f, budget) in table {
            assert_eq!(default_threshold(n), t, "t for {n}");
            assert_eq!(byzantine_tolerance(n), f, "f for {n}");
            assert_eq!(liveness_budget(n, t), budget, "budget for {n}");
        }
    }

    #[test]
    fn threshold_of_half_or_less_is_rejected() {
        assert_eq!(
            Quorum::new(4, 2),
            Err(QuorumError::ThresholdTooLow {
                members: 4,
                threshold: 2
            })
        );
        assert_eq!(
            Quorum::new(7, 3),
            Err(QuorumError::ThresholdTooLow {
                members: 7,
                threshold: 3
            })
        );
        let message = QuorumError::ThresholdTooLow {
            members: 4,
            threshold: 2,
        }
        .to_string();
        assert!(message.contains("two disjoint groups"), "{message}");
        assert!(message.contains("at least 3"), "{message}");
    }

    #[test]
    fn threshold_above_members_is_rejected() {
        assert_eq!(
            Quorum::new(4, 5),
            Err(QuorumError::ThresholdTooHigh {
                members: 4,
                threshold: 5
            })
        );
    }

    #[test]
    fn unsupported_sizes_are_rejected() {
        assert_eq!(
            Quorum::new(2, 2),
            Err(QuorumError::UnsupportedSize { members: 2 })
        );
        assert_eq!(
            Quorum::new(33, 22),
            Err(QuorumError::UnsupportedSize { members: 33 })
        );
    }

    #[test]
    fn weak_thresholds_run_with_a_warning() {
        let (q, warnings) = Quorum::new(7, 4).unwrap();
        assert_eq!(q.liveness_budget(), 3);
        assert_eq!(
            warnings,
            vec![QuorumWarning::BelowByzantineThreshold {
                members: 7,
                threshold: 4
            }]
        );
        let (_, warnings) = Quorum::new(3, 2).unwrap();
        assert_eq!(
            warnings,
            vec![QuorumWarning::NoByzantineTolerance { members: 3 }]
        );
    }

    #[test]
    fn full_threshold_is_accepted_without_budget() {
        let (q, warnings) = Quorum::new(4, 4).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(q.liveness_budget(), 0);
    }
}
