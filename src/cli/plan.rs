//! `dvt-operator plan`: the placement the operator would choose for a DV on a set of nodes, and
//! how many failures of each kind it survives. Offline and pure.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Node;
use serde::Deserialize;

use crate::api::DistributedValidator;
use crate::controller::model::assign_clients;
use crate::domain::placement::{MemberZone, Zones, assign_zones, spread};
use crate::domain::quorum::Quorum;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no DistributedValidator in the file")]
    NoDistributedValidator,
    #[error("reading the DistributedValidator: {0}")]
    Dv(String),
    #[error("reading the nodes (expect `kubectl get nodes -o yaml`): {0}")]
    Nodes(String),
    #[error("the DV's size and threshold are not usable: {0}")]
    Quorum(String),
}

/// The first DistributedValidator of a multi-document YAML text.
pub fn read_dv(text: &str) -> Result<DistributedValidator, PlanError> {
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|e| PlanError::Dv(e.to_string()))?;
        if value["kind"].as_str() == Some("DistributedValidator") {
            return serde_yaml::from_value(value).map_err(|e| PlanError::Dv(e.to_string()));
        }
    }
    Err(PlanError::NoDistributedValidator)
}

/// Nodes from `kubectl get nodes -o yaml` (a List) or from documents of kind Node.
pub fn read_nodes(text: &str) -> Result<Vec<Node>, PlanError> {
    let mut nodes = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| PlanError::Nodes(e.to_string()))?;
        let items = match value["kind"].as_str() {
            Some("Node") => vec![value],
            _ => value["items"].as_sequence().cloned().unwrap_or_default(),
        };
        for item in items {
            nodes.push(serde_yaml::from_value(item).map_err(|e| PlanError::Nodes(e.to_string()))?);
        }
    }
    Ok(nodes)
}

