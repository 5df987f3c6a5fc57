//! A member's client move as status shows it, read from its pod: the export and import steps'
//! termination messages (their summary on success, the end of their output on failure, since
//! the steps run with `terminationMessagePolicy: FallbackToLogsOnError`) and whether the new
//! client runs.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ClientMove, ClientMovePhase};
use crate::controller::build::clients::migration::{
    SUMMARY_EXPORTED, interchange_file, parse_summary,
};
use crate::controller::model::Member;
use crate::controller::names::{
    CONTAINER_VALIDATOR_CLIENT, INIT_EXPORT_SLASHING_PROTECTION, INIT_IMPORT_SLASHING_PROTECTION,
};

/// The most a failure message keeps of a step's output (the kubelet keeps 4096 bytes).
const MESSAGE_LIMIT: usize = 400;

fn init_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

/// The step's last run ended: its exit code and termination message (the current state, or
/// the last one while it waits to be retried).
fn last_exit(status: &ContainerStatus) -> Option<(i32, String)> {
    let ended = status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| status.last_state.as_ref()?.terminated.as_ref())?;
    Some((ended.exit_code, ended.message.clone().unwrap_or_default()))
}

/// The tail of a failure's output, on one line.
fn tail(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().rev().nth(MESSAGE_LIMIT) {
        Some((at, _)) => format!("…{}", &line[at..]),
        None => line,
    }
}

/// The member's move after this look. `current_pod` is the member's pod when it runs the
/// template with the move's steps (not outdated); an outdated pod still runs the old client.
pub fn observe(
    member: &Member,
    current_pod: Option<&Pod>,
    previous: Option<&ClientMove>,
    now: &Time,
) -> Option<ClientMove> {
    let Some(migration) = &member.migration else {
        // No move asked: a finished one stays on record; an unfinished one was called off (the
        // spec asks for the old client again), and its file stays on the volume.
        return previous
            .filter(|p| p.phase == ClientMovePhase::Moved && p.to == member.client)
            .cloned();
    };
    let mut record = previous
        .filter(|p| p.from == migration.from && p.to == migration.to)
        .cloned()
        .unwrap_or_else(|| ClientMove {
            from: migration.from,
            to: migration.to,
            from_image: migration.from_image.clone(),
            phase: ClientMovePhase::Moving,
            file: interchange_file(migration.from, migration.to),
            sha256: None,
            validators: None,
            message: None,
            started_at: Some(now.clone()),
            finished_at: None,
        });
    if record.phase == ClientMovePhase::Moved {
        return Some(record);
    }
    let Some(pod) = current_pod else {
        return Some(record);
    };
    let export = init_status(pod, INIT_EXPORT_SLASHING_PROTECTION).and_then(last_exit);
    let import = init_status(pod, INIT_IMPORT_SLASHING_PROTECTION).and_then(last_exit);
    if let Some((0, message)) = &export
        && let Some(summary) = parse_summary(SUMMARY_EXPORTED, message)
    {
        record.file = summary.file;
        record.sha256 = Some(summary.sha256);
        record.validators = Some(summary.validators);
    }
    let failed = [
        (INIT_EXPORT_SLASHING_PROTECTION, &export),
        (INIT_IMPORT_SLASHING_PROTECTION, &import),
    ]
    .into_iter()
    .find_map(|(step, exit)| match exit {
        Some((code, message)) if *code != 0 => Some(format!(
            "{step} exited {code}: {}",
            if message.trim().is_empty() {
                "no output".to_owned()
            } else {
                tail(message)
            }
        )),
        _ => None,
    });
    // A step retried after a failure shows its last exit until it ends again; one that now
    // runs (or passed) is not failing any more.
    let failing = failed.filter(|_| {
        let running = |name| {
            init_status(pod, name)
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        };
        !running(INIT_EXPORT_SLASHING_PROTECTION) && !running(INIT_IMPORT_SLASHING_PROTECTION)
    });
    let client_started = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER_VALIDATOR_CLIENT))
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    if let Some(why) = failing {
        record.phase = ClientMovePhase::Failed;
        record.message = Some(why);
    } else if matches!(import, Some((0, _))) && client_started && record.sha256.is_some() {
        record.phase = ClientMovePhase::Moved;
        record.message = None;
        record.finished_at = Some(now.clone());
    } else {
        record.phase = ClientMovePhase::Moving;
        record.message = None;
    }
    Some(record)
}

