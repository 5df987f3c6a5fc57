//! `kubectl dv`, run through the real kubectl (which finds `kubectl-dv` on PATH) against the
//! simulated cluster: the status screen and its JSON, a restart asked while the budget is 0
//! (it waits, says so, and happens once a member is back, never taking the DV below `t`), and
//! pause / resume.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use dvt_operator::controller::names::{FIELD_MANAGER, LABEL_DV};
use dvt_sim::Fault;
use dvt_sim::timeline::readiness_dips;

/// Runs `kubectl dv ARGS` as a user would: kubectl with the world's kubeconfig, the plugin on
/// PATH. Returns (success, stdout, stderr).
fn kubectl_dv(world: &World, args: &[&str]) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "dvt-plugin-{}-{}",
        std::process::id(),
        world.sim.address().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    world.write_kubeconfig(&kubeconfig).unwrap();
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-dv"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path: Vec<PathBuf> = [plugin_dir, Path::new(REPO).join(".tools/bin")]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ))
        .collect();
    let output = Command::new("kubectl")
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &dir)
        .arg("dv")
        .args(args)
        .output()
        .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Times and ages vary from run to run: `<time>` and `<age>` in their place.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    let is_time = |s: &[char]| {
        s.len() >= 20
            && s[..20].iter().enumerate().all(|(k, c)| match k {
                4 | 7 => *c == '-',
                10 => *c == 'T',
                13 | 16 => *c == ':',
                19 => *c == 'Z',
                _ => c.is_ascii_digit(),
            })
    };
    while i < bytes.len() {
        if is_time(&bytes[i..]) {
            out.push_str("<time>");
            i += 20;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let mut in_events = false;
    out.lines()
        .map(|line| {
            if line.starts_with("Events") {
                in_events = true;
                return line.to_owned();
            }
            let trimmed = line.trim_start();
            if in_events && !trimmed.is_empty() {
                let rest = trimmed.split_once("  ").map_or("", |(_, r)| r);
                return format!("  <age>  {rest}");
            }
            if let Some((key, _)) = trimmed.split_once("\"ageSeconds\": ") {
                return format!(
                    "{}{key}\"ageSeconds\": 0,",
                    &line[..line.len() - trimmed.len()]
                );
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn snapshot(name: &str, actual: &str) {
    let path = Path::new(REPO).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs; review and run with UPDATE_SNAPSHOTS=1",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_one_screen_and_a_restart_waits_for_the_budget() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;

    let (ok, text, stderr) = kubectl_dv(&world, &["status", "stader-4"]);
    assert!(ok, "{stderr}");
    snapshot("kubectl-dv-status.txt", &normalise(&text));
    let (ok, json, stderr) = kubectl_dv(&world, &["status", "stader-4", "-o", "json"]);
    assert!(ok, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(parsed["budget"], 1);
    snapshot("kubectl-dv-status.json", &normalise(&json));

    // Budget 0: delta's zone fails. A restart of bravo is accepted, waits and says so.
    let zone = kubectl(
        &world,
        &[
            "get",
            "pod",
            "stader-4-delta-0",
            "-o",
            "jsonpath={.spec.nodeName}",
        ],
    );
    let zone = kubectl(
        &world,
        &[
            "get",
            "node",
            &zone,
            "-o",
            "jsonpath={.metadata.labels.topology\\.kubernetes\\.io/zone}",
        ],
    );
    world
        .sim
        .inject(Fault::FailZone { zone: zone.clone() })
        .unwrap();
    dv_where(&world, "stader-4", "budget 0", |dv| {
        dv.status
            .as_ref()
            .is_some_and(|s| s.disruption_budget == Some(0))
    })
    .await;
    let since = world.sim.store().timeline().len();
    let (ok, said, stderr) = kubectl_dv(&world, &["restart", "stader-4", "bravo"]);
    assert!(ok, "{stderr}");
    assert!(
        said.contains("The quorum budget is 0 (3 ready, 3 needed to sign): the restart waits until a member is back."),
        "{said}"
    );
    dv_where(&world, "stader-4", "the restart held by the budget", |dv| {
        condition(dv, "Progressing").is_some_and(|(_, reason, _)| reason == "RolloutHeldByBudget")
    })
    .await;
    let (_, held, _) = kubectl_dv(&world, &["status", "stader-4"]);
    assert!(held.contains("Rollout: RolloutHeldByBudget"), "{held}");
    assert!(held.contains(", pending"), "{held}");
    assert!(held.contains("pending: bravo; next: none now"), "{held}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(operator_writes(&world, since, "pods"), Vec::<String>::new());

    // The zone returns: bravo, and only bravo, is restarted, within the budget.
    world.sim.inject(Fault::RestoreZone { zone }).unwrap();
    dv_where(&world, "stader-4", "bravo restarted", |dv| {
        available(dv)
            && dv.status.as_ref().is_some_and(|s| {
                s.members.iter().all(|m| !m.outdated)
                    && s.members.iter().any(|m| {
                        m.name == "bravo"
                            && m.last_restart_reason.as_deref() == Some("restart requested")
                    })
            })
    })
    .await;
    assert_eq!(operator_writes(&world, since, "pods"), ["stader-4-bravo-0"]);
    let dips = readiness_dips(
        &world.sim.store().timeline(),
        LABEL_DV,
        |_| 3,
        FIELD_MANAGER,
    );
    assert!(dips.is_empty(), "{dips:?}");
    let (_, done, _) = kubectl_dv(&world, &["status", "stader-4"]);
    assert!(!done.contains(", pending"), "{done}");
    assert!(
        done.contains("RollingRestart: member bravo: restart requested; quorum budget 1"),
        "{done}"
    );

    // A crash-looping member: the screen shows its repair and why.
    world
        .sim
        .inject(Fault::CrashLoop {
            namespace: "default".into(),
            pod: "stader-4-charlie-0".into(),
            container: None,
            oom: false,
        })
        .unwrap();
    dv_where(&world, "stader-4", "charlie repaired", |dv| {
        available(dv)
            && dv.status.as_ref().is_some_and(|s| {
                s.members.iter().any(|m| {
                    m.name == "charlie"
                        && m.last_restart_reason.as_deref() == Some("broken: CrashLoopBackOff")
                })
            })
    })
    .await;
    let (_, repaired, _) = kubectl_dv(&world, &["status", "stader-4"]);
    assert!(
        repaired.contains("(broken: CrashLoopBackOff)"),
        "{repaired}"
    );
    assert!(
        repaired.contains("Repairing: member charlie: broken: CrashLoopBackOff; quorum budget 0"),
        "{repaired}"
    );

    // Unknown members are refused before anything is written.
    let (ok, _, stderr) = kubectl_dv(&world, &["restart", "stader-4", "echo"]);
    assert!(!ok);
    assert!(
        stderr.contains("has no member \"echo\" (members: alpha, bravo, charlie, delta)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_reach_the_operator_and_a_rollout_restart_rolls_every_member() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    let (ok, said, stderr) = kubectl_dv(&world, &["pause", "stader-4"]);
    assert!(ok, "{stderr}");
    assert!(said.starts_with("Paused stader-4"), "{said}");
    dv_where(&world, "stader-4", "paused", |dv| {
        condition(dv, "ReconciliationPaused").is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    let since = world.sim.store().timeline().len();
    let (ok, _, stderr) = kubectl_dv(&world, &["rollout", "restart", "stader-4"]);
    assert!(ok, "{stderr}");
    dv_where(&world, "stader-4", "every member pending", |dv| {
        dv.status
            .as_ref()
            .is_some_and(|s| s.members.iter().all(|m| m.outdated))
    })
    .await;
    let (_, paused, _) = kubectl_dv(&world, &["status", "stader-4"]);
    assert!(paused.contains("PAUSED"), "{paused}");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(operator_writes(&world, since, "pods"), Vec::<String>::new());

    let (ok, _, stderr) = kubectl_dv(&world, &["resume", "stader-4"]);
    assert!(ok, "{stderr}");
    dv_where(&world, "stader-4", "every member restarted", rolled_out).await;
    let mut restarted = operator_writes(&world, since, "pods");
    restarted.sort();
    assert_eq!(
        restarted,
        [
            "stader-4-alpha-0",
            "stader-4-bravo-0",
            "stader-4-charlie-0",
            "stader-4-delta-0"
        ]
    );
    let dips = readiness_dips(
        &world.sim.store().timeline(),
        LABEL_DV,
        |_| 3,
        FIELD_MANAGER,
    );
    assert!(dips.is_empty(), "{dips:?}");
}
