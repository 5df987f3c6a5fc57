//! The simulated cluster inside the API server: nodes in zones, a StatefulSet controller, a
//! scheduler, kubelets, node lifecycle, pod garbage collection and PodDisruptionBudget status,
//! plus injected faults. Everything it does is a write through the store, so watchers, kubectl
//! and the timeline see it like the work of real controllers.
//!
//! One loop runs every controller in turn whenever the store changes or a timer (a container
//! starting, a back-off ending) is due; each controller is level-triggered over the whole store.

pub mod access;
pub mod faults;
pub mod kubelet;
pub mod scheduler;
pub mod statefulset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, PersistentVolumeClaim, Pod,
    PodCondition, Taint,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::{Store, Subresource};
use access::{Access, Types};
use faults::{Fault, Faults};
use kubelet::PodRuntime;
use scheduler::{Placed, World, ZONE_LABEL};

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// The zone a bound volume lives in (set when its first pod is scheduled, as a zonal
/// WaitForFirstConsumer volume would be provisioned there).
pub const VOLUME_ZONE_ANNOTATION: &str = "dvt-sim.io/zone";

/// How a pod's readiness depends on other pods, to mimic Charon: its `/readyz` fails until
/// enough peers are connected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessRule {
    /// Pods with the same value of this label (in one namespace) form a group.
    pub group_label: String,
    /// A pod of a group is ready only while at least this many pods of its group run. Read
    /// from the pod's `min_running_annotation` when set, else this number.
    pub min_running: usize,
    #[serde(default)]
    pub min_running_annotation: Option<String>,
}

/// Shape and pace of the simulated cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub zones: usize,
    /// Allocatable per node.
    pub node_cpu: String,
    pub node_memory: String,
    pub node_pods: usize,
    /// From binding to containers running (image pull and start).
    pub start_delay: Duration,
    /// From running to ready.
    pub ready_delay: Duration,
    /// How long a crash-looping container runs before it exits.
    pub crash_after: Duration,
    /// First restart back-off; doubles per consecutive failure up to `max_backoff`.
    pub crash_backoff: Duration,
    pub max_backoff: Duration,
    /// A container that ran this long without failing starts its back-off afresh.
    pub backoff_reset: Duration,
    /// From a failing liveness probe to the kill.
    pub liveness_kill_after: Duration,
    /// Between image pull attempts.
    pub pull_retry: Duration,
    /// From a delete to the kubelet confirming the pod stopped.
    pub termination_delay: Duration,
    pub readiness_rules: Vec<ReadinessRule>,
}

impl Default for ClusterOptions {
    /// A pace a person can follow with `kubectl get pods -w`.
    fn default() -> Self {
        ClusterOptions {
            nodes: 8,
            zones: 4,
            node_cpu: "8".into(),
            node_memory: "32Gi".into(),
            node_pods: 110,
            start_delay: Duration::from_millis(1500),
            ready_delay: Duration::from_millis(1500),
            crash_after: Duration::from_secs(2),
            crash_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            backoff_reset: Duration::from_secs(60),
            liveness_kill_after: Duration::from_secs(5),
            pull_retry: Duration::from_secs(2),
            termination_delay: Duration::from_millis(500),
            readiness_rules: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// A fast pace for tests.
    pub fn fast() -> Self {
        ClusterOptions {
            start_delay: Duration::from_millis(50),
            ready_delay: Duration::from_millis(50),
            crash_after: Duration::from_millis(50),
            crash_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            backoff_reset: Duration::from_secs(2),
            liveness_kill_after: Duration::from_millis(150),
            pull_retry: Duration::from_millis(100),
            termination_delay: Duration::from_millis(20),
            ..ClusterOptions::default()
        }
    }

    /// `zone-a`, `zone-b`, ...
    pub fn zone_name(index: usize) -> String {
        let letter = (b'a' + (index % 26) as u8) as char;
        if index < 26 {
            format!("zone-{letter}")
        } else {
            format!("zone-{letter}{}", index / 26)
        }
    }
}

/// The controllers' shared state.
struct Inner {
    access: Access,
    types: Types,
    options: ClusterOptions,
    faults: Mutex<Faults>,
    runtimes: Mutex<HashMap<String, PodRuntime>>,
    /// When a deleted pod's kubelet confirms termination, by pod uid.
    terminating: Mutex<HashMap<String, Instant>>,
    next_ip: Mutex<u32>,
    wake: Notify,
}

/// A handle on the running cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Creates the nodes and starts the controllers on the current runtime. They stop when the
    /// returned task is aborted.
    pub fn start(
        store: Arc<Store>,
        options: ClusterOptions,
    ) -> (Cluster, tokio::task::JoinHandle<()>) {
        let access = Access::new(store);
        let inner = Arc::new(Inner {
            types: access.types(),
            access,
            options,
            faults: Mutex::new(Faults::default()),
            runtimes: Mutex::new(HashMap::new()),
            terminating: Mutex::new(HashMap::new()),
            next_ip: Mutex::new(0),
            wake: Notify::new(),
        });
        inner.create_nodes();
        let cluster = Cluster {
            inner: inner.clone(),
        };
        let task = tokio::spawn(run(inner));
        (cluster, task)
    }

    /// Applies a fault; the controllers act on it at once.
    pub fn inject(&self, fault: Fault) {
        let nodes: Vec<Arc<Node>> = self.inner.access.list(&self.inner.types.nodes);
        let in_zone = |zone: &str| {
            nodes
                .iter()
                .filter(|n| {
                    n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(ZONE_LABEL))
                        .map(String::as_str)
                        == Some(zone)
                })
                .filter_map(|n| n.metadata.name.clone())
                .collect()
        };
        lock(&self.inner.faults).apply(fault, in_zone);
        self.inner.wake.notify_one();
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.inner.options
    }
}

