//! The simulated scheduler's decision, pure: which node a pod goes to, or why none fits.
//!
//! Filters as kube-scheduler does for what the operator uses: node readiness and
//! `spec.unschedulable`, taints and tolerations, nodeSelector, required node affinity (match
//! expressions and `metadata.name` match fields), required pod anti-affinity on any topology key,
//! required pod affinity, the zone of an already bound volume, and resource fit (CPU, memory,
//! pod count). Scores preferred node affinity and preferred pod anti-affinity, then spreads by
//! requested CPU, then by name, so that decisions are deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Why a node was filtered out; counted per reason in the `FailedScheduling` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    Unschedulable,
    Taint,
    NodeAffinity,
    PodAntiAffinity,
    PodAffinity,
    VolumeZone,
    Cpu,
    Memory,
    TooManyPods,
}

impl Misfit {
    fn describe(self) -> &'static str {
        match self {
            Misfit::NotReady => "node(s) were not ready",
            Misfit::Unschedulable => "node(s) were unschedulable",
            Misfit::Taint => "node(s) had untolerated taint",
            Misfit::NodeAffinity => "node(s) didn't match Pod's node affinity/selector",
            Misfit::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules",
            Misfit::PodAffinity => "node(s) didn't match pod affinity rules",
            Misfit::VolumeZone => "node(s) had volume node affinity conflict",
            Misfit::Cpu => "Insufficient cpu",
            Misfit::Memory => "Insufficient memory",
            Misfit::TooManyPods => "Too many pods",
        }
    }
}

/// The `FailedScheduling` message kube-scheduler would print, e.g.
/// `0/8 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 6 Insufficient cpu.`
pub fn unschedulable_message(nodes: usize, misfits: &BTreeMap<Misfit, usize>) -> String {
    let mut parts: Vec<String> = misfits
        .iter()
        .map(|(m, n)| format!("{n} {}", m.describe()))
        .collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

/// A pod already placed (bound, not yet gone), as the scheduler accounts for it.
pub struct Placed<'a> {
    pub pod: &'a Pod,
    pub node: &'a str,
}

/// The placed pods by node and by namespace: the decision asks what runs on a node (its
/// requests) and what a namespace runs where (pod anti-affinity) for every node it considers,
/// and looking through every placed pod each time made scheduling thousands of pods cubic.
#[derive(Default)]
pub struct PlacedIndex {
    /// Per node: its pods' (CPU millicores, memory bytes) requested, and how many pods.
    by_node: HashMap<String, (i64, i64, usize)>,
    by_namespace: HashMap<String, Vec<(Arc<Pod>, String)>>,
}

impl PlacedIndex {
    pub fn add(&mut self, pod: Arc<Pod>, node: String) {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let (cpu, memory) = requests(&pod);
        let used = self.by_node.entry(node.clone()).or_default();
        *used = (used.0 + cpu, used.1 + memory, used.2 + 1);
        self.by_namespace
            .entry(namespace)
            .or_default()
            .push((pod, node));
    }

    pub fn from_placed(placed: &[Placed<'_>]) -> PlacedIndex {
        let mut index = PlacedIndex::default();
        for p in placed {
            index.add(Arc::new(p.pod.clone()), p.node.to_owned());
        }
        index
    }

    /// (CPU millicores, memory bytes) requested by the pods on `node`, and how many there are.
    fn on_node(&self, node: &str) -> (i64, i64, usize) {
        self.by_node.get(node).copied().unwrap_or_default()
    }

    fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = (&Pod, &str)> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(pod, node)| (pod.as_ref(), node.as_str()))
    }
}

/// Everything the decision reads.
pub struct World<'a> {
    pub nodes: &'a [Node],
    pub placed: &'a PlacedIndex,
    /// Node names whose kubelet is down (the simulator's own knowledge; the Node's Ready
    /// condition says the same to everyone else).
    pub ready: &'a dyn Fn(&Node) -> bool,
    /// Zones the pod's bound volumes live in.
    pub volume_zones: &'a BTreeSet<String>,
}

impl World<'_> {
    /// The labels of the node a placed pod runs on (nodes are few; placed pods are many).
    fn labels_of_node(&self, node: &str) -> Option<&BTreeMap<String, String>> {
        self.nodes
            .binary_search_by(|n| name(n).cmp(node))
            .ok()
            .and_then(|i| self.nodes[i].metadata.labels.as_ref())
    }
}

/// `world.nodes` must be sorted by name (as the store lists them).
pub fn schedule(pod: &Pod, world: &World<'_>) -> Result<String, BTreeMap<Misfit, usize>> {
    let mut misfits: BTreeMap<Misfit, usize> = BTreeMap::new();
    let mut candidates: Vec<(&Node, i64)> = Vec::new();
    for node in world.nodes {
        match fits(pod, node, world) {
            Ok(()) => candidates.push((node, score(pod, node, world))),
            Err(misfit) => *misfits.entry(misfit).or_default() += 1,
        }
    }
    candidates
        .into_iter()
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb)
                .then_with(|| requested_on(world, name(b)).cmp(&requested_on(world, name(a))))
                .then_with(|| name(b).cmp(name(a)))
        })
        .map(|(node, _)| name(node).to_owned())
        .ok_or(misfits)
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

