//! The simulated cluster inside the API server: nodes in zones, a StatefulSet controller, a
//! scheduler, kubelets, node lifecycle, pod garbage collection and PodDisruptionBudget status,
//! plus injected faults. Everything it does is a write through the store, so watchers, kubectl
//! and the timeline see it like the work of real controllers.
//!
//! One loop runs every controller in turn whenever the store changes or a timer (a container
//! starting, a back-off ending) is due; each controller is level-triggered over the whole store.

pub mod access;
pub mod charon;
mod disruption;
pub mod faults;
pub mod kubelet;
mod kubelet_pass;
mod load_balancers;
mod node_lifecycle;
pub mod scheduler;
mod scheduler_pass;
pub mod statefulset;
mod statefulset_pass;

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
use scheduler::{World, ZONE_LABEL};

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
    /// The peer-to-peer network this cluster's Charon pods are on; clusters that share one can
    /// run members of the same lock (different organisations).
    pub p2p: Arc<charon::P2pWorld>,
    /// When set, a Charon pod is ready only while its own Charon sees quorum peers answer (as
    /// Charon's `/readyz` does), allowing this long without them: Charon's six rounds of a
    /// slot, a minute on mainnet. `None`: peers do not affect readiness (the readiness rules
    /// may).
    pub charon_peer_readiness: Option<Duration>,
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
            p2p: charon::P2pWorld::new(),
            charon_peer_readiness: None,
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
    /// The simulated Charon of each Charon pod, by pod uid.
    charons: Mutex<HashMap<String, charon::Charon>>,
    /// This cluster's place in the p2p world.
    site: charon::Site,
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
        let site = options.p2p.join();
        let inner = Arc::new(Inner {
            types: access.types(),
            access,
            options,
            faults: Mutex::new(Faults::default()),
            runtimes: Mutex::new(HashMap::new()),
            charons: Mutex::new(HashMap::new()),
            site,
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

    /// This cluster's place in its p2p world (to cut or mend its link to another cluster).
    pub fn site(&self) -> charon::Site {
        self.inner.site
    }

    /// The p2p world this cluster's Charon pods are on.
    pub fn p2p(&self) -> Arc<charon::P2pWorld> {
        self.inner.options.p2p.clone()
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
        self.load_balancers();
        next
    }
}
