//! A seeded chaos run on the simulated cluster: two operator processes with leader election run
//! a 4- and a 7-member DV while a random (but replayable) sequence of faults hits the members,
//! the nodes, the zones, the operators, the API server and the children; then everything heals
//! and the DVs must converge. Invariants are judged from the simulator's timeline:
//!
//! - no write by the operator takes a DV below its threshold of ready members;
//! - never two ready pods for one member (a second signer with the same key share), except a
//!   replica that someone else added by hand-editing the StatefulSet: no controller can stop
//!   that edit (admission control can), so for those the invariant is that the extra pod is gone
//!   within [`EXTRA_REPLICA_WITHIN`] (the longest it lived is reported);
//! - no PersistentVolumeClaim or Secret is deleted;
//! - after the faults heal, every DV is READY n/n on its latest spec within the settle time.
//!
//! The judges are pure functions of the timeline, unit-tested below.

mod invariants;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::api::{DistributedValidator, Phase};
use crate::controller::names::{FIELD_MANAGER, LABEL_DV, LABEL_MEMBER};
use crate::demo::{EXAMPLE_STADER_4, EXAMPLE_STADER_7, World, WorldOptions};
use dvt_sim::Fault;
use dvt_sim::cluster::faults::ApiFaults;
use dvt_sim::timeline::{Change, TimelineEntry, readiness_dips};
pub use invariants::*;

/// How to start one operator replica: its name (POD_NAME), the kubeconfig, and a port for its
/// metrics. The command must run `dvt-operator run --leader-election` or its equivalent.
pub type OperatorCommand = Box<dyn Fn(&str, &Path, u16) -> Command + Send + Sync>;

pub struct ChaosOptions {
    pub seed: u64,
    /// How long faults are injected.
    pub faults_for: Duration,
    /// How long the DVs have to converge once everything healed.
    pub settle_within: Duration,
    pub operator: OperatorCommand,
    /// Where kubeconfigs and logs go.
    pub work_dir: PathBuf,
}

/// Sends a replica's stderr to `<dir>/<name>.log` (appended across restarts) and drops its
/// stdout; a log that cannot be opened leaves stderr as it is.
pub fn log_to(command: &mut Command, dir: &Path, name: &str) {
    command.stdout(std::process::Stdio::null());
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
    {
        command.stderr(log);
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Each invariant with what broke it (empty: held).
    pub invariants: Vec<(&'static str, Vec<String>)>,
    /// Seconds from the last healing to every DV converged (None: not within the settle time).
    pub converged_after: Option<f64>,
    /// Each DV as it stood at the end, for a run that did not converge.
    pub final_state: Vec<String>,
    /// The longest a hand-added extra replica lived.
    pub longest_extra_replica: Duration,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.converged_after.is_some()
            && self.invariants.iter().all(|(_, broken)| broken.is_empty())
    }

    /// The report as printed by `dvt-bench chaos`.
    pub fn render(&self) -> String {
        let mut out = format!("seed {}\nfaults injected:\n", self.seed);
        for (kind, count) in &self.faults {
            out.push_str(&format!("  {kind:<24} {count}\n"));
        }
        out.push_str(&format!(
            "longest-lived hand-added replica: {:.1} s\n",
            self.longest_extra_replica.as_secs_f64()
        ));
        out.push_str("invariants:\n");
        for (name, broken) in &self.invariants {
            let verdict = if broken.is_empty() {
                "held".to_owned()
            } else {
                format!("BROKEN ({}): {}", broken.len(), broken.join("; "))
            };
            out.push_str(&format!("  {name:<44} {verdict}\n"));
        }
        out.push_str(&match self.converged_after {
            Some(seconds) => format!(
                "  {:<44} converged {seconds:.1} s after healing\n",
                "every DV READY n/n on its latest spec"
            ),
            None => format!(
                "  {:<44} BROKEN: not converged\n",
                "every DV READY n/n on its latest spec"
            ),
        });
        for line in &self.final_state {
            out.push_str(&format!("    {line}\n"));
        }
        out
    }
}

/// SplitMix64: small, seedable and good enough to pick faults; the same seed replays the same
/// choices (timing on the simulated cluster still varies a little between runs).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from).max(1))
    }
}

