//! The reflector caches a reconcile reads from (children, pods, inputs, nodes), how they are
//! fed, and when they count as listed.

use super::cached;
use super::context::api;
use super::error::Error;
use super::names::FIELD_MANAGER;
use super::names::LABEL_DV;
use super::names::LABEL_MANAGED_BY;
use super::names::member_object_name;
use super::run::Triggers;
use crate::api::DistributedValidator;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::Resource;
use kube::ResourceExt;
use kube::api::Api;
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The caches a reconcile reads from.
#[derive(Clone)]
pub(super) struct Caches {
    pub(super) statefulsets: Store<cached::StatefulSet>,
    pub(super) services: Store<Service>,
    pub(super) pdbs: Store<PodDisruptionBudget>,
    pub(super) network_policies: Store<NetworkPolicy>,
    pub(super) pods: Store<cached::Pod>,
    /// Metadata only: a lock is read when its ConfigMap's version changes ([`read_lock`]).
    pub(super) config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub(super) secrets: Store<PartialObjectMeta<Secret>>,
    pub(super) nodes: Store<Node>,
    /// Whether every cache has listed, as [`follow_cache_listing`] sees it.
    pub(super) listing: tokio::sync::watch::Receiver<Listing>,
}

/// How far the caches are with their first lists.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Listing {
    /// These caches have not listed yet.
    Waiting(std::collections::BTreeSet<&'static str>),
    /// Every cache has listed once.
    Done,
    /// The watch feeding this cache ended before it listed.
    Stopped(&'static str),
}

/// How long a reconcile waits for the caches' first lists before it gives up and retries. A
/// watch that cannot list (e.g. RBAC without `list` on a resource) must show in the logs and
/// status instead of holding the reconcile forever.
pub(super) const CACHES_READY_WITHIN: Duration = Duration::from_secs(20);

/// Waits for every cache's first list and publishes the progress. One task waits on the stores
/// and everyone else waits on what it publishes: kube-rs wakes only the last of several tasks
/// waiting on a store's readiness, so reconciles waiting there themselves could sleep through it.
pub(super) async fn follow_cache_listing(
    caches: Caches,
    progress: tokio::sync::watch::Sender<Listing>,
) -> Listing {
    type Waiting<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = (&'static str, bool)> + Send + 'a>>;
    fn named<'a, E>(
        name: &'static str,
        ready: impl std::future::Future<Output = Result<(), E>> + Send + 'a,
    ) -> Waiting<'a> {
        Box::pin(async move { (name, ready.await.is_ok()) })
    }
    let mut waiting: futures::stream::FuturesUnordered<Waiting<'_>> = [
        named("statefulsets", caches.statefulsets.wait_until_ready()),
        named("services", caches.services.wait_until_ready()),
        named("poddisruptionbudgets", caches.pdbs.wait_until_ready()),
        named(
            "networkpolicies",
            caches.network_policies.wait_until_ready(),
        ),
        named("pods", caches.pods.wait_until_ready()),
        named("configmaps", caches.config_maps.wait_until_ready()),
        named("secrets", caches.secrets.wait_until_ready()),
        named("nodes", caches.nodes.wait_until_ready()),
    ]
    .into_iter()
    .collect();
    let outcome = loop {
        match waiting.next().await {
            None => break Listing::Done,
            Some((name, true)) => {
                progress.send_modify(|listing| {
                    if let Listing::Waiting(pending) = listing {
                        pending.remove(name);
                    }
                });
            }
            Some((name, false)) => break Listing::Stopped(name),
        }
    };
    progress.send_replace(outcome.clone());
    outcome
}

/// All the caches' names, as [`Listing::Waiting`] starts.
pub(super) const CACHE_NAMES: [&str; 8] = [
    "statefulsets",
    "services",
    "poddisruptionbudgets",
    "networkpolicies",
    "pods",
    "configmaps",
    "secrets",
    "nodes",
];

impl Caches {
    /// Waits until every cache has listed once; on timeout, names the caches still waiting.
    pub(super) async fn wait_until_ready(&self) -> Result<(), Error> {
        let mut listing = self.listing.clone();
        let settled = tokio::time::timeout(
            CACHES_READY_WITHIN,
            listing.wait_for(|l| !matches!(l, Listing::Waiting(_))),
        )
        .await;
        let state = match settled {
            Ok(Ok(state)) => state.clone(),
            // The follower is gone: the controller is stopping.
            Ok(Err(_)) => return Err(Error::CachesStopped { cache: "all" }),
            Err(_) => self.listing.borrow().clone(),
        };
        match state {
            Listing::Done => Ok(()),
            Listing::Stopped(cache) => Err(Error::CachesStopped { cache }),
            Listing::Waiting(pending) => Err(Error::CachesNotReady {
                caches: pending.into_iter().collect::<Vec<_>>().join(", "),
                waited: CACHES_READY_WITHIN,
            }),
        }
    }
}

/// A reflector over `api`, keeping objects as `trim` leaves them, driven by a task of its own:
/// a cache must keep up whatever the controller is doing (a controller busy with reconciles
/// that wait for the caches would otherwise never let them list). Each change is turned into
/// reconcile requests by `concerns` and sent to `triggers`.
pub(super) fn spawn_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    concerns: impl Fn(&K) -> Vec<ObjectRef<DistributedValidator>> + Send + 'static,
    triggers: &Triggers,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let changes = reflector::reflector(writer, watcher(api, config).modify(trim))
        .default_backoff()
        .touched_objects();
    let triggers = triggers.clone();
    tasks.push(tokio::spawn(changes.for_each(move |change| {
        match change {
            Ok(object) => {
                for dv in concerns(&object) {
                    // Closed only when the controller has stopped.
                    let _ = triggers.unbounded_send(dv);
                }
            }
            Err(error) => warn!(%error, "a watch failed; retrying with backoff"),
        }
        futures::future::ready(())
    })));
    reader
}

/// A cache of one kind of the operator's children (labelled as managed by it); a change
/// reconciles the DV that owns the object.
pub(super) fn owned_cache<K>(
    client: &Client,
    namespace: Option<&str>,
    trim: fn(&mut K),
    triggers: &Triggers,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    spawn_cache(
        api(client, namespace),
        managed,
        trim,
        owning_dv,
        triggers,
        tasks,
    )
}

/// The DV that owns `object` (by owner reference), if any.
pub(super) fn owning_dv<K: Resource>(object: &K) -> Vec<ObjectRef<DistributedValidator>> {
    let namespace = object.namespace().unwrap_or_default();
    object
        .owner_references()
        .iter()
        .filter(|owner| {
            owner.kind == <DistributedValidator as Resource>::kind(&())
                && owner.api_version == <DistributedValidator as Resource>::api_version(&())
        })
        .map(|owner| ObjectRef::new(&owner.name).within(&namespace))
        .collect()
}

/// Each member's StatefulSet in the cache, by member name: looked up by its known name (a scan
/// per reconcile made convergence quadratic in the number of DVs), and only if it carries the
/// DV's label.
pub(super) fn member_statefulsets(
    dv: &DistributedValidator,
    caches: &Caches,
) -> BTreeMap<String, Arc<cached::StatefulSet>> {
    let namespace = dv.namespace().unwrap_or_default();
    let dv_name = dv.name_any();
    dv.spec
        .members
        .iter()
        .filter_map(|m| {
            let key = ObjectRef::new(&member_object_name(&dv_name, &m.name)).within(&namespace);
            let set = caches.statefulsets.get(&key)?;
            (set.labels().get(LABEL_DV) == Some(&dv_name)).then(|| (m.name.clone(), set))
        })
        .collect()
}
