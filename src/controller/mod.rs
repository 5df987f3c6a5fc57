//! The DistributedValidator controller: a thin driver ([`reconcile_inner`]) of the steps
//! `dereference → validate → build → apply → rollout → status`, one file each, with every
//! decision in pure modules (`validate`, `build`, `status`, the domain's planner) and only
//! `dereference`, `apply`, `rollout`'s executor and the status write touching the API.
//! Around it: `run` (the kube-rs controller, its watches and triggers), `context` (what a
//! reconcile shares), `caches`, `built` (each DV's last build, so that an unchanged DV is not
//! built again), `events` and `error`.

mod apply;
pub mod build;
mod built;
pub mod cached;
mod caches;
mod context;
mod dereference;
pub mod drift;
mod error;
mod events;
mod grow_storage;
pub mod health;
mod memory;
pub mod model;
pub mod names;
mod peers;
mod prune;
pub mod retry;
mod rollout;
mod run;
pub mod status;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod trim;
mod update_status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info_span};

use crate::api::DistributedValidator;

use apply::apply_cluster;
use dereference::dereference;
use events::{report_invalid, report_member_problems};
use rollout::keep_quorum;
pub use rollout::{ANNOTATION_PAUSED, is_paused};
use update_status::{Observations, update_status, write_status};

use context::Context;
pub use context::{
    DEFAULT_CONCURRENCY, DEFAULT_DEBOUNCE, DEFAULT_PEER_READ_EVERY, DEFAULT_PEER_SEEN_WITHIN,
    Settings, identify,
};
pub use error::Error;
pub use run::{run, run_elected, run_with_metrics};

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
            context
                .memory
                .update(&key, |m| m.failures = Default::default());
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

/// One reconcile: the steps in the order data flows through them. Each step is a function of
/// its own file; this driver only passes what one step found to the next.
async fn reconcile_inner(
    dv: Arc<DistributedValidator>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if dv.meta().deletion_timestamp.is_some() {
        // Children go with the DV by garbage collection; PVCs and Secrets are not ours to delete.
        forget(&ctx, &(dv.namespace().unwrap_or_default(), dv.name_any()));
        return Ok(Action::await_change());
    }
    // Deciding from half-filled caches would report members as missing and write a wrong
    // status (or recreate what exists); wait until every cache has listed once.
    waiting_on(ctx.caches.wait_until_ready()).await?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let facts = dereference(&dv, &ctx).await?;
    let cluster = match validate::validate(&dv, &facts) {
        Ok(cluster) => cluster,
        Err(invalid) => {
            report_invalid(&dv, &ctx, &invalid).await;
            write_status(&dv, &ctx, status::invalid(&dv, &invalid, &now)).await?;
            return Ok(Action::await_change());
        }
    };
    report_member_problems(&dv, &ctx, &cluster).await;
    let written = apply_cluster(&dv, &ctx, &cluster).await?;
    let observations = Observations::read(&dv, &ctx.caches);
    let observed = observations.observed(&dv, &written);
    let (outcome, wake_at) = keep_quorum(&dv, &ctx, &cluster, &observed, &now).await;
    let held_back = update_status(&dv, &ctx, &cluster, &observed, &outcome, &now).await?;
    Ok(next_look(&now, wake_at, held_back))
}

/// When to look again: when a backoff or minReadySeconds ends (`wake_at`), or a held-back
/// status is due, but at least every 200 ms apart and at most five minutes (a periodic resync).
fn next_look(
    now: &Time,
    wake_at: Option<k8s_openapi::jiff::Timestamp>,
    held_back: Option<Duration>,
) -> Action {
    let requeue = wake_at
        // A wake time already past is due now.
        .map(|at| Duration::try_from(at.duration_since(now.0)).unwrap_or(Duration::ZERO))
        .map_or(RESYNC, |d| d.clamp(SOONEST_LOOK, RESYNC));
    Action::requeue(held_back.map_or(requeue, |due| requeue.min(due.max(SOONEST_LOOK))))
}

/// The periodic resync of a DV nothing changed about.
const RESYNC: Duration = Duration::from_secs(300);
/// The shortest requeue: a wake time already past is looked at soon, not in a busy loop.
const SOONEST_LOOK: Duration = Duration::from_millis(200);