struct Replica {
    name: &'static str,
    child: Option<Child>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Something to undo later, at a time.
enum Undo {
    Heal { namespace: String, pod: String },
    RestoreNode(String),
    RestoreZone(String),
    Restart(usize),
    ClearApi,
}

const DVS: [(&str, usize, usize); 2] = [("stader-4", 4, 3), ("stader-7", 7, 5)];

const CHARON_IMAGES: [&str; 2] = ["obolnetwork/charon:v1.10.3", "obolnetwork/charon:v1.9.0"];

fn converged(dv: &DistributedValidator, members: usize) -> bool {
    dv.status.as_ref().is_some_and(|s| {
        s.observed_generation == dv.metadata.generation
            && s.phase == Some(Phase::Available)
            && s.ready_members as usize == members
            && s.members.iter().all(|m| m.ready && !m.outdated)
    })
}

async fn all_converged(client: &Client) -> bool {
    let dvs: Api<DistributedValidator> = Api::namespaced(client.clone(), "default");
    for (name, members, _) in DVS {
        match dvs.get(name).await {
            Ok(dv) if converged(&dv, members) => {}
            _ => return false,
        }
    }
    true
}

async fn wait_converged(client: &Client, within: Duration) -> Option<f64> {
    let started = tokio::time::Instant::now();
    while started.elapsed() < within {
        if all_converged(client).await {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Runs the chaos scenario and judges it.
pub async fn run(options: ChaosOptions) -> Result<ChaosReport, String> {
    let world = World::start(WorldOptions {
        nodes: 12,
        zones: 4,
        fast: true,
        operator: false,
        ..WorldOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&options.work_dir).map_err(|e| e.to_string())?;
    let kubeconfig = options.work_dir.join("operator.kubeconfig");
    world
        .write_operator_kubeconfig(&kubeconfig)
        .map_err(|e| e.to_string())?;
    let start_replica = |name: &'static str| -> Result<Replica, String> {
        let child = (options.operator)(name, &kubeconfig, free_port())
            .spawn()
            .map_err(|e| format!("starting operator {name}: {e}"))?;
        Ok(Replica {
            name,
            child: Some(child),
        })
    };
    let mut replicas = vec![start_replica("replica-a")?, start_replica("replica-b")?];
    for (file, text) in [
        ("stader-4.yaml", EXAMPLE_STADER_4),
        ("stader-7.yaml", EXAMPLE_STADER_7),
    ] {
        let path = options.work_dir.join(file);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        world
            .apply_file(&path, "default")
            .await
            .map_err(|e| e.to_string())?;
    }
    // The simulated members start in a second or two: a rollout step need not wait the default
    // 30 s of readiness, or a run of several rollouts would take many minutes to settle.
    let dv_api: Api<DistributedValidator> = Api::namespaced(world.client.clone(), "default");
    for (name, _, _) in DVS {
        let patch = serde_json::json!({"spec": {"rollout": {"minReadySeconds": 3}}});
        dv_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("patching {name}: {e}"))?;
    }
    if wait_converged(&world.client, Duration::from_secs(120))
        .await
        .is_none()
    {
        return Err("the DVs did not converge before the faults began".into());
    }
    let client = world.client.clone();
    let nodes: Vec<(String, String)> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .map(|n| {
            let zone = n
                .labels()
                .get(crate::api::DEFAULT_ZONE_LABEL)
                .cloned()
                .unwrap_or_default();
            (n.name_any(), zone)
        })
        .collect();
    let mut zones: Vec<String> = nodes.iter().map(|(_, z)| z.clone()).collect();
    zones.sort();
    zones.dedup();

    let mut random = Random(options.seed);
    let mut report = ChaosReport {
        seed: options.seed,
        ..ChaosReport::default()
    };
    let mut pending: Vec<(tokio::time::Instant, Undo)> = Vec::new();
    let mut image = [0usize; 2];
    let mut zone_down = false;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let dvs: Api<DistributedValidator> = Api::namespaced(client.clone(), "default");
    let faults_until = tokio::time::Instant::now() + options.faults_for;
    while tokio::time::Instant::now() < faults_until {
        // Undo what is due.
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
        pending = later;
        for (_, undo) in due {
            undo_one(&world, &mut replicas, &start_replica, undo, &mut zone_down)?;
        }
        let (dv_index, (dv, members, _)) = {
            let i = random.below(DVS.len());
            (i, DVS[i])
        };
        let member = random.below(members);
        let member_names: Vec<String> = dvs
            .get(dv)
            .await
            .ok()
            .map(|d| d.spec.members.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        let Some(member_name) = member_names.get(member).cloned() else {
            continue;
        };
        let pod = crate::controller::names::member_pod_name(dv, &member_name);
        let set = crate::controller::names::member_object_name(dv, &member_name);
        let kind = random.below(11);
        let label: &'static str = match kind {
            0 | 1 => {
                let oom = random.below(2) == 1;
                world
                    .sim
                    .inject(Fault::CrashLoop {
                        namespace: "default".into(),
                        pod: pod.clone(),
                        container: None,
                        oom,
                    })
                    .map_err(|e| e.to_string())?;
                pending.push((
                    now + random.millis(3_000, 9_000),
                    Undo::Heal {
                        namespace: "default".into(),
                        pod,
                    },
                ));
                if oom { "OOM loop" } else { "crash loop" }
            }
            2 => {
                world
                    .sim
                    .inject(Fault::CrashOnce {
                        namespace: "default".into(),
                        pod,
                        container: None,
                    })
                    .map_err(|e| e.to_string())?;
                "crash once"
            }
            3 => {
                let (node, _) = nodes[random.below(nodes.len())].clone();
                world
                    .sim
                    .inject(Fault::FailNode { node: node.clone() })
                    .map_err(|e| e.to_string())?;
                pending.push((now + random.millis(3_000, 10_000), Undo::RestoreNode(node)));
                "node failure"
            }
            4 if !zone_down => {
                let zone = zones[random.below(zones.len())].clone();
                world
                    .sim
                    .inject(Fault::FailZone { zone: zone.clone() })
                    .map_err(|e| e.to_string())?;
                zone_down = true;
                pending.push((now + random.millis(3_000, 8_000), Undo::RestoreZone(zone)));
                "zone failure"
            }
            5 => {
                let index = random.below(replicas.len());
                if let Some(mut child) = replicas[index].child.take() {
                    // SIGKILL: no lease release, no graceful shutdown.
                    let _ = child.kill();
                    let _ = child.wait();
                    pending.push((now + random.millis(500, 3_000), Undo::Restart(index)));
                }
                "operator kill -9"
            }
            6 => {
                world
                    .sim
                    .inject(Fault::Api(ApiFaults {
                        error_fraction: 0.3,
                        ..ApiFaults::default()
                    }))
                    .map_err(|e| e.to_string())?;
                pending.push((now + random.millis(1_000, 3_000), Undo::ClearApi));
                "API error burst"
            }
            7 => {
                world
                    .sim
                    .inject(Fault::Api(ApiFaults {
                        watch_drop_fraction: 0.5,
                        ..ApiFaults::default()
                    }))
                    .map_err(|e| e.to_string())?;
                pending.push((now + random.millis(2_000, 4_000), Undo::ClearApi));
                "dropped watches"
            }
            8 => {
                image[dv_index] = 1 - image[dv_index];
                let patch = serde_json::json!({"spec": {"charon": {"image": CHARON_IMAGES[image[dv_index]]}}});
                let _ = dvs
                    .patch(dv, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                "spec change (rollout)"
            }
            9 => {
                let patch = serde_json::json!({"spec": {"replicas": 2}});
                let _ = sets
                    .patch(&set, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                "hand-edit: replicas 2"
            }
            10 => {
                let patch = serde_json::json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example/edited:latest"}]);
                let _ = sets
                    .patch(
                        &set,
                        &PatchParams::default(),
                        &Patch::Json::<()>(
                            serde_json::from_value(patch).map_err(|e| e.to_string())?,
                        ),
                    )
                    .await;
                "hand-edit: image"
            }
            _ => "nothing (a zone is already down)",
        };
        *report.faults.entry(label).or_default() += 1;
        tokio::time::sleep(random.millis(300, 1_500)).await;
    }
    // Heal everything still pending, in order, and anything left over.
    pending.sort_by_key(|(at, _)| *at);
    for (_, undo) in pending.drain(..) {
        undo_one(&world, &mut replicas, &start_replica, undo, &mut zone_down)?;
    }
    for index in 0..replicas.len() {
        if replicas[index].child.is_none() {
            undo_one(
                &world,
                &mut replicas,
                &start_replica,
                Undo::Restart(index),
                &mut zone_down,
            )?;
        }
    }
    report.converged_after = wait_converged(&client, options.settle_within).await;
    if report.converged_after.is_none() {
        for (name, _, _) in DVS {
            if let Ok(dv) = dvs.get(name).await {
                let status = dv.status.clone().unwrap_or_default();
                let members: Vec<String> = status
                    .members
                    .iter()
                    .filter(|m| !m.ready || m.outdated)
                    .map(|m| {
                        format!(
                            "{} ready={} outdated={} restarts={} reason={:?}",
                            m.name,
                            m.ready,
                            m.outdated,
                            m.restarts,
                            (
                                m.last_restart_reason.clone(),
                                m.last_restart_time.clone(),
                                m.consecutive_restarts,
                                m.stranded
                            )
                        )
                    })
                    .collect();
                let conditions: Vec<String> = status
                    .conditions
                    .iter()
                    .filter(|c| c.type_ == "Progressing" || c.status != "True")
                    .map(|c| format!("{}={} ({})", c.type_, c.status, c.message))
                    .collect();
                report.final_state.push(format!(
                    "{name}: phase {:?}, ready {:?}, generation {:?} observed {:?}; members {members:?}; {conditions:?}",
                    status.phase, status.ready, dv.metadata.generation, status.observed_generation
                ));
            }
        }
    }
    let timeline = world.sim.store().timeline();
    let thresholds: BTreeMap<String, usize> = DVS
        .iter()
        .map(|(name, _, t)| ((*name).to_owned(), *t))
        .collect();
    report.longest_extra_replica = extra_replica_lives(&timeline, EXTRA_REPLICA_WITHIN).0;
    report.invariants = vec![
        (
            "no operator write takes a DV below t",
            operator_dips(&timeline, &thresholds),
        ),
        (
            "never two ready pods for one member",
            two_ready_pods_for_one_member(&timeline),
        ),
        (
            "a hand-added replica is gone within 30 s",
            lingering_extra_replicas(&timeline, EXTRA_REPLICA_WITHIN),
        ),
        ("no PVC or Secret deleted", deleted_data(&timeline)),
        (
            "the chart's RBAC refuses the operator nothing",
            operator_refusals(&world),
        ),
    ];
    drop(replicas);
    Ok(report)
}

fn undo_one(
    world: &World,
    replicas: &mut [Replica],
    start: &impl Fn(&'static str) -> Result<Replica, String>,
    undo: Undo,
    zone_down: &mut bool,
) -> Result<(), String> {
    let fault = match undo {
        Undo::Heal { namespace, pod } => Fault::Heal { namespace, pod },
        Undo::RestoreNode(node) => Fault::RestoreNode { node },
        Undo::RestoreZone(zone) => {
            *zone_down = false;
            Fault::RestoreZone { zone }
        }
        Undo::ClearApi => Fault::Api(ApiFaults::default()),
        Undo::Restart(index) => {
            if replicas[index].child.is_none() {
                let name = replicas[index].name;
                replicas[index] = start(name)?;
            }
            return Ok(());
        }
    };
    world.sim.inject(fault).map_err(|e| e.to_string())
}
