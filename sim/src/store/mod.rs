//! The object store behind the API: resourceVersions, watch history, writes with optimistic
//! concurrency, status subresources, server-side apply, finalizers, garbage collection and
//! evictions. Every write goes through [`State::commit`], so watchers see all of them in order.

mod admission;
mod crds;
mod delete;
mod history;
mod object;
mod write;

use delete::awaits_kubelet;
use object::*;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::errors::ApiError;
use crate::patch::{self, FieldPath};
use crate::registry::{Registry, ResourceType, StorageKey};
use crate::schema;
use crate::selectors::{Selector, label_selector_matches};
use crate::timeline::{Change, TimelineEntry};

/// Namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// How many past events a watch may resume from; older resourceVersions get `410 Gone`.
pub const DEFAULT_HISTORY: usize = 50_000;

/// How many bytes of past events (their serialized objects) are kept at most: a member pod or
/// StatefulSet with its init scripts is tens of kilobytes, so 50,000 of them would be gigabytes.
/// kube-apiserver's watch cache is bounded too (by count and by etcd compaction); a watch from
/// beyond it answers `410 Gone`, and clients list again.
pub const DEFAULT_HISTORY_BYTES: usize = 256 << 20;

/// Changes of all resources the cluster's passes may fall behind by (they then read the store
/// afresh anyway).
const CHANGES_CAPACITY: usize = 16_384;

/// Changes of one resource a watcher may fall behind by before its stream is closed (it then
/// resumes from its last resourceVersion, out of the history). Each slot keeps an event alive
/// until it is overwritten, so this bounds memory too.
const WATCH_CHANNEL_CAPACITY: usize = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change, as watchers see it.
#[derive(Debug)]
pub struct WatchEvent {
    pub resource_version: u64,
    pub key: StorageKey,
    pub namespace: String,
    pub event_type: EventType,
    /// The object as served through the version it was written with (`apiVersion` and `kind`
    /// set), serialized once: history keeps text rather than a tree (a serde_json tree takes
    /// several times the memory), and every watcher sends these bytes as they are.
    pub json: axum::body::Bytes,
    /// The `apiVersion` in `json`: a watch through another version re-presents the object.
    pub api_version: String,
    /// `metadata.labels`, so that label selectors need not parse `json`.
    pub labels: Value,
}

impl WatchEvent {
    /// The object as a tree (for field selectors, tables and metadata-only watches).
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

impl Subresource {
    fn name(self) -> &'static str {
        match self {
            Subresource::Main => "",
            Subresource::Status => "status",
        }
    }
}

/// Patch formats, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply { force: bool },
}

/// Who writes and how.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub field_manager: String,
    pub dry_run: bool,
    /// The client's whole user agent (which replica of a program wrote), for the timeline.
    pub client: String,
}

/// `DeleteOptions` as far as the simulator honours them.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Orphan`, `Background` (default) or `Foreground`.
    pub propagation: Option<String>,
    /// For pods bound to a node: how long the kubelet has to stop it. `0` removes the pod at
    /// once (a force delete); otherwise it stays, terminating, until its kubelet confirms.
    pub grace_period_seconds: Option<i64>,
    /// Who deletes (the client's user agent or field manager), for the timeline.
    pub actor: String,
    /// The client's whole user agent, for the timeline.
    pub client: String,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

type ObjectRef = (StorageKey, String, String);

/// Where a watch starts: the retained events it missed, and the live feed after them.
pub type WatchStart = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

struct State {
    registry: Registry,
    objects: BTreeMap<StorageKey, BTreeMap<(String, String), Value>>,
    by_uid: HashMap<String, ObjectRef>,
    dependents: HashMap<String, BTreeSet<ObjectRef>>,
    resource_version: u64,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    /// The serialized size of the events in `history`, and its bound.
    history_bytes: usize,
    history_byte_limit: usize,
    /// Events at or below this resourceVersion are no longer in `history`.
    compacted: u64,
    next_uid: u64,
    uid_seed: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Every committed change of one resource, for the API's watches of it: a watch of pods is
    /// not woken by a write to an Event, as kube-apiserver's per-resource watch caches do not
    /// (every watch woken by every change cost the simulator more than the writes themselves).
    watch_channels: HashMap<StorageKey, broadcast::Sender<Arc<WatchEvent>>>,
    /// Who is making the current write, for the timeline.
    actor: String,
    /// The whole user agent of the current write's client.
    client: String,
    started: std::time::Instant,
    timeline: Vec<TimelineEntry>,
    /// Bumped by every change to a role, binding or ServiceAccount: the authorizer's cached
    /// policy is current while this stands still (read without the store's lock).
    auth_generation: Arc<std::sync::atomic::AtomicU64>,
}

