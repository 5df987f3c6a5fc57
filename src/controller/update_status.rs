//! The status write: only when what a user would see changed, and only by the leader.

use super::cached;
use super::caches::Caches;
use super::caches::member_statefulsets;
use super::context::Context;
use super::error::Error;
use super::events::publish_about;
use super::model;
use super::names;
use super::names::FIELD_MANAGER;
use super::names::LABEL_DV;
use super::names::member_object_name;
use super::names::member_pod_name;
use super::status;
use super::waiting_on;
use crate::api::DistributedValidator;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::api::Patch;
use kube::api::PatchParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// What the caches hold of a DV's members: each one's StatefulSet, pod and the zone of its node.
/// Each member's StatefulSet and pod have known names: they are looked up, not scanned for (a
/// scan per reconcile made convergence quadratic in the number of DVs).
pub(super) struct Observations {
    sets: BTreeMap<String, Arc<cached::StatefulSet>>,
    pods: BTreeMap<String, Arc<cached::Pod>>,
    zones: BTreeMap<String, String>,
}

impl Observations {
    pub(super) fn read(dv: &DistributedValidator, caches: &Caches) -> Observations {
        let namespace = dv.namespace().unwrap_or_default();
        let dv_name = dv.name_any();
        let owned_by_dv =
            |labels: &BTreeMap<String, String>| labels.get(LABEL_DV) == Some(&dv_name);
        let pods: BTreeMap<String, Arc<cached::Pod>> = dv
            .spec
            .members
            .iter()
            .filter_map(|m| {
                let key = ObjectRef::new(&member_pod_name(&dv_name, &m.name)).within(&namespace);
                let pod = caches.pods.get(&key)?;
                owned_by_dv(pod.labels()).then(|| (m.name.clone(), pod))
            })
            .collect();
        let zones = pods
            .iter()
            .filter_map(|(member, pod)| {
                let node = pod.spec.as_ref()?.node_name.clone()?;
                let node = caches.nodes.get(&ObjectRef::new(&node))?;
                let zone = node.labels().get(&dv.spec.placement.zone_label)?.clone();
                Some((member.clone(), zone))
            })
            .collect();
        Observations {
            sets: member_statefulsets(dv, caches),
            pods,
            zones,
        }
    }

    /// Every member of the spec, with what was found of it; `written` names the StatefulSets
    /// whose template this pass wrote.
    pub(super) fn observed(
        &self,
        dv: &DistributedValidator,
        written: &super::apply::Applied,
    ) -> BTreeMap<String, status::Observed<'_>> {
        let dv_name = dv.name_any();
        dv.spec
            .members
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    status::Observed {
                        statefulset: self.sets.get(&m.name).map(Arc::as_ref),
                        pod: self.pods.get(&m.name).map(Arc::as_ref),
                        zone: self.zones.get(&m.name).cloned(),
                        template_written: written
                            .template_written(&member_object_name(&dv_name, &m.name)),
                    },
                )
            })
            .collect()
    }
}

/// The status step: the status computed from what was observed and done, its gauges set, and
/// the status written if it changed (see [`write_status`] for what is held back).
pub(super) async fn update_status(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
    observed: &BTreeMap<String, status::Observed<'_>>,
    outcome: &status::Outcome,
    now: &Time,
) -> Result<Option<Duration>, Error> {
    let computed = status::compute(dv, cluster, observed, outcome, now);
    ctx.metrics.observe_status(
        &dv.namespace().unwrap_or_default(),
        &dv.name_any(),
        cluster.quorum.members(),
        &computed,
    );
    let moves = status::client_move::events(dv.status.as_ref(), &computed);
    let wait = write_status(dv, ctx, computed).await?;
    // After the write: a status that failed to land is computed again, and so are its Events.
    for event in moves {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        // The member's StatefulSet as the related object: one Event series per member (the
        // recorder folds Events of one reason and related object into one).
        let related = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("apps/v1".to_owned()),
            kind: Some("StatefulSet".to_owned()),
            name: Some(names::member_object_name(&dv.name_any(), &event.member)),
            namespace: dv.namespace(),
            ..Default::default()
        };
        publish_about(
            ctx,
            dv,
            Some(related),
            type_,
            event.reason,
            "ClientMove",
            event.note,
        )
        .await;
    }
    Ok(wait)
}

/// How long a status change that only adds details (a member's node or zone, the wording of a
/// condition message; see [`status::only_details_differ`]) may be held back, counted from when
/// this process first held such a change back for the DV. Such a change is written with the
/// next change a user must see (a member Ready, a phase), or by itself once this long has
/// passed: a member that is placed and then waits (for an image, its peers) shows its node
/// within this time of being placed. While a new DV's members start, this makes one write of
/// "Available" out of "placed" and "Available" (a member becomes Ready within seconds to a
/// minute of being placed), the same for a rollout's member-by-member pod moves. Counting from
/// the DV's last status write instead (its first status, when the DV was created) wrote the
/// placement by itself for every DV that waited more than this for its members to be placed
/// (most of them, in a large rollout). `kubectl get pods -o wide` shows the node at once.
pub(super) const STATUS_DETAILS_WITHIN: Duration = Duration::from_secs(30);

