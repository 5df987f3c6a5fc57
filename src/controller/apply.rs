//! Apply: server-side apply of the desired children whose cached copy does not carry their
//! hash (StatefulSets last), drift correction, and the storage step that grows PVCs and
//! recreates a member's StatefulSet around its running pod.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Expands a member's PVCs to the sizes asked for; once every one is asked, deletes its
/// StatefulSet with `propagationPolicy: Orphan` (the pod keeps running and is adopted by the
/// StatefulSet the next pass creates). PVCs are patched, never deleted.
pub(super) async fn grow_storage(
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
                crate::api::reasons::VOLUME_EXPANSION_FAILED,
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
            crate::api::reasons::VOLUME_EXPANDING,
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
    tie_pod_to_dv(dv, ctx, &namespace, set_name).await?;
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
        crate::api::reasons::STATEFULSET_RECREATED,
        "Recreate",
        format!(
            "Deleted StatefulSet {set_name} keeping its pod (propagationPolicy Orphan) to recreate it with larger volume claims"
        ),
    )
    .await;
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

/// The build and apply steps: every child of `cluster` built and applied; returns the names of
/// the StatefulSets whose template was written (their cached copies are now older). A member whose claims
/// grow keeps its StatefulSet out of this apply (kube-apiserver would refuse the new claim
/// templates): its PVCs are expanded, then the StatefulSet is deleted with its pod orphaned and
/// is created again, with the new templates, by the next pass.
///
/// The build is skipped when the DV's last complete build was made from the same inputs and the
/// caches show each of its children as applied: it would build the same objects, and the applier
/// would write none of them. Children no longer wanted are still looked for and removed.
pub(super) async fn apply_cluster(
    dv: &DistributedValidator,
    ctx: &Context,
    cluster: &model::Cluster,
) -> Result<std::collections::BTreeSet<String>, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let key = (namespace.clone(), dv.name_any());
    let inputs = build::inputs_fingerprint(cluster);
    if cluster.storage_growth.is_empty()
        && let Some(children) = ctx
            .memory
            .read(&key, |m| m.built.as_ref()?.children_from(inputs))
            .flatten()
        && children
            .iter()
            .all(|child| cached_as_applied(&ctx.caches, &namespace, child))
    {
        remove_unwanted(dv, ctx, &namespace, &children).await?;
        return Ok(std::collections::BTreeSet::new());
    }
    // Until this build is applied in full, nothing is remembered: a failed or partial apply
    // builds again next time.
    ctx.memory.update(&key, |m| m.built = None);
    let mut desired = build::build(cluster);
    let children = desired.children();
    for (member, claims) in &cluster.storage_growth {
        let set_name = member_object_name(&dv.name_any(), member);
        desired
            .statefulsets
            .retain(|set| set.metadata.name.as_deref() != Some(set_name.as_str()));
        grow_storage(dv, ctx, &set_name, claims).await?;
    }
    let written = apply(dv, ctx, desired, &children).await?;
    if cluster.storage_growth.is_empty() {
        ctx.memory.update(&key, |m| {
            m.built = Some(super::built::Built::new(inputs, children))
        });
    }
    Ok(written
        .into_iter()
        .filter(|(_, kind, _)| *kind == "StatefulSet")
        .map(|(_, _, name)| name)
        .collect())
}

/// Whether the caches show `child` as applied with its hash (see [`super::built::as_applied`]).
fn cached_as_applied(caches: &Caches, namespace: &str, child: &build::BuiltChild) -> bool {
    use build::ChildKind;
    fn applied<K: Resource<DynamicType = ()> + Clone + 'static>(
        cache: &Store<K>,
        namespace: &str,
        child: &build::BuiltChild,
    ) -> bool {
        cache
            .get(&ObjectRef::new(&child.name).within(namespace))
            .is_some_and(|cached| super::built::as_applied(cached.meta(), &child.hash))
    }
    match child.kind {
        ChildKind::Service => applied(&caches.services, namespace, child),
        ChildKind::PodDisruptionBudget => applied(&caches.pdbs, namespace, child),
        ChildKind::NetworkPolicy => applied(&caches.network_policies, namespace, child),
        ChildKind::StatefulSet => applied(&caches.statefulsets, namespace, child),
    }
}

/// What one apply pass wrote: (Created or Updated, kind, name), in the order written.
pub(super) type Written = Vec<(&'static str, &'static str, String)>;

