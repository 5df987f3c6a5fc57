//! The DistributedValidator controller: a thin driver of `dereference → validate → build →
//! apply → status`, with every decision in pure modules (`model`, `build`, `status`) and only
//! `dereference`, `apply` and the status write touching the API.

pub mod build;
pub mod drift;
pub mod health;
pub mod model;
pub mod names;
pub mod retry;
pub mod status;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod trim;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, info_span, warn};

use crate::api::DistributedValidator;
use build::Desired;
use model::{Facts, SecretFacts};
use names::*;

/// Why a reconcile failed; the variant names the action, and its category is the Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the cluster lock Secret {name}: {source}")]
    ReadLock {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the keystores' public keys in Secret {name}: {source}")]
    ReadKeystores {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the watch feeding the {cache} cache stopped before listing once")]
    CachesStopped { cache: &'static str },
    #[error(
        "the {caches} cache(s) have not listed once after {waited:?}: is `list`/`watch` on them allowed?"
    )]
    CachesNotReady { caches: String, waited: Duration },
    #[error("this replica no longer holds the leader lease (renew deadline passed): not writing")]
    Fenced,
    #[error(
        "the reconcile did not finish within {0:?} (an API call that never answered); abandoned"
    )]
    TimedOut(Duration),
    #[error("encoding {kind} {name}: {source}")]
    Encode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A low-cardinality category: Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::WriteStatus { .. } => "StatusWriteFailed",
            Error::ReadLock { .. } => "LockReadFailed",
            Error::Encode { .. } => "EncodeFailed",
            Error::CachesStopped { .. } => "CachesStopped",
            Error::CachesNotReady { .. } => "CachesNotReady",
            Error::ReadKeystores { .. } => "KeystoreReadFailed",
            Error::Fenced => "NotLeader",
            Error::TimedOut(_) => "ReconcileTimedOut",
        }
    }
}

/// Where the controller watches and how many DVs it reconciles at once.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// DVs reconciled at the same time (one DV is never reconciled twice at once). Bounded, so
    /// that a restart with a thousand DVs does not open a thousand request streams at once.
    pub concurrency: u16,
    /// How long a DV's changes are gathered before it is reconciled: its members' pods change
    /// several times each while they start, and one reconcile (and one status write) for a burst
    /// is enough. Delays every reaction by at most this much.
    pub debounce: Duration,
    /// Whether this process may write (the leader's fence; never closed without election).
    pub fence: crate::leader::Fence,
}

/// The default of [`Settings::concurrency`].
pub const DEFAULT_CONCURRENCY: u16 = 16;
/// The default of [`Settings::debounce`].
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            debounce: DEFAULT_DEBOUNCE,
            fence: crate::leader::Fence::default(),
        }
    }
}

/// The caches a reconcile reads from.
#[derive(Clone)]
struct Caches {
    statefulsets: Store<StatefulSet>,
    services: Store<Service>,
    pdbs: Store<PodDisruptionBudget>,
    network_policies: Store<NetworkPolicy>,
    pods: Store<Pod>,
    config_maps: Store<ConfigMap>,
    secrets: Store<PartialObjectMeta<Secret>>,
    nodes: Store<Node>,
    /// Whether every cache has listed, as [`follow_cache_listing`] sees it.
    listing: tokio::sync::watch::Receiver<Listing>,
}

