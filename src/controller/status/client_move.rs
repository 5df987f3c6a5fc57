//! A member's client move as status shows it, read from its pod: the export and import steps'
//! termination messages (their summary on success, the end of their output on failure, since
//! the steps run with `terminationMessagePolicy: FallbackToLogsOnError`) and whether the new
//! client runs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ClientMove, ClientMovePhase};
use crate::controller::build::clients::migration::{
    SUMMARY_EXPORTED, interchange_file, parse_summary,
};
use crate::controller::cached::{ContainerStatus, Pod};
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
            file: interchange_file(migration.from, migration.to, migration.to),
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
    // A step retried after a failure runs again with its last exit still shown: until it ends,
    // a failed move stays failed (no flapping to Moving and back on every retry).
    let running = |name| {
        init_status(pod, name)
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    };
    let retrying =
        running(INIT_EXPORT_SLASHING_PROTECTION) || running(INIT_IMPORT_SLASHING_PROTECTION);
    if failed.is_some() && retrying && record.phase == ClientMovePhase::Failed {
        return Some(record);
    }
    let failing = failed.filter(|_| !retrying);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ValidatorClient::{Lighthouse, Teku};
    use crate::controller::model::Migration;

    fn member(migration: Option<Migration>) -> Member {
        let (dv, facts) = crate::controller::testing::example("stader-4.yaml");
        let mut member = crate::controller::validate::validate(&dv, &facts)
            .expect("valid")
            .members
            .remove(0);
        member.client = Teku;
        member.migration = migration;
        member
    }

    fn moving() -> Migration {
        Migration {
            from: Lighthouse,
            to: Teku,
            from_image: "sigp/lighthouse:v7.1.0".into(),
        }
    }

    /// A pod whose init steps are in the given states (JSON `state`, `lastState`), and whose
    /// validator client runs or not.
    fn pod(steps: &[(&str, serde_json::Value, serde_json::Value)], client_runs: bool) -> Pod {
        let statuses: Vec<serde_json::Value> = steps
            .iter()
            .map(|(name, state, last)| {
                serde_json::json!({"name": name, "image": "", "imageID": "", "ready": false, "restartCount": 0, "state": state, "lastState": last})
            })
            .collect();
        let client_state = if client_runs {
            serde_json::json!({"running": {}})
        } else {
            serde_json::json!({"waiting": {"reason": "PodInitializing"}})
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {
                "initContainerStatuses": statuses,
                "containerStatuses": [{"name": "validator-client", "image": "", "imageID": "", "ready": client_runs, "restartCount": 0, "state": client_state}],
            }
        }))
        .unwrap()
    }

    fn done(message: &str) -> serde_json::Value {
        serde_json::json!({"terminated": {"exitCode": 0, "message": message}})
    }

    fn now() -> Time {
        Time("2026-12-02T10:00:00Z".parse().unwrap())
    }

    const SHA: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

    #[test]
    fn a_move_starts_moving_and_ends_moved_with_the_exports_digest() {
        let member = member(Some(moving()));
        let started = observe(&member, None, None, &now()).unwrap();
        assert_eq!(started.phase, ClientMovePhase::Moving);
        assert_eq!(started.file, interchange_file(Lighthouse, Teku, Teku));
        assert_eq!(started.started_at, Some(now()));
        let exported = format!(
            "exported /validator/data/slashing-protection/lighthouse-to-teku.json sha256={SHA} validators=2\n"
        );
        let pod = pod(
            &[
                (
                    INIT_EXPORT_SLASHING_PROTECTION,
                    done(&exported),
                    serde_json::json!({}),
                ),
                (
                    INIT_IMPORT_SLASHING_PROTECTION,
                    done("imported"),
                    serde_json::json!({}),
                ),
            ],
            true,
        );
        let moved = observe(&member, Some(&pod), Some(&started), &now()).unwrap();
        assert_eq!(moved.phase, ClientMovePhase::Moved);
        assert_eq!(moved.sha256.as_deref(), Some(SHA));
        assert_eq!(moved.validators, Some(2));
        assert_eq!(moved.finished_at, Some(now()));
        // Moved is final while the move is asked, and stays on record once it is not.
        assert_eq!(
            observe(&member, None, Some(&moved), &now()).as_ref(),
            Some(&moved)
        );
        let settled = self::member(None);
        assert_eq!(
            observe(&settled, None, Some(&moved), &now()).as_ref(),
            Some(&moved)
        );
    }

    #[test]
    fn a_failed_step_fails_the_move_and_a_retry_does_not_flap() {
        let member = member(Some(moving()));
        let started = observe(&member, None, None, &now()).unwrap();
        let failed_export = serde_json::json!({"terminated": {"exitCode": 1, "message": "Unable to open database"}});
        let waiting = serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}});
        let pod = pod(
            &[(
                INIT_EXPORT_SLASHING_PROTECTION,
                waiting,
                failed_export.clone(),
            )],
            false,
        );
        let failed = observe(&member, Some(&pod), Some(&started), &now()).unwrap();
        assert_eq!(failed.phase, ClientMovePhase::Failed);
        assert_eq!(
            failed.message.as_deref(),
            Some("export-slashing-protection exited 1: Unable to open database")
        );
        // The kubelet runs the export again: still failed until it ends.
        let retry = pod_running_export(&failed_export);
        assert_eq!(
            observe(&member, Some(&retry), Some(&failed), &now()).as_ref(),
            Some(&failed)
        );
        // A first run that is still going is just moving.
        assert_eq!(
            observe(&member, Some(&retry), Some(&started), &now()).map(|m| m.phase),
            Some(ClientMovePhase::Moving)
        );
        // Called off (the spec asks for the old client again): the unfinished move is dropped.
        assert_eq!(
            observe(&self::member(None), None, Some(&failed), &now()),
            None
        );
    }

    fn pod_running_export(last: &serde_json::Value) -> Pod {
        pod(
            &[(
                INIT_EXPORT_SLASHING_PROTECTION,
                serde_json::json!({"running": {}}),
                last.clone(),
            )],
            false,
        )
    }

    #[test]
    fn the_check_steps_refusal_is_read_from_its_termination_message() {
        let refused = pod(
            &[(
                crate::controller::names::INIT_CHECK_SLASHING_PROTECTION,
                serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                serde_json::json!({"terminated": {"exitCode": 1, "message": "this volume holds lighthouse's data\n"}}),
            )],
            false,
        );
        assert_eq!(
            unmoved_history(&refused).as_deref(),
            Some("this volume holds lighthouse's data")
        );
        let passed = pod(
            &[(
                crate::controller::names::INIT_CHECK_SLASHING_PROTECTION,
                done(""),
                serde_json::json!({}),
            )],
            true,
        );
        assert_eq!(unmoved_history(&passed), None);
    }

    #[test]
    fn events_follow_the_phase_changes_only() {
        let member = member(Some(moving()));
        let started = observe(&member, None, None, &now()).unwrap();
        let status = |m: Option<ClientMove>| crate::api::DistributedValidatorStatus {
            members: vec![crate::api::MemberStatus {
                name: "alpha".into(),
                client_move: m,
                ..Default::default()
            }],
            ..Default::default()
        };
        let first = events(Some(&status(None)), &status(Some(started.clone())));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, crate::api::reasons::CLIENT_MOVING);
        assert!(
            events(
                Some(&status(Some(started.clone()))),
                &status(Some(started.clone()))
            )
            .is_empty()
        );
        let mut failed = started.clone();
        failed.phase = ClientMovePhase::Failed;
        failed.message = Some("export-slashing-protection exited 1: x".into());
        let second = events(Some(&status(Some(started))), &status(Some(failed)));
        assert!(second[0].warning);
        assert!(
            second[0]
                .note
                .contains("the member stays stopped, lighthouse's data untouched")
        );
    }
}
