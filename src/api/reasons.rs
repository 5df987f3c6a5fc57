//! Every reason the operator writes, defined once: the `reason` of the DV's conditions and of its
//! Events (CamelCase, as Kubernetes expects). Alerts, the plugin, the demo and the tests match on
//! these, so a name changes here or nowhere.

// Available
pub const ALL_MEMBERS_READY: &str = "AllMembersReady";
pub const MEMBERS_NOT_READY: &str = "MembersNotReady";

// Available=False and an Event: a spec the operator cannot build (nothing is changed).
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const LOCK_UNAVAILABLE: &str = "LockUnavailable";
pub const LOCK_MISMATCH: &str = "LockMismatch";
pub const LOCK_INVALID: &str = "LockInvalid";
pub const PLACEMENT_UNSATISFIABLE: &str = "PlacementUnsatisfiable";
pub const STORAGE_CHANGE_REFUSED: &str = "StorageChangeRefused";
/// A restart annotation names no member or holds no time.
pub const INVALID_RESTART_REQUEST: &str = "InvalidRestartRequest";

// QuorumAvailable
pub const QUORUM_READY: &str = "QuorumReady";
pub const BELOW_THRESHOLD: &str = "BelowThreshold";

// FaultTolerant
pub const CAN_LOSE_MEMBERS: &str = "CanLoseMembers";
pub const NO_MARGIN_LEFT: &str = "NoMarginLeft";

// PlacementSatisfied
pub const NO_ZONES: &str = "NoZones";
pub const ZONES_SPREAD: &str = "ZonesSpread";
pub const ZONE_OVERLOADED: &str = "ZoneOverloaded";

// ClientDiversity, OperatorDiversity
pub const CLIENTS_SPREAD: &str = "ClientsSpread";
pub const CLIENT_CONCENTRATED: &str = "ClientConcentrated";
pub const OPERATORS_SPREAD: &str = "OperatorsSpread";
pub const OPERATOR_CONCENTRATED: &str = "OperatorConcentrated";

// KeySharesVerified (SecretMissing and ShareMismatch are Events too)
pub const SHARES_MATCH_LOCK: &str = "SharesMatchLock";
pub const SECRET_MISSING: &str = "SecretMissing";
pub const SHARE_MISMATCH: &str = "ShareMismatch";

// Progressing
/// Members run an older revision and the rollout proceeds.
pub const MEMBERS_OUTDATED: &str = "MembersOutdated";
/// Members run an older revision, and the quorum budget allows taking none down (ready members
/// at the threshold): the rollout waits for a member to come back.
pub const ROLLOUT_HELD_BY_BUDGET: &str = "RolloutHeldByBudget";
/// Members are not ready yet.
pub const MEMBERS_STARTING: &str = "MembersStarting";
/// Every member runs the desired revision and is ready.
pub const CONVERGED: &str = "Converged";
/// A member's client change waits: another member changes client first, or under Required
/// diversity the change would put `t` members on one client (also an Event).
pub const CLIENT_CHANGE_HELD: &str = "ClientChangeHeld";

// ClientMoved (DVs where a member changes validator client; also Events)
/// A member changes client: its slashing-protection history is exported and imported.
pub const CLIENT_MOVING: &str = "ClientMoving";
/// A member's export or import failed: it is stopped, on its old client's data.
pub const CLIENT_MOVE_FAILED: &str = "ClientMoveFailed";
/// A member runs its new client with its history imported.
pub const CLIENT_MOVE_DONE: &str = "ClientMoveDone";

// PeersConnected (DVs with remote members)
/// Every member, remote ones included, answered a member here lately.
pub const PEERS_SEEN: &str = "PeersSeen";
/// Some member has not answered lately (or never).
pub const PEERS_NOT_SEEN: &str = "PeersNotSeen";

// ReconciliationPaused
pub const PAUSED: &str = "Paused";
pub const ACTIVE: &str = "Active";

