//! The simulated kubelet's model of the containers it runs, and the pod status it reports.
//!
//! Each container moves Creating → Running, and on a fault Running → Terminated → BackOff →
//! Running (CrashLoopBackOff with an exponential delay), or Creating → PullFailing
//! (ErrImagePull, ImagePullBackOff). The status is derived from this model and from the clock, so
//! that an unchanged model reports an unchanged status (and the kubelet writes nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::ClusterOptions;
use super::faults::PodFaults;

#[derive(Clone, Debug)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: &'static str,
    pub started_at: Time,
    pub finished_at: Time,
}

#[derive(Clone, Debug)]
pub enum Phase {
    /// Waiting `ContainerCreating` until the image is pulled and the container started.
    Creating { until: Instant },
    /// Waiting `ErrImagePull`, then `ImagePullBackOff`.
    PullFailing { since: Instant },
    Running {
        since: Instant,
        started_at: Time,
        /// When the running process exits by itself (a crash loop), and whether as an OOM kill.
        exits_at: Option<(Instant, bool)>,
        /// When failing liveness probes make the kubelet kill it.
        killed_at: Option<Instant>,
    },
    /// Waiting `CrashLoopBackOff` until the next start.
    BackOff { until: Instant },
}

#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub phase: Phase,
    pub restart_count: i32,
    pub last_terminated: Option<Terminated>,
    /// Consecutive failed runs, for the back-off delay.
    pub failures: u32,
}

/// One init container and how its last run ended: exit code and termination message.
#[derive(Clone, Debug)]
pub struct InitContainer {
    pub name: String,
    pub image: String,
    pub ended: Option<(i32, String)>,
    pub restart_count: i32,
    /// When a failed init container runs again (its back-off).
    pub retry_at: Option<Instant>,
}

/// What the kubelet knows of one pod it runs.
#[derive(Clone, Debug)]
pub struct PodRuntime {
    pub started: Time,
    pub ip: String,
    pub containers: Vec<Container>,
    pub init_containers: Vec<InitContainer>,
}

/// How an init container ends, as a test told the simulator (it runs no script): exit code and
/// termination message. `None`: it succeeds and says nothing.
pub type InitOutcome<'a> = &'a dyn Fn(&str, &str) -> Option<(i32, String)>;

pub fn time(at: k8s_openapi::jiff::Timestamp) -> Time {
    // Whole seconds, as the API server serialises them, so that a round trip compares equal.
    Time(k8s_openapi::jiff::Timestamp::from_second(at.as_second()).unwrap_or(at))
}

fn wall_now() -> Time {
    time(k8s_openapi::jiff::Timestamp::now())
}

