//! The network children of a DV: each member's Service (its p2p and monitoring ports) and the
//! NetworkPolicy that opens only what Charon and the clients use.

use super::child_metadata;
use super::dv_labels;
use super::member_labels;
use super::member_selector;
use super::stamp;
use crate::controller::model::Cluster;
use crate::controller::model::Member;
use crate::controller::names::CONTROLLER_NAME;
use crate::controller::names::LABEL_DV;
use crate::controller::names::LABEL_NAME;
use crate::controller::names::PORT_MONITORING;
use crate::controller::names::PORT_VC_METRICS;
use crate::controller::names::member_object_name;
use crate::controller::names::member_p2p_service_name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::api::core::v1::ServiceSpec;
use k8s_openapi::api::networking::v1::IPBlock;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub(super) fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

/// Members accept p2p only from members of the same DV (and the listed relay CIDRs), and
/// metrics only from the listed namespaces; the validator API is pod-local and never exposed.
pub(super) fn network_policy(cluster: &Cluster) -> NetworkPolicy {
    let same_dv = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            LABEL_DV.to_owned(),
            cluster.name.clone(),
        )])),
        match_expressions: None,
    };
    let mut p2p_from = vec![NetworkPolicyPeer {
        pod_selector: Some(same_dv.clone()),
        ..NetworkPolicyPeer::default()
    }];
    p2p_from.extend(
        cluster
            .network_policy
            .relay_cidrs
            .iter()
            .map(|cidr| NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: cidr.clone(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            }),
    );
    let p2p_ports: std::collections::BTreeSet<i32> =
        cluster.members.iter().map(|m| m.p2p_port).collect();
    let p2p_ports: Vec<NetworkPolicyPort> = p2p_ports.into_iter().map(tcp).collect();
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(p2p_from),
        ports: Some(p2p_ports.clone()),
    }];
    if let Some(exposure) = &cluster.p2p {
        // Peers in other organisations, from the allowed ranges (anywhere when none are set).
        let ranges = if exposure.source_ranges.is_empty() {
            vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]
        } else {
            exposure.source_ranges.clone()
        };
        ingress.push(NetworkPolicyIngressRule {
            from: Some(
                ranges
                    .into_iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock { cidr, except: None }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(p2p_ports),
        });
    }
    if !cluster.network_policy.metrics_namespaces.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: "kubernetes.io/metadata.name".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(cluster.network_policy.metrics_namespaces.clone()),
                        },
                    ]),
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![tcp(PORT_MONITORING), tcp(PORT_VC_METRICS)]),
        });
    }
    // The operator reads each member's Charon monitoring endpoint (its peers and readiness).
    ingress.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_NAME.to_owned(),
                    CONTROLLER_NAME.to_owned(),
                )])),
                match_expressions: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp(PORT_MONITORING)]),
    });
    let mut policy = NetworkPolicy {
        metadata: child_metadata(cluster, cluster.name.clone(), dv_labels(cluster)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(same_dv),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    };
    stamp(&mut policy, |p| &mut p.metadata);
    policy
}

/// Headless, publishing not-ready addresses: peers must find a member's p2p address before it
/// is ready, because its readiness depends on them.
pub(super) fn service(cluster: &Cluster, member: &Member) -> Service {
    let mut service = Service {
        metadata: child_metadata(
            cluster,
            member_object_name(&cluster.name, &member.name),
            member_labels(cluster, member),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(member_selector(cluster, member)),
            ports: Some(vec![
                port("p2p-tcp", member.p2p_port),
                port("monitoring", PORT_MONITORING),
                port("vc-metrics", PORT_VC_METRICS),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    stamp(&mut service, |s| &mut s.metadata);
    service
}

/// The Service that publishes a member's p2p port outside the cluster (`spec.p2p`): a
/// LoadBalancer on the member's p2p port, or a NodePort on its node port (which is also the port
/// Charon listens on).
pub(super) fn p2p_service(
    cluster: &Cluster,
    member: &Member,
    exposure: &crate::api::P2pExposure,
) -> Service {
    let load_balancer = exposure.service_type == crate::api::ExposureType::LoadBalancer;
    let mut p2p = port("p2p-tcp", member.p2p_port);
    if !load_balancer {
        p2p.node_port = Some(member.p2p_port);
    }
    let mut service = Service {
        metadata: child_metadata(
            cluster,
            member_p2p_service_name(&cluster.name, &member.name),
            member_labels(cluster, member),
        ),
        spec: Some(ServiceSpec {
            type_: Some(
                if load_balancer {
                    "LoadBalancer"
                } else {
                    "NodePort"
                }
                .to_owned(),
            ),
            selector: Some(member_selector(cluster, member)),
            ports: Some(vec![p2p]),
            load_balancer_source_ranges: (load_balancer && !exposure.source_ranges.is_empty())
                .then(|| exposure.source_ranges.clone()),
            // Peers see the member's own address, and only nodes running it answer.
            external_traffic_policy: Some("Local".to_owned()),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    stamp(&mut service, |s| &mut s.metadata);
    service
}

pub(super) fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}
