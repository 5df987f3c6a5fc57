//! The status write: only when what a user would see changed, and only by the leader.

use super::*;

/// What the caches hold of a DV's members: each one's StatefulSet, pod and the zone of its node.
/// Each member's StatefulSet and pod have known names: they are looked up, not scanned for (a
/// scan per reconcile made convergence quadratic in the number of DVs).
pub(super) struct Observations {
    sets: BTreeMap<String, Arc<StatefulSet>>,
    pods: BTreeMap<String, Arc<Pod>>,
    zones: BTreeMap<String, String>,
}

impl Observations {
    pub(super) fn read(dv: &DistributedValidator, caches: &Caches) -> Observations {
        let namespace = dv.namespace().unwrap_or_default();
        let dv_name = dv.name_any();
        let owned_by_dv =
            |labels: &BTreeMap<String, String>| labels.get(LABEL_DV) == Some(&dv_name);
        let pods: BTreeMap<String, Arc<Pod>> = dv
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
        written: &std::collections::BTreeSet<String>,
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
                        template_written: written.contains(&member_object_name(&dv_name, &m.name)),
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

/// How long a status change that only adds placement details (see
/// [`status::only_details_differ`]) waits after the DV's last status write. While a new DV's
/// members are scheduled one by one, this makes one write of "Available" out of several.
pub(super) const STATUS_SETTLE: Duration = Duration::from_secs(2);

/// Writes the status if it changed. A detail-only change within [`STATUS_SETTLE`] of the last
/// write is held back: returns how long until it is due (the caller looks again by then).
pub(super) async fn write_status(
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
