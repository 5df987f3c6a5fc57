//! Prometheus metrics and health endpoints: reconciles, their duration, errors by category, and
//! per-DV gauges (ready members, threshold, budget, phase). Rendered in the text exposition
//! format by hand: a handful of series does not need a metrics framework.
//!
//! Labels stay low-cardinality: error categories and phases are fixed sets; the per-DV gauges
//! carry the DV's namespace and name, one series per DV, as kube-state-metrics does for objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::api::{DistributedValidatorStatus, Phase};

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Upper bounds (seconds) of the buckets of reconcile time spent in the operator itself: the
/// pure steps take tens to hundreds of microseconds, so the buckets start far lower.
const COMPUTE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A Prometheus histogram with fixed buckets.
struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(self.bounds) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bucket, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const PHASES: [Phase; 5] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Available,
    Phase::Degraded,
    Phase::QuorumLost,
];

#[derive(Clone, Debug, Default, PartialEq)]
struct DvGauges {
    ready: u32,
    members: u32,
    threshold: u32,
    budget: i32,
    phase: Option<Phase>,
    outdated: u32,
    rollout_held: bool,
    key_shares_verified: bool,
    placement_satisfied: bool,
    /// Per member: name, ready, operator restarts in a row (the alerts name the member).
    member_states: Vec<(String, bool, u32)>,
}

/// The per-DV gauges: name, help, value.
type DvGauge = (&'static str, &'static str, fn(&DvGauges) -> i64);

const DV_GAUGES: [DvGauge; 8] = [
    ("dvt_ready_members", "Members whose pods are Ready.", |g| {
        i64::from(g.ready)
    }),
    ("dvt_members", "Members of the DV.", |g| {
        i64::from(g.members)
    }),
    ("dvt_threshold", "Members needed to sign.", |g| {
        i64::from(g.threshold)
    }),
    (
        "dvt_disruption_budget",
        "Ready members minus threshold.",
        |g| i64::from(g.budget),
    ),
    (
        "dvt_members_outdated",
        "Members running an older revision (a rollout or a requested restart pending).",
        |g| i64::from(g.outdated),
    ),
    (
        "dvt_rollout_held_by_budget",
        "1 while a rollout waits because the budget allows no disruption.",
        |g| i64::from(g.rollout_held),
    ),
    (
        "dvt_key_shares_verified",
        "1 when the lock verifies and every member's keystores hold its share (KeySharesVerified).",
        |g| i64::from(g.key_shares_verified),
    ),
    (
        "dvt_placement_satisfied",
        "1 when the placement survives the loss of one zone (PlacementSatisfied).",
        |g| i64::from(g.placement_satisfied),
    ),
];

/// Shared by the reconciler and the HTTP endpoints.
pub struct Metrics {
    reconciles: AtomicU64,
    durations: Histogram<{ BUCKETS.len() }>,
    compute: Histogram<{ COMPUTE_BUCKETS.len() }>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    restarts: Mutex<BTreeMap<&'static str, u64>>,
    dvs: Mutex<BTreeMap<(String, String), DvGauges>>,
    ready: AtomicBool,
    leader: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: AtomicU64::new(0),
            durations: Histogram::new(BUCKETS),
            compute: Histogram::new(COMPUTE_BUCKETS),
            errors: Mutex::default(),
            restarts: Mutex::default(),
            dvs: Mutex::default(),
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// One reconcile: how long it took, and how much of that was spent waiting on the API
    /// server (requests, Events) and the caches.
    pub fn observe_reconcile(&self, took: Duration, waiting: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.durations.observe(took);
        self.compute.observe(took.saturating_sub(waiting));
    }

    pub fn observe_error(&self, category: &'static str) {
        *lock(&self.errors).entry(category).or_default() += 1;
    }

    /// A member restarted by the operator: `repair`, `rollout` or `force-delete`.
    pub fn observe_restart(&self, kind: &'static str) {
        *lock(&self.restarts).entry(kind).or_default() += 1;
    }

    pub fn observe_status(
        &self,
        namespace: &str,
        name: &str,
        members: u32,
        status: &DistributedValidatorStatus,
    ) {
        let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
        lock(&self.dvs).insert(
            (namespace.to_owned(), name.to_owned()),
            DvGauges {
                ready: status.ready_members,
                members,
                threshold: status.threshold.unwrap_or(0),
                budget: status.disruption_budget.unwrap_or(0),
                phase: status.phase,
                outdated: status.members.iter().filter(|m| m.outdated).count() as u32,
                rollout_held: condition(crate::api::condition_types::PROGRESSING)
                    .is_some_and(|c| c.reason == crate::api::reasons::ROLLOUT_HELD_BY_BUDGET),
                key_shares_verified: condition(crate::api::condition_types::KEY_SHARES_VERIFIED)
                    .is_some_and(|c| c.status == "True"),
                placement_satisfied: condition(crate::api::condition_types::PLACEMENT_SATISFIED)
                    .is_some_and(|c| c.status == "True"),
                member_states: status
                    .members
                    .iter()
                    .map(|m| (m.name.clone(), m.ready, m.consecutive_restarts))
                    .collect(),
            },
        );
    }

