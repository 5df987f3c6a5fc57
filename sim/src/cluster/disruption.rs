//! The disruption controller's pass: each PodDisruptionBudget's status (current and desired
//! healthy, disruptions allowed) from the pods it selects.

use super::*;

/// [`crate::store::pod_ready`] on the decoded pod: encoding every pod again on every pass to
/// ask was a tenth of the simulator's time at 1,000 DVs.
fn counts_as_healthy(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// [`crate::store::desired_healthy`] on the decoded budget (encoding each budget on every pass
/// to ask cost more than the rest of the disruption controller's pass).
fn desired_healthy(
    spec: Option<&k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec>,
    expected: i64,
) -> i64 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let resolve = |bound: &IntOrString| -> Option<i64> {
        match bound {
            IntOrString::Int(n) => Some(i64::from(*n)),
            IntOrString::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .map(|p| (p * expected + 99) / 100),
        }
    };
    if let Some(min) = spec
        .and_then(|s| s.min_available.as_ref())
        .and_then(resolve)
    {
        return min;
    }
    if let Some(max) = spec
        .and_then(|s| s.max_unavailable.as_ref())
        .and_then(resolve)
    {
        return (expected - max).max(0);
    }
    0
}

impl Inner {
    pub(super) fn disruption_budgets(&self, writes: &Budget) {
        let budgets: Vec<Arc<PodDisruptionBudget>> = self.access.list(&self.types.pdbs);
        if budgets.is_empty() {
            return;
        }
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        // Pods by namespace, once per pass: each budget looking through every pod was
        // quadratic (3,000 budgets and 12,000 pods).
        let mut pods_by_namespace: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for pod in &pods {
            pods_by_namespace
                .entry(pod.metadata.namespace.as_deref().unwrap_or_default())
                .or_default()
                .push(pod.as_ref());
        }
        for budget in budgets {
            let namespace = namespace_of(&budget.metadata);
            let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.clone()) else {
                continue;
            };
            let matching: Vec<&Pod> = pods_by_namespace
                .get(namespace.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| {
                    scheduler::selector_matches(
                        &selector,
                        &p.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let expected = matching.len() as i64;
            let healthy = matching.iter().filter(|p| counts_as_healthy(p)).count() as i64;
            let desired = desired_healthy(budget.spec.as_ref(), expected);
            let allowed = (healthy - desired).max(0);
            let previous = budget.status.clone().unwrap_or_default();
            let condition = Condition {
                type_: "DisruptionAllowed".into(),
                status: if allowed > 0 { "True" } else { "False" }.into(),
                reason: if allowed > 0 {
                    "SufficientPods"
                } else {
                    "InsufficientPods"
                }
                .into(),
                message: String::new(),
                observed_generation: budget.metadata.generation,
                last_transition_time: previous
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| {
                        c.type_ == "DisruptionAllowed"
                            && c.status == if allowed > 0 { "True" } else { "False" }
                    })
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or_else(|| kubelet::time(k8s_openapi::jiff::Timestamp::now())),
            };
            let status = PodDisruptionBudgetStatus {
                current_healthy: healthy as i32,
                desired_healthy: desired as i32,
                disruptions_allowed: allowed as i32,
                expected_pods: expected as i32,
                observed_generation: budget.metadata.generation,
                conditions: Some(vec![condition]),
                disrupted_pods: None,
            };
            if budget.status.as_ref() != Some(&status) && writes.spend(1) {
                let mut updated = Arc::unwrap_or_clone(budget.clone());
                updated.status = Some(status);
                let _ = self.access.replace(
                    &self.types.pdbs,
                    &namespace,
                    &name_of(&budget.metadata),
                    &updated,
                    Subresource::Status,
                    DISRUPTION_CONTROLLER,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_healthy_exactly_when_the_stored_form_says_so() {
        let pods = [
            serde_json::json!({"metadata": {"name": "a"}}),
            serde_json::json!({"metadata": {"name": "a"}, "status": {"conditions": [
                {"type": "Ready", "status": "True"}]}}),
            serde_json::json!({"metadata": {"name": "a"}, "status": {"conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "False"}]}}),
            serde_json::json!({"metadata": {"name": "a", "deletionTimestamp": "2026-12-03T00:00:00Z"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        ];
        let judged: Vec<bool> = pods
            .iter()
            .map(|v| {
                let pod: Pod = serde_json::from_value(v.clone()).expect("a pod");
                assert_eq!(counts_as_healthy(&pod), crate::store::pod_ready(v), "{v}");
                counts_as_healthy(&pod)
            })
            .collect();
        assert_eq!(judged, [false, true, false, false]);
    }

    #[test]
    fn desired_healthy_agrees_with_the_stored_form() {
        for spec in [
            serde_json::json!({}),
            serde_json::json!({"minAvailable": 3}),
            serde_json::json!({"minAvailable": "60%"}),
            serde_json::json!({"maxUnavailable": 1}),
            serde_json::json!({"maxUnavailable": "25%"}),
        ] {
            let budget = serde_json::json!({"metadata": {"name": "b"}, "spec": spec});
            let typed: PodDisruptionBudget =
                serde_json::from_value(budget.clone()).expect("a budget");
            for expected in [0, 4, 7] {
                assert_eq!(
                    desired_healthy(typed.spec.as_ref(), expected),
                    crate::store::desired_healthy(&budget, expected),
                    "{spec} with {expected} pods"
                );
            }
        }
    }
}