/// How far the caches are with their first lists.
#[derive(Clone, Debug, PartialEq)]
enum Listing {
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
const CACHES_READY_WITHIN: Duration = Duration::from_secs(20);

/// Waits for every cache's first list and publishes the progress. One task waits on the stores
/// and everyone else waits on what it publishes: kube-rs wakes only the last of several tasks
/// waiting on a store's readiness, so reconciles waiting there themselves could sleep through it.
async fn follow_cache_listing(
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
const CACHE_NAMES: [&str; 8] = [
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
    async fn wait_until_ready(&self) -> Result<(), Error> {
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

/// Keystore public keys by (namespace, Secret), with the resourceVersion they were read at.
type KeystoreCache = std::sync::Mutex<
    std::collections::HashMap<(String, String), (String, Result<BTreeMap<usize, String>, String>)>,
>;

struct Context {
    metrics: Arc<crate::metrics::Metrics>,
    /// Checked right before every write: a replica that lost the lease writes nothing more.
    fence: crate::leader::Fence,
    /// Each failing DV's failures since its last good reconcile (backoff and Event limits).
    failures: std::sync::Mutex<std::collections::HashMap<(String, String), retry::Failures>>,
    client: Client,
    recorder: Recorder,
    caches: Caches,
    keystores: KeystoreCache,
    lock_checks: LockChecks,
    /// When each DV's status was last written, to hold back detail-only changes briefly.
    status_written: std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves (e.g. SIGTERM), for each namespace in scope.
pub async fn run_with_metrics(
    client: Client,
    settings: Settings,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let runs = namespaces.into_iter().map(|namespace| {
        run_in(
            client.clone(),
            namespace,
            &settings,
            metrics.clone(),
            shutdown.clone(),
        )
    });
    futures::future::join_all(runs).await;
}

/// Runs the controller only while this replica holds the Lease of `lease`, each term with its
/// own fence, until `shutdown` resolves; `/metrics` says whether it leads.
pub async fn run_elected(
    client: Client,
    settings: Settings,
    lease: crate::leader::LeaseConfig,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let leading = metrics.clone();
    crate::leader::run_while_leader(
        client.clone(),
        lease,
        move |stop, fence| {
            let client = client.clone();
            let settings = Settings {
                fence,
                ..settings.clone()
            };
            let metrics = metrics.clone();
            async move {
                run_with_metrics(client, settings, metrics, async move {
                    let _ = stop.await;
                })
                .await;
            }
        },
        move |now| leading.set_leader(now),
        shutdown,
    )
    .await;
}

/// Runs the controller with metrics that nobody serves (tests, the demo).
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_with_metrics(client, settings, Arc::default(), shutdown).await;
}

/// Where a changed object sends its reconcile requests.
type Triggers = futures::channel::mpsc::UnboundedSender<ObjectRef<DistributedValidator>>;

/// A reflector over `api`, keeping objects as `trim` leaves them, driven by a task of its own:
/// a cache must keep up whatever the controller is doing (a controller busy with reconciles
/// that wait for the caches would otherwise never let them list). Each change is turned into
/// reconcile requests by `concerns` and sent to `triggers`.
fn spawn_cache<K>(
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
fn owned_cache<K>(
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
fn owning_dv<K: Resource>(object: &K) -> Vec<ObjectRef<DistributedValidator>> {
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

async fn run_in(
    client: Client,
    namespace: Option<String>,
    settings: &Settings,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    // DVs are cached without their managed fields, which mirror the whole spec and status.
    let (dvs, dv_writer) = reflector::store();
    let dv_changes = reflector::reflector(
        dv_writer,
        watcher(
            api::<DistributedValidator>(&client, ns),
            watcher::Config::default(),
        )
        .modify(trim::distributed_validator),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::for_stream(dv_changes, dvs.clone()).with_config(
        kube::runtime::controller::Config::default()
            .concurrency(settings.concurrency)
            .debounce(settings.debounce),
    );
    let (triggers, requests) = futures::channel::mpsc::unbounded();
    let mut tasks = Vec::new();
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let statefulsets = owned_cache(&client, ns, trim::statefulset, &triggers, &mut tasks);
    let services = owned_cache(&client, ns, trim::service, &triggers, &mut tasks);
    let pdbs = owned_cache(
        &client,
        ns,
        trim::pod_disruption_budget,
        &triggers,
        &mut tasks,
    );
    let network_policies = owned_cache(&client, ns, trim::network_policy, &triggers, &mut tasks);
    // Pods belong to the StatefulSets; their DV is in a label.
    let pods = spawn_cache(
        api::<Pod>(&client, ns),
        managed,
        trim::pod,
        |pod: &Pod| {
            let namespace = pod.namespace().unwrap_or_default();
            pod.labels()
                .get(LABEL_DV)
                .map(|dv| ObjectRef::new(dv).within(&namespace))
                .into_iter()
                .collect()
        },
        &triggers,
        &mut tasks,
    );
    let dvs_for_config_maps = dvs.clone();
    let config_maps = spawn_cache(
        api::<ConfigMap>(&client, ns),
        watcher::Config::default(),
        trim::config_map,
        move |cm: &ConfigMap| {
            referencing(
                &dvs_for_config_maps,
                &cm.name_any(),
                &cm.namespace().unwrap_or_default(),
            )
        },
        &triggers,
        &mut tasks,
    );
    // Secrets are cached as metadata only: the controller never holds key material.
    let dvs_for_secrets = dvs.clone();
    let secrets = spawn_cache(
        api::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default(),
        trim::secret,
        move |secret: &PartialObjectMeta<Secret>| {
            referencing(
                &dvs_for_secrets,
                &secret.name_any(),
                &secret.namespace().unwrap_or_default(),
            )
        },
        &triggers,
        &mut tasks,
    );
    // Nodes feed zones into status; a change of nodes alone does not need a reconcile.
    let nodes = spawn_cache(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        trim::node,
        |_: &Node| Vec::new(),
        &triggers,
        &mut tasks,
    );
    drop(triggers);

    let (progress, listing) =
        tokio::sync::watch::channel(Listing::Waiting(CACHE_NAMES.into_iter().collect()));
    let caches = Caches {
        statefulsets,
        services,
        pdbs,
        network_policies,
        pods,
        config_maps,
        secrets,
        nodes,
        listing,
    };
    let reporter = Reporter {
        controller: CONTROLLER_NAME.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        metrics: metrics.clone(),
        fence: settings.fence.clone(),
        failures: Default::default(),
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        keystores: KeystoreCache::default(),
        lock_checks: LockChecks::default(),
        status_written: Default::default(),
        caches: caches.clone(),
    });
    tasks.push(tokio::spawn(forget_deleted(dvs.clone(), context.clone())));
    let ready = metrics.clone();
    tasks.push(tokio::spawn(async move {
        if follow_cache_listing(caches, progress).await == Listing::Done {
            ready.set_ready(true);
        }
    }));
    controller
        .reconcile_on(requests)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
            futures::future::ready(())
        })
        .await;
    // A replica that lost the lease (or is stopping) stops watching too.
    for task in tasks {
        task.abort();
    }
}

/// How often what deleted DVs left behind is forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(2);

/// Forgets deleted DVs: their `/metrics` series, status-write times and the keystores of Secrets
/// that are gone. kube-rs never reconciles an object that has left its store, and without a
/// finalizer (there is no state outside Kubernetes to clean up) a deleted DV is simply gone.
async fn forget_deleted(dvs: Store<DistributedValidator>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(FORGET_EVERY);
    loop {
        tick.tick().await;
        // Before the DVs have listed, every DV would look deleted. Asked afresh on each tick:
        // a waiter that is already parked may never wake (kube-rs 5 wakes one of several, and the
        // controller waits on this store too), a new look at a listed store answers at once.
        use futures::FutureExt;
        if !matches!(dvs.wait_until_ready().now_or_never(), Some(Ok(()))) {
            continue;
        }
        let live: std::collections::BTreeSet<(String, String)> = dvs
            .state()
            .iter()
            .map(|dv| (dv.namespace().unwrap_or_default(), dv.name_any()))
            .collect();
        let forgotten = ctx.metrics.retain_dvs(|key| live.contains(key));
        if let Ok(mut written) = ctx.status_written.lock() {
            written.retain(|key, _| live.contains(key));
        }
        if let Ok(mut failures) = ctx.failures.lock() {
            failures.retain(|key, _| live.contains(key));
        }
        if let Ok(mut keystores) = ctx.keystores.lock() {
            keystores.retain(|(namespace, secret), _| {
                ctx.caches
                    .secrets
                    .get(&ObjectRef::new(secret).within(namespace))
                    .is_some()
            });
        }
        for (namespace, name) in forgotten {
            tracing::debug!(%namespace, %name, "forgot a deleted DV");
        }
    }
}

/// DVs in `namespace` whose lock or member Secrets are named `name`.
fn referencing(
    dvs: &Store<DistributedValidator>,
    name: &str,
    namespace: &str,
) -> Vec<ObjectRef<DistributedValidator>> {
    dvs.state()
        .iter()
        .filter(|dv| dv.namespace().as_deref() == Some(namespace))
        .filter(|dv| {
            let lock = &dv.spec.cluster_lock;
            lock.config_map.as_ref().is_some_and(|c| c.name == name)
                || lock.secret.as_ref().is_some_and(|s| s.name == name)
                || dv
                    .spec
                    .members
                    .iter()
                    .any(|m| m.key_share_secret.name == name || m.enr_secret.name == name)
        })
        .map(|dv| ObjectRef::from_obj(dv.as_ref()))
        .collect()
}

/// A failed reconcile is tried again after a per-DV backoff that doubles up to
/// [`retry::LONGEST_RETRY`] (a minute), and reported as a Warning Event (reason: the error's category) at
/// most once a minute per kind of failure. Apply failures published their own Event (naming the
/// object); a replica that lost the lease publishes nothing.
fn error_policy(dv: Arc<DistributedValidator>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    let category = error.category();
    let retry = match ctx.failures.lock() {
        Ok(mut failures) => failures
            .entry(key)
            .or_default()
            .failed(category, Instant::now()),
        Err(_) => retry::Retry {
            after: retry::LONGEST_RETRY,
            publish: false,
        },
    };
    warn!(name = %dv.name_any(), namespace = ?dv.namespace(), category, %error, retry_in = ?retry.after, "reconcile failed; retrying");
    let published_already = matches!(error, Error::Apply { .. } | Error::Fenced);
    if retry.publish && !published_already {
        let note = format!("{error} (next try in {}s)", retry.after.as_secs());
        tokio::spawn(async move {
            publish(&ctx, &dv, EventType::Warning, category, "Reconcile", note).await;
        });
    }
    Action::requeue(retry.after)
}

tokio::task_local! {
    /// Time the current reconcile has spent waiting on the API server and the caches.
    static WAITING: std::cell::Cell<Duration>;
}

/// Awaits a request to the API server (or the caches), counting the time as waiting, so that
/// the reconcile metrics can tell the operator's own time from the server's.
async fn waiting_on<F: std::future::Future>(call: F) -> F::Output {
    let started = std::time::Instant::now();
    let output = call.await;
    let _ = WAITING.try_with(|waited| waited.set(waited.get() + started.elapsed()));
    output
}

async fn reconcile(dv: Arc<DistributedValidator>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    let context = ctx.clone();
    let (result, waited) = WAITING
        .scope(std::cell::Cell::new(Duration::ZERO), async move {
            let result = reconcile_timed(dv, ctx).await;
            (result, WAITING.with(std::cell::Cell::get))
        })
        .await;
    metrics.observe_reconcile(started.elapsed(), waited);
    match &result {
        Err(error) => metrics.observe_error(error.category()),
        Ok(_) => {
            if let Ok(mut failures) = context.failures.lock() {
                failures.remove(&key);
            }
        }
    }
    result
}

async fn reconcile_timed(
    dv: Arc<DistributedValidator>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = info_span!("reconcile", name = %dv.name_any(), namespace = %dv.namespace().unwrap_or_default());
    // One DV is never reconciled twice at once, so a reconcile stuck on a call that never
    // answers would stop every later one for this DV: give up on it and retry.
    match tokio::time::timeout(
        RECONCILE_DEADLINE,
        reconcile_inner(dv, ctx).instrument(span),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Error::TimedOut(RECONCILE_DEADLINE)),
    }
}

async fn reconcile_inner(
    dv: Arc<DistributedValidator>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if dv.meta().deletion_timestamp.is_some() {
        ctx.metrics
            .forget(&dv.namespace().unwrap_or_default(), &dv.name_any());
        if let Ok(mut written) = ctx.status_written.lock() {
            written.remove(&(dv.namespace().unwrap_or_default(), dv.name_any()));
        }
        // Children go with the DV by garbage collection; PVCs and Secrets are not ours to delete.
        return Ok(Action::await_change());
    }
    // Deciding from half-filled caches would report members as missing and write a wrong
    // status (or recreate what exists); wait until every cache has listed once.
    waiting_on(ctx.caches.wait_until_ready()).await?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let facts = dereference(&dv, &ctx).await?;
    let cluster = match model::validate(&dv, &facts) {
        Ok(cluster) => cluster,
        Err(invalid) => {
            let status = status::invalid(&dv, &invalid, &now);
            let changed_message = dv
                .status
                .as_ref()
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == crate::api::condition_types::AVAILABLE)
                })
                .is_none_or(|c| c.message != invalid.message());
            if changed_message {
                publish(
                    &ctx,
                    &dv,
                    EventType::Warning,
                    invalid.reason,
                    "Validate",
                    invalid.message(),
                )
                .await;
            }
            write_status(&dv, &ctx, status).await?;
            return Ok(Action::await_change());
        }
    };
    for (member, why) in &cluster.blocked {
        let already = dv.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == crate::api::condition_types::KEY_SHARES_VERIFIED
                    && c.message.contains(why.as_str())
            })
        });
        if already {
            continue;
        }
        // One series per missing Secret: the recorder folds Events with the same reason and
        // related object, and an earlier, different message must not hide this one.
        let missing = dv
            .spec
            .members
            .iter()
            .filter(|m| &m.name == member)
            .flat_map(|m| [m.key_share_secret.name.clone(), m.enr_secret.name.clone()])
            .filter(|secret| !facts.secrets.contains_key(secret));
        for secret in missing {
            let related = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(secret),
                namespace: dv.namespace(),
                ..ObjectReference::default()
            };
            publish_about(
                &ctx,
                &dv,
                Some(related),
                EventType::Warning,
                model::reasons::SECRET_MISSING,
                "Validate",
                format!("member {member} is not created or changed: {why}"),
            )
            .await;
        }
    }
    for (member, why) in &cluster.share_mismatches {
        let already = dv.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == crate::api::condition_types::KEY_SHARES_VERIFIED
                    && c.message.contains(why.as_str())
            })
        });
        if !already {
            publish(
                &ctx,
                &dv,
                EventType::Warning,
                model::reasons::SHARE_MISMATCH,
                "Validate",
                format!("member {member} is not created or changed: {why}"),
            )
            .await;
        }
    }
    let mut desired = build::build(&cluster);
    // A member whose claims grow keeps its StatefulSet out of this apply (kube-apiserver would
    // refuse the new claim templates): its PVCs are expanded, then the StatefulSet is deleted
    // with its pod orphaned and is created again, with the new templates, by the next pass.
    for (member, claims) in &cluster.storage_growth {
        let set_name = member_object_name(&dv.name_any(), member);
        desired
            .statefulsets
            .retain(|set| set.metadata.name.as_deref() != Some(set_name.as_str()));
        grow_storage(&dv, &ctx, &set_name, claims).await?;
    }
    apply(&dv, &ctx, desired).await?;
    // Each member's StatefulSet and pod have known names: look them up instead of scanning
    // the caches (a scan per reconcile made convergence quadratic in the number of DVs).
    let namespace = dv.namespace().unwrap_or_default();
    let dv_name = dv.name_any();
    let owned_by_dv = |labels: &BTreeMap<String, String>| labels.get(LABEL_DV) == Some(&dv_name);
    let observed_sets: BTreeMap<String, Arc<StatefulSet>> = dv
        .spec
        .members
        .iter()
        .filter_map(|m| {
            let key = ObjectRef::new(&member_object_name(&dv_name, &m.name)).within(&namespace);
            let set = ctx.caches.statefulsets.get(&key)?;
            owned_by_dv(set.labels()).then(|| (m.name.clone(), set))
        })
        .collect();
    let observed_pods: BTreeMap<String, Arc<Pod>> = dv
        .spec
        .members
        .iter()
        .filter_map(|m| {
            let key = ObjectRef::new(&member_pod_name(&dv_name, &m.name)).within(&namespace);
            let pod = ctx.caches.pods.get(&key)?;
            owned_by_dv(pod.labels()).then(|| (m.name.clone(), pod))
        })
        .collect();
    let zone_of = |node: &str| {
        ctx.caches
            .nodes
            .get(&ObjectRef::new(node))
            .and_then(|n| n.labels().get(&dv.spec.placement.zone_label).cloned())
    };
    let observed: BTreeMap<String, status::Observed<'_>> = dv
        .spec
        .members
        .iter()
        .map(|m| {
            let pod = observed_pods.get(&m.name).map(Arc::as_ref);
            let zone = pod
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .and_then(|n| zone_of(&n));
            (
                m.name.clone(),
                status::Observed {
                    statefulset: observed_sets.get(&m.name).map(Arc::as_ref),
                    pod,
                    zone,
                },
            )
        })
        .collect();
    let (outcome, wake_at) = keep_quorum(&dv, &ctx, &cluster, &observed, &now).await;
    let computed = status::compute(&dv, &cluster, &observed, &outcome, &now);
    ctx.metrics.observe_status(
        &dv.namespace().unwrap_or_default(),
        &dv.name_any(),
        cluster.quorum.members(),
        &computed,
    );
    let held_back = write_status(&dv, &ctx, computed).await?;
    // Look again when a backoff or minReadySeconds ends, or a held-back status is due;
    // otherwise a periodic resync.
    let requeue = wake_at
        .and_then(|at| std::time::Duration::try_from(at.duration_since(now.0)).ok())
        .map_or(Duration::from_secs(300), |d| {
            d.clamp(Duration::from_millis(200), Duration::from_secs(300))
        });
    Ok(Action::requeue(held_back.map_or(requeue, |due| {
        requeue.min(due.max(Duration::from_millis(200)))
    })))
}

