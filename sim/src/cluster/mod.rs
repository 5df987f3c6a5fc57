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
mod rate_limit;
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

use crate::registry::StorageKey;
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
    /// By StatefulSet uid, the inputs of its last plan when that plan had nothing to do: the
    /// set is not planned again until one of them changes (see `statefulset_pass`).
    settled_sets: Mutex<HashMap<String, u64>>,
    /// By StatefulSet uid, its generation and its template's hash at that generation.
    template_hashes: Mutex<HashMap<String, (i64, String)>>,
    /// Each node's kubelet's API client rate limit, by node name.
    kubelet_clients: Mutex<HashMap<String, rate_limit::TokenBucket>>,
    next_ip: Mutex<u32>,
    wake: Notify,
    passes: Mutex<PassStats>,
}

/// How the controllers' passes went: what a benchmark reads to tell whether the simulated
/// controllers, not the client under test, set the pace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    pub passes: u64,
    /// Time spent in passes, and in the longest one.
    pub busy: Duration,
    pub longest: Duration,
    /// Timeline entries (writes, and pods' readiness changes) made by passes, and by the
    /// busiest one.
    pub changes: u64,
    pub most_changes: u64,
    /// Time spent in each controller's step of the passes.
    pub steps: BTreeMap<&'static str, Duration>,
    /// Of `busy`, what the pass thread ran on a core, and what it waited in the kernel's run
    /// queue for one (`/proc/thread-self/schedstat`; zero where that file is missing). The rest
    /// is waiting for the store's lock.
    pub on_core: Duration,
    pub waited_for_core: Duration,
    /// The store's lock over the same stretch: what the passes waited for it, and what API
    /// requests held it.
    pub store_lock: crate::store::LockTimesTaken,
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
        let inner = Inner::new(store, options);
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

    /// The controllers' passes since the last call (or the start).
    pub fn take_pass_stats(&self) -> PassStats {
        let mut stats = std::mem::take(&mut *lock(&self.inner.passes));
        stats.store_lock = self.inner.access.store.take_lock_times();
        stats
    }
}

