//! What the benchmark measures while it waits: progress lines, pods ready, DVs Available, the
//! operator's writes and requests, and how figures are printed.

use super::*;

/// How often a progress line goes to stderr.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs `work`, printing one line on stderr every [`PROGRESS_EVERY`]: the phase, objects
/// applied, pods Ready (followed on the in-process timeline from `mark`), DVs Available, elapsed,
/// and the memory in use now (VmRSS) of the simulator's process and of the `operator`, if one
/// runs: a peak alone does not say when memory grows.
pub(super) async fn with_progress<F: std::future::Future>(
    phase: &str,
    applying: &str,
    world: &World,
    mark: usize,
    totals: (usize, usize, usize),
    operator: Option<u32>,
    work: F,
) -> F::Output {
    use std::sync::atomic::Ordering;
    let (objects, pods, dvs) = totals;
    APPLIED.store(0, Ordering::Relaxed);
    AVAILABLE.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut cursor = mark;
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = tokio::time::sleep(PROGRESS_EVERY) => {
                let entries = world.sim.store().timeline_since(cursor);
                cursor += entries.len();
                for entry in entries {
                    if let Change::Readiness { namespace, pod, ready: now, .. } = entry.change {
                        ready.insert((namespace, pod), now);
                    }
                }
                let pods_ready = ready.values().filter(|r| **r).count();
                let dvs_line = if dvs > 0 {
                    format!(", DVs Available {}/{dvs}", AVAILABLE.load(Ordering::Relaxed))
                } else {
                    String::new()
                };
                let mib = |pid: u32| proc_status_kib(pid, "VmRSS") as f64 / 1024.0;
                let operator_line = operator
                    .map(|pid| format!(", operator RSS {:.0} MiB", mib(pid)))
                    .unwrap_or_default();
                eprintln!(
                    "[{:>6.0}s] {phase}: {applying} applied {}/{objects}, pods Ready {pods_ready}/{pods}{dvs_line}{operator_line}, simulator RSS {:.0} MiB",
                    started.elapsed().as_secs_f64(),
                    APPLIED.load(Ordering::Relaxed),
                    mib(std::process::id()),
                );
            }
        }
    }
}

