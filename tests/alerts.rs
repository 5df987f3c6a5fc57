//! The chart's alerts and dashboard: the rendered PrometheusRule passes `promtool check rules`
//! and the unit tests in e2e/alerts/alerts.test.yaml, every alert has its README section, and
//! every metric the rules and the dashboard name is on the operator's `/metrics`, scraped from a
//! `dvt-operator run` process on the simulated cluster.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

fn tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([Path::new(REPO).join(".tools/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/install-tools.sh (scripts/test does)")
        })
}

/// The chart rendered with `--set NAME.enabled=true`, only `template`.
fn render(enable: &str, template: &str) -> serde_yaml::Value {
    let output = Command::new(tool("helm"))
        .args(["template", "dvt-operator"])
        .arg(Path::new(REPO).join("charts/dvt-operator"))
        .args([
            "--namespace",
            "dvt-system",
            "--set",
            &format!("{enable}.enabled=true"),
        ])
        .args(["--show-only", template])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::from_slice(&output.stdout).unwrap()
}

fn rule_groups() -> serde_yaml::Value {
    render("prometheusRule", "templates/prometheusrule.yaml")["spec"]["groups"].clone()
}

fn dashboard() -> serde_json::Value {
    let config_map = render("grafanaDashboard", "templates/grafana-dashboard.yaml");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    serde_json::from_str(config_map["data"]["dvt-operator.json"].as_str().unwrap()).unwrap()
}

/// Every `dvt_*` metric named in a PromQL expression (a histogram by its base name).
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(at) = rest.find("dvt_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let base = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_count"))
            .or_else(|| name.strip_suffix("_sum"))
            .unwrap_or(&name);
        into.insert(base.to_owned());
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests_and_each_has_a_runbook() {
    let dir = std::env::temp_dir().join(format!("dvt-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
        "groups".into(),
        rule_groups(),
    )]))
    .unwrap();
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    std::fs::copy(
        Path::new(REPO).join("e2e/alerts/alerts.test.yaml"),
        dir.join("alerts.test.yaml"),
    )
    .unwrap();
    for args in [
        vec!["check", "rules", "rules.yaml"],
        vec!["test", "rules", "alerts.test.yaml"],
    ] {
        let output = Command::new(tool("promtool"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert is unit-tested, and README explains it where its runbook_url points.
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let groups = rule_groups();
    let alerts: Vec<&serde_yaml::Value> = groups
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .collect();
    assert_eq!(alerts.len(), 10);
    for alert in alerts {
        let name = alert["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!("alertname: {name}\n    exp_alerts:\n    - ")),
            "{name} has no test that expects it to fire"
        );
        assert!(
            readme.contains(&format!("\n### {name}\n")),
            "README has no section ### {name}"
        );
        let runbook = alert["annotations"]["runbook_url"].as_str().unwrap();
        assert!(
            runbook.ends_with(&format!("README.md#{}", name.to_lowercase())),
            "{runbook}"
        );
        assert!(alert["labels"]["severity"].as_str().is_some(), "{name}");
    }
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_rules_and_the_dashboard_is_on_the_operators_metrics() {
    let mut named = BTreeSet::new();
    let groups = rule_groups();
    for group in groups.as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            metric_names(rule["expr"].as_str().unwrap(), &mut named);
        }
    }
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["title"].as_str().is_some_and(|t| !t.is_empty()));
        for target in panel["targets"].as_array().unwrap() {
            metric_names(target["expr"].as_str().unwrap(), &mut named);
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            metric_names(query, &mut named);
        }
    }
    assert!(named.len() >= 15, "{named:?}");

    let world = world_with(WorldOptions {
        operator: false,
        ..WorldOptions::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("dvt-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("operator.kubeconfig");
    world.write_operator_kubeconfig(&kubeconfig).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_dvt-operator"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--metrics-address", &format!("127.0.0.1:{port}")])
            .args(["--log-level", "warn"])
            .spawn()
            .expect("the operator starts"),
    );
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
    let metrics = wait_for("the DV's series on /metrics", || async move {
        scrape(port)
            .filter(|m| m.contains("dvt_member_ready{namespace=\"default\",name=\"stader-4\""))
    })
    .await;
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\n{metrics}"
    );
    for series in [
        "dvt_ready_members{namespace=\"default\",name=\"stader-4\"} 4",
        "dvt_key_shares_verified{namespace=\"default\",name=\"stader-4\"} 1",
        "dvt_placement_satisfied{namespace=\"default\",name=\"stader-4\"} 1",
        "dvt_member_ready{namespace=\"default\",name=\"stader-4\",member=\"alpha\"} 1",
        "dvt_leader 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
}