/// The shared store.
pub struct Store {
    state: Mutex<State>,
    /// How long the lock was waited for and held, by the cluster's passes and by everyone else.
    lock_times: LockTimes,
    auth_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped to close every open watch stream (clients then resume from their resourceVersion).
    disconnects: tokio::sync::watch::Sender<u64>,
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        Store::bounded(history_limit, DEFAULT_HISTORY_BYTES)
    }

    /// A store keeping at most `history_limit` past events and `history_byte_limit` bytes of
    /// them for watches to resume from.
    pub fn bounded(history_limit: usize, history_byte_limit: usize) -> Store {
        let (tx, _) = broadcast::channel(CHANGES_CAPACITY);
        let uid_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let mut state = State {
            registry: Registry::builtin(),
            objects: BTreeMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_limit,
            history_bytes: 0,
            history_byte_limit,
            compacted: 0,
            next_uid: 0,
            uid_seed,
            tx,
            watch_channels: HashMap::new(),
            actor: "dvt-sim".to_owned(),
            client: String::new(),
            started: std::time::Instant::now(),
            timeline: Vec::new(),
            auth_generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let namespaces = state
            .registry
            .get("", "v1", "namespaces")
            .expect("namespaces are built in");
        for name in INITIAL_NAMESPACES {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            state
                .create(&namespaces, "", object, "dvt-sim", "Update", false)
                .expect("initial namespaces are valid");
        }
        // A default StorageClass that allows expansion, as a cloud provider's usually does (kind's
        // `standard` does not; a test makes a class without it where that matters).
        let classes = state
            .registry
            .get("storage.k8s.io", "v1", "storageclasses")
            .expect("storage classes are built in");
        state
            .create(
                &classes,
                "",
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                       "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                       "provisioner": "sim.dvt.io/volumes", "reclaimPolicy": "Delete",
                       "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
                "dvt-sim",
                "Update",
                false,
            )
            .expect("the default storage class is valid");
        for object in crate::auth::rbac::bootstrap_policy() {
            let plural = if object["kind"] == "ClusterRole" {
                "clusterroles"
            } else {
                "clusterrolebindings"
            };
            let rt = state
                .registry
                .get("rbac.authorization.k8s.io", "v1", plural)
                .expect("RBAC is built in");
            state
                .create(&rt, "", object, "dvt-sim", "Update", false)
                .expect("the bootstrap policy is valid");
        }
        Store {
            auth_generation: state.auth_generation.clone(),
            state: Mutex::new(state),
            lock_times: LockTimes::default(),
            disconnects: tokio::sync::watch::Sender::new(0),
        }
    }

    fn lock(&self) -> Locked<'_> {
        self.lock_for("other", None)
    }

    /// The lock, for `operation` on `resource`: what API requests hold it for is accounted by
    /// operation and resource, to say which requests keep the passes waiting.
    fn lock_for<'a>(
        &'a self,
        operation: &'static str,
        resource: Option<&'a ResourceType>,
    ) -> Locked<'a> {
        let asked = std::time::Instant::now();
        // A panic while holding the lock would leave the store half-written; the simulator's
        // own invariants are better served by carrying on with what is there.
        let guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held_since = std::time::Instant::now();
        let by_pass = IN_PASS.with(std::cell::Cell::get);
        self.lock_times
            .add(by_pass, false, held_since.duration_since(asked));
        Locked {
            guard,
            held_since,
            by_pass,
            times: &self.lock_times,
            operation,
            resource,
        }
    }

    /// How long the lock was waited for and held since the last call (or the start).
    pub fn take_lock_times(&self) -> LockTimesTaken {
        self.lock_times.take()
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
    }

    /// The time since the store was created: the clock of the timeline's `at`.
    pub fn clock(&self) -> std::time::Duration {
        self.lock().started.elapsed()
    }

    pub fn current_resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Changes so far to roles, bindings and ServiceAccounts (see `State::auth_generation`).
    pub fn auth_generation(&self) -> u64 {
        self.auth_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.lock_for("get", Some(rt));
        state.get(rt, namespace, name).map(|o| state.present(rt, o))
    }

    /// Whether the object exists, without copying it.
    pub fn contains(&self, rt: &ResourceType, namespace: &str, name: &str) -> bool {
        self.lock_for("get", Some(rt))
            .get(rt, namespace, name)
            .is_ok()
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<Value>, u64) {
        let state = self.lock_for("list", Some(rt));
        let items = state
            .objects
            .get(&rt.storage_key())
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                    .filter(|(_, o)| labels.matches_labels(o) && fields.matches_fields(o))
                    .map(|(_, o)| state.present(rt, o))
                    .collect()
            })
            .unwrap_or_default();
        (items, state.resource_version)
    }

    /// Visits every object of a type in key order, under one lock and without copying: what a
    /// typed cache needs to catch up (decoding only what changed) on every read.
    pub fn visit(&self, rt: &ResourceType, mut visit: impl FnMut(&(String, String), &Value)) {
        let state = self.lock_for("list", Some(rt));
        for (key, object) in state.objects.get(&rt.storage_key()).into_iter().flatten() {
            visit(key, object);
        }
    }

    /// One page of a list: at most `limit` objects after the key `after`, in key order, the
    /// current resourceVersion, and the key of the last object returned when more follow.
    pub fn list_page(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Value>, u64, Option<(String, String)>) {
        use std::ops::Bound;
        let state = self.lock_for("list", Some(rt));
        let Some(objects) = state.objects.get(&rt.storage_key()) else {
            return (Vec::new(), state.resource_version, None);
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = objects
            .range::<(String, String), _>((start, Bound::Unbounded))
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .filter(|(_, o)| labels.matches_labels(o) && fields.matches_fields(o));
        let mut items = Vec::new();
        let mut last = None;
        for (key, object) in matching.by_ref().take(limit.max(1)) {
            items.push(state.present(rt, object));
            last = Some(key.clone());
        }
        let more = matching.next().is_some();
        (items, state.resource_version, last.filter(|_| more))
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock_for("create", Some(rt));
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let created = state.create(
            rt,
            namespace,
            object,
            &options.field_manager,
            "Update",
            options.dry_run,
        )?;
        // Presented after the lock is let go, and without another copy.
        drop(state);
        Ok(present_owned(rt, created))
    }

    pub fn replace(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock_for("update", Some(rt));
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let updated = state.replace(rt, namespace, name, object, sub, options)?;
        // Presented after the lock is let go, and without another copy.
        drop(state);
        Ok(present_owned(rt, updated))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if let Some(schema) = optimistic(rt, kind) {
            let request = PatchRequest {
                rt,
                namespace,
                name,
                kind,
                body,
                sub,
                options,
            };
            for _ in 0..OPTIMISTIC_ATTEMPTS {
                if let Some(updated) = self.patch_optimistically(&request, schema)? {
                    return Ok(present_owned(rt, updated));
                }
            }
        }
        let mut state = self.lock_for("patch", Some(rt));
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let updated = state.patch(rt, namespace, name, kind, body, sub, options)?;
        // Presented after the lock is let go, and without another copy.
        drop(state);
        Ok(present_owned(rt, updated))
    }

    /// A patch as kube-apiserver's storage makes it (`GuaranteedUpdate`): read the object, work
    /// out the update without holding anything, and store it only if the object has not moved
    /// since it was read. `None` when it moved (the caller tries again). The merge, the schema's
    /// validation and defaulting and the managed fields of a custom resource's write are most of
    /// its cost; done under the store's lock they held up the controllers' passes and every other
    /// request for each DV status write.
    fn patch_optimistically(
        &self,
        request: &PatchRequest,
        schema: &schema::Schema,
    ) -> Result<Option<Value>, ApiError> {
        let PatchRequest {
            rt,
            namespace,
            name,
            ..
        } = *request;
        let old = {
            let state = self.lock_for("patch (read)", Some(rt));
            state.check_scope(rt, namespace)?;
            state.get(rt, namespace, name)?.clone()
        };
        let new = write::patched(rt, name, &old, request.kind, request.body)?;
        let update = write::prepare_update(
            rt,
            &old,
            new,
            request.sub,
            None,
            request.options,
            |object| admission::admit_by_schema(rt, schema, object, Some(&old)),
        )?;
        let write::Update::Write(new) = update else {
            return Ok(Some(old));
        };
        if request.options.dry_run {
            return Ok(Some(new));
        }
        self.commit_unless_moved(rt, namespace, name, &old, new, request.options)
    }

    /// Stores `new` in place of `old` if the stored object is still `old` (same
    /// resourceVersion); `None`, and nothing written, if it moved since.
    fn commit_unless_moved(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        old: &Value,
        new: Value,
        options: &WriteOptions,
    ) -> Result<Option<Value>, ApiError> {
        // Its own label: what the lock is held for by a patch worked out outside it.
        let mut state = self.lock_for("patch (commit)", Some(rt));
        let current = state.get(rt, namespace, name)?;
        if metadata_str(current, "resourceVersion") != metadata_str(old, "resourceVersion") {
            return Ok(None);
        }
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let committed = state.commit(rt, namespace, name, new, Some(old));
        drop(state);
        Ok(Some(committed))
    }

    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock_for("delete", Some(rt));
        state.actor.clone_from(&options.actor);
        state.client.clone_from(&options.client);
        let result = state.delete(rt, namespace, name, options)?;
        // Presented after the lock is let go, and without another copy.
        drop(state);
        Ok(present_owned(rt, result))
    }

    /// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget forbids it.
    pub fn evict(
        &self,
        namespace: &str,
        name: &str,
        actor: &str,
        client: &str,
    ) -> Result<(), ApiError> {
        let mut state = self.lock_for("evict", None);
        actor.clone_into(&mut state.actor);
        client.clone_into(&mut state.client);
        state.evict(namespace, name)
    }

    /// `POST pods/{name}/binding`: assigns an unbound pod to a node, the one way a pod's
    /// `spec.nodeName` is set after creation (an update of it is refused like any pod spec
    /// change).
    pub fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        actor: &str,
        client: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock_for("bind", None);
        actor.clone_into(&mut state.actor);
        client.clone_into(&mut state.client);
        let rt = state
            .registry
            .get("", "v1", "pods")
            .expect("pods are built in");
        let old = state.get(&rt, namespace, name)?.clone();
        if let Some(bound) = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        if metadata_str(&old, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut new = old.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".to_owned(), json!(node));
        }
        // BindingREST.setPodHostAndAnnotations marks the pod scheduled in the same write
        // (`podutil.UpdatePodCondition`): the scheduler writes no status after binding.
        mark_scheduled(&mut new);
        let committed = state.commit(&rt, namespace, name, new, Some(&old));
        Ok(state.present(&rt, &committed))
    }

    /// Removes a pod at once, as a kubelet confirming termination or the pod garbage collector
    /// does. Finalizers still hold it.
    pub fn force_delete_pod(&self, namespace: &str, name: &str, actor: &str) {
        let mut state = self.lock_for("delete", None);
        actor.clone_into(&mut state.actor);
        state.client.clear();
        let Some(rt) = state.registry.get("", "v1", "pods") else {
            return;
        };
        let object_ref = (rt.storage_key(), namespace.to_owned(), name.to_owned());
        state.begin_delete(&object_ref, "Background", Some(0));
    }

    /// Every committed change, from now on (for the simulated controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.lock().tx.subscribe()
    }

    /// Everything recorded so far.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        self.lock().timeline.clone()
    }

    /// Entries recorded so far: a mark for [`Store::timeline_since`], without copying them.
    pub fn timeline_len(&self) -> usize {
        self.lock().timeline.len()
    }

    /// The entries after the first `skip`, for followers that poll.
    pub fn timeline_since(&self, skip: usize) -> Vec<TimelineEntry> {
        let state = self.lock_for("timeline", None);
        state
            .timeline
            .get(skip..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// The events after `since` for one resource, and a receiver for those that follow.
    /// `410 Gone` when `since` is older than the retained history.
    pub fn watch_from(&self, key: &StorageKey, since: u64) -> Result<WatchStart, ApiError> {
        let mut state = self.lock_for("watch", None);
        if since < state.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {since} ({})",
                state.compacted + 1
            )));
        }
        let backlog = state
            .history
            .iter()
            .filter(|e| e.resource_version > since && &e.key == key)
            .cloned()
            .collect();
        let receiver = state
            .watch_channels
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(WATCH_CHANNEL_CAPACITY).0)
            .subscribe();
        Ok((backlog, receiver))
    }

    /// Drops watch history so that resourceVersions up to `up_to` answer `410 Gone`, as etcd
    /// compaction does. Used by tests of watch recovery.
    pub fn compact(&self, up_to: u64) {
        let mut state = self.lock_for("other", None);
        let up_to = up_to.min(state.resource_version);
        while state
            .history
            .front()
            .is_some_and(|e| e.resource_version <= up_to)
        {
            if let Some(dropped) = state.history.pop_front() {
                state.history_bytes -= dropped.json.len();
            }
        }
        state.compacted = state.compacted.max(up_to);
    }

    /// The watch history kept: (events, bytes of their serialized objects).
    pub fn history_size(&self) -> (usize, usize) {
        let state = self.lock_for("other", None);
        (state.history.len(), state.history_bytes)
    }

    /// Closes every open watch stream, as an API server restart or a network fault would.
    pub fn disconnect_watches(&self) {
        self.disconnects.send_modify(|generation| *generation += 1);
    }

    /// Resolves when [`Store::disconnect_watches`] is called.
    pub fn watch_disconnects(&self) -> tokio::sync::watch::Receiver<u64> {
        self.disconnects.subscribe()
    }

    /// Renders an object at the version a client asked for.
    pub fn present(&self, rt: &ResourceType, object: &Value) -> Value {
        self.lock().present(rt, object)
    }
}