/// How long a detail-only status change still waits, held back this long already.
pub(super) fn details_wait(held: Duration) -> Option<Duration> {
    (held < STATUS_DETAILS_WITHIN).then(|| STATUS_DETAILS_WITHIN - held)
}

/// A status write this process made: when, the DV's resourceVersion it was computed from, and
/// a digest of what was written.
#[derive(Clone, Debug)]
pub(super) struct StatusWritten {
    pub(super) at: Instant,
    pub(super) over: Option<String>,
    pub(super) digest: u64,
}

/// A digest of a status, to recognise a repeat of the last write without keeping a copy.
fn status_digest(status: &crate::api::DistributedValidatorStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// How long a repeat of the last status write is taken for the cache lagging behind it.
pub(super) const CACHE_CATCHES_UP_WITHIN: Duration = Duration::from_secs(5);

/// Whether writing `digest` over the DV at `version` would repeat `last`: the same status
/// computed from the same version of the DV the last write was computed from. The write made a
/// newer version, which the cache has not delivered yet (its watch event brings another
/// reconcile); writing again would only add a write. Past [`CACHE_CATCHES_UP_WITHIN`] the
/// write is made anyway, in case the cache never catches up. Returns how long until then.
pub(super) fn repeats_last_write(
    last: Option<&StatusWritten>,
    version: Option<&str>,
    digest: u64,
) -> Option<Duration> {
    let last = last?;
    let since = last.at.elapsed();
    (last.over.as_deref() == version && last.digest == digest && since < CACHE_CATCHES_UP_WITHIN)
        .then(|| CACHE_CATCHES_UP_WITHIN - since)
}

/// Writes the status if it changed. A detail-only change within [`STATUS_DETAILS_WITHIN`] of the
/// last write is held back: returns how long until it is due (the caller looks again by then).
pub(super) async fn write_status(
    dv: &DistributedValidator,
    ctx: &Context,
    status: crate::api::DistributedValidatorStatus,
) -> Result<Option<Duration>, Error> {
    let name = dv.name_any();
    let namespace = dv.namespace().unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    if dv.status.as_ref() == Some(&status) {
        // Whatever detail was held back is gone again (or was written by another process).
        release_details(ctx, &key);
        return Ok(None);
    }
    let last = ctx
        .memory
        .read(&key, |m| m.status_written.clone())
        .flatten();
    let digest = status_digest(&status);
    let version = dv.metadata.resource_version.clone();
    if let Some(wait) = repeats_last_write(last.as_ref(), version.as_deref(), digest) {
        tracing::debug!("status already written; the cache has not caught up");
        return Ok(Some(wait));
    }
    let details_only = dv
        .status
        .as_ref()
        .is_some_and(|previous| status::only_details_differ(previous, &status));
    if details_only {
        // Without the map (a poisoned lock), the detail is written now rather than never.
        let held = ctx.memory.update(&key, |m| {
            m.details_held.get_or_insert_with(Instant::now).elapsed()
        });
        if let Some(wait) = held.and_then(details_wait) {
            return Ok(Some(wait));
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
    release_details(ctx, &key);
    ctx.memory.update(&key, |m| {
        m.status_written = Some(StatusWritten {
            at: Instant::now(),
            over: version,
            digest,
        })
    });
    Ok(None)
}

/// Forgets the detail-only change held back for a DV: it was written, or is no longer a change.
fn release_details(ctx: &Context, key: &(String, String)) {
    ctx.memory.update(key, |m| m.details_held = None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_wait_for_the_rest_of_their_window_and_no_longer() {
        let second = Duration::from_secs(1);
        assert_eq!(
            details_wait(Duration::ZERO),
            Some(STATUS_DETAILS_WITHIN),
            "a detail first seen now waits the whole window, however long ago the last write was"
        );
        assert_eq!(details_wait(second), Some(STATUS_DETAILS_WITHIN - second));
        assert_eq!(details_wait(STATUS_DETAILS_WITHIN), None);
        assert_eq!(details_wait(STATUS_DETAILS_WITHIN * 2), None);
    }

    #[test]
    fn a_repeat_of_the_last_write_over_the_same_version_waits_for_the_cache() {
        let last = StatusWritten {
            at: Instant::now(),
            over: Some("41".into()),
            digest: 7,
        };
        let wait = repeats_last_write(Some(&last), Some("41"), 7);
        assert!(wait.is_some_and(|w| w <= CACHE_CATCHES_UP_WITHIN));
        assert_eq!(
            repeats_last_write(Some(&last), Some("42"), 7),
            None,
            "the cache has a newer version: decide on it"
        );
        assert_eq!(
            repeats_last_write(Some(&last), Some("41"), 8),
            None,
            "a different status: write it"
        );
        assert_eq!(repeats_last_write(None, Some("41"), 7), None);
        let old = StatusWritten {
            at: Instant::now() - CACHE_CATCHES_UP_WITHIN,
            ..last
        };
        assert_eq!(
            repeats_last_write(Some(&old), Some("41"), 7),
            None,
            "a cache that never caught up gets the write again"
        );
    }
}
