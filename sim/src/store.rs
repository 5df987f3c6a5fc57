//! The object store behind the API: resourceVersions, watch history, writes with optimistic
//! concurrency, status subresources, server-side apply, finalizers, garbage collection and
//! evictions. Every write goes through [`State::commit`], so watchers see all of them in order.

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
    /// Events at or below this resourceVersion are no longer in `history`.
    compacted: u64,
    next_uid: u64,
    uid_seed: u64,
    tx: broadcast::Sender<Arc<WatchEvent>>,
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
    auth_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped to close every open watch stream (clients then resume from their resourceVersion).
    disconnects: tokio::sync::watch::Sender<u64>,
}

pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The etcd key kube-apiserver names in storage errors: `/registry/<plural>/<ns>/<name>` for
/// the built-in kinds we serve, `/registry/<group>/<plural>/...` for custom resources.
fn storage_key(rt: &ResourceType, namespace: &str, name: &str) -> String {
    let prefix = if rt.schema.is_some() {
        format!("/registry/{}/{}", rt.group, rt.plural)
    } else {
        format!("/registry/{}", rt.plural)
    };
    if rt.namespaced {
        format!("{prefix}/{namespace}/{name}")
    } else {
        format!("{prefix}/{name}")
    }
}

/// A patch may not change `metadata.uid`: ValidateObjectMetaUpdate's immutable field (a patch has
/// no storage precondition, so a uid in its body is checked here, and a client can use it as
/// one: the patch is refused if the object was recreated since it was read).
fn uid_unchanged(rt: &ResourceType, name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    match metadata_str(new, "uid") {
        Some(uid) if Some(uid) != metadata_str(old, "uid") => Err(ApiError::invalid(
            &rt.kind,
            name,
            vec![(
                "metadata.uid".to_owned(),
                format!("Invalid value: \"{uid}\": field is immutable"),
            )],
        )),
        _ => Ok(()),
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything but metadata and status: what `metadata.generation` tracks.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The object without the fields a write never compares (resourceVersion, managedFields).
fn comparable(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    copy
}

fn ensure_metadata(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON or YAML object",
        ));
    }
    let metadata = object
        .as_object_mut()
        .expect("checked to be an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let (tx, _) = broadcast::channel(16_384);
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
            compacted: 0,
            next_uid: 0,
            uid_seed,
            tx,
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
            disconnects: tokio::sync::watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would leave the store half-written; the simulator's
        // own invariants are better served by carrying on with what is there.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
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
        let state = self.lock();
        state.get(rt, namespace, name).map(|o| state.present(rt, o))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<Value>, u64) {
        let state = self.lock();
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

    /// Every object of a type by key, in key order, with a copy of those `stale` (given the key
    /// and resourceVersion) says the caller does not know yet: what a typed cache needs to
    /// catch up without copying every object on every read.
    pub fn list_changed(
        &self,
        rt: &ResourceType,
        stale: impl Fn(&(String, String), &str) -> bool,
    ) -> (Vec<(String, String)>, Vec<Value>) {
        let state = self.lock();
        let Some(objects) = state.objects.get(&rt.storage_key()) else {
            return (Vec::new(), Vec::new());
        };
        let mut keys = Vec::with_capacity(objects.len());
        let mut changed = Vec::new();
        for (key, object) in objects {
            let version = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if stale(key, version) {
                changed.push(state.present(rt, object));
            }
            keys.push(key.clone());
        }
        (keys, changed)
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
        let state = self.lock();
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
        let mut state = self.lock();
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
        Ok(state.present(rt, &created))
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
        let mut state = self.lock();
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let updated = state.replace(rt, namespace, name, object, sub, options)?;
        Ok(state.present(rt, &updated))
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
        let mut state = self.lock();
        state.actor.clone_from(&options.field_manager);
        state.client.clone_from(&options.client);
        let updated = state.patch(rt, namespace, name, kind, body, sub, options)?;
        Ok(state.present(rt, &updated))
    }

    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        state.actor.clone_from(&options.actor);
        state.client.clone_from(&options.client);
        let result = state.delete(rt, namespace, name, options)?;
        Ok(state.present(rt, &result))
    }

    /// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget forbids it.
    pub fn evict(
        &self,
        namespace: &str,
        name: &str,
        actor: &str,
        client: &str,
    ) -> Result<(), ApiError> {
        let mut state = self.lock();
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
        let mut state = self.lock();
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
        let committed = state.commit(&rt, namespace, name, new, Some(&old));
        Ok(state.present(&rt, &committed))
    }

    /// Removes a pod at once, as a kubelet confirming termination or the pod garbage collector
    /// does. Finalizers still hold it.
    pub fn force_delete_pod(&self, namespace: &str, name: &str, actor: &str) {
        let mut state = self.lock();
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
        let state = self.lock();
        state
            .timeline
            .get(skip..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// The events after `since` for one resource, and a receiver for those that follow.
    /// `410 Gone` when `since` is older than the retained history.
    pub fn watch_from(&self, key: &StorageKey, since: u64) -> Result<WatchStart, ApiError> {
        let state = self.lock();
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
        Ok((backlog, state.tx.subscribe()))
    }

    /// Drops watch history so that resourceVersions up to `up_to` answer `410 Gone`, as etcd
    /// compaction does. Used by tests of watch recovery.
    pub fn compact(&self, up_to: u64) {
        let mut state = self.lock();
        let up_to = up_to.min(state.resource_version);
        while state
            .history
            .front()
            .is_some_and(|e| e.resource_version <= up_to)
        {
            state.history.pop_front();
        }
        state.compacted = state.compacted.max(up_to);
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

impl State {
    fn present(&self, rt: &ResourceType, object: &Value) -> Value {
        let mut copy = object.clone();
        if let Some(map) = copy.as_object_mut() {
            map.insert("apiVersion".to_owned(), json!(rt.api_version()));
            map.insert("kind".to_owned(), json!(rt.kind));
        }
        copy
    }

    fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<&Value, ApiError> {
        self.objects
            .get(&rt.storage_key())
            .and_then(|objects| objects.get(&(namespace.to_owned(), name.to_owned())))
            .ok_or_else(|| ApiError::not_found(&rt.qualified_plural(), name))
    }

    fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        let a = self.uid_seed ^ self.next_uid.rotate_left(32);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (self.next_uid >> 48) as u16 & 0xfff,
            self.next_uid & 0xffff_ffff_ffff
        )
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        let key = StorageKey {
            group: String::new(),
            plural: "namespaces".to_owned(),
        };
        self.objects
            .get(&key)
            .is_some_and(|ns| ns.contains_key(&(String::new(), namespace.to_owned())))
    }

    fn check_scope(&self, rt: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if rt.namespaced && namespace.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} is namespaced: use /namespaces/<namespace>/{}",
                rt.kind, rt.plural
            )));
        }
        if rt.namespaced && !self.namespace_exists(namespace) {
            return Err(ApiError::not_found("namespaces", namespace));
        }
        Ok(())
    }

    /// Validates a custom object against its CRD schema, returning the stored form.
    fn admit(
        &self,
        rt: &ResourceType,
        object: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.admit_write(rt, object, old, Subresource::Main)
    }

    /// As [`State::admit`], for a write to `sub`: a status write is validated as kube-apiserver's
    /// status strategies do, by its metadata only (the spec it carries is the stored one).
    fn admit_write(
        &self,
        rt: &ResourceType,
        mut object: Value,
        old: Option<&Value>,
        sub: Subresource,
    ) -> Result<Value, ApiError> {
        if rt.kind == "Secret" && rt.group.is_empty() {
            fold_string_data(&mut object);
        }
        let Some(schema_value) = &rt.schema else {
            let causes = match sub {
                Subresource::Main => crate::validation::validate(rt, &object, old),
                Subresource::Status => crate::validation::validate_metadata(&object),
            };
            if !causes.is_empty() {
                let name = metadata_str(&object, "name").unwrap_or_default();
                let kind = if rt.group.is_empty() {
                    rt.kind.clone()
                } else {
                    format!("{}.{}", rt.kind, rt.group)
                };
                return Err(ApiError::invalid(&kind, name, causes));
            }
            if rt.kind == "PersistentVolumeClaim" && rt.group.is_empty() {
                self.admit_claim(&mut object, old)?;
            }
            return Ok(object);
        };
        let name = metadata_str(&object, "name").unwrap_or_default().to_owned();
        let old_for_rules = old.map(|o| self.present(rt, o));
        schema::admit(schema_value, &object, old_for_rules.as_ref()).map_err(|violations| {
            ApiError::invalid(&format!("{}.{}", rt.kind, rt.group), &name, violations)
        })
    }

    fn storage_class(&self, name: &str) -> Option<&Value> {
        let key = StorageKey {
            group: "storage.k8s.io".to_owned(),
            plural: "storageclasses".to_owned(),
        };
        self.objects
            .get(&key)?
            .get(&(String::new(), name.to_owned()))
    }

    /// kube-apiserver's admission plugins for claims: `DefaultStorageClass` names the default
    /// class on a create that names none; `PersistentVolumeClaimResize` lets a request grow only
    /// when the claim's class allows expansion.
    fn admit_claim(&self, claim: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let class_of = |c: &Value| {
            c.pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let Some(old) = old else {
            if class_of(claim).is_none() {
                let key = StorageKey {
                    group: "storage.k8s.io".to_owned(),
                    plural: "storageclasses".to_owned(),
                };
                let default = self.objects.get(&key).and_then(|classes| {
                    classes.iter().find_map(|((_, name), class)| {
                        (class.pointer(
                            "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
                        ) == Some(&json!("true")))
                        .then(|| name.clone())
                    })
                });
                if let (Some(default), Some(spec)) = (
                    default,
                    claim.get_mut("spec").and_then(Value::as_object_mut),
                ) {
                    spec.insert("storageClassName".to_owned(), json!(default));
                }
            }
            return Ok(());
        };
        let request = |c: &Value| {
            c.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(crate::validation::quantity_bytes)
        };
        let grows =
            matches!((request(claim), request(old)), (Some(new), Some(before)) if new > before);
        if !grows {
            return Ok(());
        }
        let expandable = class_of(old)
            .and_then(|name| self.storage_class(&name))
            .and_then(|class| class.get("allowVolumeExpansion"))
            .and_then(Value::as_bool)
            == Some(true);
        if expandable {
            return Ok(());
        }
        let name = metadata_str(claim, "name").unwrap_or_default();
        Err(ApiError::new(
            403,
            "Forbidden",
            format!("persistentvolumeclaims \"{name}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        )
        .with_details(json!({"name": name, "kind": "persistentvolumeclaims"})))
    }

    fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        manager: &str,
        operation: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let fields = patch::leaf_fields(&object);
        let uid = self.new_uid();
        let metadata = ensure_metadata(&mut object)?;
        if metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    vec![(
                        "metadata.name".to_owned(),
                        "Required value: name or generateName is required".to_owned(),
                    )],
                ));
            };
            let suffix: String = uid
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(5)
                .collect();
            metadata.insert("name".to_owned(), json!(format!("{prefix}{suffix}")));
        }
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if rt.namespaced {
            metadata.insert("namespace".to_owned(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            metadata.remove(field);
        }
        metadata.insert("uid".to_owned(), json!(uid));
        metadata.insert("creationTimestamp".to_owned(), json!(now()));
        metadata.insert("generation".to_owned(), json!(1));
        if self.get(rt, namespace, &name).is_ok() {
            return Err(ApiError::already_exists(&rt.qualified_plural(), &name));
        }
        if rt.status_subresource && !rt.group.is_empty() {
            // Status is written through /status; a create carries none (built-in core objects
            // such as Nodes and Namespaces keep theirs, as the real strategies do).
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        let mut object = self.admit(rt, object, None)?;
        patch::write_managed_fields(
            &mut object,
            &[patch::ManagedEntry {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                api_version: rt.api_version(),
                time: now(),
                subresource: String::new(),
                fields,
            }],
        );
        if rt.kind == "CustomResourceDefinition" {
            self.prepare_crd(&mut object)?;
        }
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(rt, namespace, &name, object, None))
    }

    /// Assigns a resourceVersion, stores, indexes and publishes an object, then removes it if it
    /// is being deleted with no finalizers left.
    fn commit(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        old: Option<&Value>,
    ) -> Value {
        self.resource_version += 1;
        let rv = self.resource_version;
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        }
        let object_ref = (rt.storage_key(), namespace.to_owned(), name.to_owned());
        if let Some(old) = old {
            for owner in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(&object_ref);
                }
            }
        }
        for owner in owner_uids(&object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(object_ref.clone());
        }
        if let Some(uid) = metadata_str(&object, "uid") {
            self.by_uid.insert(uid.to_owned(), object_ref.clone());
        }
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert((namespace.to_owned(), name.to_owned()), object.clone());
        let event_type = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(rt, namespace, event_type, rv, &object);
        self.record(rt, namespace, name, event_type, rv, old, Some(&object));
        if rt.kind == "CustomResourceDefinition" {
            self.register_crd(&object);
        }
        if rt.kind == "Event" && rt.group == "events.k8s.io" {
            self.mirror_event(namespace, name, &object);
        }
        let deleting = metadata_str(&object, "deletionTimestamp").is_some();
        if deleting && finalizers(&object).is_empty() && !awaits_kubelet(rt, &object) {
            self.remove(&object_ref);
        } else if deleting {
            self.progress_foreground(&object_ref);
        }
        object
    }

    fn publish(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        event_type: EventType,
        rv: u64,
        object: &Value,
    ) {
        if rt.group == "rbac.authorization.k8s.io"
            || (rt.group.is_empty() && rt.plural == "serviceaccounts")
        {
            self.auth_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let api_version = rt.api_version();
        let presented = object.get("apiVersion").and_then(Value::as_str)
            == Some(api_version.as_str())
            && object.get("kind").and_then(Value::as_str) == Some(rt.kind.as_str());
        let json = if presented {
            serde_json::to_vec(object)
        } else {
            serde_json::to_vec(&self.present(rt, object))
        }
        .unwrap_or_default();
        let event = Arc::new(WatchEvent {
            resource_version: rv,
            key: rt.storage_key(),
            namespace: namespace.to_owned(),
            event_type,
            json: json.into(),
            api_version,
            labels: object
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null),
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.resource_version;
            }
        }
        // No receivers is normal (nobody watching).
        let _ = self.tx.send(event);
    }

    /// kube-apiserver serves one Event storage through both `v1` and `events.k8s.io/v1`; here
    /// they are stored apart, so an `events.k8s.io` Event is copied into `v1` (what `kubectl
    /// describe` and `kubectl get events` read), with the fields mapped as the server maps them.
    fn mirror_event(&mut self, namespace: &str, name: &str, event: &Value) {
        let Some(core) = self.registry.get("", "v1", "events") else {
            return;
        };
        let field = |path: &str| event.pointer(path).cloned().unwrap_or(Value::Null);
        let first = field("/eventTime");
        let last = event
            .pointer("/series/lastObservedTime")
            .cloned()
            .unwrap_or_else(|| first.clone());
        // Whole seconds, as v1 Event timestamps are.
        let seconds = |t: &Value| {
            t.as_str()
                .map(|t| {
                    json!(format!(
                        "{}Z",
                        t.split('.').next().unwrap_or(t).trim_end_matches('Z')
                    ))
                })
                .unwrap_or(Value::Null)
        };
        let mirrored = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": field("/regarding"),
            "related": field("/related"),
            "reason": field("/reason"),
            "message": field("/note"),
            "type": field("/type"),
            "action": field("/action"),
            "source": {"component": field("/reportingController")},
            "reportingComponent": field("/reportingController"),
            "reportingInstance": field("/reportingInstance"),
            "firstTimestamp": seconds(&first),
            "lastTimestamp": seconds(&last),
            "eventTime": first,
            "count": event.pointer("/series/count").cloned().unwrap_or(json!(1)),
        });
        let old = self.get(&core, namespace, name).ok().cloned();
        let mut object = mirrored;
        let metadata = object["metadata"]
            .as_object_mut()
            .cloned()
            .unwrap_or_default();
        match &old {
            Some(previous) => {
                let mut meta = previous
                    .get("metadata")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.remove("resourceVersion");
                    m.remove("managedFields");
                }
                object["metadata"] = meta;
            }
            None => {
                let mut meta = metadata;
                meta.insert("uid".to_owned(), json!(self.new_uid()));
                meta.insert("creationTimestamp".to_owned(), json!(now()));
                object["metadata"] = Value::Object(meta);
            }
        }
        self.commit(&core, namespace, name, object, old.as_ref());
    }

    /// Appends a write, and a readiness change for pods, to the timeline.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        event_type: EventType,
        rv: u64,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let at = self.started.elapsed();
        self.timeline.push(TimelineEntry {
            at,
            resource_version: rv,
            change: Change::Write {
                verb: event_type.as_str(),
                resource: rt.qualified_plural(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                actor: self.actor.clone(),
                client: self.client.clone(),
            },
        });
        if rt.kind != "Pod" || !rt.group.is_empty() {
            return;
        }
        let was = old.is_some_and(pod_ready);
        let is = new.is_some_and(pod_ready);
        if was != is {
            let labels = new
                .or(old)
                .and_then(|o| o.pointer("/metadata/labels"))
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            self.timeline.push(TimelineEntry {
                at,
                resource_version: rv,
                change: Change::Readiness {
                    namespace: namespace.to_owned(),
                    pod: name.to_owned(),
                    ready: is,
                    labels,
                    actor: self.actor.clone(),
                },
            });
        }
    }

    fn resource_type_for(&self, key: &StorageKey) -> Option<Arc<ResourceType>> {
        self.registry
            .all()
            .find(|rt| &rt.storage_key() == key)
            .cloned()
    }

    /// Removes an object for good, then collects what that orphans.
    fn remove(&mut self, object_ref: &ObjectRef) {
        let Some(object) = self
            .objects
            .get_mut(&object_ref.0)
            .and_then(|objects| objects.remove(&(object_ref.1.clone(), object_ref.2.clone())))
        else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        self.resource_version += 1;
        let rv = self.resource_version;
        let mut gone = object.clone();
        if let Some(metadata) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        }
        self.publish(&rt, &object_ref.1, EventType::Deleted, rv, &gone);
        self.record(
            &rt,
            &object_ref.1,
            &object_ref.2,
            EventType::Deleted,
            rv,
            Some(&object),
            None,
        );
        for owner in owner_uids(&object) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(object_ref);
            }
            if let Some(owner_ref) = self.by_uid.get(&owner).cloned() {
                self.progress_foreground(&owner_ref);
            }
        }
        if rt.kind == "CustomResourceDefinition" {
            self.unregister_crd(&object);
        }
        if rt.kind == "Namespace" {
            self.delete_namespace_contents(&object_ref.2);
        }
        let Some(uid) = metadata_str(&object, "uid").map(str::to_owned) else {
            return;
        };
        self.by_uid.remove(&uid);
        let orphans: Vec<ObjectRef> = self.dependents.remove(&uid).into_iter().flatten().collect();
        for dependent in orphans {
            let Some(dependent_object) = self.lookup(&dependent).cloned() else {
                continue;
            };
            let owners_alive = owner_uids(&dependent_object)
                .iter()
                .any(|u| self.by_uid.contains_key(u));
            if !owners_alive {
                self.begin_delete(&dependent, "Background", None);
            }
        }
    }

    fn lookup(&self, object_ref: &ObjectRef) -> Option<&Value> {
        self.objects
            .get(&object_ref.0)?
            .get(&(object_ref.1.clone(), object_ref.2.clone()))
    }

    /// Marks an object deleted: removed at once without finalizers, else given a
    /// deletionTimestamp and left for its finalizers. A pod bound to a node is left terminating
    /// for its kubelet unless `grace` is `Some(0)` (a force delete).
    fn begin_delete(&mut self, object_ref: &ObjectRef, propagation: &str, grace: Option<i64>) {
        let Some(mut object) = self.lookup(object_ref).cloned() else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        let bound_pod = rt.kind == "Pod"
            && rt.group.is_empty()
            && object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
        let grace = if bound_pod {
            grace.unwrap_or_else(|| {
                object
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            })
        } else {
            0
        };
        let has_dependents = metadata_str(&object, "uid")
            .and_then(|uid| self.dependents.get(uid))
            .is_some_and(|d| !d.is_empty());
        let mut extra_finalizer = None;
        if propagation == "Foreground" && has_dependents {
            extra_finalizer = Some("foregroundDeletion");
        }
        if propagation == "Orphan" && has_dependents {
            extra_finalizer = Some("orphan");
        }
        let mut current = finalizers(&object);
        if let Some(f) = extra_finalizer
            && !current.iter().any(|c| c == f)
        {
            current.push(f.to_owned());
        }
        if current.is_empty() && grace == 0 {
            self.remove(object_ref);
            return;
        }
        let already_deleting = metadata_str(&object, "deletionTimestamp").is_some();
        let current_grace = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        // A second delete only matters when it adds a finalizer or shortens the grace period.
        if already_deleting && extra_finalizer.is_none() && current_grace.is_none_or(|g| g <= grace)
        {
            return;
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata
                .entry("deletionTimestamp")
                .or_insert_with(|| json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(grace));
            if current.is_empty() {
                metadata.remove("finalizers");
            } else {
                metadata.insert("finalizers".to_owned(), json!(current));
            }
        }
        let old = self.lookup(object_ref).cloned();
        self.commit(&rt, &object_ref.1, &object_ref.2, object, old.as_ref());
        match extra_finalizer {
            Some("foregroundDeletion") => {
                let uid = metadata_str(self.lookup(object_ref).unwrap_or(&Value::Null), "uid")
                    .map(str::to_owned);
                let dependents: Vec<ObjectRef> = uid
                    .and_then(|u| self.dependents.get(&u).cloned())
                    .into_iter()
                    .flatten()
                    .collect();
                for dependent in dependents {
                    self.begin_delete(&dependent, "Background", None);
                }
            }
            Some("orphan") => self.orphan_dependents(object_ref),
            _ => {}
        }
    }

    /// Removes the owner reference to `owner` from its dependents, then its `orphan` finalizer.
    fn orphan_dependents(&mut self, owner: &ObjectRef) {
        let Some(uid) = self
            .lookup(owner)
            .and_then(|o| metadata_str(o, "uid"))
            .map(str::to_owned)
        else {
            return;
        };
        let dependents: Vec<ObjectRef> = self
            .dependents
            .get(&uid)
            .cloned()
            .into_iter()
            .flatten()
            .collect();
        for dependent in dependents {
            let Some(old) = self.lookup(&dependent).cloned() else {
                continue;
            };
            let Some(rt) = self.resource_type_for(&dependent.0) else {
                continue;
            };
            let mut updated = old.clone();
            if let Some(refs) = updated
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
            }
            self.commit(&rt, &dependent.1, &dependent.2, updated, Some(&old));
        }
        self.drop_finalizer(owner, "orphan");
    }

    /// Completes a foreground deletion once its last dependent is gone.
    fn progress_foreground(&mut self, owner: &ObjectRef) {
        let Some(object) = self.lookup(owner) else {
            return;
        };
        if !finalizers(object).iter().any(|f| f == "foregroundDeletion") {
            return;
        }
        let remaining = metadata_str(object, "uid")
            .and_then(|uid| self.dependents.get(uid))
            .is_some_and(|d| !d.is_empty());
        if !remaining {
            self.drop_finalizer(owner, "foregroundDeletion");
        }
    }

    fn drop_finalizer(&mut self, object_ref: &ObjectRef, finalizer: &str) {
        let Some(old) = self.lookup(object_ref).cloned() else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        let mut updated = old.clone();
        if let Some(list) = updated
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f.as_str() != Some(finalizer));
        }
        self.commit(&rt, &object_ref.1, &object_ref.2, updated, Some(&old));
    }

    fn delete_namespace_contents(&mut self, namespace: &str) {
        let refs: Vec<ObjectRef> = self
            .objects
            .iter()
            .flat_map(|(key, objects)| {
                objects
                    .keys()
                    .filter(|(ns, _)| ns == namespace)
                    .map(move |(ns, name)| (key.clone(), ns.clone(), name.clone()))
            })
            .collect();
        for object_ref in refs {
            self.begin_delete(&object_ref, "Background", None);
        }
    }

    fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let object = self.get(rt, namespace, name)?.clone();
        if let Some(uid) = &options.precondition_uid
            && metadata_str(&object, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    metadata_str(&object, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &options.precondition_resource_version
            && metadata_str(&object, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if options.dry_run {
            return Ok(object);
        }
        let object_ref = (rt.storage_key(), namespace.to_owned(), name.to_owned());
        let propagation = options.propagation.as_deref().unwrap_or("Background");
        if !matches!(propagation, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {propagation:?}"
            )));
        }
        self.begin_delete(&object_ref, propagation, options.grace_period_seconds);
        Ok(self.lookup(&object_ref).cloned().unwrap_or(object))
    }

    /// The common tail of every update: keeps what clients may not change, honours the status
    /// subresource, validates, bumps generation, records field ownership and commits. An update
    /// that changes nothing is not written.
    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        old: &Value,
        mut new: Value,
        sub: Subresource,
        managed: Option<Vec<patch::ManagedEntry>>,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        ensure_metadata(&mut new)?;
        if rt.status_subresource {
            let status = match sub {
                Subresource::Main => old.get("status").cloned(),
                Subresource::Status => new.get("status").cloned(),
            };
            if sub == Subresource::Status {
                let mut only_status = old.clone();
                if let Some(map) = only_status.as_object_mut() {
                    map.remove("status");
                    if let Some(s) = status {
                        map.insert("status".to_owned(), s);
                    }
                }
                new = only_status;
            } else if let Some(map) = new.as_object_mut() {
                map.remove("status");
                if let Some(s) = status {
                    map.insert("status".to_owned(), s);
                }
            }
        }
        let old_metadata = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let metadata = ensure_metadata(&mut new)?;
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_metadata.get(field) {
                Some(value) => {
                    metadata.insert(field.to_owned(), value.clone());
                }
                None => {
                    metadata.remove(field);
                }
            }
        }
        let mut new = self.admit_write(rt, new, Some(old), sub)?;
        if spec_part(&new) != spec_part(old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                + 1;
            if let Some(metadata) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("generation".to_owned(), json!(generation));
            }
        }
        let entries = match managed {
            Some(entries) => entries,
            None => {
                let mut entries = patch::read_managed_fields(old);
                let changed: BTreeSet<FieldPath> =
                    patch::changed_fields(&comparable(old), &comparable(&new));
                patch::record_update(
                    &mut entries,
                    &options.field_manager,
                    &rt.api_version(),
                    sub.name(),
                    &now(),
                    &changed,
                );
                entries
            }
        };
        patch::write_managed_fields(&mut new, &entries);
        if comparable(&new) == comparable(old)
            && patch::read_managed_fields(&new)
                .iter()
                .map(|e| (&e.manager, &e.fields))
                .eq(patch::read_managed_fields(old)
                    .iter()
                    .map(|e| (&e.manager, &e.fields)))
        {
            return Ok(old.clone());
        }
        if rt.kind == "CustomResourceDefinition" {
            self.prepare_crd(&mut new)?;
        }
        if options.dry_run {
            return Ok(new);
        }
        Ok(self.commit(rt, namespace, name, new, Some(old)))
    }

    fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        new: Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let old = self.get(rt, namespace, name)?.clone();
        if let Some(body_name) = metadata_str(&new, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = metadata_str(&new, "resourceVersion")
            && Some(rv) != metadata_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        // A PUT carrying a uid makes it a storage precondition (the generic registry's
        // `defaultUpdatedObjectInfo.Preconditions`): a body read from an older object of that name
        // is refused rather than written over its successor.
        if let Some(uid) = metadata_str(&new, "uid")
            && Some(uid) != metadata_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                &format!(
                    "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    storage_key(rt, namespace, name),
                    metadata_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        self.finish_update(rt, namespace, name, &old, new, sub, None, options)
    }

    #[allow(clippy::too_many_arguments)]
    fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let existing = self.get(rt, namespace, name).cloned();
        if let PatchKind::Apply { force } = kind {
            return self.apply(
                rt,
                namespace,
                name,
                existing.ok(),
                body,
                sub,
                force,
                options,
            );
        }
        let old = existing?;
        let mut new = old.clone();
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut new, body),
            PatchKind::Strategic => patch::strategic_merge_patch(&mut new, body),
            PatchKind::Json => patch::json_patch(&mut new, body)?,
            PatchKind::Apply { .. } => unreachable!("handled above"),
        }
        uid_unchanged(rt, name, &old, &new)?;
        if let Some(rv) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv) != metadata_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        self.finish_update(rt, namespace, name, &old, new, sub, None, options)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        existing: Option<Value>,
        applied: &Value,
        sub: Subresource,
        force: bool,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if options.field_manager.is_empty() || options.field_manager == "unknown" {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        for (field, expected) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
            if applied.get(field).and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "{field} must be {expected} in an apply patch for {}",
                    rt.qualified_plural()
                )));
            }
        }
        if metadata_str(applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object does not match the name on the URL ({name})"
            )));
        }
        let mut intent = applied.clone();
        if let Some(metadata) = intent.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        let time = now();
        let Some(live) = existing else {
            if sub == Subresource::Status {
                return Err(ApiError::not_found(&rt.qualified_plural(), name));
            }
            let mut object = intent;
            ensure_metadata(&mut object)?.insert("name".to_owned(), json!(name));
            return self.create(
                rt,
                namespace,
                object,
                &options.field_manager,
                "Apply",
                options.dry_run,
            );
        };
        let scoped_intent = match sub {
            Subresource::Main => intent,
            Subresource::Status => {
                json!({"status": intent.get("status").cloned().unwrap_or_else(|| json!({}))})
            }
        };
        let normalize = |object: Value| {
            self.admit(rt, object.clone(), Some(&live))
                .unwrap_or(object)
        };
        let applied = patch::server_side_apply(&live, &scoped_intent, &options.field_manager, &rt.api_version(), sub.name(), &time, force, normalize).map_err(|conflicts| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(manager, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": patch::display_path(path)}))
                .collect();
            let summary = conflicts
                .iter()
                .map(|(manager, path)| format!("conflict with \"{manager}\": {}", patch::display_path(path)))
                .collect::<Vec<_>>()
                .join(", ");
            let count = conflicts.len();
            ApiError::conflict(&rt.qualified_plural(), name, &format!("Apply failed with {count} conflict{}: {summary}", if count == 1 { "" } else { "s" }))
                .with_details(json!({"name": name, "kind": rt.qualified_plural(), "causes": causes}))
        })?;
        uid_unchanged(rt, name, &live, &applied.object)?;
        self.finish_update(
            rt,
            namespace,
            name,
            &live,
            applied.object,
            sub,
            Some(applied.entries),
            options,
        )
    }

    fn evict(&mut self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let pods_rt = self
            .registry
            .get("", "v1", "pods")
            .expect("pods are built in");
        let pdb_rt = self
            .registry
            .get("policy", "v1", "poddisruptionbudgets")
            .expect("PDBs are built in");
        let pod = self.get(&pods_rt, namespace, name)?.clone();
        let is_healthy = pod_ready;
        let pods: Vec<Value> = self
            .objects
            .get(&pods_rt.storage_key())
            .map(|all| {
                all.iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default();
        let pdbs: Vec<Value> = self
            .objects
            .get(&pdb_rt.storage_key())
            .map(|all| {
                all.iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default();
        for pdb in pdbs {
            let Some(selector) = pdb.pointer("/spec/selector") else {
                continue;
            };
            if !label_selector_matches(selector, &pod) {
                continue;
            }
            let matching: Vec<&Value> = pods
                .iter()
                .filter(|p| label_selector_matches(selector, p))
                .collect();
            let expected = matching.len() as i64;
            let healthy = matching.iter().filter(|p| is_healthy(p)).count() as i64;
            let desired = desired_healthy(&pdb, expected);
            // Evicting a healthy pod costs one healthy pod; an unhealthy one costs nothing but is
            // only allowed while the budget holds (the IfHealthyBudget policy).
            let after = if is_healthy(&pod) {
                healthy - 1
            } else {
                healthy
            };
            if after < desired {
                return Err(ApiError::too_many_requests(format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
                    metadata_str(&pdb, "name").unwrap_or_default()
                ))
                .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {} needs {desired} healthy pods and has {healthy} currently", metadata_str(&pdb, "name").unwrap_or_default())}]})));
            }
        }
        let object_ref = (pods_rt.storage_key(), namespace.to_owned(), name.to_owned());
        self.begin_delete(&object_ref, "Background", None);
        Ok(())
    }

    /// Fills a CRD's status and validates the fields serving needs.
    fn prepare_crd(&self, crd: &mut Value) -> Result<(), ApiError> {
        let name = metadata_str(crd, "name").unwrap_or_default().to_owned();
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = spec
            .pointer("/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if group.is_empty() || plural.is_empty() || name != format!("{plural}.{group}") {
            return Err(ApiError::invalid(
                "CustomResourceDefinition.apiextensions.k8s.io",
                &name,
                vec![(
                    "metadata.name".to_owned(),
                    format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                )],
            ));
        }
        let stored: Vec<Value> = spec
            .get("versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage") == Some(&json!(true)))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let time = now();
        crd["status"] = json!({
            "acceptedNames": spec.get("names").cloned().unwrap_or(Value::Null),
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
            ],
        });
        Ok(())
    }

    fn register_crd(&mut self, crd: &Value) {
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let names = spec.get("names").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let list = |v: &Value, k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let plural = text(&names, "plural");
        self.registry.remove_resource(&group, &plural);
        if metadata_str(crd, "deletionTimestamp").is_some() {
            return;
        }
        for version in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if version.get("served") == Some(&json!(false)) {
                continue;
            }
            let kind = text(&names, "kind");
            let singular = match text(&names, "singular") {
                s if s.is_empty() => kind.to_lowercase(),
                s => s,
            };
            self.registry.insert(ResourceType {
                group: group.clone(),
                version: text(version, "name"),
                kind,
                plural: plural.clone(),
                singular,
                namespaced: spec.get("scope").and_then(Value::as_str) == Some("Namespaced"),
                status_subresource: version.pointer("/subresources/status").is_some(),
                eviction: false,
                short_names: list(&names, "shortNames"),
                categories: list(&names, "categories"),
                schema: version.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: version
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                create_only: false,
            });
        }
    }

    fn unregister_crd(&mut self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = StorageKey {
            group: group.clone(),
            plural: plural.clone(),
        };
        let refs: Vec<ObjectRef> = self
            .objects
            .get(&key)
            .map(|objects| {
                objects
                    .keys()
                    .map(|(ns, name)| (key.clone(), ns.clone(), name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for object_ref in refs {
            self.remove(&object_ref);
        }
        self.registry.remove_resource(&group, &plural);
    }
}

/// `stringData` is write-only: the API server merges it into `data` (base64) and drops it.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            if let Some(text) = value.as_str() {
                data.insert(
                    key,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
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

/// A deleted pod bound to a node stays, terminating, until its kubelet confirms it stopped.
fn awaits_kubelet(rt: &ResourceType, object: &Value) -> bool {
    rt.kind == "Pod"
        && rt.group.is_empty()
        && object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
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
mod tests {
    use super::*;

    #[test]
    fn a_watch_event_holds_the_served_object_as_json_and_its_labels() {
        let store = Store::new(DEFAULT_HISTORY);
        let rt = store
            .registry()
            .get("", "v1", "configmaps")
            .expect("configmaps are built in");
        let (_, mut receiver) = store.watch_from(&rt.storage_key(), 0).unwrap();
        let body = json!({"metadata": {"name": "c", "labels": {"app": "x"}}, "data": {"k": "v"}});
        store
            .create(
                &rt,
                "default",
                body,
                &WriteOptions {
                    field_manager: "test".into(),
                    dry_run: false,
                    client: "test".into(),
                },
            )
            .unwrap();
        let event = receiver.try_recv().unwrap();
        assert_eq!(event.labels, json!({"app": "x"}));
        assert_eq!(event.api_version, "v1");
        let object = event.object();
        assert_eq!(object["kind"], "ConfigMap");
        assert_eq!(object["apiVersion"], "v1");
        assert_eq!(object["data"]["k"], "v");
    }
}