    /// Keeps the gauges of the DVs `keep` accepts, by (namespace, name); returns those dropped.
    pub fn retain_dvs(&self, keep: impl Fn(&(String, String)) -> bool) -> Vec<(String, String)> {
        let mut dvs = lock(&self.dvs);
        let dropped: Vec<(String, String)> = dvs.keys().filter(|k| !keep(k)).cloned().collect();
        for key in &dropped {
            dvs.remove(key);
        }
        dropped
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        lock(&self.dvs).remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Ready to serve: caches synced (or standing by for the leader lease).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP dvt_reconciles_total Reconciles of DistributedValidators."
        );
        let _ = writeln!(out, "# TYPE dvt_reconciles_total counter");
        let _ = writeln!(
            out,
            "dvt_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        self.durations.render(
            &mut out,
            "dvt_reconcile_duration_seconds",
            "Time one reconcile took.",
        );
        self.compute.render(
            &mut out,
            "dvt_reconcile_compute_seconds",
            "Time one reconcile spent in the operator itself: its duration minus the time waiting on API requests, Events and the caches.",
        );
        let _ = writeln!(
            out,
            "# HELP dvt_reconcile_errors_total Failed reconciles by category."
        );
        let _ = writeln!(out, "# TYPE dvt_reconcile_errors_total counter");
        for (category, n) in lock(&self.errors).iter() {
            let _ = writeln!(
                out,
                "dvt_reconcile_errors_total{{category=\"{category}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP dvt_leader Whether this replica holds the leader lease."
        );
        let _ = writeln!(out, "# TYPE dvt_leader gauge");
        let _ = writeln!(
            out,
            "dvt_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP dvt_restarts_total Members restarted by the operator, by kind (repair, rollout, force-delete)."
        );
        let _ = writeln!(out, "# TYPE dvt_restarts_total counter");
        for kind in ["repair", "rollout", "force-delete"] {
            let n = lock(&self.restarts).get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "dvt_restarts_total{{kind=\"{kind}\"}} {n}");
        }
        let dvs = lock(&self.dvs);
        for (metric, help, value) in DV_GAUGES {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} gauge");
            for ((namespace, name), g) in dvs.iter() {
                let _ = writeln!(
                    out,
                    "{metric}{{namespace=\"{namespace}\",name=\"{name}\"}} {}",
                    value(g)
                );
            }
        }
        for (metric, help, ready) in [
            (
                "dvt_member_ready",
                "1 when the member's pod is Ready.",
                true,
            ),
            (
                "dvt_member_consecutive_restarts",
                "Operator restarts of the member in a row without it staying Ready.",
                false,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} gauge");
            for ((namespace, name), g) in dvs.iter() {
                for (member, is_ready, consecutive) in &g.member_states {
                    let value = if ready {
                        u32::from(*is_ready)
                    } else {
                        *consecutive
                    };
                    let _ = writeln!(
                        out,
                        "{metric}{{namespace=\"{namespace}\",name=\"{name}\",member=\"{member}\"}} {value}"
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP dvt_phase The DV's phase (1 for the current one)."
        );
        let _ = writeln!(out, "# TYPE dvt_phase gauge");
        for ((namespace, name), g) in dvs.iter() {
            for phase in PHASES {
                let on = u8::from(g.phase == Some(phase));
                let _ = writeln!(
                    out,
                    "dvt_phase{{namespace=\"{namespace}\",name=\"{name}\",phase=\"{}\"}} {on}",
                    phase.as_str()
                );
            }
        }
        out
    }
}

/// The `q` quantile (0..=1) of histogram `name` in a text exposition, estimated as Prometheus'
/// `histogram_quantile` does: linear within the bucket that holds the rank. `None` when the
/// histogram is absent or empty. Observations above the last finite bound report that bound.
pub fn quantile(exposition: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = count - below;
            let fraction = if within > 0.0 {
                (rank - below) / within
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * fraction);
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve(
    address: std::net::SocketAddr,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let for_metrics = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = for_metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    if metrics.is_ready() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_counters_histogram_and_per_dv_gauges() {
        let metrics = Metrics::default();
        metrics.observe_reconcile(Duration::from_millis(3), Duration::from_micros(2900));
        metrics.observe_reconcile(Duration::from_millis(30), Duration::from_millis(29));
        metrics.observe_error("ApplyFailed");
        metrics.observe_restart("repair");
        let status = DistributedValidatorStatus {
            ready_members: 3,
            threshold: Some(3),
            disruption_budget: Some(0),
            phase: Some(Phase::Degraded),
            members: vec![
                crate::api::MemberStatus {
                    name: "alpha".into(),
                    ready: true,
                    outdated: true,
                    ..Default::default()
                },
                crate::api::MemberStatus {
                    name: "bravo".into(),
                    consecutive_restarts: 2,
                    outdated: true,
                    ..Default::default()
                },
            ],
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: "RolloutHeldByBudget".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: None,
            }],
            ..DistributedValidatorStatus::default()
        };
        metrics.observe_status("staking", "dv-a", 4, &status);
        let text = metrics.render();
        for line in [
            "dvt_restarts_total{kind=\"repair\"} 1\n",
            "dvt_restarts_total{kind=\"rollout\"} 0\n",
            "dvt_members_outdated{namespace=\"staking\",name=\"dv-a\"} 2\n",
            "dvt_rollout_held_by_budget{namespace=\"staking\",name=\"dv-a\"} 1\n",
            "dvt_key_shares_verified{namespace=\"staking\",name=\"dv-a\"} 0\n",
            "dvt_member_ready{namespace=\"staking\",name=\"dv-a\",member=\"alpha\"} 1\n",
            "dvt_member_consecutive_restarts{namespace=\"staking\",name=\"dv-a\",member=\"bravo\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(text.contains("dvt_reconciles_total 2\n"), "{text}");
        assert!(
            text.contains("dvt_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dvt_reconcile_duration_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        // Without the waiting: 100 µs and 1 ms.
        assert!(
            text.contains("dvt_reconcile_compute_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dvt_reconcile_compute_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("dvt_reconcile_compute_seconds_count 2\n"));
        assert!(text.contains("dvt_reconcile_errors_total{category=\"ApplyFailed\"} 1\n"));
        assert!(text.contains("dvt_ready_members{namespace=\"staking\",name=\"dv-a\"} 3\n"));
        assert!(
            text.contains("dvt_phase{namespace=\"staking\",name=\"dv-a\",phase=\"Degraded\"} 1\n")
        );
        assert!(
            text.contains("dvt_phase{namespace=\"staking\",name=\"dv-a\",phase=\"Available\"} 0\n")
        );
        metrics.forget("staking", "dv-a");
        assert!(!metrics.render().contains("dv-a"));
        metrics.observe_status("staking", "dv-a", 4, &status);
        metrics.observe_status("staking", "dv-b", 4, &status);
        let dropped = metrics.retain_dvs(|(_, name)| name == "dv-b");
        assert_eq!(dropped, [("staking".to_owned(), "dv-a".to_owned())]);
        let text = metrics.render();
        assert!(!text.contains("dv-a") && text.contains("dv-b"), "{text}");
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        let metrics = Metrics::default();
        // 90 fast reconciles (≤ 1 ms) and 10 slow ones (in the 25-50 ms bucket).
        for _ in 0..90 {
            metrics.observe_reconcile(Duration::from_micros(800), Duration::ZERO);
        }
        for _ in 0..10 {
            metrics.observe_reconcile(Duration::from_millis(40), Duration::ZERO);
        }
        let text = metrics.render();
        let name = "dvt_reconcile_duration_seconds";
        // The median falls in the first bucket (0..1 ms), half-way through its 90 observations.
        let median = quantile(&text, name, 0.5).unwrap();
        assert!((median - 0.5 / 0.9 * 0.001).abs() < 1e-9, "{median}");
        // The 99th percentile is 9/10 of the way through the 25-50 ms bucket.
        let p99 = quantile(&text, name, 0.99).unwrap();
        assert!((p99 - (0.025 + 0.025 * 0.9)).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&text, "dvt_missing", 0.5), None);
        assert_eq!(
            quantile(&Metrics::default().render(), name, 0.5),
            None,
            "no observations"
        );
        // Beyond the last finite bound: that bound.
        let slow = Metrics::default();
        slow.observe_reconcile(Duration::from_secs(9), Duration::ZERO);
        assert_eq!(quantile(&slow.render(), name, 0.99), Some(5.0));
    }
}