/// One patch request, as `Store::patch` was asked it.
#[derive(Clone, Copy)]
struct PatchRequest<'a> {
    rt: &'a ResourceType,
    namespace: &'a str,
    name: &'a str,
    kind: PatchKind,
    body: &'a Value,
    sub: Subresource,
    options: &'a WriteOptions,
}

/// How often a patch worked out outside the lock is tried before the patch is made under it.
const OPTIMISTIC_ATTEMPTS: usize = 3;

/// The schema that alone admits a patch worked out outside the store's lock: that of a custom
/// resource, for a merge, strategic or JSON patch. `None` for server-side apply, built-in
/// resources (a claim's admission reads StorageClasses) and CRDs (registered as they are
/// stored), which take the lock for the whole write.
fn optimistic(rt: &ResourceType, kind: PatchKind) -> Option<&schema::Schema> {
    if rt.kind == "CustomResourceDefinition" || matches!(kind, PatchKind::Apply { .. }) {
        return None;
    }
    rt.schema.as_ref()
}

/// An object as a client sees it (with `apiVersion` and `kind`), made from one the caller owns.
pub(super) fn present_owned(rt: &ResourceType, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".to_owned(), json!(rt.api_version()));
        map.insert("kind".to_owned(), json!(rt.kind));
    }
    object
}