/// A reference to a member's pod (with its uid: each pod instance is its own Event series).
fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// How long one reconcile may take before it is abandoned (normally milliseconds; the caches'
/// first listing may take up to [`CACHES_READY_WITHIN`]).
const RECONCILE_DEADLINE: Duration = Duration::from_secs(45);

/// How soon a restart that failed (e.g. an eviction the budget refused) is tried again.
const RETRY_FAILED_ACTION: Duration = Duration::from_secs(5);
/// How often a DV with outdated members is looked at without an event.
const ROLLOUT_RECHECK: Duration = Duration::from_secs(10);

/// The annotation that pauses every disruptive action on a DV, like `spec.rollout.paused`.
pub const ANNOTATION_PAUSED: &str = "dvt.io/paused";

/// Plans restarts with the quorum planner and carries them out; returns what happened for
/// status, and when to look again.
async fn keep_quorum(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
    observed: &BTreeMap<String, status::Observed<'_>>,
    now: &Time,
) -> (status::Outcome, Option<k8s_openapi::jiff::Timestamp>) {
    let rollout = &dv.spec.rollout;
    let paused = rollout.paused
        || dv
            .annotations()
            .get(ANNOTATION_PAUSED)
            .is_some_and(|v| v == "true");
    let settings = crate::planner::Settings {
        threshold: cluster.quorum.threshold(),
        max_unavailable: rollout.max_unavailable,
        min_ready: Duration::from_secs(u64::from(rollout.min_ready_seconds)),
        restart_delay: Duration::from_secs(u64::from(rollout.restart_delay_seconds)),
        restart_backoff: Duration::from_secs(u64::from(rollout.restart_backoff_seconds)),
        max_restart_backoff: Duration::from_secs(u64::from(rollout.max_restart_backoff_seconds)),
        paused,
    };
    let previous = dv.status.clone().unwrap_or_default();
    // Only members that were built take part: a blocked member has no pod to act on.
    let members: Vec<crate::planner::Member> = dv
        .spec
        .members
        .iter()
        .filter(|m| cluster.members.iter().any(|b| b.name == m.name))
        .map(|m| {
            let seen = observed.get(&m.name);
            let pod = seen.and_then(|s| s.pod);
            let node = pod
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .and_then(|n| ctx.caches.nodes.get(&ObjectRef::new(&n)));
            let outdated = seen.is_some_and(status::is_outdated);
            health::member(
                &m.name,
                m.index,
                pod,
                node.as_deref(),
                outdated,
                previous.members.iter().find(|p| p.name == m.name),
                now.0,
            )
        })
        .collect();
    let plan = crate::planner::plan(&members, &settings, now.0);
    let mut outcome = status::Outcome {
        stranded: plan.stranded.clone(),
        paused,
        waiting: plan.waiting.clone(),
        min_ready: settings.min_ready,
        ..status::Outcome::default()
    };
    let namespace = dv.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut retry_at: Option<k8s_openapi::jiff::Timestamp> = None;
    for action in &plan.actions {
        let (member, reason, force, evict) = match action {
            crate::planner::Action::Restart {
                member,
                kind,
                reason,
            } => (
                member,
                reason,
                false,
                *kind == crate::planner::RestartKind::Rollout,
            ),
            crate::planner::Action::ForceDelete { member, reason } => (member, reason, true, false),
        };
        let Some(pod) = observed.get(member).and_then(|s| s.pod) else {
            continue;
        };
        let pod_name = pod.name_any();
        if !ctx.fence.holds() {
            // Lost the lease mid-pass: the new leader decides from here.
            warn!(member = %member, "not restarting: no longer the leader");
            break;
        }
        let result = if evict {
            // A rollout restart goes through the eviction API: the PodDisruptionBudget is a
            // second guard on top of the planner's budget.
            waiting_on(pods.evict(&pod_name, &kube::api::EvictParams::default()))
                .await
                .map(drop)
        } else {
            // The uid precondition keeps a late action from deleting the member's next pod.
            let params = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                grace_period_seconds: force.then_some(0),
                ..kube::api::DeleteParams::default()
            };
            waiting_on(pods.delete(&pod_name, &params)).await.map(drop)
        };
        let note = format!(
            "member {member}: {reason}; quorum budget {} (ready minus threshold)",
            plan.budget
        );
        match result {
            Ok(()) => {
                info!(member = %member, reason = %reason, budget = plan.budget, "restarted a member");
                let consecutive = match action {
                    crate::planner::Action::Restart {
                        kind: crate::planner::RestartKind::Repair,
                        ..
                    } => {
                        previous
                            .members
                            .iter()
                            .find(|m| &m.name == member)
                            .map_or(0, |m| m.consecutive_restarts)
                            + 1
                    }
                    _ => 0,
                };
                outcome
                    .restarted
                    .insert(member.clone(), (now.clone(), reason.clone(), consecutive));
                let event_reason = if force {
                    "ForceDeleted"
                } else if evict {
                    "RollingRestart"
                } else {
                    "Repairing"
                };
                let related = Some(pod_reference(pod));
                publish_about(
                    ctx,
                    dv,
                    related,
                    EventType::Normal,
                    event_reason,
                    "Restart",
                    note,
                )
                .await;
            }
            Err(error) => {
                warn!(member = %member, %error, "could not restart a member");
                // Nothing else may wake this DV soon (an eviction refused by the budget changes
                // no watched object): look again shortly.
                let soon = now.0.checked_add(RETRY_FAILED_ACTION).unwrap_or(now.0);
                retry_at =
                    Some(retry_at.map_or(soon, |r: k8s_openapi::jiff::Timestamp| r.min(soon)));
                publish_about(
                    ctx,
                    dv,
                    Some(pod_reference(pod)),
                    EventType::Warning,
                    "RestartFailed",
                    "Restart",
                    format!("{note}: {error}"),
                )
                .await;
            }
        }
    }
    for member in &plan.stranded {
        let already = previous
            .members
            .iter()
            .any(|m| &m.name == member && m.stranded);
        if !already {
            publish(ctx, dv, EventType::Warning, "MemberStranded", "Observe", format!("member {member}: its node is unreachable; the pod is left alone until the node returns, is deleted, or is tainted node.kubernetes.io/out-of-service")).await;
        }
    }
    let wake_at = match (plan.wake_at, retry_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // While members wait for a rollout, look again now and then even without an event.
    let outdated_waiting = members.iter().any(|m| m.outdated);
    let wake_at = if outdated_waiting {
        let check = now.0.checked_add(ROLLOUT_RECHECK).unwrap_or(now.0);
        Some(wake_at.map_or(check, |w| w.min(check)))
    } else {
        wake_at
    };
    (outcome, wake_at)
}

