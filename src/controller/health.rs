//! Reads a member's health from its pod and node, as the planner wants it. Pure.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

use crate::api::MemberStatus;
use crate::controller::cached::ContainerStatus;
use crate::controller::cached::Pod;
use crate::domain::planner::{Broken, Member, NodeHealth};

/// Container waiting reasons that mean the member cannot come up by itself soon.
const BROKEN_WAITING: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// Waiting reasons on a pod's normal way up: not a failure to name.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// The most of a container's last line that status keeps.
const LAST_WORDS_CHARS: usize = 200;

/// OOM kills in a row (by restart count) that make a member broken.
const OOM_RESTARTS: i32 = 3;

pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// When a condition took its status, rounded up to the next second: Kubernetes stores
/// transition times truncated to whole seconds, and counting from the truncated time would let
/// a delay (restartDelaySeconds, minReadySeconds) end up to a second early.
fn condition_time(pod: &Pod, type_: &str, status: &str) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .map(|t| {
            t.checked_add(std::time::Duration::from_secs(1))
                .unwrap_or(t)
        })
}

/// Why a pod is broken, if it is.
/// Every container's status of a pod, init steps first.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> + Clone {
    pod.status.iter().flat_map(|status| {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
    })
}

pub fn broken(pod: &Pod) -> Option<Broken> {
    let status = pod.status.as_ref()?;
    let containers = container_statuses(pod);
    for container in containers.clone() {
        if let Some(reason) = container
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            && BROKEN_WAITING.contains(&reason)
        {
            return Some(Broken::Waiting(reason.to_owned()));
        }
    }
    // Only while the container is not ready: one that was OOM-killed and now serves is up. Calling
    // it broken would let the operator restart a ready member outside the quorum budget, and its
    // last state says OOMKilled until the next restart, so it would stay "broken" (and never be
    // rolled out) after it recovered.
    if containers.clone().any(|c| {
        c.restart_count >= OOM_RESTARTS
            && !c.ready
            && c.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.reason.as_deref())
                == Some("OOMKilled")
    }) {
        return Some(Broken::OomKilled);
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    unschedulable.map(|c| Broken::Unschedulable(c.message.clone().unwrap_or_default()))
}

/// Why the pod's own containers are not up, as a user would read it in `kubectl describe pod`:
/// the first container (init steps first) that waits for a reason other than starting, or that
/// exited with an error, with its exit code and the last line it wrote. The operator asks the
/// kubelet for that line (`terminationMessagePolicy: FallbackToLogsOnError`: on failure the end
/// of the container's log), so a refused flag or a bad key import names itself in the DV's
/// status, e.g. `charon: CrashLoopBackOff, exit 1 (Error): ... unknown flag: --x`; the kernel's
/// OOM kill shows as `exit 137 (OOMKilled)`.
pub fn container_failure(pod: &Pod) -> Option<String> {
    container_statuses(pod).find_map(failure_of)
}

fn failure_of(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    let waiting = state
        .waiting
        .as_ref()
        .and_then(|w| w.reason.as_deref())
        .filter(|reason| !STARTING.contains(reason));
    let (said, exited) = match (waiting, &state.terminated) {
        (Some(reason), _) => (
            format!("{}: {reason}", container.name),
            container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref()),
        ),
        (None, Some(terminated)) if terminated.exit_code != 0 => {
            (container.name.clone(), Some(terminated))
        }
        _ => return None,
    };
    let Some(exited) = exited.filter(|t| t.exit_code != 0) else {
        return Some(said);
    };
    let code = exited.exit_code;
    let reason = exited.reason.as_deref().filter(|r| !r.is_empty());
    let last_words = exited.message.as_deref().and_then(last_line);
    Some(match (reason, last_words) {
        (Some(reason), Some(words)) => format!("{said}, exit {code} ({reason}): {words}"),
        (Some(reason), None) => format!("{said}, exit {code} ({reason})"),
        (None, Some(words)) => format!("{said}, exit {code}: {words}"),
        (None, None) => format!("{said}, exit {code}"),
    })
}

/// The last non-empty line of a log excerpt, without terminal colour codes, its whitespace
/// collapsed and cut to [`LAST_WORDS_CHARS`].
fn last_line(text: &str) -> Option<String> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ parameters final-byte (0x40..=0x7e).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let collapsed = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(collapsed.chars().take(LAST_WORDS_CHARS).collect())
}

/// The health of the node a pod is bound to.
pub fn node_health(pod: &Pod, node: Option<&Node>) -> NodeHealth {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
        return NodeHealth::Ready;
    };
    let Some(node) = node else {
        let _ = node_name;
        return NodeHealth::Gone;
    };
    let out_of_service = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    match (ready, out_of_service) {
        (true, _) => NodeHealth::Ready,
        (false, true) => NodeHealth::Gone,
        (false, false) => NodeHealth::Unreachable,
    }
}