/// `podutil.UpdatePodCondition` with `PodScheduled=True`: the condition replaces any earlier
/// one of its type (an `Unschedulable` reason and message go), keeping its transition time when
/// its status stays.
fn mark_scheduled(pod: &mut Value) {
    let Some(pod) = pod.as_object_mut() else {
        return;
    };
    let status = pod.entry("status").or_insert_with(|| json!({}));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    let previous = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let kept_time = previous
        .map(|at| &conditions[at])
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("lastTransitionTime").cloned());
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": kept_time.unwrap_or_else(|| json!(now())),
    });
    match previous {
        Some(at) => conditions[at] = condition,
        None => conditions.push(condition),
    }
}

/// A pod counts as ready while its `Ready` condition is true and it is not being deleted (as
/// endpoints and PodDisruptionBudgets count it).
pub fn pod_ready(pod: &Value) -> bool {
    metadata_str(pod, "deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
}

/// `desiredHealthy` of a PodDisruptionBudget for `expected` matching pods.
pub fn desired_healthy(pdb: &Value, expected: i64) -> i64 {
    let resolve = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .map(|p| (p * expected + 99) / 100),
            _ => None,
        }
    };
    if let Some(min) = pdb.pointer("/spec/minAvailable").and_then(resolve) {
        return min;
    }
    if let Some(max) = pdb.pointer("/spec/maxUnavailable").and_then(resolve) {
        return (expected - max).max(0);
    }
    0
}