/// Server-side applies every desired object whose cached copy does not already carry its hash;
/// StatefulSets last, after the Services and the budget; first, children of ours missing from
/// `children` (the built list of `desired`) are removed. One Event per pass says what was
/// created or updated (an Event per object would be ten writes per new DV).
pub(super) async fn apply(
    dv: &DistributedValidator,
    ctx: &Context,
    desired: Desired,
    children: &[build::BuiltChild],
) -> Result<Written, Error> {
    let mut written = Written::new();
    let result = apply_all(dv, ctx, desired, children, &mut written).await;
    for reason in [crate::api::reasons::CREATED, crate::api::reasons::UPDATED] {
        let objects: Vec<String> = written
            .iter()
            .filter(|(r, _, _)| *r == reason)
            .map(|(_, kind, name)| format!("{kind} {name}"))
            .collect();
        if objects.is_empty() {
            continue;
        }
        let action = if reason == crate::api::reasons::CREATED {
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
    result.map(|()| written)
}

/// An Event's note: `reason` and the objects, cut to the 1 kB the Events API accepts.
pub(super) fn event_note(reason: &str, objects: &[String]) -> String {
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

pub(super) async fn apply_all(
    dv: &DistributedValidator,
    ctx: &Context,
    desired: Desired,
    children: &[build::BuiltChild],
    written: &mut Written,
) -> Result<(), Error> {
    let namespace = dv.namespace().unwrap_or_default();
    remove_unwanted(dv, ctx, &namespace, children).await?;
    let Desired {
        services,
        statefulsets,
        pdb,
        network_policy,
    } = desired;
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
    if let Some(policy) = network_policy {
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

pub(super) async fn apply_one<K, C>(
    dv: &DistributedValidator,
    ctx: &Context,
    cache: &Store<C>,
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
    // The cache may hold the objects in a shape of its own (`cached::StatefulSet`).
    C: Resource<DynamicType = ()> + Clone + 'static,
{
    let name = object.name_any();
    let want = object.annotations().get(ANNOTATION_SPEC_HASH).cloned();
    let cached = cache.get(&ObjectRef::new(&name).within(namespace));
    // The caches keep only other writers' managed fields: an object nobody else wrote is
    // decided by its hash alone, without encoding it (the common case on every reconcile).
    if let (Some(cached), Some(want)) = (&cached, &want)
        && super::built::as_applied(cached.meta(), want)
    {
        return Ok(());
    }
    let unchanged = cached
        .as_ref()
        .is_some_and(|c| super::trim::cached_spec_hash(c.meta()) == want.as_deref());
    let others = cached
        .as_ref()
        .and_then(|c| c.meta().managed_fields.as_deref())
        .filter(|entries| !entries.is_empty());
    // Fields we set that someone else wrote since: put back now, whatever the hash says. Only
    // then is the object encoded as a JSON tree (to walk it); the apply itself sends the typed
    // object, whose encoding carries its apiVersion and kind.
    let drifted = match others {
        Some(entries) => {
            let value = serde_json::to_value(&object).map_err(|source| Error::Encode {
                kind,
                name: name.clone(),
                source,
            })?;
            drift::drifted_fields(&value, entries, FIELD_MANAGER)
        }
        None => Vec::new(),
    };
    if unchanged && drifted.is_empty() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    match waiting_on(api.patch(&name, &params, &Patch::Apply(&object))).await {
        Ok(_) => {
            let reason = if cached.is_some() {
                crate::api::reasons::UPDATED
            } else {
                crate::api::reasons::CREATED
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
                    crate::api::reasons::DRIFT_CORRECTED,
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

pub(super) fn object_reference<K>(name: &str, namespace: &str) -> ObjectReference
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

/// Removes the children of ours that `children` (what the DV needs) no longer has: p2p Services
/// (`spec.p2p` removed, or a member gone or remote now: a published port nobody uses is an open
/// door, and a LoadBalancer costs) and the NetworkPolicy of a DV that opted out. Neither holds
/// data.
async fn remove_unwanted(
    dv: &DistributedValidator,
    ctx: &Context,
    namespace: &str,
    children: &[build::BuiltChild],
) -> Result<(), Error> {
    let wanted = |kind: build::ChildKind, name: &str| {
        children.iter().any(|c| c.kind == kind && c.name == name)
    };
    let dv_name = dv.name_any();
    if !wanted(build::ChildKind::NetworkPolicy, &dv_name) {
        // Opted out: remove the policy this operator made (it is ours, and holds no data).
        delete_ours::<NetworkPolicy>(
            dv,
            ctx,
            &ctx.caches.network_policies,
            namespace,
            &dv_name,
            "NetworkPolicy",
            "spec.networkPolicy.enabled is false",
        )
        .await?;
    }
    for member in &dv.spec.members {
        let name = member_p2p_service_name(&dv_name, &member.name);
        if !wanted(build::ChildKind::Service, &name) {
            let why = format!("member {} is no longer exposed by spec.p2p", member.name);
            delete_ours::<Service>(
                dv,
                ctx,
                &ctx.caches.services,
                namespace,
                &name,
                "Service",
                &why,
            )
            .await?;
        }
    }
    Ok(())
}

/// Deletes the cached object `name` if this DV owns it (it holds no data: a policy or a
/// Service), with a Normal Event saying `why`. Nothing else is ever deleted this way.
async fn delete_ours<K>(
    dv: &DistributedValidator,
    ctx: &Context,
    cache: &Store<K>,
    namespace: &str,
    name: &str,
    kind: &'static str,
    why: &str,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let ours = cache
        .get(&ObjectRef::new(name).within(namespace))
        .is_some_and(|object| {
            object
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == dv.uid().as_ref())
        });
    if !ours {
        return Ok(());
    }
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    waiting_on(api.delete(name, &Default::default()))
        .await
        .map_err(|source| Error::Apply {
            kind,
            name: name.to_owned(),
            source,
        })?;
    publish(
        ctx,
        dv,
        EventType::Normal,
        crate::api::reasons::DELETED,
        "Delete",
        format!("Deleted {kind} {name} ({why})"),
    )
    .await;
    Ok(())
}