/// Reads what validation needs: the lock and which Secrets exist (metadata only).
async fn dereference(dv: &DistributedValidator, ctx: &Context) -> Result<Facts, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let lock = match (
        &dv.spec.cluster_lock.config_map,
        &dv.spec.cluster_lock.secret,
    ) {
        (Some(source), _) => match ctx
            .caches
            .config_maps
            .get(&ObjectRef::new(&source.name).within(&namespace))
        {
            None => Err(format!(
                "ConfigMap {:?} with the cluster lock does not exist",
                source.name
            )),
            Some(cm) => cm
                .data
                .as_ref()
                .and_then(|d| d.get(&source.key))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "ConfigMap {:?} has no key {:?} with the cluster lock",
                        source.name, source.key
                    )
                }),
        },
        (None, Some(source)) => {
            // The lock is public material even when stored in a Secret; only its key is read.
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            match waiting_on(secrets.get_opt(&source.name))
                .await
                .map_err(|e| Error::ReadLock {
                    name: source.name.clone(),
                    source: e,
                })? {
                None => Err(format!(
                    "Secret {:?} with the cluster lock does not exist",
                    source.name
                )),
                Some(secret) => secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&source.key))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .ok_or_else(|| {
                        format!(
                            "Secret {:?} has no UTF-8 key {:?} with the cluster lock",
                            source.name, source.key
                        )
                    }),
            }
        }
        (None, None) => Err("spec.clusterLock names no ConfigMap or Secret".to_owned()),
    };
    // Only the Secrets this DV names, looked up by name.
    let secrets: BTreeMap<String, SecretFacts> = dv
        .spec
        .members
        .iter()
        .flat_map(|m| [&m.key_share_secret.name, &m.enr_secret.name])
        .filter_map(|name| {
            let secret = ctx
                .caches
                .secrets
                .get(&ObjectRef::new(name).within(&namespace))?;
            Some((
                name.clone(),
                SecretFacts {
                    resource_version: secret.resource_version().unwrap_or_default(),
                },
            ))
        })
        .collect();
    let placement = &dv.spec.placement;
    let mut zones = crate::placement::Zones::new();
    for node in ctx.caches.nodes.state() {
        if let Some(zone) = node.labels().get(&placement.zone_label)
            && (placement.zones.is_empty() || placement.zones.contains(zone))
        {
            *zones.entry(zone.clone()).or_default() += 1;
        }
    }
    let keystores = read_keystores(dv, ctx, &secrets).await?;
    let lock_verification = lock
        .as_ref()
        .ok()
        .and_then(|text| ctx.lock_checks.verify(text));
    let dv_name = dv.name_any();
    let live_claims = dv
        .spec
        .members
        .iter()
        .filter_map(|m| {
            let key = ObjectRef::new(&member_object_name(&dv_name, &m.name)).within(&namespace);
            let set = ctx.caches.statefulsets.get(&key)?;
            (set.labels().get(LABEL_DV) == Some(&dv_name))
                .then(|| (m.name.clone(), storage::live_claims(&set)))
        })
        .collect();
    Ok(Facts {
        lock,
        lock_verification,
        secrets,
        keystores,
        zones,
        live_claims,
    })
}

