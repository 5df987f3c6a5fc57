//! Checks a DistributedValidator spec beyond what its schema can express, naming each problem's
//! field path. Pure: the offline `validate` command and the controller share it.

mod p2p;
mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{DistributedValidatorSpec, Middleware, Policy, ValidatorClient};
use crate::domain::quantity::Quantity;
use crate::domain::quorum::Quorum;
use p2p::check_p2p;
use secrets::check_secrets;

/// Longest StatefulSet name whose pods still get valid labels: the StatefulSet controller labels
/// each pod `controller-revision-hash: <statefulset>-<10-character hash>`, a 63-character label
/// value, so `<dv>-<member>` must leave 11 characters. This also keeps the pod hostname
/// `<dv>-<member>-0` within the 63 characters of a DNS label.
pub const MAX_STATEFULSET_NAME: usize = 52;

/// Longest DNS label (pod hostname, Service name).
pub const MAX_DNS_LABEL: usize = 63;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The DV cannot be run as written.
    Error,
    /// The DV runs, but weaker than it should.
    Warning,
}

/// One finding, tied to the field that causes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub severity: Severity,
    /// Path of the offending field, e.g. `spec.members[2].index`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}: {}", self.path, self.message)
    }
}

/// Every problem found in one DV, errors first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }

    /// Under `Required` a broken diversity rule is an error, under `Preferred` a warning.
    fn by_policy(&mut self, policy: Policy, path: impl Into<String>, message: impl Into<String>) {
        let severity = match policy {
            Policy::Required => Severity::Error,
            Policy::Preferred => Severity::Warning,
        };
        self.push(severity, path, message);
    }

    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates the spec of the DV named `name`. The report is sorted: errors first, then by path.
pub fn validate_spec(name: &str, spec: &DistributedValidatorSpec) -> Report {
    let mut report = Report::default();
    check_names(name, spec, &mut report);
    check_middleware(spec, &mut report);
    check_share_indexes(spec, &mut report);
    check_secrets(spec, &mut report);
    check_endpoints(spec, &mut report);
    check_p2p(spec, &mut report);
    check_rollout_and_storage(spec, &mut report);
    // The diversity rules are measured against the threshold; with an impossible threshold they
    // would only add noise to the one error that matters.
    if let Some(quorum) = check_quorum(spec, &mut report) {
        check_rollout_budget(spec, quorum, &mut report);
        check_client_diversity(spec, quorum, &mut report);
        check_zones(spec, quorum, &mut report);
        check_operator_diversity(spec, quorum, &mut report);
    }
    report.problems.sort();
    report.problems.dedup();
    report
}

fn member_path(i: usize, field: &str) -> String {
    format!("spec.members[{i}].{field}")
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_DNS_LABEL
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_names(name: &str, spec: &DistributedValidatorSpec, report: &mut Report) {
    // Member Services are named `<dv>-<member>`, and Service names are DNS-1035 labels, which
    // must start with a letter.
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !is_dns_label(name) {
        report.error(
            "metadata.name",
            format!(
                "{name:?} must be a DNS label starting with a letter (lowercase letters, digits and '-'), because member Services are named after it"
            ),
        );
    }
    let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        let path = member_path(i, "name");
        if !is_dns_label(&member.name) {
            report.error(
                &path,
                format!(
                    "{:?} must be lowercase letters, digits and '-', starting and ending with a letter or digit",
                    member.name
                ),
            );
        }
        let statefulset = format!("{name}-{}", member.name);
        if statefulset.len() > MAX_STATEFULSET_NAME {
            report.error(
                &path,
                format!(
                    "{statefulset:?} is {} characters; the DV name plus the member name must fit in {MAX_STATEFULSET_NAME} so that the pod hostname \"{statefulset}-0\" and its controller-revision-hash label stay within Kubernetes' 63-character limit",
                    statefulset.len()
                ),
            );
        }
        if let Some(&first) = first_use.get(member.name.as_str()) {
            report.error(
                &path,
                format!(
                    "duplicate member name {:?} (also spec.members[{first}])",
                    member.name
                ),
            );
        } else {
            first_use.insert(&member.name, i);
        }
    }
}

fn check_middleware(spec: &DistributedValidatorSpec, report: &mut Report) {
    if spec.middleware == Middleware::Ssv {
        report.error(
            "spec.middleware",
            "ssv is reserved for a later release; only charon is supported",
        );
    }
}

fn check_quorum(spec: &DistributedValidatorSpec, report: &mut Report) -> Option<Quorum> {
    let members = spec.member_count();
    let threshold = spec.effective_threshold();
    let path = if spec.threshold.is_some() {
        "spec.threshold"
    } else {
        "spec.members"
    };
    match Quorum::new(members, threshold) {
        Ok((quorum, warnings)) => {
            for warning in warnings {
                report.warning(path, warning.to_string());
            }
            Some(quorum)
        }
        Err(error) => {
            let path = match error {
                crate::domain::quorum::QuorumError::UnsupportedSize { .. } => "spec.members",
                _ => path,
            };
            report.error(path, error.to_string());
            None
        }
    }
}