impl PodRuntime {
    pub fn new(pod: &Pod, ip: String, now: Instant, options: &ClusterOptions) -> PodRuntime {
        let spec = pod.spec.clone().unwrap_or_default();
        PodRuntime {
            started: wall_now(),
            ip,
            containers: spec
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    phase: Phase::Creating {
                        until: now + options.start_delay,
                    },
                    restart_count: 0,
                    last_terminated: None,
                    failures: 0,
                })
                .collect(),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| InitContainer {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    ended: None,
                    restart_count: 0,
                    retry_at: None,
                })
                .collect(),
        }
    }

    /// Runs the init containers in order before any container starts: one that fails is
    /// retried with a back-off and holds the pod in `Init:CrashLoopBackOff` (its containers stay
    /// waiting). Returns when to look again while one fails.
    pub fn advance_init(
        &mut self,
        now: Instant,
        outcome: InitOutcome<'_>,
        options: &ClusterOptions,
    ) -> Option<Instant> {
        if self.initialized() {
            return None;
        }
        for init in &mut self.init_containers {
            if matches!(init.ended, Some((0, _))) {
                continue;
            }
            if init.retry_at.is_some_and(|at| now < at) {
                hold(&mut self.containers, now, options);
                return Some(init_retry(init));
            }
            match outcome(&init.name, &init.image) {
                Some((code, message)) if code != 0 => {
                    if init.ended.is_some() {
                        init.restart_count += 1;
                    }
                    init.ended = Some((code, message));
                    let at = now + backoff(init.restart_count.max(0) as u32 + 1, options);
                    init.retry_at = Some(at);
                    hold(&mut self.containers, now, options);
                    return Some(at);
                }
                ended => {
                    init.ended = Some((0, ended.map(|(_, m)| m).unwrap_or_default()));
                    init.retry_at = None;
                }
            }
        }
        None
    }

    /// All containers have started at least once (init containers are then done).
    /// (A failing init container keeps them in `Creating`.)
    pub fn initialized(&self) -> bool {
        self.containers.iter().all(|c| {
            !matches!(c.phase, Phase::Creating { .. } | Phase::PullFailing { .. })
                || c.restart_count > 0
        })
    }

    /// Every container is running.
    pub fn running(&self) -> bool {
        self.containers
            .iter()
            .all(|c| matches!(c.phase, Phase::Running { .. }))
    }

    /// Advances the model to `now` under `faults`; returns when it next needs a look.
    pub fn advance(
        &mut self,
        now: Instant,
        faults: Option<&mut PodFaults>,
        image_is_bad: &dyn Fn(&str) -> bool,
        options: &ClusterOptions,
    ) -> Option<Instant> {
        let mut empty = PodFaults::default();
        let faults = faults.unwrap_or(&mut empty);
        let mut next: Option<Instant> = None;
        let mut wake = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        for container in &mut self.containers {
            let name = container.name.clone();
            let crash_once = faults.crash_once.remove(&name) || faults.crash_once.remove("");
            let crash_loop = faults
                .crash_loop
                .get(&name)
                .or_else(|| faults.crash_loop.get(""))
                .copied();
            // Each phase may move on more than once in one look (e.g. a back-off that ended).
            for _ in 0..4 {
                match container.phase.clone() {
                    Phase::Creating { until } | Phase::BackOff { until } if now < until => {
                        wake(until);
                        break;
                    }
                    Phase::Creating { .. } | Phase::BackOff { .. } => {
                        if image_is_bad(&container.image) || faults.image_pull {
                            container.phase = Phase::PullFailing { since: now };
                            continue;
                        }
                        if matches!(container.phase, Phase::BackOff { .. }) {
                            container.restart_count += 1;
                        }
                        container.phase = Phase::Running {
                            since: now,
                            started_at: wall_now(),
                            exits_at: crash_loop.map(|oom| (now + options.crash_after, oom)),
                            killed_at: faults.unlive.then_some(now + options.liveness_kill_after),
                        };
                    }
                    Phase::PullFailing { .. } => {
                        if image_is_bad(&container.image) || faults.image_pull {
                            wake(now + options.pull_retry);
                            break;
                        }
                        container.phase = Phase::Creating {
                            until: now + options.start_delay,
                        };
                    }
                    Phase::Running {
                        since,
                        started_at,
                        exits_at,
                        killed_at,
                    } => {
                        // Faults that arrive while running take effect from now.
                        let exits_at =
                            exits_at.or(crash_loop.map(|oom| (now + options.crash_after, oom)));
                        let killed_at = if faults.unlive {
                            killed_at.or(Some(now + options.liveness_kill_after))
                        } else {
                            None
                        };
                        let ended = if crash_once {
                            Some((1, "Error"))
                        } else if let Some((at, oom)) = exits_at.filter(|(at, _)| now >= *at) {
                            let _ = at;
                            Some(if oom {
                                (137, "OOMKilled")
                            } else {
                                (1, "Error")
                            })
                        } else if killed_at.is_some_and(|at| now >= at) {
                            Some((137, "Error"))
                        } else {
                            None
                        };
                        let Some((exit_code, reason)) = ended else {
                            if now.duration_since(since) >= options.backoff_reset {
                                container.failures = 0;
                            } else {
                                wake(since + options.backoff_reset);
                            }
                            if let Some((at, _)) = exits_at {
                                wake(at);
                            }
                            if let Some(at) = killed_at {
                                wake(at);
                            }
                            container.phase = Phase::Running {
                                since,
                                started_at,
                                exits_at,
                                killed_at,
                            };
                            break;
                        };
                        container.last_terminated = Some(Terminated {
                            exit_code,
                            reason,
                            started_at,
                            finished_at: wall_now(),
                        });
                        let delay = if crash_once {
                            options.start_delay
                        } else {
                            container.failures += 1;
                            backoff(container.failures, options)
                        };
                        container.phase = Phase::BackOff { until: now + delay };
                        wake(now + delay);
                        break;
                    }
                }
            }
        }
        next
    }

    /// The status the kubelet reports. `ready` is the verdict of the readiness rules.
    pub fn status(
        &self,
        previous: Option<&PodStatus>,
        ready: bool,
        host_ip: &str,
        now: Instant,
        options: &ClusterOptions,
    ) -> PodStatus {
        let initialized = self.initialized();
        let phase = if initialized { "Running" } else { "Pending" };
        let container_statuses: Vec<ContainerStatus> = self
            .containers
            .iter()
            .map(|c| {
                let (state, running) = match &c.phase {
                    Phase::Creating { .. } => (
                        waiting(
                            // Before init containers finish, kubectl shows PodInitializing.
                            if !initialized
                                && c.restart_count == 0
                                && !self.init_containers.is_empty()
                            {
                                "PodInitializing"
                            } else {
                                "ContainerCreating"
                            },
                            None,
                        ),
                        false,
                    ),
                    Phase::PullFailing { since } => {
                        let reason = if now.duration_since(*since) < options.pull_retry {
                            "ErrImagePull"
                        } else {
                            "ImagePullBackOff"
                        };
                        (
                            waiting(
                                reason,
                                Some(format!("Back-off pulling image \"{}\"", c.image)),
                            ),
                            false,
                        )
                    }
                    Phase::BackOff { .. } => (
                        waiting(
                            "CrashLoopBackOff",
                            Some(format!(
                                "back-off restarting failed container {} in pod",
                                c.name
                            )),
                        ),
                        false,
                    ),
                    Phase::Running { started_at, .. } => (
                        ContainerState {
                            running: Some(ContainerStateRunning {
                                started_at: Some(started_at.clone()),
                            }),
                            ..ContainerState::default()
                        },
                        true,
                    ),
                };
                ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: String::new(),
                    container_id: running.then(|| {
                        format!(
                            "containerd://{:016x}",
                            fnv(&format!("{}{}{}", self.ip, c.name, c.restart_count))
                        )
                    }),
                    ready: running && ready,
                    started: Some(running),
                    restart_count: c.restart_count,
                    state: Some(state),
                    last_state: c.last_terminated.as_ref().map(|t| ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: t.exit_code,
                            reason: Some(t.reason.to_owned()),
                            started_at: Some(t.started_at.clone()),
                            finished_at: Some(t.finished_at.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }
            })
            .collect();
        let init_statuses: Vec<ContainerStatus> = self
            .init_containers
            .iter()
            .map(|init| {
                let terminated = |code: i32, message: &str| ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                    message: (!message.is_empty()).then(|| message.to_owned()),
                    ..ContainerStateTerminated::default()
                };
                let (state, last_state) = match &init.ended {
                    Some((0, message)) => (
                        ContainerState {
                            terminated: Some(terminated(0, message)),
                            ..ContainerState::default()
                        },
                        None,
                    ),
                    Some((code, message)) => (
                        waiting(
                            "CrashLoopBackOff",
                            Some(format!(
                                "back-off restarting failed container {} in pod",
                                init.name
                            )),
                        ),
                        Some(ContainerState {
                            terminated: Some(terminated(*code, message)),
                            ..ContainerState::default()
                        }),
                    ),
                    None if initialized => (
                        ContainerState {
                            terminated: Some(terminated(0, "")),
                            ..ContainerState::default()
                        },
                        None,
                    ),
                    None => (waiting("PodInitializing", None), None),
                };
                ContainerStatus {
                    name: init.name.clone(),
                    image: init.image.clone(),
                    ready: matches!(init.ended, Some((0, _))) || initialized,
                    restart_count: init.restart_count,
                    state: Some(state),
                    last_state,
                    ..ContainerStatus::default()
                }
            })
            .collect();
        let containers_ready = ready && self.running();
        let previous_conditions: BTreeMap<String, PodCondition> = previous
            .and_then(|s| s.conditions.clone())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c))
            .collect();
        let condition = |type_: &str, ok: bool, reason: Option<&str>| {
            let status = if ok { "True" } else { "False" };
            let previous = previous_conditions.get(type_);
            let since = previous
                .filter(|p| p.status == status)
                .and_then(|p| p.last_transition_time.clone())
                .unwrap_or_else(wall_now);
            PodCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                last_transition_time: Some(since),
                reason: (!ok).then(|| reason.map(str::to_owned)).flatten(),
                ..PodCondition::default()
            }
        };
        let mut conditions = vec![
            condition("PodReadyToStartContainers", true, None),
            condition(
                "Initialized",
                initialized || self.init_containers.is_empty(),
                Some("ContainersNotInitialized"),
            ),
            condition("Ready", containers_ready, Some("ContainersNotReady")),
            condition(
                "ContainersReady",
                containers_ready,
                Some("ContainersNotReady"),
            ),
        ];
        if let Some(scheduled) = previous_conditions.get("PodScheduled") {
            conditions.push(scheduled.clone());
        }
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.to_owned()),
            host_ips: None,
            pod_ip: Some(self.ip.clone()),
            pod_ips: Some(vec![PodIP {
                ip: self.ip.clone(),
            }]),
            start_time: Some(self.started.clone()),
            container_statuses: Some(container_statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            qos_class: previous
                .and_then(|p| p.qos_class.clone())
                .or(Some("BestEffort".into())),
            ..PodStatus::default()
        }
    }
}