/// What `lock::verify` says about each lock document, verified once per document: the BLS checks
/// cost milliseconds, and every reconcile of every DV would pay them again. Keyed by SHA-256 (a
/// collision-resistant hash: whoever can edit a lock must not be able to make it look like one
/// already verified).
#[derive(Default)]
struct LockChecks(std::sync::Mutex<std::collections::HashMap<[u8; 32], Vec<String>>>);

impl LockChecks {
    /// The problems `lock::verify` finds in `text`; `None` when the document does not parse
    /// (validation reports that).
    fn verify(&self, text: &str) -> Option<Vec<String>> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if let Some(known) = self.0.lock().ok()?.get(&key) {
            return Some(known.clone());
        }
        let problems = crate::lock::verify(&crate::lock::summarize(text).ok()?);
        if let Ok(mut cache) = self.0.lock() {
            // Bounded: a lock edited over and over must not grow the cache without end.
            if cache.len() >= LOCK_CHECKS_KEPT {
                cache.clear();
            }
            cache.insert(key, problems.clone());
        }
        Some(problems)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|cache| cache.len()).unwrap_or_default()
    }
}

/// Lock documents whose verification is remembered.
const LOCK_CHECKS_KEPT: usize = 4096;

/// Public keys of the members' keystores. A Secret is read again only when its
/// resourceVersion changed; of its data only the `pubkey` of each `keystore-N.json` is kept.
async fn read_keystores(
    dv: &DistributedValidator,
    ctx: &Context,
    secrets: &BTreeMap<String, SecretFacts>,
) -> Result<BTreeMap<String, Result<BTreeMap<usize, String>, String>>, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut out = BTreeMap::new();
    for member in &dv.spec.members {
        let name = &member.key_share_secret.name;
        let Some(facts) = secrets.get(name) else {
            continue;
        };
        let key = (namespace.clone(), name.clone());
        let cached = ctx.keystores.lock().ok().and_then(|cache| {
            cache
                .get(&key)
                .filter(|(rv, _)| *rv == facts.resource_version)
                .map(|(_, keys)| keys.clone())
        });
        let keys = match cached {
            Some(keys) => keys,
            None => {
                let secret =
                    waiting_on(api.get_opt(name))
                        .await
                        .map_err(|source| Error::ReadKeystores {
                            name: name.clone(),
                            source,
                        })?;
                let keys = match secret {
                    None => Err("the Secret disappeared while it was read".to_owned()),
                    Some(secret) => crate::keystore::public_keys(
                        secret
                            .data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.0.as_slice())),
                    ),
                };
                if let Ok(mut cache) = ctx.keystores.lock() {
                    cache.insert(key, (facts.resource_version.clone(), keys.clone()));
                }
                keys
            }
        };
        out.insert(name.clone(), keys);
    }
    Ok(out)
}

