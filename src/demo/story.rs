//! What `dvt-operator demo` shows a person: a 3-of-4 DV converging, then what only the operator
//! does (a Helm chart and Kubernetes alone would not): a rollout one member at a time within the
//! quorum budget, the repair of a crash-looping member, a rollout step refused while the budget
//! is 0, a client change that moves the member's slashing-protection history, and a summary
//! judged from the simulator's timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::{EXAMPLE_STADER_4, World, WorldOptions};
use crate::api::{
    ClientMovePhase, DistributedValidator, Phase, ValidatorClient, condition_types, reasons,
};
use crate::controller::build::clients::migration::interchange_file;
use crate::controller::names::{CONTROLLER_NAME, FIELD_MANAGER, LABEL_DV, member_pod_name};
use crate::controller::names::{INIT_EXPORT_SLASHING_PROTECTION, INIT_IMPORT_SLASHING_PROTECTION};
use dvt_sim::timeline::{Change, TimelineEntry, readiness_dips};
use dvt_sim::{ClusterOptions, Fault};

const DV: &str = "stader-4";
const NAMESPACE: &str = "default";
/// Two other real Charon releases (tags of ObolNetwork/charon) the demo rolls out over the
/// pinned v1.10.3: an image change is what a rollout is about, whichever way it goes. The
/// simulated cluster pulls nothing; the real-cluster scenario rolls out a real upgrade
/// (tests/real_cluster.rs: v1.9.0 to v1.10.3).
const FIRST_UPGRADE: &str = "obolnetwork/charon:v1.7.2";
const SECOND_UPGRADE: &str = "obolnetwork/charon:v1.7.3";
/// The member put into CrashLoopBackOff, and the one whose zone fails.
const CRASHING: &str = "charlie";
const STRANDED: &str = "bravo";
/// The member that changes client (lighthouse in the example).
const MOVING: &str = "alpha";
/// The digest the simulated export reports (the simulator runs no script).
const DEMO_HISTORY_SHA256: &str =
    "8d9f4be1b3a5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";

/// What `dvt-operator demo` does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Keep the world running afterwards and write a kubeconfig for kubectl.
    pub serve: Option<std::path::PathBuf>,
    /// Test pace instead of a pace a person can follow.
    pub fast: bool,
}

/// What the operator did during the demo, and what the timeline says of the DV's ready members
/// after it first converged.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoSummary {
    pub rollouts_completed: usize,
    /// Members the operator restarted to roll out a change (Events `RollingRestart`).
    pub rollout_restarts: usize,
    /// Broken members it replaced (Events `Repairing`).
    pub repairs: usize,
    /// The Progressing condition showed a rollout held because the budget was 0.
    pub held_by_budget: bool,
    /// Members that changed validator client with their slashing-protection history moved.
    pub client_moves: usize,
    pub lowest_ready: usize,
    pub members: usize,
    pub threshold: usize,
    /// Writes of the operator that took the DV below its threshold (must be none).
    pub operator_dips: usize,
}

impl DemoSummary {
    /// The demo's last line.
    pub fn line(&self) -> String {
        let held = if self.held_by_budget {
            "; a rollout step held while the budget was 0"
        } else {
            ""
        };
        let moved = match self.client_moves {
            0 => String::new(),
            n => format!("; {n} client change(s) with the slashing-protection history moved"),
        };
        let verdict = if self.operator_dips == 0 {
            "never below the threshold because of the operator".to_owned()
        } else {
            format!(
                "taken below the threshold {} time(s) by the operator",
                self.operator_dips
            )
        };
        format!(
            "Summary: {} rollout(s) completed with {} rollout restart(s), one member at a time; {} repair(s){held}{moved}. Ready members since convergence: lowest {} of {} (threshold {}), {verdict}.",
            self.rollouts_completed,
            self.rollout_restarts,
            self.repairs,
            self.lowest_ready,
            self.members,
            self.threshold
        )
    }
}

/// How fast the story goes: the simulated cluster's pace and the DV's rollout settings.
struct Pace {
    cluster: ClusterOptions,
    /// Appended to the example's spec.
    rollout: &'static str,
    /// How long a person is shown a state before the story moves on.
    pause: Duration,
    /// The longest any step may take.
    limit: Duration,
    poll: Duration,
}