/// The plan, as printed.
pub fn plan(dv: &DistributedValidator, nodes: &[Node]) -> Result<String, PlanError> {
    let spec = &dv.spec;
    let (quorum, _) = Quorum::new(spec.member_count(), spec.effective_threshold())
        .map_err(|e| PlanError::Quorum(e.to_string()))?;
    let (n, t) = (quorum.members(), quorum.threshold());
    let mut zones = Zones::new();
    for node in nodes {
        if let Some(zone) = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(&spec.placement.zone_label))
            && (spec.placement.zones.is_empty() || spec.placement.zones.contains(zone))
        {
            *zones.entry(zone.clone()).or_default() += 1;
        }
    }
    let previous = |name: &str| {
        dv.status
            .as_ref()?
            .members
            .iter()
            .find(|m| m.name == name)?
            .zone
            .clone()
    };
    // Only members run here are placed on these nodes; each remote member is a failure domain of
    // its own (another organisation's infrastructure), as the controller counts it.
    let members: Vec<MemberZone> = spec
        .members
        .iter()
        .filter(|m| !m.remote)
        .map(|m| MemberZone {
            index: m.index,
            pinned: m.zone.clone(),
            previous: previous(&m.name),
        })
        .collect();
    let mut local_zones = assign_zones(&members, &zones).into_iter();
    let assigned_zones: Vec<Option<String>> = spec
        .members
        .iter()
        .map(|m| {
            if m.remote {
                Some(format!("(remote: {})", m.name))
            } else {
                local_zones.next().flatten()
            }
        })
        .collect();
    let clients = assign_clients(&spec.members, &spec.client_diversity.clients);
    let mut out = String::new();
    let name = dv.metadata.name.as_deref().unwrap_or("(unnamed)");
    let _ = writeln!(
        out,
        "{name}: {n} members, threshold {t}, {} may be down",
        n - t
    );
    let _ = writeln!(
        out,
        "nodes: {} with zone label {:?} in {} zone(s)",
        zones.values().sum::<usize>(),
        spec.placement.zone_label,
        zones.len()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12} {:>5}  {:<10} {:<10} {:<28} CLASS",
        "MEMBER", "INDEX", "ZONE", "CLIENT", "OPERATOR"
    );
    let mut order: Vec<usize> = (0..spec.members.len()).collect();
    order.sort_by_key(|&i| spec.members[i].index);
    for i in order {
        let m = &spec.members[i];
        let zone = assigned_zones[i].as_deref().unwrap_or("(none)");
        let pinned = |set: bool| if set { " (pinned)" } else { "" };
        let _ = writeln!(
            out,
            "{:<12} {:>5}  {:<10} {:<10} {:<28} {}",
            m.name,
            m.index,
            if m.remote {
                "(remote)".to_owned()
            } else {
                format!("{zone}{}", pinned(m.zone.is_some()))
            },
            match clients[i] {
                Some(client) => format!("{client}{}", pinned(m.validator_client.is_some())),
                None => "(theirs)".to_owned(),
            },
            m.operator.name,
            m.operator.class.as_str()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:<44} {:>9}  {:<5} LIVE",
        "FAILURE DOMAIN", "MEMBERS PER DOMAIN", "SURVIVES", "SAFE"
    );
    let rows = [
        (
            "zones",
            spread(
                assigned_zones
                    .iter()
                    .map(|z| z.clone().unwrap_or_else(|| "(none)".into())),
                n,
                t,
            ),
        ),
        (
            "validator clients",
            spread(
                clients.iter().flatten().map(|c| c.as_str().to_owned()),
                n,
                t,
            ),
        ),
        (
            "operators",
            spread(spec.members.iter().map(|m| m.operator.name.clone()), n, t),
        ),
        (
            "operator classes",
            spread(
                spec.members
                    .iter()
                    .map(|m| m.operator.class.as_str().to_owned()),
                n,
                t,
            ),
        ),
    ];
    for (kind, s) in &rows {
        let _ = writeln!(
            out,
            "{:<18} {:<44} {:>9}  {:<5} {}",
            kind,
            s.describe(),
            s.survives,
            if s.safe { "yes" } else { "NO" },
            if s.live { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "SURVIVES: whole domains that may fail (largest first) with {t} members left to sign."
    );
    let _ = writeln!(
        out,
        "SAFE: no domain holds {t} members (none could sign alone). LIVE: no domain holds more than {} (its failure does not stop signing).",
        n - t
    );
    Ok(out)
}

/// `dvt-operator plan -f DV --nodes NODES`: reads both files and prints the plan.
pub fn command(file: &Path, nodes: &Path) -> ExitCode {
    let read = |path: &Path| {
        super::read_input(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let result = read(file)
        .and_then(|dv| Ok((dv, read(nodes)?)))
        .and_then(|(dv, nodes)| {
            let dv = read_dv(&dv).map_err(|e| e.to_string())?;
            let nodes = read_nodes(&nodes).map_err(|e| e.to_string())?;
            plan(&dv, &nodes).map_err(|e| e.to_string())
        });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(zones: &[&str]) -> Vec<Node> {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": zones.iter().enumerate().map(|(i, z)| serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("n{i}"), "labels": {"topology.kubernetes.io/zone": z}}})).collect::<Vec<_>>(),
        });
        read_nodes(&serde_yaml::to_string(&list).unwrap()).unwrap()
    }

    fn example() -> DistributedValidator {
        read_dv(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/stader-4.yaml"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn four_zones_give_each_member_its_own_and_survive_one_zone_outage() {
        let text = plan(&example(), &nodes(&["a", "b", "c", "d", "a", "b"])).unwrap();
        assert!(
            text.contains("zones              a 1, b 1, c 1, d 1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("zones") && l.contains("        1  yes   yes")),
            "{text}"
        );
    }

    #[test]
    fn three_zones_show_that_one_zone_outage_stops_signing() {
        let text = plan(&example(), &nodes(&["a", "b", "c", "a", "b", "c"])).unwrap();
        let zones = text.lines().find(|l| l.starts_with("zones")).unwrap();
        assert!(
            zones.contains("a 2, b 1, c 1") && zones.contains("        0  yes   NO"),
            "{zones}"
        );
    }
}