/// Expands a member's PVCs to the sizes asked for; once every one is asked, deletes its
/// StatefulSet with `propagationPolicy: Orphan` (the pod keeps running and is adopted by the
/// StatefulSet the next pass creates). PVCs are patched, never deleted.
async fn grow_storage(
    dv: &DistributedValidator,
    ctx: &Context,
    set_name: &str,
    claims: &[(String, String)],
) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let namespace = dv.namespace().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut expanded = Vec::new();
    for (template, size) in claims {
        let name = storage::claim_name(template, set_name);
        let pvc = waiting_on(pvcs.get_opt(&name))
            .await
            .map_err(|source| Error::Apply {
                kind: "PersistentVolumeClaim",
                name: name.clone(),
                source,
            })?;
        let requested = pvc
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| storage::bytes(&q.0));
        // A claim not made yet (pod never started) is made by the new StatefulSet at the new size.
        if pvc.is_none() || requested >= storage::bytes(size) {
            continue;
        }
        if !ctx.fence.holds() {
            return Err(Error::Fenced);
        }
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
        let patched = waiting_on(pvcs.patch(
            &name,
            &PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        ))
        .await;
        if let Err(source) = patched {
            // Typically the resize admission: the claim's StorageClass does not allow expansion.
            // The StatefulSet is left as it is; the retry backs off to a minute.
            publish(
                ctx,
                dv,
                EventType::Warning,
                model::reasons::VOLUME_EXPANSION_FAILED,
                "Expand",
                format!("PersistentVolumeClaim {name} cannot grow to {size}: {source}"),
            )
            .await;
            return Err(Error::Apply {
                kind: "PersistentVolumeClaim",
                name,
                source,
            });
        }
        expanded.push(format!("{name} to {size}"));
    }
    if !expanded.is_empty() {
        publish(
            ctx,
            dv,
            EventType::Normal,
            model::reasons::VOLUME_EXPANDING,
            "Expand",
            format!("Expanding PersistentVolumeClaim {}", expanded.join(", ")),
        )
        .await;
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(live) = ctx
        .caches
        .statefulsets
        .get(&ObjectRef::new(set_name).within(&namespace))
    else {
        return Ok(());
    };
    if live.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    // The uid precondition: never delete a StatefulSet the cache did not show us.
    let params = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        preconditions: Some(kube::api::Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    waiting_on(sets.delete(set_name, &params))
        .await
        .map_err(|source| Error::Apply {
            kind: "StatefulSet",
            name: set_name.to_owned(),
            source,
        })?;
    publish(
        ctx,
        dv,
        EventType::Normal,
        model::reasons::STATEFULSET_RECREATED,
        "Recreate",
        format!(
            "Deleted StatefulSet {set_name} keeping its pod (propagationPolicy Orphan) to recreate it with larger volume claims"
        ),
    )
    .await;
    Ok(())
}

/// What one apply pass wrote: (Created or Updated, kind, name), in the order written.
type Written = Vec<(&'static str, &'static str, String)>;

/// Server-side applies every desired object whose cached copy does not already carry its hash;
/// StatefulSets last, after the Services and the budget. One Event per pass says what was
/// created or updated (an Event per object would be ten writes per new DV).
async fn apply(dv: &DistributedValidator, ctx: &Context, desired: Desired) -> Result<(), Error> {
    let mut written = Written::new();
    let result = apply_all(dv, ctx, desired, &mut written).await;
    for reason in ["Created", "Updated"] {
        let objects: Vec<String> = written
            .iter()
            .filter(|(r, _, _)| *r == reason)
            .map(|(_, kind, name)| format!("{kind} {name}"))
            .collect();
        if objects.is_empty() {
            continue;
        }
        let action = if reason == "Created" {
            "Create"
        } else {
            "Update"
        };
        publish(
            ctx,
            dv,
            EventType::Normal,
            reason,
            action,
            event_note(reason, &objects),
        )
        .await;
    }
    result
}

/// An Event's note: `reason` and the objects, cut to the 1 kB the Events API accepts.
fn event_note(reason: &str, objects: &[String]) -> String {
    const LIMIT: usize = 1000;
    let mut note = format!("{reason} {}", objects.join(", "));
    if note.len() > LIMIT {
        let mut cut = LIMIT - '…'.len_utf8();
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push('…');
    }
    note
}

async fn apply_all(
    dv: &DistributedValidator,
    ctx: &Context,
    desired: Desired,
    written: &mut Written,
) -> Result<(), Error> {
    let Desired {
        services,
        statefulsets,
        pdb,
        network_policy,
    } = desired;
    let namespace = dv.namespace().unwrap_or_default();
    for service in services {
        apply_one(
            dv,
            ctx,
            &ctx.caches.services,
            &namespace,
            service,
            "Service",
            written,
        )
        .await?;
    }
    apply_one(
        dv,
        ctx,
        &ctx.caches.pdbs,
        &namespace,
        pdb,
        "PodDisruptionBudget",
        written,
    )
    .await?;
    match network_policy {
        Some(policy) => {
            apply_one(
                dv,
                ctx,
                &ctx.caches.network_policies,
                &namespace,
                policy,
                "NetworkPolicy",
                written,
            )
            .await?;
        }
        None => {
            // Opted out: remove the policy this operator made (it is ours, and holds no data).
            let name = dv.name_any();
            let ours = ctx
                .caches
                .network_policies
                .get(&ObjectRef::new(&name).within(&namespace))
                .is_some_and(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == dv.uid().as_ref())
                });
            if ours {
                if !ctx.fence.holds() {
                    return Err(Error::Fenced);
                }
                let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
                waiting_on(api.delete(&name, &Default::default()))
                    .await
                    .map_err(|source| Error::Apply {
                        kind: "NetworkPolicy",
                        name: name.clone(),
                        source,
                    })?;
                publish(
                    ctx,
                    dv,
                    EventType::Normal,
                    "Deleted",
                    "Delete",
                    format!("Deleted NetworkPolicy {name} (spec.networkPolicy.enabled is false)"),
                )
                .await;
            }
        }
    }
    for set in statefulsets {
        apply_one(
            dv,
            ctx,
            &ctx.caches.statefulsets,
            &namespace,
            set,
            "StatefulSet",
            written,
        )
        .await?;
    }
    Ok(())
}