/// Why the member's pod does not start its client, when the last init step refused: the
/// volume holds another client's history never imported into this one.
pub fn unmoved_history(pod: &Pod) -> Option<String> {
    let status = init_status(
        pod,
        crate::controller::names::INIT_CHECK_SLASHING_PROTECTION,
    )?;
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    match last_exit(status) {
        Some((code, message)) if code != 0 && !running => Some(tail(&message)),
        _ => None,
    }
}

/// A change of a member's move that gets an Event: started, failed, finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveEvent {
    pub member: String,
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The Events for what changed between two statuses of a DV.
pub fn events(
    previous: Option<&crate::api::DistributedValidatorStatus>,
    now: &crate::api::DistributedValidatorStatus,
) -> Vec<MoveEvent> {
    use crate::api::reasons;
    let mut events = Vec::new();
    for member in &now.members {
        let Some(current) = &member.client_move else {
            continue;
        };
        let before = previous
            .and_then(|p| p.members.iter().find(|m| m.name == member.name))
            .and_then(|m| m.client_move.as_ref())
            .filter(|b| b.from == current.from && b.to == current.to);
        if before.map(|b| b.phase) == Some(current.phase) {
            continue;
        }
        let what = format!(
            "member {}: {} to {}",
            member.name,
            current.from.as_str(),
            current.to.as_str()
        );
        events.push(match current.phase {
            ClientMovePhase::Moving => MoveEvent {
                member: member.name.clone(),
                warning: false,
                reason: reasons::CLIENT_MOVING,
                note: format!(
                    "{what}: at the member's next restart (one member at a time, within the quorum budget) {} exports its slashing-protection history to {} and {} imports it before its first start",
                    current.from.as_str(),
                    current.file,
                    current.to.as_str()
                ),
            },
            ClientMovePhase::Failed => MoveEvent {
                member: member.name.clone(),
                warning: true,
                reason: reasons::CLIENT_MOVE_FAILED,
                note: format!(
                    "{what}: {}; the member stays stopped, {}'s data untouched",
                    current.message.as_deref().unwrap_or("a step failed"),
                    current.from.as_str()
                ),
            },
            ClientMovePhase::Moved => MoveEvent {
                member: member.name.clone(),
                warning: false,
                reason: reasons::CLIENT_MOVE_DONE,
                note: format!(
                    "{what}: {} runs with the history of {} validator(s) imported from {} (sha256 {})",
                    current.to.as_str(),
                    current.validators.unwrap_or_default(),
                    current.file,
                    current.sha256.as_deref().unwrap_or("-")
                ),
            },
        });
    }
    events
}

/// The `ClientMoved` condition's verdict: `None` while no member has moved.
pub fn verdict(members: &[crate::api::MemberStatus]) -> Option<(bool, &'static str, String)> {
    use crate::api::reasons;
    let moves: Vec<(&str, &ClientMove)> = members
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.client_move.as_ref()?)))
        .collect();
    if moves.is_empty() {
        return None;
    }
    let describe = |phase: ClientMovePhase| -> Vec<String> {
        moves
            .iter()
            .filter(|(_, m)| m.phase == phase)
            .map(|(name, m)| match phase {
                ClientMovePhase::Failed => format!(
                    "{name} ({} to {}): {}",
                    m.from.as_str(),
                    m.to.as_str(),
                    m.message.as_deref().unwrap_or("a step failed")
                ),
                _ => format!(
                    "{name} ({} to {}{})",
                    m.from.as_str(),
                    m.to.as_str(),
                    match (&m.validators, &m.sha256) {
                        (Some(n), Some(sha)) => format!(", {n} validator(s), sha256 {sha}"),
                        _ => String::new(),
                    }
                ),
            })
            .collect()
    };
    let failed = describe(ClientMovePhase::Failed);
    if !failed.is_empty() {
        return Some((
            false,
            reasons::CLIENT_MOVE_FAILED,
            format!(
                "client change failed, member stopped on its old client's data: {}",
                failed.join("; ")
            ),
        ));
    }
    let moving = describe(ClientMovePhase::Moving);
    if !moving.is_empty() {
        return Some((
            false,
            reasons::CLIENT_MOVING,
            format!("moving slashing-protection history: {}", moving.join("; ")),
        ));
    }
    Some((
        true,
        reasons::CLIENT_MOVE_DONE,
        format!(
            "history moved with the client: {}",
            describe(ClientMovePhase::Moved).join("; ")
        ),
    ))
}
