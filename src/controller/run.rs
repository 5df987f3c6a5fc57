//! Running the controller: kube-rs' Controller over the DVs, the watches that trigger their
//! reconciles, leader-elected terms, forgetting deleted DVs, and the retry policy.

use super::cached;
use super::caches::CACHE_NAMES;
use super::caches::Caches;
use super::caches::Listing;
use super::caches::follow_cache_listing;
use super::caches::owned_cache;
use super::caches::spawn_cache;
use super::context::Context;
use super::context::KeystoreCache;
use super::context::Settings;
use super::context::api;
use super::dereference::LockChecks;
use super::dereference::LockReads;
use super::dereference::lock_source_version;
use super::error::Error;
use super::events::publish;
use super::names::CONTROLLER_NAME;
use super::names::FIELD_MANAGER;
use super::names::LABEL_DV;
use super::names::LABEL_MANAGED_BY;
use super::peers::watch_peers;
use super::reconcile;
use super::retry;
use super::trim;
use crate::api::DistributedValidator;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::controller::Controller;
use kube::runtime::events::EventType;
use kube::runtime::events::Recorder;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tracing::warn;

/// Runs the controller until `shutdown` resolves (e.g. SIGTERM), for each namespace in scope.
pub async fn run_with_metrics(
    client: Client,
    settings: Settings,
    metrics: Arc<crate::runtime::metrics::Metrics>,
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
    lease: crate::runtime::leader::LeaseConfig,
    metrics: Arc<crate::runtime::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let leading = metrics.clone();
    crate::runtime::leader::run_while_leader(
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
pub(super) type Triggers = futures::channel::mpsc::UnboundedSender<ObjectRef<DistributedValidator>>;

/// Runs the controller over the DVs of `namespace` (all when `None`) with its caches, the peer
/// monitor and the forgetting of deleted DVs, until `shutdown` resolves.
pub(super) async fn run_in(
    client: Client,
    namespace: Option<String>,
    settings: &Settings,
    metrics: Arc<crate::runtime::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let (controller, dvs) = dv_controller(&client, ns, settings);
    let (triggers, requests) = futures::channel::mpsc::unbounded();
    let mut tasks = Vec::new();
    let (caches, progress) = start_caches(&client, ns, &dvs, &triggers, &mut tasks);
    let peer_triggers = triggers.clone();
    drop(triggers);
    let context = Arc::new(new_context(
        &client,
        settings,
        metrics.clone(),
        caches.clone(),
    ));
    tasks.push(tokio::spawn(forget_deleted(dvs.clone(), context.clone())));
    tasks.push(tokio::spawn(watch_peers(
        dvs.clone(),
        context.clone(),
        peer_triggers,
        settings.peer_read_every,
        settings.peer_seen_within,
    )));
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

/// The kube-rs controller over the DVs in `ns`, and the store of DVs it reads. DVs are cached
/// without their managed fields, which mirror the whole spec and status.
fn dv_controller(
    client: &Client,
    ns: Option<&str>,
    settings: &Settings,
) -> (
    Controller<DistributedValidator>,
    Store<DistributedValidator>,
) {
    let (dvs, dv_writer) = reflector::store();
    let dv_changes = reflector::reflector(
        dv_writer,
        watcher(
            api::<DistributedValidator>(client, ns),
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
    (controller, dvs)
}

/// What every reconcile of one run shares, with nothing remembered yet.
fn new_context(
    client: &Client,
    settings: &Settings,
    metrics: Arc<crate::runtime::metrics::Metrics>,
    caches: Caches,
) -> Context {
    let reporter = Reporter {
        controller: CONTROLLER_NAME.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Context {
        metrics,
        fence: settings.fence.clone(),
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        keystores: KeystoreCache::default(),
        lock_checks: LockChecks::default(),
        lock_reads: LockReads::default(),
        memory: Default::default(),
        caches,
    }
}

/// Starts a reflector cache of each kind a reconcile reads (the DVs' children, their pods, the
/// ConfigMaps and Secrets they name, the nodes), each feeding reconcile requests to `triggers`;
/// returns them and the sender that reports their first listing.
fn start_caches(
    client: &Client,
    ns: Option<&str>,
    dvs: &Store<DistributedValidator>,
    triggers: &Triggers,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> (Caches, tokio::sync::watch::Sender<Listing>) {
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    let statefulsets = owned_cache(client, ns, trim::statefulset, triggers, tasks);
    let services = owned_cache(client, ns, trim::service, triggers, tasks);
    let pdbs = owned_cache(client, ns, trim::pod_disruption_budget, triggers, tasks);
    let network_policies = owned_cache(client, ns, trim::network_policy, triggers, tasks);
    // Pods belong to the StatefulSets; their DV is in a label.
    let pods = spawn_cache(
        api::<cached::Pod>(client, ns),
        managed,
        trim::pod,
        |pod: &cached::Pod| {
            let namespace = pod.namespace().unwrap_or_default();
            pod.labels()
                .get(LABEL_DV)
                .map(|dv| ObjectRef::new(dv).within(&namespace))
                .into_iter()
                .collect()
        },
        triggers,
        tasks,
    );
    let dvs_for_config_maps = dvs.clone();
    let config_maps = spawn_cache(
        api::<PartialObjectMeta<ConfigMap>>(client, ns),
        watcher::Config::default(),
        trim::config_map,
        move |cm: &PartialObjectMeta<ConfigMap>| {
            referencing(
                &dvs_for_config_maps,
                &cm.name_any(),
                &cm.namespace().unwrap_or_default(),
            )
        },
        triggers,
        tasks,
    );
    // Secrets are cached as metadata only: the controller never holds key material.
    let dvs_for_secrets = dvs.clone();
    let secrets = spawn_cache(
        api::<PartialObjectMeta<Secret>>(client, ns),
        watcher::Config::default(),
        trim::secret,
        move |secret: &PartialObjectMeta<Secret>| {
            referencing(
                &dvs_for_secrets,
                &secret.name_any(),
                &secret.namespace().unwrap_or_default(),
            )
        },
        triggers,
        tasks,
    );
    // Nodes feed zones into status; a change of nodes alone does not need a reconcile.
    let nodes = spawn_cache(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        trim::node,
        |_: &Node| Vec::new(),
        triggers,
        tasks,
    );
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
    (caches, progress)
}

/// How often what deleted DVs left behind is forgotten.
pub(super) const FORGET_EVERY: Duration = Duration::from_secs(2);

/// Forgets deleted DVs: their `/metrics` series, status-write times and the keystores of Secrets
/// that are gone. kube-rs never reconciles an object that has left its store, and without a
/// finalizer (there is no state outside Kubernetes to clean up) a deleted DV is simply gone.
pub(super) async fn forget_deleted(dvs: Store<DistributedValidator>, ctx: Arc<Context>) {
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
        ctx.memory.retain(|key| live.contains(key));
        if let Ok(mut keystores) = ctx.keystores.lock() {
            keystores.retain(|(namespace, secret), _| {
                ctx.caches
                    .secrets
                    .get(&ObjectRef::new(secret).within(namespace))
                    .is_some()
            });
        }
        ctx.lock_reads
            .retain(|source| lock_source_version(&ctx.caches, source).is_some());
        for (namespace, name) in forgotten {
            tracing::debug!(%namespace, %name, "forgot a deleted DV");
        }
    }
}

/// DVs in `namespace` whose lock or member Secrets are named `name`.
pub(super) fn referencing(
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
                    .any(|m| m.secret_names().any(|secret| secret == name))
        })
        .map(|dv| ObjectRef::from_obj(dv.as_ref()))
        .collect()
}

/// A failed reconcile is tried again after a per-DV backoff that doubles up to
/// [`retry::LONGEST_RETRY`] (a minute), and reported as a Warning Event (reason: the error's category) at
/// most once a minute per kind of failure. Apply failures published their own Event (naming the
/// object); a replica that lost the lease publishes nothing.
pub(super) fn error_policy(
    dv: Arc<DistributedValidator>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = (dv.namespace().unwrap_or_default(), dv.name_any());
    let category = error.category();
    let retry = ctx
        .memory
        .update(&key, |m| m.failures.failed(category, Instant::now()))
        .unwrap_or(retry::Retry {
            after: retry::LONGEST_RETRY,
            publish: false,
        });
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