impl Pace {
    fn new(fast: bool) -> Pace {
        if fast {
            return Pace {
                cluster: ClusterOptions::fast(),
                rollout: "  rollout: {minReadySeconds: 1, restartDelaySeconds: 1, restartBackoffSeconds: 1, maxRestartBackoffSeconds: 4}\n",
                pause: Duration::from_millis(300),
                limit: Duration::from_secs(45),
                poll: Duration::from_millis(50),
            };
        }
        // Quicker than a real node (pods start in well under a second) so that the whole story,
        // two rollouts of four members included, fits in well under a minute.
        Pace {
            cluster: ClusterOptions {
                start_delay: Duration::from_millis(400),
                ready_delay: Duration::from_millis(400),
                // Before readiness would pass: a crash-looping member is never Ready in between.
                crash_after: Duration::from_millis(300),
                crash_backoff: Duration::from_millis(1500),
                max_backoff: Duration::from_secs(10),
                termination_delay: Duration::from_millis(200),
                ..ClusterOptions::default()
            },
            rollout: "  rollout: {minReadySeconds: 1, restartDelaySeconds: 3, restartBackoffSeconds: 2, maxRestartBackoffSeconds: 30}\n",
            pause: Duration::from_secs(2),
            limit: Duration::from_secs(90),
            poll: Duration::from_millis(150),
        }
    }
}

/// Prints what a user would see change: the DV table (`kubectl get dv` and pods), the operator's
/// Events about the DV, and why the DV is progressing or waiting.
struct Narrator<'w> {
    world: &'w World,
    dvs: Api<DistributedValidator>,
    events: Api<Event>,
    started: Instant,
    poll: Duration,
    shown_table: String,
    shown_progress: String,
    seen_events: BTreeSet<String>,
    /// The reasons of the Events shown so far.
    shown_reasons: BTreeSet<String>,
}

impl<'w> Narrator<'w> {
    fn new(world: &'w World, started: Instant, poll: Duration) -> Narrator<'w> {
        Narrator {
            world,
            dvs: Api::namespaced(world.client.clone(), NAMESPACE),
            events: Api::namespaced(world.client.clone(), NAMESPACE),
            started,
            poll,
            shown_table: String::new(),
            shown_progress: String::new(),
            seen_events: BTreeSet::new(),
            shown_reasons: BTreeSet::new(),
        }
    }

    fn stamp(&self) -> String {
        format!("[{:>5.1}s]", self.started.elapsed().as_secs_f64())
    }

    async fn show_events(&mut self) {
        let Ok(list) = self.events.list(&ListParams::default()).await else {
            return;
        };
        let mut fresh: Vec<Event> = list
            .items
            .into_iter()
            .filter(|e| {
                e.reporting_controller.as_deref() == Some(CONTROLLER_NAME)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(DV)
                    && !self.seen_events.contains(&e.name_any())
            })
            .collect();
        fresh.sort_by_key(|e| e.metadata.resource_version.clone().unwrap_or_default());
        for event in fresh {
            self.seen_events.insert(event.name_any());
            self.shown_reasons
                .insert(event.reason.clone().unwrap_or_default());
            let warning = if event.type_.as_deref() == Some("Warning") {
                "Warning "
            } else {
                ""
            };
            println!(
                "{} event {warning}{}: {}",
                self.stamp(),
                event.reason.as_deref().unwrap_or("-"),
                event.note.as_deref().unwrap_or("")
            );
        }
    }

    fn show_dv(&mut self, dv: &DistributedValidator) {
        let table = render(dv);
        if table != self.shown_table {
            println!("{}\n{table}", self.stamp());
            self.shown_table = table;
        }
        let progress = dv
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == condition_types::PROGRESSING && c.status == "True")
            })
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default();
        if progress != self.shown_progress {
            if !progress.is_empty() {
                println!("{} progressing {progress}", self.stamp());
            }
            self.shown_progress = progress;
        }
    }

    /// Shows changes until `done` holds (the DV that satisfied it) or `limit` passes.
    async fn follow(
        &mut self,
        limit: Duration,
        done: impl Fn(&DistributedValidator) -> bool,
    ) -> Option<DistributedValidator> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            self.show_events().await;
            if let Ok(dv) = self.dvs.get(DV).await {
                self.show_dv(&dv);
                if done(&dv) {
                    return Some(dv);
                }
            }
            tokio::time::sleep(self.poll).await;
        }
        None
    }

    /// Shows the operator's Events until one with `reason` has been shown, or `limit` passes.
    /// The operator publishes an Event after the status write it explains, so a story that
    /// waits on status can see the status first.
    async fn show_events_until(&mut self, reason: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.show_events().await;
            if self.shown_reasons.contains(reason) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Shows changes for `period`, whatever they are.
    async fn watch_for(&mut self, period: Duration) {
        let until = Instant::now() + period;
        self.follow(period, |_| Instant::now() >= until).await;
    }

    /// The operator's Events about the DV with `reason`, counting repeats.
    async fn count_events(&self, reason: &str) -> usize {
        let Ok(list) = self.events.list(&ListParams::default()).await else {
            return 0;
        };
        list.items
            .iter()
            .filter(|e| {
                e.reporting_controller.as_deref() == Some(CONTROLLER_NAME)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(DV)
                    && e.reason.as_deref() == Some(reason)
            })
            .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as usize))
            .sum()
    }

    async fn set_charon_image(&self, image: &str) -> Result<(), String> {
        println!(
            "$ kubectl patch dv {DV} --type merge -p '{{\"spec\":{{\"charon\":{{\"image\":\"{image}\"}}}}}}'"
        );
        let patch = serde_json::json!({"spec": {"charon": {"image": image}}});
        self.dvs
            .patch(DV, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|e| format!("patching {DV}: {e}"))
    }

    fn timeline(&self) -> Vec<TimelineEntry> {
        self.world.sim.store().timeline()
    }
}