fn check_share_indexes(spec: &DistributedValidatorSpec, report: &mut Report) {
    let members = spec.members.len();
    let mut first_use: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        let path = member_path(i, "index");
        if usize::try_from(member.index).map_or(true, |index| index >= members) {
            report.error(
                &path,
                format!(
                    "share index {} is out of range: {members} members use indexes 0 to {}",
                    member.index,
                    members.saturating_sub(1)
                ),
            );
        }
        if let Some(&first) = first_use.get(&member.index) {
            report.error(
                &path,
                format!(
                    "duplicate share index {} (also spec.members[{first}])",
                    member.index
                ),
            );
        } else {
            first_use.insert(member.index, i);
        }
    }
}

fn is_url(value: &str, allow_path: bool) -> bool {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .or_else(|| {
            if allow_path {
                value.strip_prefix('/')
            } else {
                None
            }
        });
    rest.is_some_and(|r| !r.is_empty() && !r.contains(|c: char| c.is_whitespace() || c == ','))
}

fn check_endpoints(spec: &DistributedValidatorSpec, report: &mut Report) {
    if spec.beacon_endpoints().is_empty() && spec.test_network.is_none() {
        report.error(
            "spec.beaconNodes.endpoints",
            "at least one beacon node is required (or spec.testNetwork, for a test network)",
        );
    }
    if spec.test_network.is_some() && spec.network == crate::api::Network::Mainnet {
        report.error(
            "spec.testNetwork",
            "test-network mode runs Charon's mock beacon node and validator mock; it is refused for mainnet (set spec.network to a test network)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, endpoint) in spec.beacon_endpoints().iter().enumerate() {
        let path = format!("spec.beaconNodes.endpoints[{i}]");
        if !is_url(endpoint, false) {
            report.error(
                &path,
                format!("{endpoint:?} is not an http:// or https:// URL"),
            );
        }
        if !seen.insert(endpoint) {
            report.warning(&path, format!("{endpoint:?} is listed twice"));
        }
    }
    for (i, relay) in spec.charon.relays.iter().enumerate() {
        if !is_url(relay, true) {
            report.error(
                format!("spec.charon.relays[{i}]"),
                format!("{relay:?} is not an http(s) URL or a multiaddr"),
            );
        }
    }
}

fn check_rollout_and_storage(spec: &DistributedValidatorSpec, report: &mut Report) {
    let rollout = &spec.rollout;
    if rollout.max_unavailable == 0 {
        report.error(
            "spec.rollout.maxUnavailable",
            "must be at least 1, or updates could never roll out",
        );
    }
    if rollout.restart_backoff_seconds == 0 {
        report.error("spec.rollout.restartBackoffSeconds", "must be at least 1");
    }
    if rollout.max_restart_backoff_seconds < rollout.restart_backoff_seconds {
        report.error(
            "spec.rollout.maxRestartBackoffSeconds",
            format!(
                "{} is below restartBackoffSeconds {}",
                rollout.max_restart_backoff_seconds, rollout.restart_backoff_seconds
            ),
        );
    }
    for (field, value) in [
        ("charonSize", &spec.storage.charon_size),
        ("validatorClientSize", &spec.storage.validator_client_size),
    ] {
        if let Err(error) = Quantity::parse(value) {
            report.error(format!("spec.storage.{field}"), error.to_string());
        }
    }
    if !spec.storage.retain_on_delete {
        report.warning(
            "spec.storage.retainOnDelete",
            "volumes hold slashing-protection data; deleting them with the DV risks a slashing if the keys are ever run again",
        );
    }
}

fn check_rollout_budget(spec: &DistributedValidatorSpec, quorum: Quorum, report: &mut Report) {
    let budget = quorum.liveness_budget();
    if spec.rollout.max_unavailable > budget.max(1) {
        report.warning(
            "spec.rollout.maxUnavailable",
            format!(
                "{} is above the quorum budget {budget}; the operator never takes down more than the budget",
                spec.rollout.max_unavailable
            ),
        );
    }
}

fn count_of<K: Ord + Copy>(counts: &BTreeMap<K, u32>, key: K) -> u32 {
    counts.get(&key).copied().unwrap_or(0)
}

/// Formats counts as `a=2, b=1` in key order, for messages that do not churn.
pub fn format_counts<K: fmt::Display>(counts: impl IntoIterator<Item = (K, u32)>) -> String {
    counts
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_client_diversity(spec: &DistributedValidatorSpec, quorum: Quorum, report: &mut Report) {
    let diversity = &spec.client_diversity;
    let n = quorum.members();
    let t = quorum.threshold();
    let mut listed = BTreeSet::new();
    for (i, client) in diversity.clients.iter().enumerate() {
        if !listed.insert(*client) {
            report.warning(
                format!("spec.clientDiversity.clients[{i}]"),
                format!("{client} is listed twice"),
            );
        }
    }
    if diversity.clients.is_empty() {
        report.error(
            "spec.clientDiversity.clients",
            "list at least one validator client",
        );
    }

    let mut counts: BTreeMap<ValidatorClient, u32> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        if let Some(client) = member.validator_client {
            if !listed.contains(&client) {
                report.error(
                    member_path(i, "validatorClient"),
                    format!(
                        "{client} is not in spec.clientDiversity.clients ({})",
                        diversity
                            .clients
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            *counts.entry(client).or_default() += 1;
        }
    }
    // Unpinned members go to the least-used allowed client; if even that spread reaches t, no
    // assignment can avoid it.
    let unpinned = spec
        .members
        .iter()
        .filter(|m| m.validator_client.is_none())
        .count();
    for _ in 0..unpinned {
        let Some(least) = ValidatorClient::ALL
            .into_iter()
            .filter(|c| listed.contains(c))
            .min_by_key(|c| count_of(&counts, *c))
        else {
            break;
        };
        *counts.entry(least).or_default() += 1;
    }
    let table = format_counts(counts.iter().map(|(c, n)| (c.as_str(), *n)));
    for (client, count) in &counts {
        if *count >= t {
            report.by_policy(
                diversity.policy,
                "spec.clientDiversity",
                format!(
                    "{count} of {n} members would run {client} ({table}); with threshold {t}, one {client} bug could sign something slashable. Allow more clients or pin members to different ones"
                ),
            );
        } else if *count > quorum.liveness_budget() {
            report.warning(
                "spec.clientDiversity",
                format!(
                    "{count} of {n} members would run {client} ({table}); one {client} bug could stop signing (at most {} may be down)",
                    quorum.liveness_budget()
                ),
            );
        }
    }
}

fn check_zones(spec: &DistributedValidatorSpec, quorum: Quorum, report: &mut Report) {
    let placement = &spec.placement;
    let n = quorum.members();
    let t = quorum.threshold();
    let budget = quorum.liveness_budget();
    let allowed: BTreeSet<&str> = placement.zones.iter().map(String::as_str).collect();
    let mut pinned: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, member) in spec.members.iter().enumerate() {
        let Some(zone) = member.zone.as_deref() else {
            continue;
        };
        if !allowed.is_empty() && !allowed.contains(zone) {
            report.error(
                member_path(i, "zone"),
                format!(
                    "zone {zone:?} is not in spec.placement.zones ({})",
                    placement.zones.join(", ")
                ),
            );
        }
        *pinned.entry(zone).or_default() += 1;
    }
    for (zone, count) in &pinned {
        if *count > budget {
            report.by_policy(
                placement.policy,
                "spec.placement",
                format!(
                    "{count} members are pinned to zone {zone}; with threshold {t} of {n} at most {budget} may share a zone, or one zone outage stops signing"
                ),
            );
        }
    }
    // With an explicit zone list, the unpinned members must fit in the room the zones have left.
    if !allowed.is_empty() {
        let unpinned = spec.members.iter().filter(|m| m.zone.is_none()).count() as u32;
        let room: u32 = allowed
            .iter()
            .map(|z| budget.saturating_sub(pinned.get(z).copied().unwrap_or(0)))
            .sum();
        if unpinned > room {
            let needed = n.div_ceil(budget.max(1));
            report.by_policy(
                placement.policy,
                "spec.placement.zones",
                format!(
                    "{} zones cannot hold {n} members with at most {budget} per zone; list at least {needed} zones so that one zone outage never stops signing",
                    allowed.len()
                ),
            );
        }
    }
}

fn check_operator_diversity(spec: &DistributedValidatorSpec, quorum: Quorum, report: &mut Report) {
    let policy = spec.operator_diversity.policy;
    let n = quorum.members();
    let t = quorum.threshold();
    let mut by_name: BTreeMap<&str, u32> = BTreeMap::new();
    let mut by_class: BTreeMap<&str, u32> = BTreeMap::new();
    for member in &spec.members {
        *by_name.entry(member.operator.name.as_str()).or_default() += 1;
        *by_class.entry(member.operator.class.as_str()).or_default() += 1;
    }
    let names = format_counts(by_name.iter().map(|(k, v)| (*k, *v)));
    let classes = format_counts(by_class.iter().map(|(k, v)| (*k, *v)));
    for (name, count) in &by_name {
        if *count >= t {
            report.by_policy(
                policy,
                "spec.members.operator.name",
                format!(
                    "operator {name:?} runs {count} of {n} members ({names}); with threshold {t} it could sign alone. Spread members over more operators, or set spec.operatorDiversity.policy: Preferred for a single-entity high-availability cluster"
                ),
            );
        } else if *count > quorum.liveness_budget() {
            report.warning(
                "spec.members.operator.name",
                format!(
                    "operator {name:?} runs {count} of {n} members ({names}); its outage alone would stop signing (at most {} may be down)",
                    quorum.liveness_budget()
                ),
            );
        }
    }
    for (class, count) in &by_class {
        if *count >= t {
            report.by_policy(
                policy,
                "spec.members.operator.class",
                format!(
                    "{count} of {n} members are {class} ({classes}); with threshold {t} one class could sign alone"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