#[cfg(test)]
mod support;
#[cfg(test)]
mod tests;

thread_local! {
    /// Whether this thread is running one of the cluster's passes (see [`in_pass`]).
    static IN_PASS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work` as one of the cluster's passes, for the lock's accounting.
pub(crate) fn in_pass<T>(work: impl FnOnce() -> T) -> T {
    IN_PASS.with(|flag| flag.set(true));
    let result = work();
    IN_PASS.with(|flag| flag.set(false));
    result
}

/// The store's lock, held: its hold time is counted when it is let go.
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    held_since: std::time::Instant,
    by_pass: bool,
    times: &'a LockTimes,
    operation: &'static str,
    resource: Option<&'a ResourceType>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let held = self.held_since.elapsed();
        self.times.add(self.by_pass, true, held);
        if !self.by_pass {
            let resource = self.resource.map_or("", |rt| rt.plural.as_str());
            self.times.add_operation(self.operation, resource, held);
        }
    }
}

/// Nanoseconds the store's lock was waited for and held, by passes and by everyone else (API
/// requests, tests, benchmarks). Every request runs under the one lock, so what others hold is
/// what the passes may wait for.
#[derive(Default)]
struct LockTimes {
    pass_waited: std::sync::atomic::AtomicU64,
    pass_held: std::sync::atomic::AtomicU64,
    others_waited: std::sync::atomic::AtomicU64,
    others_held: std::sync::atomic::AtomicU64,
    /// What others held it for, by operation and resource: (times, total).
    others_by_operation: Mutex<OperationTimes>,
}

/// Lock hold times by operation (`patch`, `get`, …), then resource plural: (times, total).
pub type OperationTimes = BTreeMap<&'static str, BTreeMap<String, (u64, std::time::Duration)>>;

impl LockTimes {
    fn add(&self, by_pass: bool, held: bool, took: std::time::Duration) {
        let counter = match (by_pass, held) {
            (true, false) => &self.pass_waited,
            (true, true) => &self.pass_held,
            (false, false) => &self.others_waited,
            (false, true) => &self.others_held,
        };
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn add_operation(&self, operation: &'static str, resource: &str, held: std::time::Duration) {
        let mut by_operation = self
            .others_by_operation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let by_resource = by_operation.entry(operation).or_default();
        match by_resource.get_mut(resource) {
            Some((times, total)) => {
                *times += 1;
                *total += held;
            }
            None => {
                by_resource.insert(resource.to_owned(), (1, held));
            }
        }
    }

    fn take(&self) -> LockTimesTaken {
        let take = |counter: &std::sync::atomic::AtomicU64| {
            std::time::Duration::from_nanos(counter.swap(0, std::sync::atomic::Ordering::Relaxed))
        };
        LockTimesTaken {
            pass_waited: take(&self.pass_waited),
            pass_held: take(&self.pass_held),
            others_waited: take(&self.others_waited),
            others_held: take(&self.others_held),
            others_by_operation: std::mem::take(
                &mut *self
                    .others_by_operation
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
        }
    }
}

/// How long the store's lock was waited for and held over a stretch of time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockTimesTaken {
    /// By the cluster's passes.
    pub pass_waited: std::time::Duration,
    pub pass_held: std::time::Duration,
    /// By everyone else: API requests, tests, benchmarks.
    pub others_waited: std::time::Duration,
    pub others_held: std::time::Duration,
    /// What others held it for, by operation and resource.
    pub others_by_operation: OperationTimes,
}

impl LockTimesTaken {
    /// The operations that held the lock longest, with their resource: (`patch services`,
    /// times, total), longest first.
    pub fn longest_held(&self, count: usize) -> Vec<(String, u64, std::time::Duration)> {
        let mut all: Vec<(String, u64, std::time::Duration)> = self
            .others_by_operation
            .iter()
            .flat_map(|(operation, by_resource)| {
                by_resource.iter().map(move |(resource, (times, total))| {
                    (
                        format!("{operation} {resource}").trim_end().to_owned(),
                        *times,
                        *total,
                    )
                })
            })
            .collect();
        all.sort_by_key(|entry| std::cmp::Reverse(entry.2));
        all.truncate(count);
        all
    }
}