// Events
/// Children created or updated by one apply pass.
pub const CREATED: &str = "Created";
pub const UPDATED: &str = "Updated";
/// A NetworkPolicy the operator made, removed when the DV opts out.
pub const DELETED: &str = "Deleted";
/// An outdated member (or one with a restart requested) restarted, within the budget.
pub const ROLLING_RESTART: &str = "RollingRestart";
/// A broken member replaced.
pub const REPAIRING: &str = "Repairing";
/// The pod of a member whose node is gone removed.
pub const FORCE_DELETED: &str = "ForceDeleted";
pub const RESTART_FAILED: &str = "RestartFailed";
/// A member's node is unreachable; its pod is left alone.
pub const MEMBER_STRANDED: &str = "MemberStranded";
pub const VOLUME_EXPANDING: &str = "VolumeExpanding";
pub const VOLUME_EXPANSION_FAILED: &str = "VolumeExpansionFailed";
pub const STATEFULSET_RECREATED: &str = "StatefulSetRecreated";
/// A child's field that the operator sets was changed by someone else and put back.
pub const DRIFT_CORRECTED: &str = "DriftCorrected";

// Reconcile failures: the Warning Event's reason and the `category` label of the errors metric.
pub const APPLY_FAILED: &str = "ApplyFailed";
pub const STATUS_WRITE_FAILED: &str = "StatusWriteFailed";
pub const LOCK_READ_FAILED: &str = "LockReadFailed";
pub const ENCODE_FAILED: &str = "EncodeFailed";
pub const CACHES_STOPPED: &str = "CachesStopped";
pub const CACHES_NOT_READY: &str = "CachesNotReady";
pub const KEYSTORE_READ_FAILED: &str = "KeystoreReadFailed";
pub const NOT_LEADER: &str = "NotLeader";
pub const RECONCILE_TIMED_OUT: &str = "ReconcileTimedOut";

/// Every reason above (a test checks that none is missing, each is CamelCase and unique).
pub const ALL: &[&str] = &[
    ALL_MEMBERS_READY,
    MEMBERS_NOT_READY,
    INVALID_SPEC,
    LOCK_UNAVAILABLE,
    LOCK_MISMATCH,
    LOCK_INVALID,
    PLACEMENT_UNSATISFIABLE,
    STORAGE_CHANGE_REFUSED,
    INVALID_RESTART_REQUEST,
    QUORUM_READY,
    BELOW_THRESHOLD,
    CAN_LOSE_MEMBERS,
    NO_MARGIN_LEFT,
    NO_ZONES,
    ZONES_SPREAD,
    ZONE_OVERLOADED,
    CLIENTS_SPREAD,
    CLIENT_CONCENTRATED,
    OPERATORS_SPREAD,
    OPERATOR_CONCENTRATED,
    SHARES_MATCH_LOCK,
    SECRET_MISSING,
    SHARE_MISMATCH,
    MEMBERS_OUTDATED,
    ROLLOUT_HELD_BY_BUDGET,
    MEMBERS_STARTING,
    CONVERGED,
    CLIENT_CHANGE_HELD,
    CLIENT_MOVING,
    CLIENT_MOVE_FAILED,
    CLIENT_MOVE_DONE,
    PEERS_SEEN,
    PEERS_NOT_SEEN,
    PAUSED,
    ACTIVE,
    CREATED,
    UPDATED,
    DELETED,
    ROLLING_RESTART,
    REPAIRING,
    FORCE_DELETED,
    RESTART_FAILED,
    MEMBER_STRANDED,
    VOLUME_EXPANDING,
    VOLUME_EXPANSION_FAILED,
    STATEFULSET_RECREATED,
    DRIFT_CORRECTED,
    APPLY_FAILED,
    STATUS_WRITE_FAILED,
    LOCK_READ_FAILED,
    ENCODE_FAILED,
    CACHES_STOPPED,
    CACHES_NOT_READY,
    KEYSTORE_READ_FAILED,
    NOT_LEADER,
    RECONCILE_TIMED_OUT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_camel_case_and_unique() {
        let defined = include_str!("reasons.rs")
            .lines()
            .filter(|line| line.starts_with("pub const ") && line.ends_with("\";"))
            .count();
        assert_eq!(ALL.len(), defined, "a reason is missing from ALL");
        let mut seen = std::collections::BTreeSet::new();
        for reason in ALL {
            let mut chars = reason.chars();
            assert!(
                chars.next().is_some_and(|c| c.is_ascii_uppercase())
                    && chars.all(|c| c.is_ascii_alphanumeric()),
                "{reason} is not CamelCase"
            );
            assert!(seen.insert(reason), "{reason} is defined twice");
        }
    }
}