/// One line for the DV and one per member, as `kubectl get dv` and `kubectl get pods` would show
/// them, with the quorum budget the operator works with.
fn render(dv: &DistributedValidator) -> String {
    let Some(status) = dv.status.as_ref() else {
        return format!("  {:<10} (no status yet)", dv.name_any());
    };
    let mut text = format!(
        "  {:<10} READY {:<5} THRESHOLD {}  TOLERANCE {}  BUDGET {}  PHASE {}\n",
        dv.name_any(),
        status.ready.as_deref().unwrap_or("-"),
        status.threshold.map_or("-".to_owned(), |t| t.to_string()),
        status
            .fault_tolerance
            .map_or("-".to_owned(), |t| t.to_string()),
        status
            .disruption_budget
            .map_or("-".to_owned(), |b| b.to_string()),
        status.phase.map_or("-", |p| p.as_str())
    );
    for member in &status.members {
        text.push_str(&format!(
            "    {:<8} {:<10} {:<8} {:<14} {:<9} restarts {}{}\n",
            member.name,
            member.client_name(),
            member.zone.as_deref().unwrap_or("-"),
            member.node.as_deref().unwrap_or("(pending)"),
            if member.ready { "Ready" } else { "NotReady" },
            member.restarts,
            if member.outdated { "  outdated" } else { "" }
        ));
        if let Some(change) = &member.client_move {
            text.push_str(&format!(
                "             {} {} to {}{}\n",
                change.phase.as_str(),
                change.from.as_str(),
                change.to.as_str(),
                match (&change.validators, &change.sha256) {
                    (Some(n), Some(sha)) => format!(
                        ": history of {n} validator(s), sha256 {}…",
                        &sha[..sha.len().min(12)]
                    ),
                    _ => String::new(),
                }
            ));
        }
    }
    text.trim_end().to_owned()
}

fn phase_is(phase: Phase) -> impl Fn(&DistributedValidator) -> bool {
    move |dv| dv.status.as_ref().and_then(|s| s.phase) == Some(phase)
}

/// The change is rolled out: the status describes the current spec, no member is outdated and
/// every member is ready.
fn rolled_out(dv: &DistributedValidator) -> bool {
    dv.status.as_ref().is_some_and(|s| {
        s.observed_generation == dv.metadata.generation
            && s.phase == Some(Phase::Available)
            && !s.members.is_empty()
            && s.members.iter().all(|m| !m.outdated)
    })
}

fn progressing_reason(dv: &DistributedValidator) -> Option<&str> {
    dv.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == condition_types::PROGRESSING)
            .map(|c| c.reason.as_str())
    })
}