async fn run(inner: Arc<Inner>) {
    let mut changes = inner.access.store.subscribe();
    loop {
        let started = Instant::now();
        let changes_before = inner.access.store.timeline_len();
        // A pass is plain CPU work: on a thread of its own it never holds up the API server's
        // tasks, which share the runtime's workers.
        let worker = inner.clone();
        let (next, scheduled) = match tokio::task::spawn_blocking(move || {
            let before = ThreadSchedule::now();
            let next = crate::store::in_pass(|| worker.pass());
            (next, ThreadSchedule::now().since(before))
        })
        .await
        {
            Ok(done) => done,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => return,
        };
        let took = started.elapsed();
        inner.record_pass(
            took,
            scheduled,
            inner
                .access
                .store
                .timeline_len()
                .saturating_sub(changes_before),
        );
        if next.is_some_and(|at| at <= Instant::now()) {
            // Work left over (or a timer already due): go on at once. The changes this pass
            // made are seen by the next one.
            drain(&mut changes);
            tokio::task::yield_now().await;
            continue;
        }
        // A pass reads every object; with thousands of pods a pass with nothing to do still
        // costs enough that passing after every write would starve the API server. Resting as
        // long as the pass took keeps such passes to at most half of a core, and costs nothing
        // when small.
        let rest = took.max(Duration::from_millis(5));
        let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        tokio::select! {
            () = change_the_passes_read(&mut changes) => {
                // Let a burst of writes land before looking again.
                tokio::time::sleep(rest).await;
                drain(&mut changes);
            }
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The calling thread's time on a core and waiting in the run queue for one, from
/// `/proc/thread-self/schedstat` (nanoseconds: run time, run-queue wait, timeslices). Where the
/// file cannot be read (another OS, a kernel without schedstats), both are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ThreadSchedule {
    on_core: Duration,
    waited_for_core: Duration,
}

impl ThreadSchedule {
    fn now() -> Self {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        Some(Self {
            on_core: Duration::from_nanos(fields.next()?.ok()?),
            waited_for_core: Duration::from_nanos(fields.next()?.ok()?),
        })
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            on_core: self.on_core.saturating_sub(earlier.on_core),
            waited_for_core: self.waited_for_core.saturating_sub(earlier.waited_for_core),
        }
    }
}

/// Whether the simulated controllers read objects of this resource. A write to anything else
/// (a custom resource such as a DV, an Event, a Lease) changes nothing they act on: a real
/// controller's informers do not see it, and a pass it woke would read every object for
/// nothing, delaying the pass that a kubelet's timer is waiting for.
fn read_by_passes(key: &StorageKey) -> bool {
    matches!(
        (key.group.as_str(), key.plural.as_str()),
        (
            "",
            "nodes"
                | "pods"
                | "persistentvolumeclaims"
                | "services"
                | "configmaps"
                | "secrets"
                | "namespaces"
        ) | ("apps", "statefulsets" | "controllerrevisions")
            | ("policy", "poddisruptionbudgets")
            | ("storage.k8s.io", "storageclasses")
    )
}

/// Resolves at the first change to something the passes read (or when changes were missed).
async fn change_the_passes_read(
    changes: &mut tokio::sync::broadcast::Receiver<Arc<crate::store::WatchEvent>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match changes.recv().await {
            Ok(event) if !read_by_passes(&event.key) => {}
            Ok(_) | Err(RecvError::Lagged(_)) => return,
            // The store is gone: wait for the deadline or a wake-up instead.
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Forgets the changes announced so far (a pass reads the store itself).
fn drain(changes: &mut tokio::sync::broadcast::Receiver<Arc<crate::store::WatchEvent>>) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match changes.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// Writes one controller may make in one pass. Real controllers work through queues, an object
/// at a time, under client rate limits; a pass that made every pending create or bind at once
/// (28,000 writes and 28 s in one pass at 1,000 DVs) held every pod's next step behind every
/// other pod's, and spread a DV's members over passes tens of seconds apart. What is left waits
/// for the next pass, which follows at once. (The kubelets are not under it: each node's kubelet
/// has a client of its own, see [`rate_limit`].)
const WRITES_PER_STEP: usize = 256;

/// What one controller may still write in this pass.
struct Budget {
    left: std::cell::Cell<usize>,
    ran_out: std::cell::Cell<bool>,
}

impl Budget {
    fn new(writes: usize) -> Budget {
        Budget {
            left: std::cell::Cell::new(writes),
            ran_out: std::cell::Cell::new(false),
        }
    }

    /// Whether a piece of work making `writes` writes may go ahead now; if so, they are spent.
    /// The last piece may overdraw, so that a piece larger than the budget still gets done.
    fn spend(&self, writes: usize) -> bool {
        if writes == 0 {
            return true;
        }
        if self.left.get() == 0 {
            self.ran_out.set(true);
            return false;
        }
        self.left.set(self.left.get().saturating_sub(writes));
        true
    }

    /// Whether nothing is left for work that writes: a controller asks before working out what
    /// to write, which costs more than the write when thousands of objects wait for a budget of
    /// hundreds. Counts as running out: the next pass is due at once.
    fn spent(&self) -> bool {
        let spent = self.left.get() == 0;
        if spent {
            self.ran_out.set(true);
        }
        spent
    }

    fn ran_out(&self) -> bool {
        self.ran_out.get()
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
    /// The controllers' state with the cluster's nodes created; nothing runs yet.
    fn new(store: Arc<Store>, options: ClusterOptions) -> Arc<Inner> {
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
            settled_sets: Mutex::new(HashMap::new()),
            template_hashes: Mutex::new(HashMap::new()),
            kubelet_clients: Mutex::new(HashMap::new()),
            next_ip: Mutex::new(0),
            wake: Notify::new(),
            passes: Mutex::default(),
        });
        inner.create_nodes();
        inner
    }

    fn record_pass(&self, took: Duration, scheduled: ThreadSchedule, changes: usize) {
        let mut stats = lock(&self.passes);
        stats.passes += 1;
        stats.busy += took;
        stats.on_core += scheduled.on_core;
        stats.waited_for_core += scheduled.waited_for_core;
        stats.longest = stats.longest.max(took);
        stats.changes += changes as u64;
        stats.most_changes = stats.most_changes.max(changes as u64);
    }

    /// One look at everything, each controller writing at most [`WRITES_PER_STEP`]; returns
    /// when the next pass is due (now, when a controller left work for it).
    fn pass(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut steps: Vec<(&'static str, Duration)> = Vec::new();
        let mut timed = |name: &'static str, started: Instant| {
            steps.push((name, started.elapsed()));
            Instant::now()
        };
        let failed: BTreeSet<String> = lock(&self.faults).failed_nodes.clone();
        let nodes = self.node_lifecycle(&failed);
        let node_ready = |node: &Node| {
            node.metadata
                .name
                .as_ref()
                .is_some_and(|n| !failed.contains(n))
        };
        let mut mark = timed("node lifecycle", now);
        self.pod_gc(&nodes, &failed);
        mark = timed("pod gc", mark);
        let budgets: [Budget; 3] = std::array::from_fn(|_| Budget::new(WRITES_PER_STEP));
        let [statefulsets, scheduler, disruption] = &budgets;
        self.statefulsets(statefulsets);
        mark = timed("statefulsets", mark);
        self.expand_volumes();
        mark = timed("volumes", mark);
        self.schedule(&nodes, &node_ready, scheduler);
        mark = timed("scheduler", mark);
        let mut next = self.kubelets(&nodes, &failed, now);
        mark = timed("kubelets", mark);
        self.disruption_budgets(disruption);
        mark = timed("disruption", mark);
        self.load_balancers();
        timed("load balancers", mark);
        if budgets.iter().any(Budget::ran_out) {
            // Work is left: the next pass is due now.
            next = Some(now);
        }
        let mut stats = lock(&self.passes);
        for (name, took) in steps {
            *stats.steps.entry(name).or_default() += took;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WriteOptions;
    use crate::timeline::Change;
    use serde_json::json;

    #[test]
    fn a_budget_lets_the_last_piece_overdraw_then_refuses() {
        let budget = Budget::new(5);
        assert!(budget.spend(0), "work without writes always goes ahead");
        assert!(budget.spend(3));
        assert!(budget.spend(4), "the last piece may overdraw");
        assert!(!budget.ran_out());
        assert!(!budget.spend(1));
        assert!(budget.ran_out());
        assert!(budget.spend(0));
        let fresh = Budget::new(1);
        assert!(!fresh.spent() && !fresh.ran_out());
        assert!(fresh.spend(1));
        assert!(
            fresh.spent() && fresh.ran_out(),
            "asking an empty budget runs it out"
        );
    }

    #[test]
    fn a_threads_schedule_is_read_from_schedstat_and_differences_never_go_negative() {
        let read = ThreadSchedule::parse("2500000000 40000000 17\n").unwrap();
        assert_eq!(read.on_core, Duration::from_millis(2500));
        assert_eq!(read.waited_for_core, Duration::from_millis(40));
        assert_eq!(
            ThreadSchedule::parse("12"),
            None,
            "a short line is no reading"
        );
        assert_eq!(ThreadSchedule::parse("x 1 2"), None);
        let later = ThreadSchedule::parse("3000000000 30000000 20").unwrap();
        let between = later.since(read);
        assert_eq!(between.on_core, Duration::from_millis(500));
        assert_eq!(between.waited_for_core, Duration::ZERO);
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            let before = ThreadSchedule::now();
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            assert!(ThreadSchedule::now().since(before).on_core >= Duration::from_millis(10));
        }
    }

    fn user() -> WriteOptions {
        WriteOptions {
            field_manager: "tester".into(),
            dry_run: false,
            client: "tester/1.0".into(),
        }
    }

    /// Writes since `mark` by each actor.
    fn writes_since(store: &Store, mark: usize) -> BTreeMap<String, usize> {
        let mut by_actor = BTreeMap::new();
        for entry in store.timeline_since(mark) {
            if let Change::Write { actor, .. } = entry.change {
                *by_actor.entry(actor).or_default() += 1;
            }
        }
        by_actor
    }

    /// Writes to what no simulated controller reads (Events, DVs, Leases) start no pass; a
    /// write to what they read does.
    #[tokio::test]
    async fn only_writes_the_controllers_read_start_a_pass() {
        let store = Arc::new(Store::new(100_000));
        let (cluster, task) = Cluster::start(store.clone(), ClusterOptions::fast());
        let settle = || tokio::time::sleep(Duration::from_millis(400));
        settle().await;
        cluster.take_pass_stats();
        let events = store.resolve("", "v1", "events").expect("events");
        let configmaps = store.resolve("", "v1", "configmaps").expect("configmaps");
        for i in 0..20 {
            store
                .create(
                    &events,
                    "default",
                    json!({"metadata": {"name": format!("e{i}")}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Test", "message": "m", "type": "Normal"}),
                    &user(),
                )
                .expect("an Event");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        settle().await;
        assert_eq!(
            cluster.take_pass_stats().passes,
            0,
            "Events woke the passes"
        );
        store
            .create(
                &configmaps,
                "default",
                json!({"metadata": {"name": "lock"}, "data": {"k": "v"}}),
                &user(),
            )
            .expect("a ConfigMap");
        settle().await;
        assert!(
            cluster.take_pass_stats().passes >= 1,
            "a ConfigMap (a lock a pod may be waiting for) wakes the passes"
        );
        task.abort();
    }

    /// A store and its controllers (not running), with namespace `namespace`.
    fn cluster_with_namespace(namespace: &str) -> (Arc<Store>, Arc<Inner>) {
        let store = Arc::new(Store::new(100_000));
        let inner = Inner::new(store.clone(), ClusterOptions::fast());
        let namespaces = store.resolve("", "v1", "namespaces").expect("namespaces");
        store
            .create(
                &namespaces,
                "",
                json!({"metadata": {"name": namespace}}),
                &user(),
            )
            .expect("a namespace");
        (store, inner)
    }

    /// Each node's kubelet writes under its own client limit: a pass starts 150 pods on each
    /// of two nodes with a burst of 100 status writes per node, whatever the other node does.
    #[tokio::test]
    async fn each_nodes_kubelet_writes_under_its_own_rate_limit() {
        let (store, inner) = cluster_with_namespace("busy");
        let nodes: Vec<String> = inner
            .access
            .list(&inner.types.nodes)
            .iter()
            .take(2)
            .map(|n: &Arc<Node>| name_of(&n.metadata))
            .collect();
        for node in &nodes {
            for i in 0..150 {
                let pod = json!({
                    "metadata": {"name": format!("{node}-{i}")},
                    "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
                });
                store
                    .create(&inner.types.pods, "busy", pod, &user())
                    .expect("a pod");
            }
        }
        let mark = store.timeline_len();
        let next = inner.kubelets(
            &inner.access.list(&inner.types.nodes),
            &BTreeSet::new(),
            Instant::now(),
        );
        let written = writes_since(&store, mark)
            .get(KUBELET)
            .copied()
            .unwrap_or(0);
        // A shared budget of 256 would write 256; tokens earned during the pass add a few.
        assert!(
            (200..=210).contains(&written),
            "{written} kubelet writes for two nodes with a burst of 100 each"
        );
        assert!(
            next.is_some_and(|at| at <= Instant::now() + Duration::from_millis(40)),
            "the next token is due within 1/50 s: {next:?}"
        );
    }

    #[tokio::test]
    async fn a_burst_of_statefulsets_is_worked_through_in_bounded_passes() {
        let (store, inner) = cluster_with_namespace("burst");
        // A revision, a claim and its status, a pod and the set's status each: 500 writes.
        let sets = 100;
        for i in 0..sets {
            let name = format!("member-{i}");
            let set = json!({
                "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "serviceName": name,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
                    },
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}],
                }
            });
            store
                .create(&inner.types.statefulsets, "burst", set, &user())
                .expect("a StatefulSet");
        }

        let mark = store.timeline_len();
        let next = inner.pass();
        let by_controller = writes_since(&store, mark);
        let controller_writes = by_controller
            .get(STATEFULSET_CONTROLLER)
            .copied()
            .unwrap_or(0)
            + by_controller
                .get("persistentvolume-binder-controller")
                .copied()
                .unwrap_or(0);
        assert!(
            controller_writes > 0 && controller_writes <= WRITES_PER_STEP + 5,
            "one pass made {controller_writes} StatefulSet writes: {by_controller:?}"
        );
        assert!(
            next.is_some_and(|at| at <= Instant::now()),
            "work was left, so the next pass is due at once"
        );

        // Later passes finish the work: every set gets its pod, none is starved or doubled.
        let mut passes = 1;
        loop {
            let pods: Vec<Arc<Pod>> = inner.access.list(&inner.types.pods);
            if pods.len() == sets {
                let mut names: Vec<String> = pods.iter().map(|p| name_of(&p.metadata)).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), sets);
                break;
            }
            assert!(
                passes < 10,
                "{} of {sets} pods after {passes} passes",
                pods.len()
            );
            inner.pass();
            passes += 1;
        }
        assert!(passes >= 2, "500 writes need more than one pass");
    }
}
