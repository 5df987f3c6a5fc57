//! Faults a test (or `dvt-sim fault ...`) injects into the simulated cluster.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

fn default_namespace() -> String {
    "default".to_owned()
}

/// One fault, as sent to `POST /sim/v1/faults` (JSON, tagged by `kind`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Fault {
    /// The container (default: every container) exits with an error once, then restarts.
    CrashOnce {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
        #[serde(default)]
        container: Option<String>,
    },
    /// The container exits shortly after every start: CrashLoopBackOff with a growing restart
    /// count. With `oom`, every exit is an `OOMKilled`.
    CrashLoop {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
        #[serde(default)]
        container: Option<String>,
        #[serde(default)]
        oom: bool,
    },
    /// The pod's images cannot be pulled: ErrImagePull, then ImagePullBackOff.
    ImagePull {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
    },
    /// Every pod whose containers use an image containing `image` cannot pull it.
    BadImage {
        image: String,
    },
    /// The pod runs but its readiness probe fails.
    Unready {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
    },
    /// The pod's Charon reports itself not ready for `reason` (its `/readyz` fails, so the pod
    /// is not Ready, and `app_monitoring_readyz` says why), e.g. while its beacon node syncs.
    CharonNotReady {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
        reason: super::charon::NotReadyReason,
    },
    /// The pod's liveness probe fails: the kubelet kills and restarts its containers.
    Unlive {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
    },
    /// Clears every fault of a pod (the crash loop ends at the next start).
    Heal {
        #[serde(default = "default_namespace")]
        namespace: String,
        pod: String,
    },
    /// Clears a `BadImage` fault.
    FixImage {
        image: String,
    },
    /// Every init container named `container` (in an image containing `image`, when given)
    /// ends with `exitCode` and `message` as its termination message, in pods started from now
    /// on and in those still initialising. The simulator runs no script: what a step reports is
    /// what this says. Non-zero: the pod stays in `Init:CrashLoopBackOff`, its containers
    /// waiting.
    InitStep {
        container: String,
        #[serde(default)]
        image: Option<String>,
        #[serde(default)]
        exit_code: i32,
        #[serde(default)]
        message: String,
    },
    /// Forgets what `InitStep` said of `container`: it succeeds and reports nothing.
    ClearInitStep {
        container: String,
    },
    /// The node's kubelet stops reporting: NotReady, its pods lose readiness and stay bound.
    FailNode {
        node: String,
    },
    RestoreNode {
        node: String,
    },
    /// Every node in the zone fails.
    FailZone {
        zone: String,
    },
    RestoreZone {
        zone: String,
    },
    /// Faults of the API server itself, for a fraction of resource requests.
    Api(ApiFaults),
}

/// API server faults. Discovery and `/sim/` requests are never affected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiFaults {
    /// Fraction (0..=1) of requests answered `500 InternalError`.
    #[serde(default)]
    pub error_fraction: f64,
    /// Added to every resource request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0..=1) of watch streams closed early (after up to two seconds).
    #[serde(default)]
    pub watch_drop_fraction: f64,
    /// Requests of one client to one resource that answer late (a hung lease renewal of one
    /// replica, say), on top of `latencyMs`.
    #[serde(default)]
    pub slow_clients: Vec<SlowClient>,
    /// Resources (plurals, such as `secrets`) whose single-object GETs answer
    /// `500 InternalError`; lists and watches still work.
    #[serde(default)]
    pub failing_gets: Vec<String>,
}

/// Requests whose user agent contains `userAgentContains` to `resource` (a plural, such as
/// `leases`) wait `latencyMs` before they are served.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowClient {
    pub user_agent_contains: String,
    pub resource: String,
    pub latency_ms: u64,
}

/// What is wrong with one pod. Faults belong to one pod instance: a pod recreated under the
/// same name starts healthy (use `BadImage` for a failure that survives recreation).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PodFaults {
    /// The pod instance the faults apply to; bound to the first pod seen with the name.
    pub uid: Option<String>,
    /// Containers (empty string: all) to crash once at the next chance.
    pub crash_once: BTreeSet<String>,
    /// Containers (empty string: all) that crash after every start, and whether as OOM kills.
    pub crash_loop: BTreeMap<String, bool>,
    pub image_pull: bool,
    pub unready: bool,
    pub unlive: bool,
    /// What the pod's simulated Charon reports as the reason it is not ready.
    pub charon_not_ready: Option<super::charon::NotReadyReason>,
}

impl PodFaults {
    pub fn is_empty(&self) -> bool {
        PodFaults {
            uid: None,
            ..self.clone()
        } == PodFaults::default()
    }
}

/// How an init container ends: its exit code and termination message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InitStepOutcome {
    pub image: Option<String>,
    pub exit_code: i32,
    pub message: String,
}

/// Every fault in force.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Faults {
    pub pods: BTreeMap<(String, String), PodFaults>,
    pub bad_images: BTreeSet<String>,
    /// How named init containers end (see [`Fault::InitStep`]).
    pub init_steps: BTreeMap<String, InitStepOutcome>,
    pub failed_nodes: BTreeSet<String>,
    pub api: ApiFaults,
}