async fn run(inner: Arc<Inner>) {
    let mut changes = inner.access.store.subscribe();
    loop {
        let started = Instant::now();
        let next = inner.pass();
        // A pass reads every object; with thousands of pods it takes long enough that passing
        // after every write would starve the API server. Resting as long as the pass took
        // keeps the controllers to at most half of the CPU, and costs nothing when small.
        let rest = started.elapsed().max(Duration::from_millis(5));
        let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        tokio::select! {
            _ = changes.recv() => {
                // Let a burst of writes land before looking again.
                tokio::time::sleep(rest).await;
                while changes.try_recv().is_ok() {}
            }
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

const KUBELET: &str = "kubelet";
const SCHEDULER: &str = "default-scheduler";
const STATEFULSET_CONTROLLER: &str = "statefulset-controller";
const NODE_CONTROLLER: &str = "node-lifecycle-controller";
const POD_GC: &str = "pod-garbage-collector";
const DISRUPTION_CONTROLLER: &str = "disruption-controller";

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

impl Inner {
    fn create_nodes(&self) {
        let zones = self.options.zones.max(1);
        for index in 0..self.options.nodes {
            let zone = ClusterOptions::zone_name(index % zones);
            let name = format!("sim-{zone}-{}", index / zones + 1);
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        (ZONE_LABEL.to_owned(), zone.clone()),
                        (
                            "topology.kubernetes.io/region".to_owned(),
                            "sim-region".to_owned(),
                        ),
                        (HOSTNAME_LABEL.to_owned(), name.clone()),
                        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                        ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                        (
                            "node.kubernetes.io/instance-type".to_owned(),
                            "sim.large".to_owned(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec::default()),
                status: None,
            };
            if let Err(error) = self
                .access
                .create(&self.types.nodes, "", &node, NODE_CONTROLLER)
            {
                tracing::warn!(node = %name, %error, "cannot create a simulated node");
            }
        }
    }

    /// Makes `set` the controller of each object (an owner reference added); returns the
    /// stored copies of those adopted.
    fn adopt<K>(
        &self,
        set: &StatefulSet,
        rt: &crate::registry::ResourceType,
        objects: Vec<&K>,
        metadata: fn(&mut K) -> &mut ObjectMeta,
    ) -> Vec<K>
    where
        K: Clone + Serialize + serde::de::DeserializeOwned,
    {
        let mut adopted = Vec::new();
        for object in objects {
            let mut owned = object.clone();
            let meta = metadata(&mut owned);
            let (namespace, name) = (namespace_of(meta), name_of(meta));
            meta.owner_references
                .get_or_insert_with(Vec::new)
                .push(statefulset::owner_reference(set));
            if let Ok(stored) = self.access.replace(
                rt,
                &namespace,
                &name,
                &owned,
                Subresource::Main,
                STATEFULSET_CONTROLLER,
            ) && let Ok(stored) = serde_json::from_value::<K>(stored)
            {
                adopted.push(stored);
            }
        }
        adopted
    }

    /// The external resizer and the kubelet's online expansion, done at once: a bound claim
    /// whose request grew gets that capacity (kube-apiserver's resize admission already refused
    /// a claim whose StorageClass does not allow expansion).
    fn expand_volumes(&self) {
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        for claim in claims {
            let requested = claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .cloned();
            let Some(requested) = requested else { continue };
            let Some(status) = claim.status.as_ref() else {
                continue;
            };
            let capacity = status.capacity.as_ref().and_then(|c| c.get("storage"));
            let bigger = match (capacity, crate::validation::quantity_bytes(&requested.0)) {
                (Some(capacity), Some(wanted)) => {
                    crate::validation::quantity_bytes(&capacity.0).is_some_and(|have| have < wanted)
                }
                _ => false,
            };
            if status.phase.as_deref() != Some("Bound") || !bigger {
                continue;
            }
            let mut expanded = Arc::unwrap_or_clone(claim.clone());
            if let Some(status) = expanded.status.as_mut() {
                status
                    .capacity
                    .get_or_insert_with(Default::default)
                    .insert("storage".to_owned(), requested);
            }
            let _ = self.access.replace(
                &self.types.pvcs,
                &namespace_of(&claim.metadata),
                &name_of(&claim.metadata),
                &expanded,
                Subresource::Status,
                "volume-expander",
            );
        }
    }

    /// One look at everything; returns when the next timer is due.
    fn pass(&self) -> Option<Instant> {
        let now = Instant::now();
        let failed: BTreeSet<String> = lock(&self.faults).failed_nodes.clone();
        let nodes = self.node_lifecycle(&failed);
        let node_ready = |node: &Node| {
            node.metadata
                .name
                .as_ref()
                .is_some_and(|n| !failed.contains(n))
        };
        self.pod_gc(&nodes, &failed);
        self.statefulsets();
        self.expand_volumes();
        self.schedule(&nodes, &node_ready);
        let next = self.kubelets(&nodes, &failed, now);
        self.disruption_budgets();
        next
    }

    /// Node status and taints follow the node's health.
    fn node_lifecycle(&self, failed: &BTreeSet<String>) -> Vec<Arc<Node>> {
        let nodes: Vec<Arc<Node>> = self.access.list(&self.types.nodes);
        for (index, node) in nodes.iter().enumerate() {
            let name = name_of(&node.metadata);
            let healthy = !failed.contains(&name);
            let mut updated = Arc::unwrap_or_clone(node.clone());
            let previous = node.status.clone().unwrap_or_default();
            let ready_before = previous
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone());
            let ready_now = if healthy { "True" } else { "Unknown" };
            let transition = if ready_before.as_deref() == Some(ready_now) {
                previous
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Ready")
                    .and_then(|c| c.last_transition_time.clone())
            } else {
                None
            }
            .unwrap_or_else(|| kubelet::time(k8s_openapi::jiff::Timestamp::now()));
            let pressure = |type_: &str, reason: &str| NodeCondition {
                type_: type_.to_owned(),
                status: if healthy { "False" } else { "Unknown" }.to_owned(),
                reason: Some(if healthy {
                    reason.to_owned()
                } else {
                    "NodeStatusUnknown".to_owned()
                }),
                message: Some(if healthy {
                    format!(
                        "kubelet has {}",
                        reason.trim_start_matches("KubeletHas").to_lowercase()
                    )
                } else {
                    "Kubelet stopped posting node status.".to_owned()
                }),
                last_transition_time: Some(transition.clone()),
                last_heartbeat_time: Some(transition.clone()),
            };
            let allocatable = BTreeMap::from([
                ("cpu".to_owned(), Quantity(self.options.node_cpu.clone())),
                (
                    "memory".to_owned(),
                    Quantity(self.options.node_memory.clone()),
                ),
                (
                    "pods".to_owned(),
                    Quantity(self.options.node_pods.to_string()),
                ),
                ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
            ]);
            updated.status = Some(NodeStatus {
                allocatable: Some(allocatable.clone()),
                capacity: Some(allocatable),
                conditions: Some(vec![
                    pressure("MemoryPressure", "KubeletHasSufficientMemory"),
                    pressure("DiskPressure", "KubeletHasNoDiskPressure"),
                    pressure("PIDPressure", "KubeletHasSufficientPID"),
                    NodeCondition {
                        type_: "Ready".into(),
                        status: ready_now.into(),
                        reason: Some(
                            if healthy {
                                "KubeletReady"
                            } else {
                                "NodeStatusUnknown"
                            }
                            .into(),
                        ),
                        message: Some(
                            if healthy {
                                "kubelet is posting ready status"
                            } else {
                                "Kubelet stopped posting node status."
                            }
                            .into(),
                        ),
                        last_transition_time: Some(transition.clone()),
                        last_heartbeat_time: Some(transition),
                    },
                ]),
                addresses: Some(vec![
                    k8s_openapi::api::core::v1::NodeAddress {
                        type_: "InternalIP".into(),
                        address: format!("10.0.{}.{}", index / 250, index % 250 + 1),
                    },
                    k8s_openapi::api::core::v1::NodeAddress {
                        type_: "Hostname".into(),
                        address: name.clone(),
                    },
                ]),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".into(),
                    container_runtime_version: "containerd://2.0.0".into(),
                    kubelet_version: "v1.33.0-dvt-sim".into(),
                    kube_proxy_version: "v1.33.0-dvt-sim".into(),
                    operating_system: "linux".into(),
                    os_image: "dvt-sim".into(),
                    kernel_version: "6.1.0".into(),
                    boot_id: String::new(),
                    machine_id: String::new(),
                    system_uuid: String::new(),
                    swap: None,
                }),
                ..previous.clone()
            });
            let mut taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let had_unreachable = taints.iter().any(|t| t.key == UNREACHABLE_TAINT);
            if healthy {
                taints.retain(|t| t.key != UNREACHABLE_TAINT);
            } else if !had_unreachable {
                for effect in ["NoSchedule", "NoExecute"] {
                    taints.push(Taint {
                        key: UNREACHABLE_TAINT.into(),
                        effect: effect.into(),
                        time_added: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                        value: None,
                    });
                }
            }
            let mut with_taints = Arc::unwrap_or_clone(node.clone());
            with_taints
                .spec
                .get_or_insert_with(NodeSpec::default)
                .taints = (!taints.is_empty()).then_some(taints);
            if with_taints.spec != node.spec
                && let Err(error) = self.access.replace(
                    &self.types.nodes,
                    "",
                    &name,
                    &with_taints,
                    Subresource::Main,
                    NODE_CONTROLLER,
                )
            {
                tracing::debug!(node = %name, %error, "node taints not updated; next pass");
            }
            if updated.status != node.status
                && let Err(error) = self.access.replace(
                    &self.types.nodes,
                    "",
                    &name,
                    &updated,
                    Subresource::Status,
                    if healthy { KUBELET } else { NODE_CONTROLLER },
                )
            {
                tracing::debug!(node = %name, %error, "node status not updated; next pass");
            }
        }
        self.access.list(&self.types.nodes)
    }

    /// Pods whose node is gone, or out of service and not ready, are removed (PodGC).
    fn pod_gc(&self, nodes: &[Arc<Node>], failed: &BTreeSet<String>) {
        let by_name: BTreeMap<String, &Node> = nodes
            .iter()
            .map(|n| (name_of(&n.metadata), n.as_ref()))
            .collect();
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        for pod in pods {
            let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let out_of_service = by_name.get(&node_name).is_some_and(|node| {
                failed.contains(&node_name)
                    && node
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
            });
            if !by_name.contains_key(&node_name) || out_of_service {
                self.access.store.force_delete_pod(
                    &namespace_of(&pod.metadata),
                    &name_of(&pod.metadata),
                    POD_GC,
                );
            }
        }
    }

    fn statefulsets(&self) {
        let sets: Vec<Arc<StatefulSet>> = self.access.list(&self.types.statefulsets);
        if sets.is_empty() {
            return;
        }
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let revisions: Vec<Arc<ControllerRevision>> = self.access.list(&self.types.revisions);
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        let without_controller = |meta: &ObjectMeta| {
            meta.deletion_timestamp.is_none()
                && !meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true))
        };
        let orphan_pods: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|p: &&Pod| without_controller(&p.metadata))
            .collect();
        let orphan_revisions: Vec<&ControllerRevision> = revisions
            .iter()
            .map(AsRef::as_ref)
            .filter(|r: &&ControllerRevision| without_controller(&r.metadata))
            .collect();
        for set in &sets {
            if set.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let namespace = namespace_of(&set.metadata);
            let uid = set.metadata.uid.clone().unwrap_or_default();
            let owned_by_set = |meta: &ObjectMeta| {
                meta.owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            };
            // Adoption, as the StatefulSet controller's ControllerRefManager does: a pod named
            // after one of the set's ordinals, and a revision, that match its selector and have no
            // controller (their old set was deleted with `propagationPolicy: Orphan`) become its
            // own; the pod keeps running. Orphans are few (found once per pass, above).
            let selector = set
                .spec
                .as_ref()
                .and_then(|s| serde_json::to_value(&s.selector).ok())
                .unwrap_or_default();
            let set_name = name_of(&set.metadata);
            let adoptable = |meta: &ObjectMeta| {
                namespace_of(meta) == namespace
                    && crate::selectors::label_selector_matches(
                        &selector,
                        &serde_json::json!({"metadata": {"labels": meta.labels}}),
                    )
            };
            let candidates: Vec<&Pod> = orphan_pods
                .iter()
                .copied()
                .filter(|p| {
                    adoptable(&p.metadata)
                        && name_of(&p.metadata)
                            .strip_prefix(&format!("{set_name}-"))
                            .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
                })
                .collect();
            let adopted_pods = self.adopt(set, &self.types.pods, candidates, |p| &mut p.metadata);
            let candidates: Vec<&ControllerRevision> = orphan_revisions
                .iter()
                .copied()
                .filter(|r| adoptable(&r.metadata))
                .collect();
            let adopted_revisions =
                self.adopt(set, &self.types.revisions, candidates, |r| &mut r.metadata);
            let set_pods: Vec<&Pod> = pods
                .iter()
                .map(AsRef::as_ref)
                .filter(|p: &&Pod| {
                    namespace_of(&p.metadata) == namespace && owned_by_set(&p.metadata)
                })
                .chain(adopted_pods.iter())
                .collect();
            let set_revisions: Vec<&ControllerRevision> = revisions
                .iter()
                .map(AsRef::as_ref)
                .filter(|r: &&ControllerRevision| {
                    namespace_of(&r.metadata) == namespace && owned_by_set(&r.metadata)
                })
                .chain(adopted_revisions.iter())
                .collect();
            let claim_names: BTreeSet<String> = claims
                .iter()
                .filter(|c| namespace_of(&c.metadata) == namespace)
                .map(|c| name_of(&c.metadata))
                .collect();
            let plan = statefulset::plan(set, &set_pods, &claim_names, &set_revisions);
            if let Some(revision) = &plan.create_revision
                && let Err(error) = self.access.create(
                    &self.types.revisions,
                    &namespace,
                    revision,
                    STATEFULSET_CONTROLLER,
                )
            {
                tracing::debug!(%error, "revision not created; next pass");
            }
            for claim in &plan.create_claims {
                let mut claim = claim.clone();
                claim.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
                    phase: Some("Bound".into()),
                    access_modes: claim.spec.as_ref().and_then(|s| s.access_modes.clone()),
                    capacity: claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.resources.as_ref())
                        .and_then(|r| r.requests.clone()),
                    ..Default::default()
                });
                if let Some(spec) = claim.spec.as_mut() {
                    spec.volume_name = Some(format!("pvc-{}", name_of(&claim.metadata)));
                }
                match self.access.create(
                    &self.types.pvcs,
                    &namespace,
                    &claim,
                    STATEFULSET_CONTROLLER,
                ) {
                    Ok(created) => {
                        // The provisioner binds it at once; status goes through /status.
                        if let Ok(mut stored) =
                            serde_json::from_value::<PersistentVolumeClaim>(created)
                        {
                            stored.status = claim.status.clone();
                            let _ = self.access.replace(
                                &self.types.pvcs,
                                &namespace,
                                &name_of(&claim.metadata),
                                &stored,
                                Subresource::Status,
                                "persistentvolume-binder-controller",
                            );
                        }
                    }
                    Err(error) => tracing::debug!(%error, "claim not created; next pass"),
                }
            }
            for pod in &plan.create_pods {
                if let Err(error) =
                    self.access
                        .create(&self.types.pods, &namespace, pod, STATEFULSET_CONTROLLER)
                {
                    tracing::debug!(%error, "pod not created; next pass");
                }
            }
            for name in &plan.delete_pods {
                let options = crate::store::DeleteOptions {
                    actor: STATEFULSET_CONTROLLER.into(),
                    ..Default::default()
                };
                let _ = self
                    .access
                    .store
                    .delete(&self.types.pods, &namespace, name, &options);
            }
            if set.status.as_ref() != Some(&plan.status) {
                let mut updated = Arc::unwrap_or_clone(set.clone());
                updated.status = Some(plan.status.clone());
                let _ = self.access.replace(
                    &self.types.statefulsets,
                    &namespace,
                    &name_of(&set.metadata),
                    &updated,
                    Subresource::Status,
                    STATEFULSET_CONTROLLER,
                );
            }
        }
    }

    fn schedule(&self, nodes: &[Arc<Node>], node_ready: &dyn Fn(&Node) -> bool) {
        // Nodes are few: the scheduler's plain copies cost nothing next to the pods.
        let nodes: Vec<Node> = nodes.iter().map(|n| Node::clone(n)).collect();
        let nodes = nodes.as_slice();
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let pending: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|p: &&Pod| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        let mut placed_pods: Vec<(Pod, String)> = pods
            .iter()
            .filter_map(|p| Some((Pod::clone(p), p.spec.as_ref()?.node_name.clone()?)))
            .collect();
        for pod in pending {
            let namespace = namespace_of(&pod.metadata);
            let claim_names: Vec<String> = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.clone())
                })
                .collect();
            let volume_zones: BTreeSet<String> = claims
                .iter()
                .filter(|c| {
                    namespace_of(&c.metadata) == namespace
                        && claim_names.contains(&name_of(&c.metadata))
                })
                .filter_map(|c| {
                    c.metadata
                        .annotations
                        .as_ref()?
                        .get(VOLUME_ZONE_ANNOTATION)
                        .cloned()
                })
                .collect();
            let placed: Vec<Placed<'_>> = placed_pods
                .iter()
                .map(|(p, n)| Placed { pod: p, node: n })
                .collect();
            let world = World {
                nodes,
                placed: &placed,
                ready: node_ready,
                volume_zones: &volume_zones,
            };
            let decision = scheduler::schedule(pod, &world);
            let mut updated = pod.clone();
            let condition = match &decision {
                Ok(_) => PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                    ..PodCondition::default()
                },
                Err(misfits) => PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(scheduler::unschedulable_message(nodes.len(), misfits)),
                    last_transition_time: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                    ..PodCondition::default()
                },
            };
            let previous = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
            let unchanged = previous
                .is_some_and(|p| p.status == condition.status && p.message == condition.message);
            let status = updated.status.get_or_insert_with(Default::default);
            status.phase = Some("Pending".into());
            let mut conditions: Vec<PodCondition> = status
                .conditions
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.type_ != "PodScheduled")
                .collect();
            conditions.push(if unchanged {
                previous.cloned().unwrap_or(condition)
            } else {
                condition
            });
            status.conditions = Some(conditions);
            let name = name_of(&pod.metadata);
            match decision {
                Ok(node) => {
                    let mut bound = updated.clone();
                    if let Some(spec) = bound.spec.as_mut() {
                        spec.node_name = Some(node.clone());
                    }
                    // Binding (pods/binding) then the PodScheduled condition (status), as the
                    // scheduler does.
                    match self
                        .access
                        .store
                        .bind(&namespace, &name, &node, SCHEDULER, SCHEDULER)
                    {
                        Ok(stored) => {
                            if let Ok(mut stored) = serde_json::from_value::<Pod>(stored) {
                                stored.status = updated.status.clone();
                                let _ = self.access.replace(
                                    &self.types.pods,
                                    &namespace,
                                    &name,
                                    &stored,
                                    Subresource::Status,
                                    SCHEDULER,
                                );
                            }
                            self.pin_volumes(nodes, &namespace, &claim_names, &claims, &node);
                            placed_pods.push((bound, node));
                        }
                        Err(error) => {
                            tracing::debug!(pod = %name, %error, "binding failed; next pass")
                        }
                    }
                }
                Err(_) if !unchanged => {
                    let _ = self.access.replace(
                        &self.types.pods,
                        &namespace,
                        &name,
                        &updated,
                        Subresource::Status,
                        SCHEDULER,
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Records the zone of a pod's first node on its claims: the volume now lives there.
    fn pin_volumes(
        &self,
        nodes: &[Node],
        namespace: &str,
        claim_names: &[String],
        claims: &[Arc<PersistentVolumeClaim>],
        node: &str,
    ) {
        let Some(zone) = nodes
            .iter()
            .find(|n| name_of(&n.metadata) == node)
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        else {
            return;
        };
        for claim in claims.iter().filter(|c| {
            namespace_of(&c.metadata) == namespace && claim_names.contains(&name_of(&c.metadata))
        }) {
            if claim
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(VOLUME_ZONE_ANNOTATION))
            {
                continue;
            }
            let mut pinned = Arc::unwrap_or_clone(claim.clone());
            let annotations = pinned
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new);
            annotations.insert(VOLUME_ZONE_ANNOTATION.into(), zone.clone());
            annotations.insert("volume.kubernetes.io/selected-node".into(), node.to_owned());
            let _ = self.access.replace(
                &self.types.pvcs,
                namespace,
                &name_of(&claim.metadata),
                &pinned,
                Subresource::Main,
                SCHEDULER,
            );
        }
    }

    fn kubelets(
        &self,
        nodes: &[Arc<Node>],
        failed: &BTreeSet<String>,
        now: Instant,
    ) -> Option<Instant> {
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let host_ip: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| {
                let ip = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                (name_of(&n.metadata), ip)
            })
            .collect();
        let mut next: Option<Instant> = None;
        let mut wake = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let mut runtimes = lock(&self.runtimes);
        let live_uids: BTreeSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        runtimes.retain(|uid, _| live_uids.contains(uid));
        lock(&self.terminating).retain(|uid, _| live_uids.contains(uid));

        // First advance every container model, then judge readiness (which may depend on
        // which pods of a group run), then report.
        let mut on_healthy_nodes: Vec<&Pod> = Vec::new();
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let (Some(uid), namespace, name) = (
                pod.metadata.uid.clone(),
                namespace_of(&pod.metadata),
                name_of(&pod.metadata),
            ) else {
                continue;
            };
            if failed.contains(&node) || !host_ip.contains_key(&node) {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                let mut terminating = lock(&self.terminating);
                let done_at = *terminating
                    .entry(uid.clone())
                    .or_insert(now + self.options.termination_delay);
                if now >= done_at {
                    drop(terminating);
                    self.access
                        .store
                        .force_delete_pod(&namespace, &name, KUBELET);
                } else {
                    wake(done_at);
                }
                continue;
            }
            let runtime = runtimes.entry(uid).or_insert_with(|| {
                let mut ip = lock(&self.next_ip);
                *ip += 1;
                PodRuntime::new(
                    pod,
                    format!("10.244.{}.{}", *ip / 250, *ip % 250 + 1),
                    now,
                    &self.options,
                )
            });
            let mut faults = lock(&self.faults);
            let key = (namespace.clone(), name.clone());
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            let stale = faults.pods.get_mut(&key).is_some_and(|f| match &f.uid {
                None => {
                    f.uid = Some(pod_uid.clone());
                    false
                }
                Some(bound) => *bound != pod_uid,
            });
            if stale {
                faults.pods.remove(&key);
            }
            let bad_images = faults.bad_images.clone();
            let is_bad = |image: &str| bad_images.iter().any(|b| image.contains(b.as_str()));
            if let Some(at) =
                runtime.advance(now, faults.pods.get_mut(&key), &is_bad, &self.options)
            {
                wake(at);
            }
            faults.pods.retain(|_, f| !f.is_empty());
            on_healthy_nodes.push(pod);
        }

        // Which pods run, for the readiness rules.
        let running = |pod: &Pod| {
            pod.metadata
                .uid
                .as_ref()
                .and_then(|u| runtimes.get(u))
                .is_some_and(PodRuntime::running)
        };
        let mut running_in_group: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for pod in &on_healthy_nodes {
            if !running(pod) {
                continue;
            }
            for rule in &self.options.readiness_rules {
                if let Some(group) = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&rule.group_label))
                {
                    *running_in_group
                        .entry((
                            namespace_of(&pod.metadata),
                            rule.group_label.clone(),
                            group.clone(),
                        ))
                        .or_default() += 1;
                }
            }
        }
        let faults = lock(&self.faults).clone();
        for pod in on_healthy_nodes {
            let namespace = namespace_of(&pod.metadata);
            let name = name_of(&pod.metadata);
            let Some(runtime) = pod.metadata.uid.as_ref().and_then(|u| runtimes.get(u)) else {
                continue;
            };
            let running_long_enough = runtime.containers.iter().all(|c| match &c.phase {
                kubelet::Phase::Running { since, .. } => {
                    let ready_at = *since + self.options.ready_delay;
                    if now < ready_at {
                        wake(ready_at);
                    }
                    now >= ready_at
                }
                _ => false,
            });
            let rules_allow = self.options.readiness_rules.iter().all(|rule| {
                let Some(group) = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&rule.group_label))
                else {
                    return true;
                };
                let needed = rule
                    .min_running_annotation
                    .as_ref()
                    .and_then(|a| pod.metadata.annotations.as_ref()?.get(a)?.parse().ok())
                    .unwrap_or(rule.min_running);
                running_in_group
                    .get(&(namespace.clone(), rule.group_label.clone(), group.clone()))
                    .copied()
                    .unwrap_or(0)
                    >= needed
            });
            let unready = faults.of_pod(&namespace, &name).is_some_and(|f| f.unready);
            let ready = running_long_enough && rules_allow && !unready;
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let status = runtime.status(
                pod.status.as_ref(),
                ready,
                host_ip.get(&node).map_or("", String::as_str),
                now,
                &self.options,
            );
            if pod.status.as_ref() != Some(&status) {
                let mut updated = pod.clone();
                updated.status = Some(status);
                if let Err(error) = self.access.replace(
                    &self.types.pods,
                    &namespace,
                    &name,
                    &updated,
                    Subresource::Status,
                    KUBELET,
                ) {
                    tracing::debug!(pod = %name, %error, "pod status not written; next pass");
                }
            }
            // Image pull back-off flips from ErrImagePull to ImagePullBackOff by time alone.
            if runtime
                .containers
                .iter()
                .any(|c| matches!(c.phase, kubelet::Phase::PullFailing { .. }))
            {
                wake(now + self.options.pull_retry);
            }
        }
        drop(runtimes);

        // Pods on failed nodes lose readiness (the node lifecycle controller marks them) and
        // otherwise stay as they were.
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !failed.contains(&node) {
                continue;
            }
            let Some(mut status) = pod.status.clone() else {
                continue;
            };
            let mut changed = false;
            for condition in status.conditions.iter_mut().flatten() {
                if (condition.type_ == "Ready" || condition.type_ == "ContainersReady")
                    && condition.status != "False"
                {
                    condition.status = "False".into();
                    condition.reason = Some("NodeNotReady".into());
                    condition.last_transition_time =
                        Some(kubelet::time(k8s_openapi::jiff::Timestamp::now()));
                    changed = true;
                }
            }
            if changed {
                let mut updated = Arc::unwrap_or_clone(pod.clone());
                updated.status = Some(status);
                let _ = self.access.replace(
                    &self.types.pods,
                    &namespace_of(&pod.metadata),
                    &name_of(&pod.metadata),
                    &updated,
                    Subresource::Status,
                    NODE_CONTROLLER,
                );
            }
        }
        next
    }

    fn disruption_budgets(&self) {
        let budgets: Vec<Arc<PodDisruptionBudget>> = self.access.list(&self.types.pdbs);
        if budgets.is_empty() {
            return;
        }
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        for budget in budgets {
            let namespace = namespace_of(&budget.metadata);
            let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.clone()) else {
                continue;
            };
            let matching: Vec<&Pod> = pods
                .iter()
                .map(AsRef::as_ref)
                .filter(|p: &&Pod| namespace_of(&p.metadata) == namespace)
                .filter(|p| {
                    scheduler::selector_matches(
                        &selector,
                        &p.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let expected = matching.len() as i64;
            let healthy = matching
                .iter()
                .filter(|p| serde_json::to_value(p).is_ok_and(|v| crate::store::pod_ready(&v)))
                .count() as i64;
            let as_value = serde_json::to_value(budget.as_ref()).unwrap_or_default();
            let desired = crate::store::desired_healthy(&as_value, expected);
            let allowed = (healthy - desired).max(0);
            let previous = budget.status.clone().unwrap_or_default();
            let condition = Condition {
                type_: "DisruptionAllowed".into(),
                status: if allowed > 0 { "True" } else { "False" }.into(),
                reason: if allowed > 0 {
                    "SufficientPods"
                } else {
                    "InsufficientPods"
                }
                .into(),
                message: String::new(),
                observed_generation: budget.metadata.generation,
                last_transition_time: previous
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| {
                        c.type_ == "DisruptionAllowed"
                            && c.status == if allowed > 0 { "True" } else { "False" }
                    })
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| kubelet::time(k8s_openapi::jiff::Timestamp::now())),
            };
            let status = PodDisruptionBudgetStatus {
                current_healthy: healthy as i32,
                desired_healthy: desired as i32,
                disruptions_allowed: allowed as i32,
                expected_pods: expected as i32,
                observed_generation: budget.metadata.generation,
                conditions: Some(vec![condition]),
                disrupted_pods: None,
            };
            if budget.status.as_ref() != Some(&status) {
                let mut updated = Arc::unwrap_or_clone(budget.clone());
                updated.status = Some(status);
                let _ = self.access.replace(
                    &self.types.pdbs,
                    &namespace,
                    &name_of(&budget.metadata),
                    &updated,
                    Subresource::Status,
                    DISRUPTION_CONTROLLER,
                );
            }
        }
    }
}
