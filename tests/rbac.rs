//! The operator under the chart's RBAC in its namespaced scope (`watchNamespaces`): Roles and
//! RoleBindings in each watched namespace instead of a ClusterRole, and nothing elsewhere. (Every
//! other end-to-end test runs it under the default bundle's ClusterRole, and fails if any of its
//! requests is refused.)

mod common;

use std::path::Path;

use common::*;
use dvt_operator::api::DistributedValidator;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};

fn helm() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([Path::new(REPO).join(".tools/bin")])
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
        .expect("helm is not installed: run scripts/install-tools.sh (scripts/test does)")
}

/// The chart rendered as a user installs it with `--set watchNamespaces={...}`, with the
/// namespaces it expects to exist.
fn namespaced_bundle(namespaces: &[&str]) -> String {
    let output = std::process::Command::new(helm())
        .args(["template", "dvt-operator"])
        .arg(Path::new(REPO).join("charts/dvt-operator"))
        .args(["--namespace", "dvt-system"])
        .arg(format!(
            "--set=watchNamespaces={{{}}}",
            namespaces.join(",")
        ))
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut bundle = String::new();
    for namespace in ["dvt-system"].iter().chain(namespaces) {
        bundle.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n---\n"
        ));
    }
    bundle + &String::from_utf8_lossy(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dv_converges_under_the_namespaced_rbac_of_watch_namespaces() {
    let bundle = namespaced_bundle(&["stakers"]);
    assert!(
        bundle.contains("kind: Role\n")
            && !bundle.contains("kind: ClusterRole\nmetadata:\n  name: dvt-operator\n")
    );
    let world = world_with(WorldOptions {
        install_bundle: Some(bundle),
        watch_namespaces: vec!["stakers".to_owned()],
        ..WorldOptions::default()
    })
    .await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "stakers")
        .await
        .unwrap();
    let dvs: Api<DistributedValidator> = Api::namespaced(world.client.clone(), "stakers");
    wait_for("the DV in a watched namespace to be Available", || {
        let dvs = dvs.clone();
        async move { dvs.get("stader-4").await.ok().filter(available) }
    })
    .await;

    // The operator's own token reaches nothing outside its namespaces.
    let operator = kube::Client::try_from(
        world
            .sim
            .service_account_config("dvt-system", "dvt-operator")
            .unwrap(),
    )
    .unwrap();
    Api::<Namespace>::all(world.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "elsewhere"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let refused = Api::<StatefulSet>::namespaced(operator.clone(), "elsewhere")
        .list(&ListParams::default())
        .await
        .expect_err("no Role outside the watched namespaces");
    assert!(
        refused.to_string().contains("statefulsets.apps is forbidden: User \"system:serviceaccount:dvt-system:dvt-operator\" cannot list resource \"statefulsets\" in API group \"apps\" in the namespace \"elsewhere\""),
        "{refused}"
    );
    Api::<StatefulSet>::namespaced(operator, "stakers")
        .list(&ListParams::default())
        .await
        .expect("its own namespace is readable");
}