/// The fewest ready pods the DV had at any moment from entry `since` of the timeline on (the
/// readiness of each pod replayed from the start, so a pod ready before `since` counts).
pub fn lowest_ready_since(entries: &[TimelineEntry], since: usize, dv: &str) -> Option<usize> {
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut lowest: Option<usize> = None;
    for (index, entry) in entries.iter().enumerate() {
        if let Change::Readiness {
            namespace,
            pod,
            ready: now_ready,
            labels,
            ..
        } = &entry.change
            && labels.get(LABEL_DV).map(String::as_str) == Some(dv)
        {
            ready.insert((namespace.clone(), pod.clone()), *now_ready);
        }
        if index + 1 >= since {
            let count = ready.values().filter(|r| **r).count();
            lowest = Some(lowest.map_or(count, |l| l.min(count)));
        }
    }
    lowest
}

/// Pod writes (deletes and evictions) by the operator from entry `since` on.
fn operator_pod_writes(entries: &[TimelineEntry], since: usize) -> usize {
    entries
        .iter()
        .skip(since)
        .filter(|e| {
            matches!(&e.change, Change::Write { resource, actor, .. }
                if resource == "pods" && actor == FIELD_MANAGER)
        })
        .count()
}

/// Tells the simulated cluster (which runs no script) what a client change's export and import
/// steps print on success: the summary line the real steps write (`migration.rs`).
pub fn simulate_history_moves(
    world: &World,
    file: &str,
    sha256: &str,
    validators: u32,
) -> Result<(), dvt_sim::errors::ApiError> {
    for (container, word) in [
        (INIT_EXPORT_SLASHING_PROTECTION, "exported"),
        (INIT_IMPORT_SLASHING_PROTECTION, "imported"),
    ] {
        world.sim.inject(Fault::InitStep {
            container: container.into(),
            image: None,
            exit_code: 0,
            message: format!("{word} {file} sha256={sha256} validators={validators}\n"),
        })?;
    }
    Ok(())
}

