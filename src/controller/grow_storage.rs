//! Storage growth: a member whose `spec.storage` grew has its PVCs expanded, then its
//! StatefulSet (whose claim templates cannot change) deleted with `propagationPolicy: Orphan`:
//! the pod keeps running and is adopted by the StatefulSet the next pass creates. PVCs are
//! patched, never deleted.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::error::Error;
use super::events::publish;
use super::{storage, waiting_on};
use crate::api::{DistributedValidator, reasons};

/// Expands a member's PVCs to the sizes asked for; once every one is asked, deletes its
/// StatefulSet with its pod orphaned (see the module's comment).
pub(super) async fn grow_storage(
    dv: &DistributedValidator,
    ctx: &Context,
    set_name: &str,
    claims: &[(String, String)],
) -> Result<(), Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut expanded = Vec::new();
    for (template, size) in claims {
        let name = storage::claim_name(template, set_name);
        if expand_claim(dv, ctx, &pvcs, &name, size).await? {
            expanded.push(format!("{name} to {size}"));
        }
    }
    if !expanded.is_empty() {
        let note = format!("Expanding PersistentVolumeClaim {}", expanded.join(", "));
        publish(
            ctx,
            dv,
            EventType::Normal,
            reasons::VOLUME_EXPANDING,
            "Expand",
            note,
        )
        .await;
    }
    orphan_statefulset(dv, ctx, &namespace, set_name).await
}

/// Asks for claim `name` at `size` unless it asks for that much already; whether it asked now.
/// A claim not made yet (pod never started) is made by the new StatefulSet at the new size.
async fn expand_claim(
    dv: &DistributedValidator,
    ctx: &Context,
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
    size: &str,
) -> Result<bool, Error> {
    let failed = |source| Error::Apply {
        kind: "PersistentVolumeClaim",
        name: name.to_owned(),
        source,
    };
    let Some(pvc) = waiting_on(pvcs.get_opt(name)).await.map_err(failed)? else {
        return Ok(false);
    };
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| storage::bytes(&q.0));
    if requested >= storage::bytes(size) {
        return Ok(false);
    }
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
    let patched = waiting_on(pvcs.patch(
        name,
        &PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    ))
    .await;
    if let Err(source) = patched {
        // Typically the resize admission: the claim's StorageClass does not allow expansion.
        // The StatefulSet is left as it is; the retry backs off to a minute.
        let note = format!("PersistentVolumeClaim {name} cannot grow to {size}: {source}");
        let reason = reasons::VOLUME_EXPANSION_FAILED;
        publish(ctx, dv, EventType::Warning, reason, "Expand", note).await;
        return Err(failed(source));
    }
    Ok(true)
}

/// Deletes the member's StatefulSet keeping its pod, tied to the DV first (see
/// [`tie_pod_to_dv`]); nothing when the cache shows none, or one already going.
async fn orphan_statefulset(
    dv: &DistributedValidator,
    ctx: &Context,
    namespace: &str,
    set_name: &str,
) -> Result<(), Error> {
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(live) = ctx
        .caches
        .statefulsets
        .get(&ObjectRef::new(set_name).within(namespace))
    else {
        return Ok(());
    };
    if live.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    tie_pod_to_dv(dv, ctx, namespace, set_name).await?;
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
    let note = format!(
        "Deleted StatefulSet {set_name} keeping its pod (propagationPolicy Orphan) to recreate it with larger volume claims"
    );
    let reason = reasons::STATEFULSET_RECREATED;
    publish(ctx, dv, EventType::Normal, reason, "Recreate", note).await;
    Ok(())
}

/// Gives the member's pod a second, non-controlling owner reference to the DV before its
/// StatefulSet is deleted with `propagationPolicy: Orphan`. Between that delete and the next
/// pass's create the pod has no controller; were the DV deleted in that window, a pod owned by
/// nobody would keep running, and signing, after its DV is gone. With the DV as an owner the
/// garbage collector deletes it with the DV, and after adoption it still goes when its new
/// StatefulSet goes (a dependent is collected once none of its owners is left).
async fn tie_pod_to_dv(
    dv: &DistributedValidator,
    ctx: &Context,
    namespace: &str,
    set_name: &str,
) -> Result<(), Error> {
    let pod_name = format!("{set_name}-0");
    let Some(pod) = ctx
        .caches
        .pods
        .get(&ObjectRef::new(&pod_name).within(namespace))
    else {
        return Ok(());
    };
    let dv_uid = dv.uid().unwrap_or_default();
    if pod
        .owner_references()
        .iter()
        .any(|owner| owner.uid == dv_uid)
    {
        return Ok(());
    }
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let owner = OwnerReference {
        api_version: <DistributedValidator as Resource>::api_version(&()).into_owned(),
        kind: <DistributedValidator as Resource>::kind(&()).into_owned(),
        name: dv.name_any(),
        uid: dv_uid,
        // Not the controller (the StatefulSet adopting the pod becomes that), and not blocking
        // the DV's deletion (which would need `update` on its finalizers).
        controller: Some(false),
        block_owner_deletion: None,
    };
    // A strategic merge patch: ownerReferences merge by uid, so the StatefulSet's stays. The
    // pod's uid is a precondition, so a pod recreated since the cache saw it is not touched.
    let patch = serde_json::json!({
        "metadata": {"uid": pod.uid(), "ownerReferences": [owner]}
    });
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    waiting_on(pods.patch(
        &pod_name,
        &PatchParams::default(),
        &kube::api::Patch::Strategic(&patch),
    ))
    .await
    .map(drop)
    .map_err(|source| Error::Apply {
        kind: "Pod",
        name: pod_name,
        source,
    })
}