/// Forgets what this process kept about a DV (its `/metrics` series and its memory); `key` is
/// (namespace, name).
fn forget(ctx: &Context, key: &(String, String)) {
    ctx.metrics.forget(&key.0, &key.1);
    ctx.memory.forget(key);
}

/// A reference to a member's pod (with its uid: each pod instance is its own Event series).
fn pod_reference(pod: &cached::Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::apply::event_note;
    use crate::controller::caches::CACHE_NAMES;
    use crate::controller::caches::Caches;
    use crate::controller::caches::Listing;
    use crate::controller::caches::follow_cache_listing;
    use crate::controller::dereference::LockChecks;
    use crate::controller::dereference::LockKeptIn;
    use crate::controller::dereference::LockRead;
    use crate::controller::dereference::LockReads;
    use crate::controller::dereference::LockSource;
    use kube::runtime::reflector::{self, Store};
    use kube::runtime::watcher;

    #[test]
    fn the_next_look_is_the_wake_time_within_bounds_or_a_held_back_status() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let later = |ms: i64| Some(now.0 + k8s_openapi::jiff::SignedDuration::from_millis(ms));
        assert_eq!(next_look(&now, None, None), Action::requeue(RESYNC));
        assert_eq!(
            next_look(&now, later(3_000), None),
            Action::requeue(Duration::from_secs(3))
        );
        // A wake time already past, or too close, is looked at soon, not in a busy loop.
        assert_eq!(
            next_look(&now, later(-5), None),
            Action::requeue(SOONEST_LOOK)
        );
        assert_eq!(
            next_look(&now, later(10), None),
            Action::requeue(SOONEST_LOOK)
        );
        assert_eq!(
            next_look(&now, later(3_600_000), None),
            Action::requeue(RESYNC)
        );
        // A held-back status is written when due, if that is sooner.
        assert_eq!(
            next_look(&now, later(3_000), Some(Duration::from_secs(1))),
            Action::requeue(Duration::from_secs(1))
        );
        assert_eq!(
            next_look(&now, None, Some(Duration::ZERO)),
            Action::requeue(SOONEST_LOOK)
        );
    }

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
    fn a_lock_is_read_again_when_its_source_has_a_new_version_and_forgotten_when_gone() {
        let reads = LockReads::default();
        let source: LockSource = (
            "default".into(),
            LockKeptIn::ConfigMap,
            "stader-4-lock".into(),
            "cluster-lock.json".into(),
        );
        let read: LockRead = testing::read_lock(&testing::example_lock("stader-4.yaml"));
        reads.remember(source.clone(), "7".into(), read.clone());
        assert_eq!(reads.at(&source, "7"), Some(read));
        assert_eq!(reads.at(&source, "8"), None, "a new version is read again");
        let elsewhere = ("other".into(), source.1, source.2.clone(), source.3.clone());
        assert_eq!(reads.at(&elsewhere, "7"), None);
        reads.retain(|s| *s != source);
        assert_eq!(reads.len(), 0);
    }

    #[test]
    fn a_lock_is_verified_once_and_an_edited_lock_again() {
        let good = testing::example_lock("stader-4.yaml").to_string();
        let checks = LockChecks::default();
        let read = checks.read(&good);
        assert_eq!(read.problems, vec![]);
        assert_eq!(read.summary.as_ref().map(|s| s.operators), Ok(4));
        assert_eq!(checks.read(&good), read);
        assert_eq!(checks.len(), 1);

        // The same lock with two shares swapped is a new document: verified, not remembered.
        let mut swapped: serde_json::Value = serde_json::from_str(&good).unwrap();
        let shares = swapped["distributed_validators"][0]["public_shares"]
            .as_array_mut()
            .unwrap();
        shares.swap(0, 1);
        let problems = checks.read(&swapped.to_string()).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.what.contains("do not interpolate")),
            "{problems:?}"
        );
        assert_eq!(checks.len(), 2);
        // A document that does not parse says why, and is not remembered.
        let unparsable = checks.read("not json");
        assert!(unparsable.summary.is_err());
        assert_eq!(checks.len(), 2);
    }
}
