//! The simulated API server driven by the real `kubectl`, as a user drives it.
//!
//! kubectl is found on PATH (it is preinstalled at /usr/bin/kubectl here); `scripts/test`
//! installs one into `.tools/bin` on machines without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use dvt_sim::{ClusterOptions, SimOptions, SimServer};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn kubectl_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([Path::new(REPO).join(".tools/bin")])
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file());
    on_path.expect("kubectl is not installed: run scripts/install-tools.sh (scripts/test does)")
}

/// A running simulator with its kubeconfig on disk.
struct Cluster {
    _server: SimServer,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

/// A directory removed on drop (no tempfile dependency for one directory).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Cluster {
    async fn start(test: &str) -> Cluster {
        Cluster::start_with(test, SimOptions::default()).await
    }

    async fn start_with(test: &str, options: SimOptions) -> Cluster {
        let server = SimServer::start(options).await.expect("simulator starts");
        let dir =
            std::env::temp_dir().join(format!("dvt-sim-kubectl-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            _server: server,
            kubeconfig,
            _dir: TempDir(dir),
        }
    }

    /// Runs kubectl off the async runtime (the server runs on it) and returns what it printed.
    async fn kubectl(&self, args: &[&str]) -> Output {
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let output = Command::new(kubectl_binary())
                .env("KUBECONFIG", &kubeconfig)
                // kubectl keeps a discovery cache per server; a fresh one per test avoids
                // sharing it between simulators that reuse a port.
                .env("HOME", kubeconfig.parent().unwrap())
                .current_dir(REPO)
                .args(&args)
                .output()
                .expect("kubectl runs");
            Output {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }

    /// `resourceVersion/generation` of one object.
    async fn version(&self, resource: &str, name: &str) -> String {
        self.ok(&[
            "get",
            resource,
            name,
            "-o",
            "jsonpath={.metadata.resourceVersion}/{.metadata.generation}",
        ])
        .await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.success,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_describes_explains_and_deletes() {
    let cluster = Cluster::start("lifecycle").await;
    let namespaces = cluster.ok(&["get", "namespaces"]).await;
    assert!(namespaces.contains("default"), "{namespaces}");
    assert!(namespaces.contains("kube-system"), "{namespaces}");

    let crd = cluster
        .ok(&["apply", "-f", "crds/distributedvalidator.yaml"])
        .await;
    assert!(
        crd.contains(
            "customresourcedefinition.apiextensions.k8s.io/distributedvalidators.dvt.io created"
        ),
        "{crd}"
    );
    let applied = cluster.ok(&["apply", "-f", "examples/stader-4.yaml"]).await;
    assert!(
        applied.contains("configmap/stader-4-lock created"),
        "{applied}"
    );
    assert!(
        applied.contains("distributedvalidator.dvt.io/stader-4 created"),
        "{applied}"
    );
    // Applying the same file again changes nothing. (kubectl may still send the members list:
    // JSON merge patches replace lists whole and the server defaulted a field inside them, so
    // it can print "configured", as against a real API server; the write must be a no-op.)
    let before = cluster.version("dv", "stader-4").await;
    let again = cluster.ok(&["apply", "-f", "examples/stader-4.yaml"]).await;
    assert!(
        again.contains("configmap/stader-4-lock unchanged"),
        "{again}"
    );
    assert_eq!(
        cluster.version("dv", "stader-4").await,
        before,
        "a no-op apply writes nothing"
    );

    // The short name and the CRD's printer columns.
    let table = cluster.ok(&["get", "dv"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "THRESHOLD", "TOLERANCE", "PHASE", "AGE"]
    );
    assert!(table.contains("stader-4"), "{table}");
    let by_category = cluster.ok(&["get", "dvt"]).await;
    assert!(by_category.contains("stader-4"), "{by_category}");

    let name = cluster
        .ok(&[
            "get",
            "dv",
            "stader-4",
            "-o",
            "jsonpath={.spec.members[*].name}",
        ])
        .await;
    assert_eq!(name, "alpha bravo charlie delta");

    let described = cluster.ok(&["describe", "dv", "stader-4"]).await;
    assert!(
        described.contains("Kind:         DistributedValidator"),
        "{described}"
    );
    assert!(described.contains("Beacon Nodes:"), "{described}");

    let explained = cluster.ok(&["explain", "dv.spec.threshold"]).await;
    assert!(
        explained.contains("FIELD: threshold <integer>"),
        "{explained}"
    );

    // A merge patch through kubectl, seen by the next get.
    cluster
        .ok(&["label", "configmap", "stader-4-lock", "tier=test"])
        .await;
    let labels = cluster
        .ok(&["get", "configmap", "-l", "tier=test", "-o", "name"])
        .await;
    assert_eq!(labels.trim(), "configmap/stader-4-lock");

    let deleted = cluster
        .ok(&["delete", "-f", "examples/stader-4.yaml"])
        .await;
    assert!(
        deleted.contains("distributedvalidator.dvt.io \"stader-4\" deleted"),
        "{deleted}"
    );
    let gone = cluster.kubectl(&["get", "dv", "stader-4"]).await;
    assert!(!gone.success);
    assert!(
        gone.stderr
            .contains("distributedvalidators.dvt.io \"stader-4\" not found"),
        "{}",
        gone.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reports_the_schema_message_for_an_invalid_resource() {
    let cluster = Cluster::start("invalid").await;
    cluster
        .ok(&["apply", "-f", "crds/distributedvalidator.yaml"])
        .await;
    // The example's DV with a threshold no 4-member cluster may have.
    let example = std::fs::read_to_string(Path::new(REPO).join("examples/stader-4.yaml")).unwrap();
    let dv = example
        .split("\n---\n")
        .find(|doc| doc.contains("kind: DistributedValidator"))
        .expect("the example holds a DV");
    assert!(dv.contains("\nspec:\n"), "{dv}");
    let invalid = dv.replace("\nspec:\n", "\nspec:\n  threshold: 40\n");
    let dir = cluster.kubeconfig.parent().unwrap().to_owned();
    let file = dir.join("invalid.yaml");
    std::fs::write(&file, invalid).unwrap();

    let out = cluster
        .kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await;
    assert!(
        !out.success,
        "an invalid DV must be refused: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("is invalid") && out.stderr.contains("spec.threshold"),
        "{}",
        out.stderr
    );
    let listed = cluster.ok(&["get", "dv", "-o", "name"]).await;
    assert_eq!(listed.trim(), "", "nothing was stored");
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 1
  serviceName: web
  selector: {matchLabels: {app: web}}
  updateStrategy: {type: OnDelete}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-c]}]}]
      containers: [{name: app, image: "nginx:1"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_a_believable_cluster_and_a_statefulset_pod_in_its_zone() {
    let cluster = Cluster::start_with(
        "cluster",
        SimOptions {
            cluster: Some(ClusterOptions::fast()),
            ..SimOptions::default()
        },
    )
    .await;
    let nodes = cluster.ok(&["get", "nodes"]).await;
    let header: Vec<&str> = nodes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(
        nodes
            .lines()
            .skip(1)
            .filter(|l| l.contains(" Ready "))
            .count(),
        8,
        "{nodes}"
    );

    let file = cluster.kubeconfig.parent().unwrap().join("sts.yaml");
    std::fs::write(&file, STATEFULSET).unwrap();
    cluster.ok(&["apply", "-f", file.to_str().unwrap()]).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let row = loop {
        let pods = cluster
            .ok(&["get", "pods", "-o", "wide", "--no-headers"])
            .await;
        if let Some(line) = pods
            .lines()
            .find(|l| l.starts_with("web-0 ") && l.contains("1/1") && l.contains("Running"))
        {
            break line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-0 never ran: {pods}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(row.contains("sim-zone-c-"), "scheduled into zone-c: {row}");
    let claim = cluster
        .ok(&["get", "pvc", "data-web-0", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(claim, "Bound");
    let set = cluster
        .ok(&[
            "get",
            "statefulset",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.replicas}",
        ])
        .await;
    assert_eq!(set, "1/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_operators_install_bundle() {
    let cluster = Cluster::start("install").await;
    let applied = cluster.ok(&["apply", "-f", "manifests/install.yaml"]).await;
    for object in [
        "namespace/dvt-system created",
        "customresourcedefinition.apiextensions.k8s.io/distributedvalidators.dvt.io created",
        "serviceaccount/dvt-operator created",
        "clusterrole.rbac.authorization.k8s.io/dvt-operator created",
        "clusterrolebinding.rbac.authorization.k8s.io/dvt-operator created",
        "role.rbac.authorization.k8s.io/dvt-operator-leader-election created",
        "service/dvt-operator-metrics created",
        "deployment.apps/dvt-operator created",
    ] {
        assert!(applied.contains(object), "{object} missing in:\n{applied}");
    }
    let deployment = cluster
        .ok(&[
            "get",
            "deployment",
            "dvt-operator",
            "-n",
            "dvt-system",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(deployment, "2");
}

/// kubectl's `create` generators send protobuf; what they create reads back as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_the_objects_read_back() {
    let cluster = Cluster::start("create").await;
    let share = cluster._dir.0.join("share.bin");
    std::fs::write(&share, b"abc\0\xff").unwrap();
    cluster.ok(&["create", "namespace", "ops"]).await;
    let from_file = format!("--from-file=key.json={}", share.display());
    cluster
        .ok(&[
            "create",
            "secret",
            "generic",
            "keys",
            "-n",
            "ops",
            &from_file,
            "--from-literal=password=hunter2",
        ])
        .await;
    let data = cluster
        .ok(&[
            "get",
            "secret",
            "keys",
            "-n",
            "ops",
            "-o",
            "jsonpath={.data.key\\.json} {.data.password}",
        ])
        .await;
    assert_eq!(data, "YWJjAP8= aHVudGVyMg==");
    cluster
        .ok(&[
            "create",
            "configmap",
            "lock",
            "-n",
            "ops",
            "--from-literal=cluster-lock.json={\"a\":1}",
        ])
        .await;
    let lock = cluster
        .ok(&[
            "get",
            "configmap",
            "lock",
            "-n",
            "ops",
            "-o",
            "jsonpath={.data.cluster-lock\\.json}",
        ])
        .await;
    assert_eq!(lock, "{\"a\":1}");
    cluster
        .ok(&["create", "serviceaccount", "op", "-n", "ops"])
        .await;
    let token = cluster.ok(&["create", "token", "op", "-n", "ops"]).await;
    assert!(token.starts_with("dvt-sim-sa."), "{token}");
    // The token works, and is the ServiceAccount.
    let whoami = cluster
        .ok(&[
            "auth",
            "whoami",
            "--token",
            token.trim(),
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await;
    assert_eq!(whoami, "system:serviceaccount:ops:op");
}

/// `kubectl auth can-i --as` for the operator's ServiceAccount answers from the chart's RBAC, as
/// on a real cluster; requests made with its token are refused with kube-apiserver's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_answers_from_the_charts_rbac() {
    let cluster = Cluster::start("can-i").await;
    cluster.ok(&["apply", "-f", "manifests/install.yaml"]).await;
    let operator = "--as=system:serviceaccount:dvt-system:dvt-operator";
    let can_i = |args: Vec<&'static str>| {
        let cluster = &cluster;
        async move {
            let mut full = vec!["auth", "can-i", operator];
            full.extend(args);
            cluster.kubectl(&full).await.stdout.trim().to_owned()
        }
    };
    assert_eq!(
        can_i(vec!["patch", "statefulsets", "-n", "stakers"]).await,
        "yes"
    );
    assert_eq!(
        can_i(vec![
            "create",
            "pods",
            "--subresource=eviction",
            "-n",
            "stakers"
        ])
        .await,
        "yes"
    );
    assert_eq!(
        can_i(vec![
            "patch",
            "distributedvalidators",
            "--subresource=status",
            "-n",
            "stakers"
        ])
        .await,
        "yes"
    );
    assert_eq!(can_i(vec!["list", "nodes"]).await, "yes");
    assert_eq!(
        can_i(vec!["update", "leases", "-n", "dvt-system"]).await,
        "yes"
    );
    // Only with propagationPolicy Orphan, which RBAC cannot say (the operator always sends it).
    assert_eq!(
        can_i(vec!["delete", "statefulsets", "-n", "stakers"]).await,
        "yes"
    );
    assert_eq!(
        can_i(vec!["delete", "persistentvolumeclaims", "-n", "stakers"]).await,
        "no"
    );
    assert_eq!(
        can_i(vec!["delete", "secrets", "-n", "stakers"]).await,
        "no"
    );
    assert_eq!(
        can_i(vec!["patch", "distributedvalidators", "-n", "stakers"]).await,
        "no"
    );
    assert_eq!(can_i(vec!["update", "leases", "-n", "stakers"]).await, "no");

    // With the ServiceAccount's own token, a refused request shows kube-apiserver's message.
    let token = cluster
        .ok(&["create", "token", "dvt-operator", "-n", "dvt-system"])
        .await;
    let refused = cluster
        .kubectl(&[
            "delete",
            "secret",
            "anything",
            "-n",
            "stakers",
            "--token",
            token.trim(),
        ])
        .await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("Error from server (Forbidden): secrets \"anything\" is forbidden: User \"system:serviceaccount:dvt-system:dvt-operator\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"stakers\""),
        "{}",
        refused.stderr
    );
    // Without any credentials, kubectl is system:anonymous, allowed nothing but health.
    let anonymous = cluster
        .kubectl(&["get", "pods", "--token", "not-a-token"])
        .await;
    assert!(
        anonymous.stderr.contains("Unauthorized"),
        "{}",
        anonymous.stderr
    );
}

/// `kubectl scale sts` goes through the scale subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scales_a_statefulset() {
    let cluster = Cluster::start("scale").await;
    let manifest = cluster._dir.0.join("sts.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 1\n  serviceName: web\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx}]}\n",
    )
    .unwrap();
    cluster
        .ok(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    let out = cluster.ok(&["scale", "sts", "web", "--replicas=3"]).await;
    assert!(out.contains("statefulset.apps/web scaled"), "{out}");
    let replicas = cluster
        .ok(&["get", "sts", "web", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(replicas, "3");
}

/// `dvt-sim kubeconfig --service-account` writes a kubeconfig kubectl uses as that account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_kubeconfig_acts_as_the_account() {
    let cluster = Cluster::start("sa-kubeconfig").await;
    cluster.ok(&["create", "namespace", "ops"]).await;
    cluster
        .ok(&["create", "serviceaccount", "op", "-n", "ops"])
        .await;
    let out = cluster._dir.0.join("op.kubeconfig");
    let (admin, target) = (cluster.kubeconfig.clone(), out.clone());
    let written = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dvt-sim"))
            .args(["kubeconfig", "--service-account", "ops/op"])
            .arg("--kubeconfig")
            .arg(&admin)
            .arg("--out")
            .arg(&target)
            .output()
            .expect("dvt-sim runs")
    })
    .await
    .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let target = out.clone();
    let whoami = tokio::task::spawn_blocking(move || {
        Command::new(kubectl_binary())
            .env("KUBECONFIG", &target)
            .env("HOME", target.parent().unwrap())
            .args([
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ])
            .output()
            .expect("kubectl runs")
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:ops:op"
    );
}
