//! The conditions of a DV's status: how one is made and merged with the previous ones (a
//! condition keeps its transition time while its status holds), and the placement and
//! diversity conditions, each with the reason that explains it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Outcome;
use crate::api::{MemberStatus, condition_types as types, reasons};
use crate::controller::model::{Cluster, MemberProblem};
use crate::domain::placement::{Diversity, Spread};

/// The planner's reasons for holding back, appended to the Progressing message: what a user
/// needs to see why a rollout or a repair has not happened yet.
pub(super) fn planner_says(waiting: &[String]) -> String {
    if waiting.is_empty() {
        String::new()
    } else {
        format!("; {}", waiting.join("; "))
    }
}

/// What every condition of one status is set against: the previous conditions (for their
/// transition times), the DV's generation and the time of this pass.
pub(super) struct Setting<'a> {
    pub previous: &'a [Condition],
    pub generation: Option<i64>,
    pub now: &'a Time,
}

impl Setting<'_> {
    pub fn set(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        condition(
            self.previous,
            type_,
            status,
            reason,
            message,
            self.generation,
            self.now,
        )
    }
}

/// Members ready of `n`, and the threshold `t`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counts {
    pub ready: u32,
    pub n: u32,
    pub t: u32,
}

/// The members not ready, each with why when known.
fn not_ready_names(members: &[MemberStatus]) -> String {
    members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| match (&m.not_ready_reason, m.remote) {
            (Some(why), _) => format!("{} ({why})", m.name),
            (None, true) => format!("{} (remote, not seen)", m.name),
            (None, false) => m.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Available (every member ready), QuorumAvailable (at least t) and FaultTolerant (more than t).
pub(super) fn availability_conditions(
    at: &Setting,
    members: &[MemberStatus],
    Counts { ready, n, t }: Counts,
) -> [Condition; 3] {
    let available = if ready == n {
        at.set(
            types::AVAILABLE,
            true,
            reasons::ALL_MEMBERS_READY,
            format!("all {n} members are ready"),
        )
    } else {
        at.set(
            types::AVAILABLE,
            false,
            reasons::MEMBERS_NOT_READY,
            format!(
                "{ready}/{n} members ready; not ready: {}",
                not_ready_names(members)
            ),
        )
    };
    let quorum = if ready >= t {
        at.set(
            types::QUORUM_AVAILABLE,
            true,
            reasons::QUORUM_READY,
            format!("{ready} members ready, {t} needed to sign"),
        )
    } else {
        at.set(
            types::QUORUM_AVAILABLE,
            false,
            reasons::BELOW_THRESHOLD,
            format!("{ready} members ready, {t} needed to sign: the validator cannot sign"),
        )
    };
    let margin = ready.saturating_sub(t);
    let fault_tolerant = at.set(
        types::FAULT_TOLERANT,
        ready > t,
        if ready > t {
            reasons::CAN_LOSE_MEMBERS
        } else {
            reasons::NO_MARGIN_LEFT
        },
        format!("{margin} more member(s) may fail before signing stops"),
    );
    [available, quorum, fault_tolerant]
}

/// Progressing: what the DV waits for first (Secrets, a held client change, outdated members,
/// members starting), or converged.
pub(super) fn progressing_condition(
    at: &Setting,
    cluster: &Cluster,
    outcome: &Outcome,
    members: &[MemberStatus],
    Counts { ready, n, .. }: Counts,
) -> Condition {
    let outdated: Vec<&str> = members
        .iter()
        .filter(|m| m.outdated)
        .map(|m| m.name.as_str())
        .collect();
    let progressing =
        |reason: &str, message: String| at.set(types::PROGRESSING, true, reason, message);
    if !cluster.blocked.is_empty() {
        progressing(
            reasons::SECRET_MISSING,
            format!("waiting for Secrets: {}", whys(&cluster.blocked)),
        )
    } else if !cluster.client_changes_held.is_empty() {
        progressing(
            reasons::CLIENT_CHANGE_HELD,
            cluster
                .client_changes_held
                .iter()
                .map(|held| held.message())
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else if !outdated.is_empty() {
        progressing(
            if outcome.held_by_budget {
                reasons::ROLLOUT_HELD_BY_BUDGET
            } else {
                reasons::MEMBERS_OUTDATED
            },
            format!(
                "members running an older revision: {}{}",
                outdated.join(", "),
                planner_says(&outcome.waiting)
            ),
        )
    } else if ready < n {
        progressing(
            reasons::MEMBERS_STARTING,
            format!(
                "waiting for members to become ready: {}{}",
                not_ready_names(members),
                planner_says(&outcome.waiting)
            ),
        )
    } else {
        at.set(
            types::PROGRESSING,
            false,
            reasons::CONVERGED,
            "every member runs the desired revision and is ready".to_owned(),
        )
    }
}

/// ReconciliationPaused: whether restarts and rollouts wait for the user.
pub(super) fn paused_condition(at: &Setting, paused: bool) -> Condition {
    if paused {
        at.set(
            types::RECONCILIATION_PAUSED,
            true,
            reasons::PAUSED,
            "spec.rollout.paused or the dvt.io/paused annotation: no restarts or rollouts"
                .to_owned(),
        )
    } else {
        at.set(
            types::RECONCILIATION_PAUSED,
            false,
            reasons::ACTIVE,
            "restarts and rollouts proceed within the quorum budget".to_owned(),
        )
    }
}

fn whys(problems: &[MemberProblem]) -> String {
    problems
        .iter()
        .map(|p| p.why.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// KeySharesVerified: every member's keystores hold its own share of a lock that verifies.
pub(super) fn key_shares_condition(at: &Setting, cluster: &Cluster) -> Condition {
    if !cluster.blocked.is_empty() {
        at.set(
            types::KEY_SHARES_VERIFIED,
            false,
            reasons::SECRET_MISSING,
            whys(&cluster.blocked),
        )
    } else if !cluster.share_mismatches.is_empty() {
        at.set(
            types::KEY_SHARES_VERIFIED,
            false,
            reasons::SHARE_MISMATCH,
            format!(
                "not created or changed: {}",
                whys(&cluster.share_mismatches)
            ),
        )
    } else {
        at.set(
            types::KEY_SHARES_VERIFIED,
            true,
            reasons::SHARES_MATCH_LOCK,
            format!(
                "the lock's {} validator(s) verify (any {} public shares interpolate to the group key) and every member's keystores hold its own share",
                cluster.lock_summary.validators,
                cluster.quorum.threshold()
            ),
        )
    }
}

/// Sets a condition, keeping `lastTransitionTime` when its status did not change.
pub(super) fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_with(previous, type_, status, reason, message, generation, now)
}

pub(super) fn condition_with(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Replaces the conditions in `updates`, keeps the others, sorted by type.
pub(super) fn merge(previous: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut by_type: BTreeMap<String, Condition> = previous
        .iter()
        .map(|c| (c.type_.clone(), c.clone()))
        .collect();
    for update in updates {
        by_type.insert(update.type_.clone(), update);
    }
    by_type.into_values().collect()
}

pub(super) fn placement_condition(
    members: &[MemberStatus],
    n: u32,
    t: u32,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let unplaced: Vec<&str> = members
        .iter()
        .filter(|m| m.zone.is_none())
        .map(|m| m.name.as_str())
        .collect();
    if !unplaced.is_empty() {
        return condition(
            previous,
            types::PLACEMENT_SATISFIED,
            false,
            reasons::NO_ZONES,
            format!(
                "no zone known for {}: nodes carry no zone label",
                unplaced.join(", ")
            ),
            generation,
            now,
        );
    }
    let zones =
        crate::domain::placement::spread(members.iter().filter_map(|m| m.zone.clone()), n, t);
    let bound = n.saturating_sub(t);
    if zones.live {
        condition(
            previous,
            types::PLACEMENT_SATISFIED,
            true,
            reasons::ZONES_SPREAD,
            format!(
                "members per zone: {}; at most {bound} per zone, so the DV survives {} zone outage(s) with {t} members left to sign",
                zones.describe(),
                zones.survives
            ),
            generation,
            now,
        )
    } else {
        condition(
            previous,
            types::PLACEMENT_SATISFIED,
            false,
            reasons::ZONE_OVERLOADED,
            format!(
                "members per zone: {}; a zone holding {} members (more than {bound}) stops signing when it fails: the DV survives {} zone outage(s); add nodes in more zones",
                zones.describe(),
                zones.worst,
                zones.survives
            ),
            generation,
            now,
        )
    }
}

/// Client and operator diversity (rule in README "Status"): False only for a risk the user can
/// fix ([`Spread::verdict`]): one client, operator or class holding `t` shares (it could sign
/// alone), or one whose loss stops signing where the available ones allow a better spread. How
/// many failures of each kind the DV survives is reported in the message either way.
pub(super) fn diversity_conditions(
    cluster: &Cluster,
    allowed_clients: usize,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let n = cluster.quorum.members();
    let t = cluster.quorum.threshold();
    let spread_of = |domains: Vec<String>| crate::domain::placement::spread(domains, n, t);
    let clients = spread_of(
        cluster
            .roster
            .iter()
            .filter_map(|m| Some(m.client?.as_str().to_owned()))
            .collect(),
    );
    let names = spread_of(
        cluster
            .roster
            .iter()
            .map(|m| m.operator_name.clone())
            .collect(),
    );
    let classes = spread_of(
        cluster
            .roster
            .iter()
            .map(|m| m.operator_class.as_str().to_owned())
            .collect(),
    );
    let (clients_ok, clients_text) = judged(&clients, n, t, allowed_clients, "clients");
    let (names_ok, names_text) = judged(&names, n, t, names.counts.len(), "operators");
    let (classes_ok, classes_text) =
        judged(&classes, n, t, classes.counts.len(), "operator classes");
    vec![
        condition(
            previous,
            types::CLIENT_DIVERSITY,
            clients_ok,
            if clients_ok {
                reasons::CLIENTS_SPREAD
            } else {
                reasons::CLIENT_CONCENTRATED
            },
            clients_text,
            generation,
            now,
        ),
        condition(
            previous,
            types::OPERATOR_DIVERSITY,
            names_ok && classes_ok,
            if names_ok && classes_ok {
                reasons::OPERATORS_SPREAD
            } else {
                reasons::OPERATOR_CONCENTRATED
            },
            format!("{names_text}; {classes_text}"),
            generation,
            now,
        ),
    ]
}

/// One kind of domain's verdict and message: the spread, then either what to change or the
/// facts (none can sign alone; what losing the largest costs; how many failures it survives).
fn judged(s: &Spread, n: u32, t: u32, available: usize, what: &str) -> (bool, String) {
    let spread = s.describe();
    match s.verdict(n, t, available) {
        Diversity::CouldSignAlone { domain, members } => (
            false,
            format!(
                "{what}: {spread}; {domain} holds {members} ≥ t={t} shares and could sign alone: move members to other {what}"
            ),
        ),
        Diversity::AvoidableOutage {
            domain,
            members,
            even,
        } => (
            false,
            format!(
                "{what}: {spread}; losing {domain} ({members} members) stops signing, which at most {even} per one of the {available} available {what} would avoid: move members to other {what}"
            ),
        ),
        Diversity::Sound => {
            let (largest, most) = s.largest().unwrap_or(("none", 0));
            let loss = if s.live {
                format!(
                    "losing {largest} ({most}) leaves {} to sign",
                    n as usize - most
                )
            } else {
                format!(
                    "losing {largest} ({most}) stops signing, as with any spread over {} {what}",
                    s.counts.len()
                )
            };
            (
                true,
                format!(
                    "{what}: {spread}; none can sign alone (at most {most} < t={t}); {loss}; survives {} failing {what}",
                    s.survives
                ),
            )
        }
    }
}

/// `PeersConnected`, for a DV with remote members: whether every member answered a member here
/// lately, and for each that did not, how long ago it last did (in whole minutes, so that the
/// message changes at most once a minute).
pub(super) fn peers_condition(
    cluster: &Cluster,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    if !cluster.roster.iter().any(|m| m.remote) {
        return None;
    }
    let peers = &cluster.peers;
    let missing: Vec<String> = cluster
        .roster
        .iter()
        .filter(|m| !peers.up.contains(&m.index))
        .map(|m| {
            let who = if m.remote {
                format!("{} (remote, operator {})", m.name, m.operator_name)
            } else {
                m.name.clone()
            };
            let when = match peers.last_seen.get(&m.index) {
                None => "never seen".to_owned(),
                Some(seen) => {
                    let minutes = now.0.duration_since(*seen).as_secs().max(0) / 60;
                    match minutes {
                        0 => "not seen for <1m".to_owned(),
                        m if m < 120 => format!("not seen for {m}m"),
                        m => format!("not seen for {}h", m / 60),
                    }
                }
            };
            format!("{who}: {when}")
        })
        .collect();
    Some(if missing.is_empty() {
        condition(
            previous,
            types::PEERS_CONNECTED,
            true,
            reasons::PEERS_SEEN,
            format!(
                "all {} members answered lately, {} of them remote",
                cluster.roster.len(),
                cluster.roster.iter().filter(|m| m.remote).count()
            ),
            generation,
            now,
        )
    } else {
        condition(
            previous,
            types::PEERS_CONNECTED,
            false,
            reasons::PEERS_NOT_SEEN,
            missing.join("; "),
            generation,
            now,
        )
    })
}