async fn apply_one<K>(
    dv: &DistributedValidator,
    ctx: &Context,
    cache: &Store<K>,
    namespace: &str,
    object: K,
    kind: &'static str,
    written: &mut Written,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.name_any();
    let want = object.annotations().get(ANNOTATION_SPEC_HASH).cloned();
    let cached = cache.get(&ObjectRef::new(&name).within(namespace));
    let unchanged = cached
        .as_ref()
        .is_some_and(|c| c.annotations().get(ANNOTATION_SPEC_HASH) == want.as_ref());
    // The caches keep only other writers' managed fields: an object nobody else wrote is
    // decided by its hash alone, without encoding it (the common case on every reconcile).
    let others = cached
        .as_ref()
        .and_then(|c| c.meta().managed_fields.as_deref())
        .filter(|entries| !entries.is_empty());
    if unchanged && others.is_none() {
        return Ok(());
    }
    let mut value = serde_json::to_value(&object).map_err(|source| Error::Encode {
        kind,
        name: name.clone(),
        source,
    })?;
    value["apiVersion"] = serde_json::json!(K::api_version(&()));
    value["kind"] = serde_json::json!(K::kind(&()));
    // Fields we set that someone else wrote since: put back now, whatever the hash says.
    let drifted = others
        .map(|entries| drift::drifted_fields(&value, entries, FIELD_MANAGER))
        .unwrap_or_default();
    if unchanged && drifted.is_empty() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    match waiting_on(api.patch(&name, &params, &Patch::Apply(&value))).await {
        Ok(_) => {
            let reason = if cached.is_some() {
                "Updated"
            } else {
                "Created"
            };
            info!(kind, object = %name, reason, "applied");
            if !drifted.is_empty() {
                let fields: Vec<String> = drifted.iter().map(ToString::to_string).collect();
                warn!(kind, object = %name, fields = %fields.join(", "), "drift corrected");
                publish_about(
                    ctx,
                    dv,
                    Some(object_reference::<K>(&name, namespace)),
                    EventType::Warning,
                    model::reasons::DRIFT_CORRECTED,
                    "Apply",
                    format!("{kind} {name}: restored {}", fields.join(", ")),
                )
                .await;
            }
            written.push((reason, kind, name));
            Ok(())
        }
        Err(source) => {
            let related = object_reference::<K>(&name, namespace);
            let note = format!("{kind} {name}: {source}");
            publish_about(
                ctx,
                dv,
                Some(related),
                EventType::Warning,
                "ApplyFailed",
                "Apply",
                note,
            )
            .await;
            Err(Error::Apply { kind, name, source })
        }
    }
}

fn object_reference<K>(name: &str, namespace: &str) -> ObjectReference
where
    K: Resource<DynamicType = ()>,
{
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    }
}

/// How long a status change that only adds placement details (see
/// [`status::only_details_differ`]) waits after the DV's last status write. While a new DV's
/// members are scheduled one by one, this makes one write of "Available" out of several.
const STATUS_SETTLE: Duration = Duration::from_secs(2);

