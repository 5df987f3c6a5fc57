//! Generated files are committed; these tests fail when the committed copy is stale.

use std::path::Path;

use dvt_operator::crdgen::{CRD_PATH, crd_yaml};

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_PATH);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "{CRD_PATH} is stale: regenerate it with `cargo run -- crd > {CRD_PATH}` and commit it"
    );
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_chart_ships_the_committed_crd() {
    let chart = std::fs::read_to_string(repo("charts/dvt-operator/crds/distributedvalidator.yaml"))
        .unwrap();
    let committed = std::fs::read_to_string(repo(CRD_PATH)).unwrap();
    assert!(
        chart == committed,
        "charts/dvt-operator/crds/ differs from {CRD_PATH}: cp {CRD_PATH} charts/dvt-operator/crds/"
    );
}

fn helm() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([repo(".tools/bin")])
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
        .expect("helm is not installed: run scripts/install-tools.sh (scripts/test does)")
}

fn render(args: &[&str]) -> String {
    let output = std::process::Command::new(helm())
        .args(["template", "dvt-operator"])
        .arg(repo("charts/dvt-operator"))
        .args(["--namespace", "dvt-system"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn committed_install_bundle_is_the_rendered_chart() {
    let committed = std::fs::read_to_string(repo("manifests/install.yaml")).unwrap();
    let rendered = render(&["--include-crds"]);
    assert!(
        committed.ends_with(&rendered),
        "manifests/install.yaml is stale: run scripts/render-manifests.sh and commit it"
    );
}

#[test]
fn the_chart_grants_least_privilege() {
    let all = render(&[]);
    assert!(!all.contains("\"*\""), "no wildcard in RBAC");
    assert_eq!(
        all.lines().filter(|l| *l == "kind: ClusterRole").count(),
        2,
        "nodes, and all namespaces"
    );
    assert!(all.contains("- --leader-election"));
    assert!(all.contains("replicas: 2"));
    // Listed namespaces get Roles there, and no cluster-wide access beyond nodes.
    let scoped = render(&["--set", "watchNamespaces={staking-a,staking-b}"]);
    assert!(
        scoped.contains("- --namespace=staking-a,staking-b"),
        "{scoped}"
    );
    let kinds = |kind: &str| {
        scoped
            .lines()
            .filter(|l| *l == format!("kind: {kind}"))
            .count()
    };
    assert_eq!(kinds("Role"), 3, "two watched namespaces and the lease");
    assert_eq!(kinds("ClusterRole"), 1, "only the nodes reader");
    let nodes_role = scoped
        .split("\n---")
        .find(|d| d.lines().any(|l| l == "kind: ClusterRole"))
        .unwrap();
    assert!(nodes_role.contains("resources: [\"nodes\"]") && !nodes_role.contains("secrets"));
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let output = std::process::Command::new(helm())
        .args(["template", "x"])
        .arg(repo("charts/dvt-operator"))
        .args(["--set", "logFormat=xml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("logFormat"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