/// Keeps every container waiting until the init containers pass.
fn hold(containers: &mut [Container], now: Instant, options: &ClusterOptions) {
    for container in containers {
        if let Phase::Creating { until } = &mut container.phase {
            *until = (*until).max(now + options.start_delay);
        }
    }
}

fn init_retry(init: &InitContainer) -> Instant {
    init.retry_at.unwrap_or_else(Instant::now)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

/// The kubelet's restart back-off: base, doubling per consecutive failure, capped.
pub fn backoff(failures: u32, options: &ClusterOptions) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (options.crash_backoff * factor).min(options.max_backoff)
}

fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "charon", "image": "charon:1"}]}})).unwrap()
    }

    fn options() -> ClusterOptions {
        ClusterOptions::fast()
    }

    #[test]
    fn a_failing_init_container_holds_the_pod_until_it_passes() {
        let options = options();
        let t0 = Instant::now();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "export", "image": "old:1"}, {"name": "import", "image": "new:1"}],
            "containers": [{"name": "vc", "image": "new:1"}]}}))
        .unwrap();
        let mut runtime = PodRuntime::new(&pod, "10.0.0.1".into(), t0, &options);
        let failing = |name: &str, image: &str| {
            (name == "export" && image.starts_with("old")).then(|| (1, "no database".to_owned()))
        };
        let mut now = t0;
        for _ in 0..5 {
            let retry = runtime.advance_init(now, &failing, &options);
            runtime.advance(now, None, &|_| false, &options);
            now = retry.expect("a failing step is retried");
        }
        assert!(!runtime.running());
        let status = runtime.status(None, true, "10.1.0.1", now, &options);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let inits = status.init_container_statuses.unwrap();
        let export = &inits[0];
        assert_eq!(
            export
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = export
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(
            (last.exit_code, last.message.as_deref()),
            (1, Some("no database"))
        );
        assert!(export.restart_count >= 3);
        assert!(inits[1].state.as_ref().unwrap().waiting.is_some());
        // Fixed: the steps pass with what they print, and the pod starts.
        let passing = |name: &str, _: &str| (name == "import").then(|| (0, "imported".to_owned()));
        runtime.advance_init(now, &passing, &options);
        runtime.advance(now, None, &|_| false, &options);
        runtime.advance(now + options.start_delay, None, &|_| false, &options);
        assert!(runtime.running());
        let status = runtime.status(None, true, "10.1.0.1", now, &options);
        let inits = status.init_container_statuses.unwrap();
        let import = inits[1]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(
            (import.exit_code, import.message.as_deref()),
            (0, Some("imported"))
        );
    }

    #[test]
    fn a_container_starts_after_the_start_delay() {
        let options = options();
        let t0 = Instant::now();
        let mut runtime = PodRuntime::new(&pod(), "10.0.0.1".into(), t0, &options);
        let next = runtime.advance(t0, None, &|_| false, &options);
        assert_eq!(next, Some(t0 + options.start_delay));
        assert!(!runtime.running());
        runtime.advance(t0 + options.start_delay, None, &|_| false, &options);
        assert!(runtime.running());
        let status = runtime.status(None, true, "10.1.0.1", t0, &options);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.container_statuses.unwrap()[0].ready);
    }

    #[test]
    fn a_crash_loop_backs_off_longer_each_time_and_counts_restarts() {
        let options = options();
        let mut now = Instant::now();
        let mut runtime = PodRuntime::new(&pod(), "10.0.0.1".into(), now, &options);
        let mut faults = PodFaults::default();
        faults.crash_loop.insert(String::new(), false);
        let mut delays = Vec::new();
        let mut last_backoff_start = None;
        for _ in 0..200 {
            let Some(next) = runtime.advance(now, Some(&mut faults), &|_| false, &options) else {
                break;
            };
            if let Phase::BackOff { until } = runtime.containers[0].phase
                && last_backoff_start != Some(until)
            {
                delays.push(until - now);
                last_backoff_start = Some(until);
            }
            now = next;
            if runtime.containers[0].restart_count >= 3 {
                break;
            }
        }
        assert_eq!(runtime.containers[0].restart_count, 3);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
        assert!(delays[1] > delays[0]);
        let status = runtime.status(None, false, "h", now, &options);
        let container = &status.container_statuses.unwrap()[0];
        assert_eq!(
            container
                .last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Error")
        );
    }

    #[test]
    fn a_bad_image_waits_in_image_pull_back_off_until_fixed() {
        let options = options();
        let t0 = Instant::now();
        let mut runtime = PodRuntime::new(&pod(), "ip".into(), t0, &options);
        let bad = |image: &str| image.contains("charon");
        runtime.advance(t0 + options.start_delay, None, &bad, &options);
        let later = t0 + options.start_delay + options.pull_retry * 2;
        runtime.advance(later, None, &bad, &options);
        let status = runtime.status(None, true, "h", later, &options);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let state = status.container_statuses.unwrap()[0].state.clone().unwrap();
        assert_eq!(
            state.waiting.unwrap().reason.as_deref(),
            Some("ImagePullBackOff")
        );
        runtime.advance(later, None, &|_| false, &options);
        runtime.advance(later + options.start_delay, None, &|_| false, &options);
        assert!(runtime.running());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = options();
        assert_eq!(backoff(1, &options), options.crash_backoff);
        assert_eq!(backoff(2, &options), options.crash_backoff * 2);
        assert_eq!(backoff(30, &options), options.max_backoff);
    }
}