impl Faults {
    /// Applies a fault; zone faults need the nodes of the zone.
    pub fn apply(&mut self, fault: Fault, nodes_in_zone: impl Fn(&str) -> Vec<String>) {
        let pod = |namespace: &str, pod: &str| (namespace.to_owned(), pod.to_owned());
        match fault {
            Fault::CrashOnce {
                namespace,
                pod: name,
                container,
            } => {
                self.pods
                    .entry(pod(&namespace, &name))
                    .or_default()
                    .crash_once
                    .insert(container.unwrap_or_default());
            }
            Fault::CrashLoop {
                namespace,
                pod: name,
                container,
                oom,
            } => {
                self.pods
                    .entry(pod(&namespace, &name))
                    .or_default()
                    .crash_loop
                    .insert(container.unwrap_or_default(), oom);
            }
            Fault::ImagePull {
                namespace,
                pod: name,
            } => {
                self.pods
                    .entry(pod(&namespace, &name))
                    .or_default()
                    .image_pull = true
            }
            Fault::BadImage { image } => {
                self.bad_images.insert(image);
            }
            Fault::FixImage { image } => {
                self.bad_images.remove(&image);
            }
            Fault::InitStep {
                container,
                image,
                exit_code,
                message,
            } => {
                self.init_steps.insert(
                    container,
                    InitStepOutcome {
                        image,
                        exit_code,
                        message,
                    },
                );
            }
            Fault::ClearInitStep { container } => {
                self.init_steps.remove(&container);
            }
            Fault::Unready {
                namespace,
                pod: name,
            } => self.pods.entry(pod(&namespace, &name)).or_default().unready = true,
            Fault::Unlive {
                namespace,
                pod: name,
            } => self.pods.entry(pod(&namespace, &name)).or_default().unlive = true,
            Fault::CharonNotReady {
                namespace,
                pod: name,
                reason,
            } => {
                self.pods
                    .entry(pod(&namespace, &name))
                    .or_default()
                    .charon_not_ready = Some(reason)
            }
            Fault::Heal {
                namespace,
                pod: name,
            } => {
                self.pods.remove(&pod(&namespace, &name));
            }
            Fault::FailNode { node } => {
                self.failed_nodes.insert(node);
            }
            Fault::RestoreNode { node } => {
                self.failed_nodes.remove(&node);
            }
            Fault::FailZone { zone } => self.failed_nodes.extend(nodes_in_zone(&zone)),
            Fault::RestoreZone { zone } => {
                for node in nodes_in_zone(&zone) {
                    self.failed_nodes.remove(&node);
                }
            }
            Fault::Api(api) => self.api = api,
        }
        self.pods.retain(|_, f| !f.is_empty());
    }

    pub fn of_pod(&self, namespace: &str, name: &str) -> Option<&PodFaults> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_the_json_the_cli_sends() {
        let fault: Fault =
            serde_json::from_str(r#"{"kind": "crashLoop", "pod": "dv-alpha-0", "oom": true}"#)
                .unwrap();
        assert_eq!(
            fault,
            Fault::CrashLoop {
                namespace: "default".into(),
                pod: "dv-alpha-0".into(),
                container: None,
                oom: true
            }
        );
        let api: Fault =
            serde_json::from_str(r#"{"kind": "api", "errorFraction": 0.1, "latencyMs": 5}"#)
                .unwrap();
        assert_eq!(
            api,
            Fault::Api(ApiFaults {
                error_fraction: 0.1,
                latency_ms: 5,
                watch_drop_fraction: 0.0,
                slow_clients: Vec::new(),
                failing_gets: Vec::new(),
            })
        );
        let slow: Fault = serde_json::from_str(
            r#"{"kind": "api", "slowClients": [{"userAgentContains": "replica-a", "resource": "leases", "latencyMs": 60000}]}"#,
        )
        .unwrap();
        let Fault::Api(faults) = slow else {
            panic!("an API fault")
        };
        assert_eq!(
            faults.slow_clients,
            [SlowClient {
                user_agent_contains: "replica-a".into(),
                resource: "leases".into(),
                latency_ms: 60_000
            }]
        );
    }

    #[test]
    fn zone_faults_fail_and_restore_every_node_of_the_zone_and_heal_clears_a_pod() {
        let mut faults = Faults::default();
        let zone = |z: &str| vec![format!("{z}-1"), format!("{z}-2")];
        faults.apply(Fault::FailZone { zone: "a".into() }, zone);
        assert_eq!(faults.failed_nodes.len(), 2);
        faults.apply(Fault::RestoreNode { node: "a-1".into() }, zone);
        assert_eq!(faults.failed_nodes, ["a-2".to_owned()].into());
        faults.apply(Fault::RestoreZone { zone: "a".into() }, zone);
        assert!(faults.failed_nodes.is_empty());
        faults.apply(
            Fault::Unready {
                namespace: "ns".into(),
                pod: "p".into(),
            },
            zone,
        );
        assert!(faults.of_pod("ns", "p").is_some_and(|f| f.unready));
        faults.apply(
            Fault::Heal {
                namespace: "ns".into(),
                pod: "p".into(),
            },
            zone,
        );
        assert!(faults.of_pod("ns", "p").is_none());
    }
}