/// Writes the status if it changed. A detail-only change within [`STATUS_SETTLE`] of the last
/// write is held back: returns how long until it is due (the caller looks again by then).
async fn write_status(
    dv: &DistributedValidator,
    ctx: &Context,
    status: crate::api::DistributedValidatorStatus,
) -> Result<Option<Duration>, Error> {
    if dv.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    let name = dv.name_any();
    let namespace = dv.namespace().unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    let details_only = dv
        .status
        .as_ref()
        .is_some_and(|previous| status::only_details_differ(previous, &status));
    if details_only {
        let since = ctx
            .status_written
            .lock()
            .ok()
            .and_then(|written| written.get(&key).map(Instant::elapsed));
        if let Some(since) = since.filter(|since| *since < STATUS_SETTLE) {
            return Ok(Some(STATUS_SETTLE - since));
        }
    }
    tracing::debug!(
        changed = %status::changes(dv.status.as_ref(), &status),
        details_only,
        "writing status"
    );
    let api: Api<DistributedValidator> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"status": status});
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    waiting_on(api.patch_status(&name, &params, &Patch::Merge(&patch)))
        .await
        .map_err(|source| Error::WriteStatus { name, source })?;
    if let Ok(mut written) = ctx.status_written.lock() {
        written.insert(key, Instant::now());
    }
    Ok(None)
}

async fn publish(
    ctx: &Context,
    dv: &DistributedValidator,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish_about(ctx, dv, None, type_, reason, action, note).await;
}

/// Publishes an Event on the DV; `related` names the child it concerns, which also keeps the
/// recorder from folding events about different children into one series.
async fn publish_about(
    ctx: &Context,
    dv: &DistributedValidator,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    if !ctx.fence.holds() {
        return;
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    };
    if let Err(error) = waiting_on(ctx.recorder.publish(&event, &dv.object_ref(&()))).await {
        warn!(%error, "cannot publish an Event");
    }
}

/// A client configured as the operator's: it names itself in the user agent, so the API
/// server's audit log (and the simulator's timeline) can attribute its deletes and evictions.
pub fn identify(config: &mut kube::Config) {
    // The replica (POD_NAME) after the version, so that audit logs tell replicas apart.
    let replica = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .map(|name| format!(" ({name})"))
        .unwrap_or_default();
    if let Ok(agent) = http::HeaderValue::from_str(&format!(
        "{FIELD_MANAGER}/{}{replica}",
        env!("CARGO_PKG_VERSION")
    )) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    // An API server that does not accept the connection is an error soon, not a hang.
    config.connect_timeout = Some(Duration::from_secs(10));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many reconciles wait for the caches at once after a restart; every one of them must
    /// wake when the last cache lists (kube-rs' own readiness wakes only one waiter per store).
    #[tokio::test]
    async fn every_waiting_reconcile_wakes_when_the_caches_have_listed() {
        fn store<K>() -> (Store<K>, reflector::store::Writer<K>)
        where
            K: Resource + Clone + 'static,
            K::DynamicType: Default + Eq + std::hash::Hash + Clone,
        {
            let writer = reflector::store::Writer::default();
            (writer.as_reader(), writer)
        }
        let (statefulsets, mut w1) = store();
        let (services, mut w2) = store();
        let (pdbs, mut w3) = store();
        let (network_policies, mut w4) = store();
        let (pods, mut w5) = store();
        let (config_maps, mut w6) = store();
        let (secrets, mut w7) = store();
        let (nodes, mut w8) = store();
        let (progress, listing) =
            tokio::sync::watch::channel(Listing::Waiting(CACHE_NAMES.into_iter().collect()));
        let caches = Caches {
            statefulsets,
            services,
            pdbs,
            network_policies,
            pods,
            config_maps,
            secrets,
            nodes,
            listing,
        };
        let follower = tokio::spawn(follow_cache_listing(caches.clone(), progress));
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let caches = caches.clone();
                tokio::spawn(async move { caches.wait_until_ready().await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        w1.apply_watcher_event(&watcher::Event::InitDone);
        w2.apply_watcher_event(&watcher::Event::InitDone);
        w3.apply_watcher_event(&watcher::Event::InitDone);
        w4.apply_watcher_event(&watcher::Event::InitDone);
        w5.apply_watcher_event(&watcher::Event::InitDone);
        w6.apply_watcher_event(&watcher::Event::InitDone);
        w7.apply_watcher_event(&watcher::Event::InitDone);
        // Still one cache listing: nobody is done yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        assert_eq!(
            *caches.listing.borrow(),
            Listing::Waiting(["nodes"].into_iter().collect())
        );
        w8.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let woke = tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("every waiter wakes")
                .unwrap();
            assert!(woke);
        }
        assert_eq!(follower.await.unwrap(), Listing::Done);
    }

    #[test]
    fn an_event_note_lists_the_objects_and_fits_the_events_api() {
        let objects = vec!["Service a".to_owned(), "StatefulSet a".to_owned()];
        assert_eq!(
            event_note("Created", &objects),
            "Created Service a, StatefulSet a"
        );
        let many: Vec<String> = (0..100)
            .map(|i| format!("StatefulSet member-ä-{i}"))
            .collect();
        let note = event_note("Updated", &many);
        assert!(note.len() <= 1000 && note.ends_with('…'), "{note}");
        assert!(note.starts_with("Updated StatefulSet member-ä-0, "));
    }

    #[test]
    fn a_lock_is_verified_once_and_an_edited_lock_again() {
        let (_, facts) = testing::example("stader-4.yaml");
        let good = facts.lock.clone().unwrap();
        let checks = LockChecks::default();
        assert_eq!(checks.verify(&good), Some(vec![]));
        assert_eq!(checks.verify(&good), Some(vec![]));
        assert_eq!(checks.len(), 1);

        // The same lock with two shares swapped is a new document: verified, not remembered.
        let mut swapped: serde_json::Value = serde_json::from_str(&good).unwrap();
        let shares = swapped["distributed_validators"][0]["public_shares"]
            .as_array_mut()
            .unwrap();
        shares.swap(0, 1);
        let problems = checks.verify(&swapped.to_string()).unwrap();
        assert!(
            problems.iter().any(|p| p.contains("do not interpolate")),
            "{problems:?}"
        );
        assert_eq!(checks.len(), 2);
        assert_eq!(checks.verify("not json"), None);
    }
}
