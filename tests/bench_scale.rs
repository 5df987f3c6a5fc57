//! `dvt-bench scale` at a size that runs in seconds: both phases, each in a process of its own,
//! the operator as a child process, and the figures the benchmark entries quote. The figures
//! themselves are measured, not asserted (e2e/BENCHMARKS.md); what is asserted is that a run
//! completes and prints them, that the timed client loops ran at the operator's niceness, and
//! that two DVs converge with the minimum of writes and a resync writes nothing.

use std::process::Command;

/// The value printed after `label` (the benchmark prints `label   value` lines).
fn figure<'a>(output: &'a str, label: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
}

#[test]
fn a_small_scale_run_completes_and_prints_its_figures() {
    let run = Command::new(env!("CARGO_BIN_EXE_dvt-bench"))
        .args(["scale", "--dvs", "2", "--members", "4", "--nodes", "8"])
        .output()
        .expect("dvt-bench starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "dvt-bench scale failed:\n{stdout}\n{stderr}"
    );

    for label in [
        "ceiling: client loop: CPU / niceness",
        "operator: the user's loop applying DVs: CPU / niceness",
    ] {
        let value = figure(&stdout, label).unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"));
        assert!(value.ends_with("/ 19"), "{label}: {value}");
    }
    assert_eq!(
        figure(&stdout, "operator process niceness (read from /proc)"),
        Some("19")
    );
    assert_eq!(
        figure(&stdout, "ceiling: objects applied by a client loop"),
        Some("20")
    );
    assert_eq!(
        figure(&stdout, "writes / minimum"),
        Some("1.000"),
        "{stdout}"
    );
    assert_eq!(
        figure(&stdout, "resync: writes (objects + status)"),
        Some("0"),
        "{stdout}"
    );
    let ratio = figure(&stdout, "run 1: convergence / ceiling")
        .unwrap_or_else(|| panic!("no ratio in:\n{stdout}"));
    let ratio: f64 = ratio
        .split_whitespace()
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("not a ratio: {ratio}"));
    assert!(ratio > 0.0, "{ratio}");
}
