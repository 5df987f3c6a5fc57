//! Apply: the build skipped when nothing changed, then server-side apply of the desired
//! children whose cached copy does not carry their hash (StatefulSets last), with drift
//! correction. Storage growth is in `grow_storage`, the removal of unwanted children in `prune`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::build::{self, BuiltChild, ChildKind, Desired};
use super::caches::Caches;
use super::context::Context;
use super::error::Error;
use super::events::{publish, publish_about};
use super::grow_storage::grow_storage;
use super::names::{ANNOTATION_SPEC_HASH, FIELD_MANAGER, member_object_name};
use super::prune::remove_unwanted;
use super::{drift, model, waiting_on};
use crate::api::{DistributedValidator, reasons};

/// Whether an apply made a child or changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Created,
    Updated,
}

impl Change {
    fn reason(self) -> &'static str {
        match self {
            Change::Created => reasons::CREATED,
            Change::Updated => reasons::UPDATED,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Change::Created => "Create",
            Change::Updated => "Update",
        }
    }
}

/// A child one apply pass wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct WrittenChild {
    pub change: Change,
    pub kind: ChildKind,
    pub name: String,
}

/// What one apply pass wrote, in the order written.
#[derive(Clone, Debug, Default)]
pub(super) struct Applied(Vec<WrittenChild>);

impl Applied {
    /// Whether this pass wrote the template of StatefulSet `name`: its cached copy, and its
    /// update revision, are older than what the server holds.
    pub(super) fn template_written(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|c| c.kind == ChildKind::StatefulSet && c.name == name)
    }
}

/// The build and apply steps: every child of `cluster` built and applied; returns what was
/// written (the StatefulSets whose template was written have older cached copies). A member whose claims
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
) -> Result<Applied, Error> {
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
        return Ok(Applied::default());
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
    Ok(written)
}

/// Whether the caches show `child` as applied with its hash (see [`super::built::as_applied`]).
fn cached_as_applied(caches: &Caches, namespace: &str, child: &BuiltChild) -> bool {
    fn applied<K: Resource<DynamicType = ()> + Clone + 'static>(
        cache: &Store<K>,
        namespace: &str,
        child: &BuiltChild,
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

/// Server-side applies every desired object whose cached copy does not already carry its hash;
/// StatefulSets last, after the Services and the budget; first, children of ours missing from
/// `children` (the built list of `desired`) are removed. One Event per pass says what was
/// created or updated (an Event per object would be ten writes per new DV).
pub(super) async fn apply(
    dv: &DistributedValidator,
    ctx: &Context,
    desired: Desired,
    children: &[BuiltChild],
) -> Result<Applied, Error> {
    let mut written = Applied::default();
    let result = apply_all(dv, ctx, desired, children, &mut written).await;
    for change in [Change::Created, Change::Updated] {
        let objects: Vec<String> = written
            .0
            .iter()
            .filter(|c| c.change == change)
            .map(|c| format!("{} {}", c.kind.as_str(), c.name))
            .collect();
        if objects.is_empty() {
            continue;
        }
        let note = event_note(change.reason(), &objects);
        publish(
            ctx,
            dv,
            EventType::Normal,
            change.reason(),
            change.action(),
            note,
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
    children: &[BuiltChild],
    written: &mut Applied,
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
            ChildKind::Service,
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
        ChildKind::PodDisruptionBudget,
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
            ChildKind::NetworkPolicy,
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
            ChildKind::StatefulSet,
            written,
        )
        .await?;
    }
    Ok(())
}

/// Server-side applies `object` unless the cache shows it as applied; fields someone else
/// wrote since are put back whatever the hash says, with a Warning Event naming them.
pub(super) async fn apply_one<K, C>(
    dv: &DistributedValidator,
    ctx: &Context,
    cache: &Store<C>,
    namespace: &str,
    object: K,
    kind: ChildKind,
    written: &mut Applied,
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
    let cached = cache.get(&ObjectRef::new(&name).within(namespace));
    let Some(drifted) = to_write(&object, cached.as_ref().map(|c| c.meta()), kind)? else {
        return Ok(());
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if !ctx.fence.holds() {
        return Err(Error::Fenced);
    }
    let related = Some(object_reference::<K>(&name, namespace));
    if let Err(source) = waiting_on(api.patch(&name, &params, &Patch::Apply(&object))).await {
        let note = format!("{} {name}: {source}", kind.as_str());
        let reason = reasons::APPLY_FAILED;
        publish_about(ctx, dv, related, EventType::Warning, reason, "Apply", note).await;
        return Err(Error::Apply {
            kind: kind.as_str(),
            name,
            source,
        });
    }
    let change = if cached.is_some() {
        Change::Updated
    } else {
        Change::Created
    };
    info!(kind = kind.as_str(), object = %name, reason = change.reason(), "applied");
    if !drifted.is_empty() {
        let fields = drifted.join(", ");
        warn!(kind = kind.as_str(), object = %name, %fields, "drift corrected");
        let note = format!("{} {name}: restored {fields}", kind.as_str());
        let reason = reasons::DRIFT_CORRECTED;
        publish_about(ctx, dv, related, EventType::Warning, reason, "Apply", note).await;
    }
    written.0.push(WrittenChild { change, kind, name });
    Ok(())
}

/// Whether `object` must be written over its `cached` copy: `None` when the copy carries its
/// hash and nobody else wrote a field we set; else the fields someone else wrote (empty when
/// only the hash differs, or there is no copy).
fn to_write<K>(
    object: &K,
    cached: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    kind: ChildKind,
) -> Result<Option<Vec<String>>, Error>
where
    K: Resource + Serialize,
{
    let want = object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SPEC_HASH));
    // The caches keep only other writers' managed fields: an object nobody else wrote is
    // decided by its hash alone, without encoding it (the common case on every reconcile).
    if let (Some(cached), Some(want)) = (cached, want)
        && super::built::as_applied(cached, want)
    {
        return Ok(None);
    }
    let unchanged =
        cached.is_some_and(|c| super::trim::cached_spec_hash(c) == want.map(String::as_str));
    let others = cached
        .and_then(|c| c.managed_fields.as_deref())
        .filter(|entries| !entries.is_empty());
    // Fields we set that someone else wrote since: put back now, whatever the hash says. Only
    // then is the object encoded as a JSON tree (to walk it); the apply itself sends the typed
    // object, whose encoding carries its apiVersion and kind.
    let drifted = match others {
        Some(entries) => {
            let value = serde_json::to_value(object).map_err(|source| Error::Encode {
                kind: kind.as_str(),
                name: object.meta().name.clone().unwrap_or_default(),
                source,
            })?;
            drift::drifted_fields(&value, entries, FIELD_MANAGER)
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        None => Vec::new(),
    };
    if unchanged && drifted.is_empty() {
        return Ok(None);
    }
    Ok(Some(drifted))
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