/// Follows the simulator's timeline (in-process: polling it costs the API server nothing) until
/// `count` pods are Ready.
pub(super) async fn wait_for_ready_pods(
    world: &World,
    mark: usize,
    count: usize,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut cursor = mark;
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    loop {
        let entries = world.sim.store().timeline_since(cursor);
        cursor += entries.len();
        for entry in entries {
            if let Change::Readiness {
                namespace,
                pod,
                ready: now,
                ..
            } = entry.change
            {
                ready.insert((namespace, pod), now);
            }
        }
        let ready_now = ready.values().filter(|r| **r).count();
        if ready_now >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ceiling: {ready_now}/{count} pods Ready after {}s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watches DVs until `dvs` of them report phase Available. A watch costs the simulator one
/// event per status write; polling lists of every DV would load it far more than the ceiling's
/// wait does (which follows the in-process timeline).
pub(super) async fn wait_for_available(
    world: &World,
    dvs: usize,
    limit: Duration,
) -> Result<(), String> {
    use kube::runtime::watcher;
    let api: Api<DistributedValidator> = Api::all(world.client.clone());
    let mut available: std::collections::BTreeSet<(String, String)> = Default::default();
    let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| {
                format!(
                    "{}/{dvs} DVs Available after {}s",
                    available.len(),
                    limit.as_secs()
                )
            })?
            .ok_or("the DV watch ended")?
            .map_err(|e| e.to_string())?;
        let (dv, gone) = match event {
            watcher::Event::Apply(dv) | watcher::Event::InitApply(dv) => (dv, false),
            watcher::Event::Delete(dv) => (dv, true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        let key = (
            dv.metadata.namespace.clone().unwrap_or_default(),
            dv.metadata.name.clone().unwrap_or_default(),
        );
        let is_available =
            !gone && dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::Available);
        if is_available {
            available.insert(key);
        } else {
            available.remove(&key);
        }
        AVAILABLE.store(available.len(), std::sync::atomic::Ordering::Relaxed);
        if available.len() >= dvs {
            return Ok(());
        }
    }
}

/// The operator's writes after `mark`, by resource, and its Events apart.
pub(super) fn writes_by_operator(world: &World, mark: usize) -> (BTreeMap<String, usize>, usize) {
    let mut by_resource = BTreeMap::new();
    let mut events = 0;
    for entry in world.sim.store().timeline_since(mark) {
        if let Change::Write {
            resource, actor, ..
        } = entry.change
            && actor == FIELD_MANAGER
        {
            if resource.starts_with("events") {
                events += 1;
            } else {
                *by_resource.entry(resource).or_default() += 1;
            }
        }
    }
    (by_resource, events)
}

/// The operator's Events since `mark` by reason, with one message of each: what a resync that
/// should say nothing said.
pub(super) fn events_by_reason(world: &World, mark: usize) -> BTreeMap<String, (usize, String)> {
    let store = world.sim.store();
    let Some(events) = store.resolve("", "v1", "events") else {
        return BTreeMap::new();
    };
    let mut by_reason = BTreeMap::new();
    for entry in store.timeline_since(mark) {
        if let Change::Write {
            resource,
            namespace,
            name,
            actor,
            verb: "ADDED",
            ..
        } = entry.change
            && actor == FIELD_MANAGER
            && resource == "events"
            && let Ok(event) = store.get(&events, &namespace, &name)
        {
            let reason = event["reason"].as_str().unwrap_or("?").to_owned();
            let message = event["message"].as_str().unwrap_or_default().to_owned();
            by_reason.entry(reason).or_insert((0, message)).0 += 1;
        }
    }
    by_reason
}

/// Every write since `mark` by its field manager (or deleting client): the operator, the user
/// and each simulated controller, to compare a phase's work with the ceiling's.
pub(super) fn writes_by_actor(world: &World, mark: usize) -> BTreeMap<String, usize> {
    let mut by_actor = BTreeMap::new();
    for entry in world.sim.store().timeline_since(mark) {
        if let Change::Write { actor, .. } = entry.change {
            *by_actor.entry(actor).or_default() += 1;
        }
    }
    by_actor
}

/// The operator's API requests by verb since `before`.
pub(super) fn requests_since(
    world: &World,
    before: &BTreeMap<(String, &'static str), u64>,
) -> BTreeMap<&'static str, u64> {
    let mut by_verb = BTreeMap::new();
    for ((client, verb), count) in world.sim.requests() {
        if client == FIELD_MANAGER {
            let earlier = before
                .get(&(client.clone(), verb))
                .copied()
                .unwrap_or_default();
            if count > earlier {
                *by_verb.entry(verb).or_default() += count - earlier;
            }
        }
    }
    by_verb
}

pub(super) fn line(label: &str, value: impl std::fmt::Display) {
    println!("{label:<58} {value}");
}

pub(super) fn millis(seconds: Option<f64>) -> String {
    seconds.map_or("-".to_owned(), |s| format!("{:.2} ms", s * 1e3))
}

/// The simulated controllers' passes since the last call: whether they, not the client, set the
/// pace of a phase.
pub(super) fn take_pass_stats(world: &World) -> dvt_sim::PassStats {
    world
        .sim
        .cluster()
        .map(dvt_sim::Cluster::take_pass_stats)
        .unwrap_or_default()
}

/// `process_cpu`: the CPU seconds of the simulator's (and benchmark's) process over the phase;
/// what its passes did not use went to its API server and the benchmark's own client.
pub(super) fn pass_line(
    phase: &str,
    stats: &dvt_sim::PassStats,
    process_cpu: f64,
    writes: &BTreeMap<String, usize>,
) {
    let writes: Vec<String> = writes
        .iter()
        .map(|(actor, count)| format!("{actor} {count}"))
        .collect();
    line(&format!("{phase}: writes by actor"), writes.join(", "));
    line(
        &format!("{phase}: simulator passes / busy / longest"),
        format!(
            "{} / {:.2} s / {:.2} s",
            stats.passes,
            stats.busy.as_secs_f64(),
            stats.longest.as_secs_f64()
        ),
    );
    line(
        &format!("{phase}: simulator passes on a core / waited for one"),
        format!(
            "{:.2} s / {:.2} s",
            stats.on_core.as_secs_f64(),
            stats.waited_for_core.as_secs_f64()
        ),
    );
    line(
        &format!("{phase}: simulator process CPU outside the passes"),
        format!(
            "{:.2} s",
            (process_cpu - stats.on_core.as_secs_f64()).max(0.0)
        ),
    );
    line(
        &format!("{phase}: simulator pass changes, total / most in one"),
        format!("{} / {}", stats.changes, stats.most_changes),
    );
    let steps: Vec<String> = stats
        .steps
        .iter()
        .filter(|(_, took)| took.as_secs_f64() >= 0.01)
        .map(|(step, took)| format!("{step} {:.2} s", took.as_secs_f64()))
        .collect();
    line(
        &format!("{phase}: simulator pass time by step"),
        steps.join(", "),
    );
    let lock = &stats.store_lock;
    line(
        &format!("{phase}: simulator store lock, passes waited / held"),
        format!(
            "{:.2} s / {:.2} s",
            lock.pass_waited.as_secs_f64(),
            lock.pass_held.as_secs_f64()
        ),
    );
    line(
        &format!("{phase}: simulator store lock, others (API) waited / held"),
        format!(
            "{:.2} s / {:.2} s",
            lock.others_waited.as_secs_f64(),
            lock.others_held.as_secs_f64()
        ),
    );
    let longest: Vec<String> = lock
        .longest_held(8)
        .iter()
        .map(|(operation, times, total)| {
            format!("{operation} {times}× {:.2} s", total.as_secs_f64())
        })
        .collect();
    line(
        &format!("{phase}: simulator store lock held by others, longest"),
        longest.join(", "),
    );
}

/// When a phase got where, on the simulator's clock from the phase's start: its last
/// StatefulSet created, half and all of its member pods Ready. Where the operator's phase loses
/// time against the ceiling: before its children exist, or after.
pub(super) struct Milestones {
    pub(super) last_statefulset: Option<Duration>,
    pub(super) half_ready: Option<Duration>,
    pub(super) all_ready: Option<Duration>,
}

pub(super) fn milestones(world: &World, mark: usize, start: Duration, pods: usize) -> Milestones {
    let mut found = Milestones {
        last_statefulset: None,
        half_ready: None,
        all_ready: None,
    };
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut ready_count = 0usize;
    for entry in world.sim.store().timeline_since(mark) {
        let at = entry.at.saturating_sub(start);
        match entry.change {
            Change::Write {
                verb: "ADDED",
                resource,
                ..
            } if resource == "statefulsets.apps" => found.last_statefulset = Some(at),
            Change::Readiness {
                namespace,
                pod,
                ready: now,
                ..
            } => {
                let before = ready.insert((namespace, pod), now).unwrap_or(false);
                match (before, now) {
                    (false, true) => ready_count += 1,
                    (true, false) => ready_count -= 1,
                    _ => {}
                }
                if ready_count * 2 >= pods && found.half_ready.is_none() {
                    found.half_ready = Some(at);
                }
                if ready_count >= pods && found.all_ready.is_none() {
                    found.all_ready = Some(at);
                }
            }
            _ => {}
        }
    }
    found
}

pub(super) fn milestone_lines(phase: &str, found: &Milestones) {
    let at =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    line(
        &format!("{phase}: last StatefulSet created at"),
        at(found.last_statefulset),
    );
    line(
        &format!("{phase}: half the member pods Ready at"),
        at(found.half_ready),
    );
    line(
        &format!("{phase}: every member pod Ready at"),
        at(found.all_ready),
    );
}
