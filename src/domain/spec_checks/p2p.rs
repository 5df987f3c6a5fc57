//! `spec.p2p` and each member's `externalAddress` and `nodePort`: how members are published for
//! peers in other organisations.

use super::Report;
use super::member_path;
use crate::api::DistributedValidatorSpec;
use std::collections::BTreeMap;

/// `spec.p2p` and each member's `externalAddress` and `nodePort` fit together: a NodePort member
/// names its port (unique) and the address peers dial; a remote member's address is its
/// organisation's business; source ranges are CIDRs.
pub(super) fn check_p2p(spec: &DistributedValidatorSpec, report: &mut Report) {
    let node_port = spec
        .p2p
        .as_ref()
        .is_some_and(|p| p.service_type == crate::api::ExposureType::NodePort);
    let mut ports: BTreeMap<u16, usize> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        if member.remote {
            for (field, set) in [
                ("externalAddress", member.external_address.is_some()),
                ("nodePort", member.node_port.is_some()),
            ] {
                if set {
                    report.error(
                        member_path(i, field),
                        "a remote member is published by the organisation that runs it",
                    );
                }
            }
            continue;
        }
        match (member.node_port, node_port) {
            (Some(_), false) => report.error(
                member_path(i, "nodePort"),
                "only with spec.p2p.type: NodePort",
            ),
            (None, true) => report.error(
                member_path(i, "nodePort"),
                "required with spec.p2p.type: NodePort (Charon listens on it and advertises it)",
            ),
            (Some(port), true) => {
                if let Some(other) = ports.insert(port, i) {
                    report.error(
                        member_path(i, "nodePort"),
                        format!("node port {port} is also spec.members[{other}].nodePort"),
                    );
                }
            }
            (None, false) => {}
        }
        if node_port && member.external_address.is_none() {
            report.error(
                member_path(i, "externalAddress"),
                "required with spec.p2p.type: NodePort: the node address peers dial",
            );
        }
    }
    for (i, range) in spec
        .p2p
        .iter()
        .flat_map(|p| p.source_ranges.iter())
        .enumerate()
    {
        let valid = range.split_once('/').is_some_and(|(ip, bits)| {
            match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                (Ok(std::net::IpAddr::V4(_)), Ok(bits)) => bits <= 32,
                (Ok(std::net::IpAddr::V6(_)), Ok(bits)) => bits <= 128,
                _ => false,
            }
        });
        if !valid {
            report.error(
                format!("spec.p2p.sourceRanges[{i}]"),
                format!("{range:?} is not a CIDR (e.g. 203.0.113.0/24)"),
            );
        }
    }
}