/// Runs the demo; returns what the operator did, or why the story did not hold.
pub async fn run_demo(options: DemoOptions) -> Result<DemoSummary, String> {
    let started = Instant::now();
    let pace = Pace::new(options.fast);
    println!(
        "Starting a simulated Kubernetes cluster (8 nodes in 4 zones) with dvt-operator on it..."
    );
    let world = World::start(WorldOptions {
        fast: options.fast,
        pace: Some(pace.cluster.clone()),
        ..WorldOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("dvt-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let example = dir.join("stader-4.yaml");
    std::fs::write(&example, format!("{EXAMPLE_STADER_4}{}", pace.rollout))
        .map_err(|e| e.to_string())?;
    println!(
        "\n$ kubectl apply -f examples/stader-4.yaml   # a 3-of-4 DV: lock, 8 Secrets, the DistributedValidator"
    );
    println!(
        "  (with short rollout delays for the demo:{})",
        pace.rollout.trim_start_matches("  rollout:").trim_end()
    );
    for applied in world
        .apply_file(&example, NAMESPACE)
        .await
        .map_err(|e| e.to_string())?
    {
        println!("{applied} applied");
    }
    println!(
        "\nThe operator creates one StatefulSet per member, spread over zones; pods start and become ready:"
    );
    let mut narrator = Narrator::new(&world, started, pace.poll);
    let dv = narrator
        .follow(pace.limit, phase_is(Phase::Available))
        .await
        .ok_or("stader-4 did not become Available")?;
    let status = dv.status.unwrap_or_default();
    let threshold = status.threshold.unwrap_or_default() as usize;
    let members = status.members.len();
    let since = narrator.timeline().len();
    narrator.watch_for(pace.pause).await;

    println!(
        "\n1. A rollout. The operator restarts one member at a time, only while the budget (ready minus threshold) is above 0,"
    );
    println!(
        "   and the next only once the previous has been Ready for minReadySeconds; a StatefulSet alone knows nothing of the other members:"
    );
    narrator.set_charon_image(FIRST_UPGRADE).await?;
    narrator
        .follow(pace.limit, rolled_out)
        .await
        .ok_or_else(|| format!("the rollout of {FIRST_UPGRADE} did not complete"))?;
    let mut rollouts_completed = 1;
    narrator.watch_for(pace.pause).await;

    println!(
        "\n2. Member {CRASHING} crashes at every start. Kubernetes restarts its containers with a growing back-off and"
    );
    println!(
        "   leaves the pod in CrashLoopBackOff; the operator counts it broken after restartDelaySeconds and replaces it"
    );
    println!("   (a repair costs no budget: the member is already down):");
    world
        .sim
        .inject(Fault::CrashLoop {
            namespace: NAMESPACE.into(),
            pod: member_pod_name(DV, CRASHING),
            container: None,
            oom: false,
        })
        .map_err(|e| e.to_string())?;
    narrator
        .follow(pace.limit, |dv| {
            phase_is(Phase::Available)(dv)
                && dv.status.as_ref().is_some_and(|s| {
                    s.members.iter().any(|m| {
                        m.name == CRASHING
                            && m.last_restart_reason
                                .as_deref()
                                .is_some_and(|r| r.contains("CrashLoopBackOff"))
                    })
                })
        })
        .await
        .ok_or_else(|| format!("member {CRASHING} was not repaired"))?;
    narrator.watch_for(pace.pause).await;

    let zone = status
        .members
        .iter()
        .find(|m| m.name == STRANDED)
        .and_then(|m| m.zone.clone())
        .ok_or_else(|| format!("member {STRANDED} reports no zone"))?;
    println!(
        "\n3. A disruption refused. Zone {zone} fails: member {STRANDED} is down (its pod is left alone, a second pod"
    );
    println!(
        "   would be a second signer with the same key share), 3 of 4 sign and the budget is 0. Then a new image:"
    );
    world
        .sim
        .inject(Fault::FailZone { zone: zone.clone() })
        .map_err(|e| e.to_string())?;
    narrator
        .follow(pace.limit, |dv| {
            dv.status
                .as_ref()
                .is_some_and(|s| s.disruption_budget == Some(0))
        })
        .await
        .ok_or("the budget did not drop to 0")?;
    let before_held = narrator.timeline().len();
    narrator.set_charon_image(SECOND_UPGRADE).await?;
    let held_by_budget = narrator
        .follow(pace.limit, |dv| {
            progressing_reason(dv) == Some(reasons::ROLLOUT_HELD_BY_BUDGET)
        })
        .await
        .is_some();
    if !held_by_budget {
        return Err("the rollout was not reported as held by the budget".into());
    }
    narrator.watch_for(pace.pause).await;
    let disrupted = operator_pod_writes(&narrator.timeline(), before_held);
    if disrupted > 0 {
        return Err(format!(
            "the operator restarted {disrupted} member(s) with a budget of 0"
        ));
    }
    println!(
        "\n   The rollout waits and the DV says why. Zone {zone} comes back: {STRANDED} is ready, the budget is 1 again"
    );
    println!("   and the rollout proceeds:");
    world
        .sim
        .inject(Fault::RestoreZone { zone })
        .map_err(|e| e.to_string())?;
    narrator
        .follow(pace.limit, rolled_out)
        .await
        .ok_or_else(|| format!("the rollout of {SECOND_UPGRADE} did not complete"))?;
    rollouts_completed += 1;
    narrator.watch_for(pace.pause).await;

    println!(
        "\n4. A client change. Member {MOVING} moves from lighthouse to nimbus, a client no other member runs. Nimbus would start with an empty slashing-protection"
    );
    println!(
        "   database, free to sign what lighthouse already signed; so lighthouse exports its history (EIP-3076) in an init"
    );
    println!(
        "   step, nimbus imports it before its first start, within the budget like any rollout step. (The simulated cluster"
    );
    println!("   runs no container: it is told what the real steps print.)");
    simulate_history_moves(
        &world,
        &interchange_file(
            ValidatorClient::Lighthouse,
            ValidatorClient::Nimbus,
            ValidatorClient::Nimbus,
        ),
        DEMO_HISTORY_SHA256,
        1,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "$ kubectl patch dv {DV} --type json -p '[{{\"op\":\"replace\",\"path\":\"/spec/members/0/validatorClient\",\"value\":\"nimbus\"}}]'"
    );
    let patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/members/0/validatorClient", "value": "nimbus"}
    ]))
    .map_err(|e| e.to_string())?;
    narrator
        .dvs
        .patch(DV, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| format!("patching {DV}: {e}"))?;
    let moved = narrator
        .follow(pace.limit, |dv| {
            rolled_out(dv)
                && dv.status.as_ref().is_some_and(|s| {
                    s.members.iter().any(|m| {
                        m.name == MOVING
                            && m.client_move
                                .as_ref()
                                .is_some_and(|c| c.phase == ClientMovePhase::Moved)
                    })
                })
        })
        .await
        .ok_or_else(|| format!("member {MOVING} did not move to nimbus"))?;
    let client_moves = moved.status.as_ref().map_or(0, |s| {
        s.members.iter().filter(|m| m.client_move.is_some()).count()
    });
    if !narrator
        .show_events_until(reasons::CLIENT_MOVE_DONE, pace.limit)
        .await
    {
        return Err(format!(
            "member {MOVING} moved to nimbus, but no {} Event followed",
            reasons::CLIENT_MOVE_DONE
        ));
    }

    // What a newcomer reads last: the layout's verdicts as `kubectl dv status` shows them. After
    // the move no two members share a client, and a DV built as it should be shows no False.
    let final_dv = narrator
        .dvs
        .get(DV)
        .await
        .map_err(|e| format!("reading {DV}: {e}"))?;
    println!("\n$ kubectl dv status {DV}   # the layout's verdicts");
    for verdict in crate::plugin::view(&final_dv, &[], k8s_openapi::jiff::Timestamp::now()).verdicts
    {
        println!(
            "{}: {} {}: {}",
            verdict.condition, verdict.status, verdict.reason, verdict.message
        );
    }

    let timeline = narrator.timeline();
    let summary = DemoSummary {
        rollouts_completed,
        rollout_restarts: narrator.count_events(reasons::ROLLING_RESTART).await,
        repairs: narrator.count_events(reasons::REPAIRING).await,
        held_by_budget,
        client_moves,
        lowest_ready: lowest_ready_since(&timeline, since, DV).unwrap_or_default(),
        members,
        threshold,
        operator_dips: readiness_dips(&timeline, LABEL_DV, |_| threshold, FIELD_MANAGER).len(),
    };
    println!(
        "\n5. {} ({:.1}s)",
        summary.line(),
        started.elapsed().as_secs_f64()
    );
    if summary.operator_dips > 0 {
        return Err(summary.line());
    }
    if let Some(path) = options.serve {
        world.write_kubeconfig(&path).map_err(|e| e.to_string())?;
        println!("\nThe cluster keeps running. In another shell:");
        println!("  export KUBECONFIG={}", path.display());
        println!("  kubectl get dv,statefulsets,pods -o wide");
        println!("  kubectl describe dv stader-4");
        println!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    // The operator first, then the cluster: the other way round its watches would log the
    // server going away.
    let mut world = world;
    world.stop_operator().await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(pod: &str, ready: bool) -> TimelineEntry {
        TimelineEntry {
            at: Duration::ZERO,
            resource_version: 0,
            change: Change::Readiness {
                namespace: NAMESPACE.into(),
                pod: pod.into(),
                ready,
                labels: BTreeMap::from([(LABEL_DV.to_owned(), DV.to_owned())]),
                actor: "kubelet".into(),
            },
        }
    }

    #[test]
    fn the_lowest_ready_counts_pods_ready_before_the_window() {
        let entries = vec![
            readiness("a", false),
            readiness("a", true),
            readiness("b", true),
            readiness("c", true),
            readiness("b", false),
            readiness("b", true),
        ];
        // The window starts after the three are ready: one dip to 2.
        assert_eq!(lowest_ready_since(&entries, 4, DV), Some(2));
        // From the very start, the first entry leaves none ready.
        assert_eq!(lowest_ready_since(&entries, 0, DV), Some(0));
        assert_eq!(lowest_ready_since(&entries, 4, "another"), Some(0));
    }

    #[test]
    fn the_summary_line_says_what_was_done_and_judges_it() {
        let summary = DemoSummary {
            rollouts_completed: 2,
            rollout_restarts: 8,
            repairs: 1,
            held_by_budget: true,
            client_moves: 1,
            lowest_ready: 3,
            members: 4,
            threshold: 3,
            operator_dips: 0,
        };
        assert_eq!(
            summary.line(),
            "Summary: 2 rollout(s) completed with 8 rollout restart(s), one member at a time; 1 repair(s); a rollout step held while the budget was 0; 1 client change(s) with the slashing-protection history moved. Ready members since convergence: lowest 3 of 4 (threshold 3), never below the threshold because of the operator."
        );
        let bad = DemoSummary {
            operator_dips: 2,
            ..summary
        };
        assert!(
            bad.line()
                .ends_with("taken below the threshold 2 time(s) by the operator.")
        );
    }
}
