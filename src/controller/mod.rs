//! The DistributedValidator controller: a thin driver of `dereference → validate → build →
//! apply → status`, with every decision in pure modules (`model`, `build`, `status`) and only
//! `dereference`, `apply` and the status write touching the API.

mod apply;
pub mod build;
mod caches;
mod dereference;
pub mod drift;
mod events;
pub mod health;
pub mod model;
pub mod names;
pub mod retry;
mod rollout;
pub mod status;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod trim;
mod update_status;

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

use apply::*;
use caches::*;
use dereference::*;
use events::*;
use rollout::*;
pub use rollout::{ANNOTATION_PAUSED, is_paused};
use update_status::*;

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

/// How long one reconcile may take before it is abandoned (normally milliseconds; the caches'
/// first listing may take up to [`CACHES_READY_WITHIN`]).
const RECONCILE_DEADLINE: Duration = Duration::from_secs(45);

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
    for model::MemberProblem { member, why } in &cluster.blocked {
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
                crate::api::reasons::SECRET_MISSING,
                "Validate",
                format!("member {member} is not created or changed: {why}"),
            )
            .await;
        }
    }
    for model::MemberProblem { member, why } in &cluster.share_mismatches {
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
                crate::api::reasons::SHARE_MISMATCH,
                "Validate",
                format!("member {member} is not created or changed: {why}"),
            )
            .await;
        }
    }
    for held in &cluster.client_changes_held {
        let message = held.message();
        let already = dv.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == crate::api::condition_types::PROGRESSING && c.message.contains(&message)
            })
        });
        if !already {
            publish(
                &ctx,
                &dv,
                EventType::Warning,
                crate::api::reasons::CLIENT_CHANGE_HELD,
                "Validate",
                message,
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
    let observed_sets = member_statefulsets(&dv, &ctx.caches);
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
            problems
                .iter()
                .any(|p| p.what.contains("do not interpolate")),
            "{problems:?}"
        );
        assert_eq!(checks.len(), 2);
        assert_eq!(checks.verify("not json"), None);
    }
}
