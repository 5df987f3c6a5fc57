//! The PodDisruptionBudget over a DV's pods: voluntary evictions (a node drain) may not take the
//! cluster below its threshold.

use super::child_metadata;
use super::dv_labels;
use super::stamp;
use crate::controller::model::Cluster;
use crate::controller::names::LABEL_DV;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// One budget over all members with an integer `minAvailable: t`: an eviction may never leave
/// fewer than `t` members ready (a `maxUnavailable: t` budget would let quorum be evicted).
pub(super) fn pdb(cluster: &Cluster) -> PodDisruptionBudget {
    let mut pdb = PodDisruptionBudget {
        metadata: child_metadata(cluster, cluster.name.clone(), dv_labels(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            // The pods here must keep `t` less the remote members up (see `Cluster::rollout`), so
            // that a node drain cannot take the cluster below its threshold either.
            min_available: Some(IntOrString::Int(cluster.rollout.threshold as i32)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_DV.to_owned(),
                    cluster.name.clone(),
                )])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    stamp(&mut pdb, |p| &mut p.metadata);
    pdb
}