fn labels_of(labels: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    labels.clone().unwrap_or_default()
}

fn fits(pod: &Pod, node: &Node, world: &World<'_>) -> Result<(), Misfit> {
    let spec = pod.spec.as_ref();
    if !(world.ready)(node) {
        return Err(Misfit::NotReady);
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Err(Misfit::Unschedulable);
    }
    let tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    {
        return Err(Misfit::Taint);
    }
    let node_labels = labels_of(&node.metadata.labels);
    if let Some(selector) = spec.and_then(|s| s.node_selector.as_ref())
        && !selector.iter().all(|(k, v)| node_labels.get(k) == Some(v))
    {
        return Err(Misfit::NodeAffinity);
    }
    let affinity = spec.and_then(|s| s.affinity.as_ref());
    if let Some(required) = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !required
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node))
    {
        return Err(Misfit::NodeAffinity);
    }
    if !world.volume_zones.is_empty()
        && node_labels
            .get(ZONE_LABEL)
            .is_none_or(|zone| !world.volume_zones.contains(zone))
    {
        return Err(Misfit::VolumeZone);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(terms) = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|pa| {
            pa.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && terms
            .iter()
            .any(|term| domain_has_match(term, namespace, node, world))
    {
        return Err(Misfit::PodAntiAffinity);
    }
    if let Some(terms) = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|pa| {
            pa.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !terms
            .iter()
            .all(|term| domain_has_match(term, namespace, node, world))
    {
        return Err(Misfit::PodAffinity);
    }
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let (used_cpu, used_memory, pods_on_node) = world.placed.on_node(name(node));
    let (want_cpu, want_memory) = requests(pod);
    if let Some(cpu) = allocatable.get("cpu").and_then(millicores)
        && used_cpu + want_cpu > cpu
    {
        return Err(Misfit::Cpu);
    }
    if let Some(memory) = allocatable.get("memory").and_then(bytes)
        && used_memory + want_memory > memory
    {
        return Err(Misfit::Memory);
    }
    if let Some(max) = allocatable
        .get("pods")
        .and_then(|q| q.0.parse::<usize>().ok())
        && pods_on_node + 1 > max
    {
        return Err(Misfit::TooManyPods);
    }
    Ok(())
}

fn score(pod: &Pod, node: &Node, world: &World<'_>) -> i64 {
    let spec = pod.spec.as_ref();
    let affinity = spec.and_then(|s| s.affinity.as_ref());
    let mut total = 0i64;
    for preferred in affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
    {
        if term_matches(&preferred.preference, node) {
            total += i64::from(preferred.weight);
        }
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for preferred in affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|pa| {
            pa.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
    {
        if domain_has_match(&preferred.pod_affinity_term, namespace, node, world) {
            total -= i64::from(preferred.weight);
        }
    }
    total
}

fn requested_on(world: &World<'_>, node: &str) -> i64 {
    let (cpu, _, pods) = world.placed.on_node(node);
    cpu + 100 * pods as i64
}

/// Whether a pod the term selects already runs in the same topology domain as `node`.
fn domain_has_match(
    term: &PodAffinityTerm,
    namespace: &str,
    node: &Node,
    world: &World<'_>,
) -> bool {
    let Some(domain) = labels_of(&node.metadata.labels)
        .get(&term.topology_key)
        .cloned()
    else {
        return false;
    };
    let namespaces: BTreeSet<String> = match &term.namespaces {
        Some(list) if !list.is_empty() => list.iter().cloned().collect(),
        _ => [namespace.to_owned()].into(),
    };
    // Only the pods of the term's namespaces; then the node's domain (a sorted lookup), then
    // labels.
    namespaces.iter().any(|namespace| {
        world.placed.in_namespace(namespace).any(|(pod, node)| {
            world
                .labels_of_node(node)
                .and_then(|labels| labels.get(&term.topology_key))
                .is_some_and(|d| *d == domain)
                && term.label_selector.as_ref().is_some_and(|s| {
                    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
                    selector_matches(s, pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
                })
        })
    })
}

/// A `LabelSelector` against labels (an empty selector matches everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_label && by_expression
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = labels_of(&node.metadata.labels);
    let expressions = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let fields_ok = fields.clone().all(|f| {
        let value = (f.key == "metadata.name").then(|| name(node).to_owned());
        requirement_matches(f, value.as_ref())
    });
    // An empty term matches nothing, as in Kubernetes.
    (term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|f| !f.is_empty()))
        && expressions
            .clone()
            .all(|e| requirement_matches(e, labels.get(&e.key)))
        && fields_ok
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = requirement.values.clone().unwrap_or_default();
    let as_int = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| as_int(v)), values.first().and_then(|v| as_int(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| as_int(v)), values.first().and_then(|v| as_int(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether a toleration tolerates a taint (key, operator Equal/Exists, value, effect).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    let key_ok = match toleration.key.as_deref() {
        None | Some("") => operator == "Exists",
        Some(key) => key == taint.key,
    };
    let value_ok = operator == "Exists"
        || toleration.value.as_deref().unwrap_or_default()
            == taint.value.as_deref().unwrap_or_default();
    effect_ok && key_ok && value_ok
}

/// Requested CPU (millicores) and memory (bytes) of a pod's containers.
pub fn requests(pod: &Pod) -> (i64, i64) {
    let mut cpu = 0;
    let mut memory = 0;
    for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let requests = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        cpu += requests.get("cpu").and_then(millicores).unwrap_or(0);
        memory += requests.get("memory").and_then(bytes).unwrap_or(0);
    }
    (cpu, memory)
}

/// `500m` → 500, `2` → 2000.
pub fn millicores(quantity: &Quantity) -> Option<i64> {
    let text = quantity.0.trim();
    if let Some(milli) = text.strip_suffix('m') {
        return milli.parse().ok();
    }
    text.parse::<f64>()
        .ok()
        .map(|cores| (cores * 1000.0).round() as i64)
}

/// `512Mi` → 536870912, `1G` → 1000000000, `100` → 100.
pub fn bytes(quantity: &Quantity) -> Option<i64> {
    let text = quantity.0.trim();
    let suffixes: [(&str, i64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .ok()
                .map(|n| (n * factor as f64) as i64);
        }
    }
    text.parse::<f64>().ok().map(|n| n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {ZONE_LABEL: zone, "kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}},
        }))
        .unwrap()
    }

    fn pod(spec: serde_json::Value, labels: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]);
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": spec}),
        )
        .unwrap()
    }

    fn decide(pod: &Pod, nodes: &[Node], placed: &[Placed<'_>]) -> Result<String, String> {
        let zones = BTreeSet::new();
        let placed = PlacedIndex::from_placed(placed);
        let world = World {
            nodes,
            placed: &placed,
            ready: &|_| true,
            volume_zones: &zones,
        };
        schedule(pod, &world).map_err(|m| unschedulable_message(nodes.len(), &m))
    }

    #[test]
    fn required_zone_affinity_picks_a_node_in_that_zone() {
        let nodes = [node("n1", "a"), node("n2", "b"), node("n3", "b")];
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": ["b"]}]}]}}}}),
            json!({}),
        );
        let chosen = decide(&p, &nodes, &[]).unwrap();
        assert!(chosen == "n2" || chosen == "n3");
    }

    #[test]
    fn anti_affinity_on_hostname_keeps_members_apart_and_explains_why_not() {
        let nodes = [node("n1", "a")];
        let other = pod(json!({}), json!({"dv": "x"}));
        let placed = [Placed {
            pod: &other,
            node: "n1",
        }];
        let p = pod(
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"dv": "x"}}}]}}}),
            json!({"dv": "x"}),
        );
        assert_eq!(
            decide(&p, &nodes, &placed).unwrap_err(),
            "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
        );
    }

    #[test]
    fn taints_need_tolerations_and_resources_must_fit() {
        let mut tainted = node("n1", "a");
        tainted.spec = Some(
            serde_json::from_value(
                json!({"taints": [{"key": "dedicated", "value": "dvt", "effect": "NoSchedule"}]}),
            )
            .unwrap(),
        );
        let small = node("n2", "a");
        let hog = pod(json!({}), json!({}));
        let placed: Vec<Placed<'_>> = (0..4)
            .map(|_| Placed {
                pod: &hog,
                node: "n2",
            })
            .collect();
        let p = pod(json!({}), json!({}));
        assert_eq!(
            decide(&p, &[tainted.clone(), small.clone()], &placed).unwrap_err(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint."
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dvt", "effect": "NoSchedule"}]}),
            json!({}),
        );
        assert_eq!(decide(&tolerant, &[tainted, small], &placed).unwrap(), "n1");
    }

    #[test]
    fn node_selector_and_preferences_decide_deterministically() {
        let nodes = [node("n1", "a"), node("n2", "b"), node("n3", "c")];
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": ["c"]}]}}]}}}),
            json!({}),
        );
        assert_eq!(decide(&p, &nodes, &[]).unwrap(), "n3");
        let selected = pod(json!({"nodeSelector": {ZONE_LABEL: "a"}}), json!({}));
        assert_eq!(decide(&selected, &nodes, &[]).unwrap(), "n1");
        // Without preferences, the least loaded node, then the first by name.
        let plain = pod(json!({}), json!({}));
        assert_eq!(decide(&plain, &nodes, &[]).unwrap(), "n1");
        let placed = [Placed {
            pod: &plain,
            node: "n1",
        }];
        assert_eq!(decide(&plain, &nodes, &placed).unwrap(), "n2");
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(millicores(&Quantity("250m".into())), Some(250));
        assert_eq!(millicores(&Quantity("1.5".into())), Some(1500));
        assert_eq!(bytes(&Quantity("1Gi".into())), Some(1 << 30));
        assert_eq!(bytes(&Quantity("500M".into())), Some(500_000_000));
    }
}
