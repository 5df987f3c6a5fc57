//! Pruning: the children of ours a DV no longer needs (a p2p Service nobody uses, the
//! NetworkPolicy of a DV that opted out) are deleted. Neither holds data; nothing else is ever
//! deleted here.

use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::build::{BuiltChild, ChildKind};
use super::context::Context;
use super::error::Error;
use super::events::publish;
use super::names::member_p2p_service_name;
use super::waiting_on;
use crate::api::{DistributedValidator, reasons};

/// The children of ours that `children` (what the DV needs) no longer has, with why they go:
/// p2p Services (`spec.p2p` removed, or a member gone or remote now: a published port nobody
/// uses is an open door, and a LoadBalancer costs) and the NetworkPolicy of a DV that opted out.
/// Pure.
pub(super) fn unwanted(
    dv: &DistributedValidator,
    children: &[BuiltChild],
) -> Vec<(ChildKind, String, String)> {
    let wanted =
        |kind: ChildKind, name: &str| children.iter().any(|c| c.kind == kind && c.name == name);
    let dv_name = dv.name_any();
    let mut unwanted = Vec::new();
    if !wanted(ChildKind::NetworkPolicy, &dv_name) {
        let why = "spec.networkPolicy.enabled is false".to_owned();
        unwanted.push((ChildKind::NetworkPolicy, dv_name.clone(), why));
    }
    for member in &dv.spec.members {
        let name = member_p2p_service_name(&dv_name, &member.name);
        if !wanted(ChildKind::Service, &name) {
            let why = format!("member {} is no longer exposed by spec.p2p", member.name);
            unwanted.push((ChildKind::Service, name, why));
        }
    }
    unwanted
}

/// Removes what [`unwanted`] names, where it is ours.
pub(super) async fn remove_unwanted(
    dv: &DistributedValidator,
    ctx: &Context,
    namespace: &str,
    children: &[BuiltChild],
) -> Result<(), Error> {
    let caches = &ctx.caches;
    for (kind, name, why) in unwanted(dv, children) {
        match kind {
            ChildKind::NetworkPolicy => {
                let cache = &caches.network_policies;
                delete_ours(dv, ctx, cache, namespace, &name, kind, &why).await?
            }
            ChildKind::Service => {
                delete_ours(dv, ctx, &caches.services, namespace, &name, kind, &why).await?
            }
            // Never pruned: a StatefulSet runs the member (its claims hold its data) and the
            // budget guards quorum.
            ChildKind::StatefulSet | ChildKind::PodDisruptionBudget => {}
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
    kind: ChildKind,
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
            kind: kind.as_str(),
            name: name.to_owned(),
            source,
        })?;
    publish(
        ctx,
        dv,
        EventType::Normal,
        reasons::DELETED,
        "Delete",
        format!("Deleted {} {name} ({why})", kind.as_str()),
    )
    .await;
    Ok(())
}