/// A member for the planner, from its pod (if any), its node and its last status.
pub fn member(
    name: &str,
    index: u32,
    pod: Option<&Pod>,
    node: Option<&Node>,
    outdated: bool,
    previous: Option<&MemberStatus>,
    now: Timestamp,
) -> Member {
    let terminating = pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
    let ready = pod.is_some_and(super::status::pod_is_ready);
    let created = pod
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    Member {
        name: name.to_owned(),
        index,
        has_pod: pod.is_some() && !terminating,
        terminating,
        ready,
        ready_since: if ready {
            pod.and_then(|p| condition_time(p, "Ready", "True"))
        } else {
            None
        },
        unready_since: if ready {
            None
        } else {
            Some(
                pod.and_then(|p| condition_time(p, "Ready", "False"))
                    .or(created)
                    .unwrap_or(now),
            )
        },
        broken: pod.and_then(broken),
        node: pod.map_or(NodeHealth::Ready, |p| node_health(p, node)),
        outdated,
        last_restart: previous
            .and_then(|m| m.last_restart_time.as_ref())
            .map(|t| t.0),
        consecutive_restarts: previous.map_or(0, |m| m.consecutive_restarts),
        restart_requested: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": []}, "status": status})).unwrap()
    }

    #[test]
    fn a_crash_looping_container_is_named_with_its_exit_code_and_last_line() {
        // As the real kubelet reported a Charon v1.10.3 given a flag it refuses: the end of its
        // log (usage, then the error, coloured) as the termination message.
        let log = "      --vc-tls-key-file string   The path to the TLS private key file.\n\n13:48:34.289 \u{1b}[31mERRO\u{1b}[0m \u{1b}[32mcmd       \u{1b}[0m Application failed to start: unknown flag: --dvt-e2e-no-such-flag\n";
        let crash = pod(json!({
            "initContainerStatuses": [{"name": "import-keys", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [
                {"name": "charon", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}},
                {"name": "validator-client", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]
        }));
        assert_eq!(
            container_failure(&crash).as_deref(),
            Some(
                "charon: CrashLoopBackOff, exit 1 (Error): 13:48:34.289 ERRO cmd Application failed to start: unknown flag: --dvt-e2e-no-such-flag"
            )
        );
        // An init step that failed and has not been restarted yet, without a message.
        let failed_step = pod(json!({
            "initContainerStatuses": [{"name": "import-keys", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
        }));
        assert_eq!(
            container_failure(&failed_step).as_deref(),
            Some("import-keys, exit 2 (Error)")
        );
        // The kernel's OOM killer: the reason says so, whatever the log's last line was.
        let oom = pod(json!({
            "containerStatuses": [{"name": "charon", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "14:02:11.001 INFO cmd Charon starting\n"}}}]
        }));
        assert_eq!(
            container_failure(&oom).as_deref(),
            Some(
                "charon: CrashLoopBackOff, exit 137 (OOMKilled): 14:02:11.001 INFO cmd Charon starting"
            )
        );
        // An image that cannot be pulled waits without having exited.
        let no_image = pod(json!({
            "containerStatuses": [{"name": "charon", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}}]
        }));
        assert_eq!(
            container_failure(&no_image).as_deref(),
            Some("charon: ErrImageNeverPull")
        );
        // Starting, running, or exited cleanly: nothing to name.
        for fine in [
            json!({"containerStatuses": [{"name": "charon", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            json!({"containerStatuses": [{"name": "charon", "ready": false, "restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
            json!({"initContainerStatuses": [{"name": "import-keys", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        ] {
            assert_eq!(container_failure(&pod(fine.clone())), None, "{fine}");
        }
    }

    #[test]
    fn a_last_line_is_cut_to_its_bound_on_a_character_boundary() {
        let long = format!("{}\n", "é".repeat(LAST_WORDS_CHARS + 50));
        let line = last_line(&long).unwrap();
        assert_eq!(line.chars().count(), LAST_WORDS_CHARS);
        assert_eq!(last_line("\n \n"), None);
    }

    #[test]
    fn crash_loops_image_pulls_oom_loops_and_unschedulable_pods_are_broken() {
        let crash = pod(
            json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert_eq!(
            broken(&crash),
            Some(Broken::Waiting("CrashLoopBackOff".into()))
        );
        let oom = pod(
            json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 3, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(broken(&oom), Some(Broken::OomKilled));
        // Found by the chaos run: after an OOM loop ends, the container is ready again but its
        // last state still says OOMKilled. It is up: not broken, so it is neither restarted
        // outside the budget nor left out of a rollout.
        let recovered = pod(
            json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 7, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(broken(&recovered), None);
        let pending = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/8 nodes are available"}]}),
        );
        assert!(matches!(broken(&pending), Some(Broken::Unschedulable(m)) if m.contains("0/8")));
        let starting = pod(
            json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(broken(&starting), None, "starting is not broken");
    }

    #[test]
    fn node_health_distinguishes_unreachable_from_gone() {
        let p = pod(json!({}));
        let node = |ready: &str, taints: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"taints": taints}, "status": {"conditions": [{"type": "Ready", "status": ready}]}})).unwrap()
        };
        assert_eq!(
            node_health(&p, Some(&node("True", json!([])))),
            NodeHealth::Ready
        );
        assert_eq!(
            node_health(&p, Some(&node("Unknown", json!([])))),
            NodeHealth::Unreachable
        );
        assert_eq!(
            node_health(
                &p,
                Some(&node(
                    "Unknown",
                    json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}])
                ))
            ),
            NodeHealth::Gone
        );
        assert_eq!(node_health(&p, None), NodeHealth::Gone);
    }
}
