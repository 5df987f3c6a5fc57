//! Generated files are committed; these tests fail when the committed copy is stale.

use std::path::Path;

use serde::Deserialize;

use dvt_operator::cli::crd::{CRD_PATH, crd_yaml};

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

/// What helm says when the values schema refuses `set` (panics if the chart renders).
fn refused(set: &str) -> String {
    let output = std::process::Command::new(helm())
        .args(["template", "x"])
        .arg(repo("charts/dvt-operator"))
        .args(["--set", set])
        .output()
        .unwrap();
    assert!(!output.status.success(), "--set {set} rendered");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let stderr = refused("logFormat=xml");
    assert!(stderr.contains("logFormat"), "{stderr}");
}

#[test]
fn reconcile_tuning_reaches_the_operator_and_is_checked() {
    let rendered = render(&["--set", "reconcile.concurrency=4"]);
    assert!(rendered.contains("- --concurrency=4\n"), "{rendered}");
    assert!(rendered.contains("- --debounce-ms=500\n"), "{rendered}");
    let stderr = refused("reconcile.concurrency=0");
    assert!(stderr.contains("concurrency"), "{stderr}");
}

fn tool(name: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([repo(".tools/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/install-tools.sh (scripts/test does)")
        })
}

#[test]
fn helm_lint_is_clean() {
    let output = std::process::Command::new(helm())
        .args(["lint", "--strict"])
        .arg(repo("charts/dvt-operator"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Every rendered object deserializes into its k8s-openapi type, with defaults and with
/// namespaced values.
#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    use serde::Deserialize;
    for args in [
        vec!["--include-crds"],
        vec![
            "--set",
            "watchNamespaces={a,b}",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let rendered = render(&args);
        let mut kinds = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&rendered) {
            let value = serde_yaml::Value::deserialize(document).unwrap();
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap().to_owned();
            let parsed = match kind.as_str() {
                "Deployment" => serde_yaml::from_value::<apps::Deployment>(value).map(drop),
                "ServiceAccount" => serde_yaml::from_value::<core::ServiceAccount>(value).map(drop),
                "Service" => serde_yaml::from_value::<core::Service>(value).map(drop),
                "ClusterRole" => serde_yaml::from_value::<rbac::ClusterRole>(value).map(drop),
                "ClusterRoleBinding" => serde_yaml::from_value::<rbac::ClusterRoleBinding>(value).map(drop),
                "Role" => serde_yaml::from_value::<rbac::Role>(value).map(drop),
                "RoleBinding" => serde_yaml::from_value::<rbac::RoleBinding>(value).map(drop),
                "CustomResourceDefinition" => serde_yaml::from_value::<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                >(value)
                .map(drop),
                // Not a k8s-openapi type: checked for its shape only.
                "ServiceMonitor" => {
                    assert!(value["spec"]["endpoints"][0]["port"] == "metrics");
                    Ok(())
                }
                other => panic!("unexpected kind {other} in the chart"),
            };
            parsed.unwrap_or_else(|e| panic!("{kind} does not parse: {e}"));
            kinds.push(kind);
        }
        assert!(kinds.contains(&"Deployment".to_owned()), "{kinds:?}");
    }
}

#[test]
fn scripts_pass_shellcheck() {
    let output = std::process::Command::new(tool("shellcheck"))
        .args([
            "-x",
            "scripts/cluster.sh",
            "scripts/cluster/build.sh",
            "scripts/cluster/images.sh",
            "scripts/cluster/gen-k8s-module.sh",
            "scripts/cluster/gen-go-module.sh",
            "scripts/simnet-keys.sh",
            "scripts/install-tools.sh",
            "scripts/render-manifests.sh",
            "scripts/test",
            "e2e/kind.sh",
            ".ci/run",
        ])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Every init script the builders make (as committed in the snapshots of each client) is
/// POSIX sh that shellcheck passes: the images run them with `/bin/sh`, which is dash or
/// busybox on some of them, not bash.
#[test]
fn init_scripts_pass_shellcheck_as_posix_sh() {
    let mut checked = 0;
    for client in ["lighthouse", "teku", "prysm", "nimbus", "lodestar"] {
        let path = repo(&format!(
            "src/controller/build/snapshots/client-{client}.yaml"
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document).unwrap();
            if value["kind"] != "StatefulSet" {
                continue;
            }
            let inits = value["spec"]["template"]["spec"]["initContainers"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            for init in inits {
                let name = init["name"].as_str().unwrap().to_owned();
                let script = init["command"][2].as_str().unwrap();
                let file = std::env::temp_dir().join(format!(
                    "dvt-shellcheck-{client}-{name}-{}.sh",
                    std::process::id()
                ));
                std::fs::write(&file, script).unwrap();
                let output = std::process::Command::new(tool("shellcheck"))
                    .args(["--shell=sh", "--severity=warning"])
                    .arg(&file)
                    .output()
                    .unwrap();
                let _ = std::fs::remove_file(&file);
                assert!(
                    output.status.success(),
                    "{client} {name}:\n{}",
                    String::from_utf8_lossy(&output.stdout)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} init scripts found");
}
