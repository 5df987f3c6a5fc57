//! The operator on a real cluster: installed by `helm install` as its ServiceAccount, running a
//! test-network DV of real Charon (examples/simnet). Judged by what a user sees (`kubectl`, pod
//! readiness from the kubelet's probe on Charon's `/readyz`) and by what the DV signs: Charon's
//! own `core_tracker_success_duties_total` and `core_tracker_failed_duties_total` (with
//! `core_tracker_failed_duty_reasons_total`), read from every member process through the
//! apiserver's pod proxy. No duty may fail for the DV across the operator's own actions (a
//! member that misses its part while it restarts does not lose the DV a duty); no member may
//! see two signers for one share; a power cut of two of four members must make duties fail
//! (the judge can fail).
//!
//! Runs against whatever `DVT_REAL_CLUSTER_KUBECONFIG` names: the local cluster that
//! `scripts/cluster.sh up` starts (scripts/test does, and sets `DVT_REQUIRE_REAL_CLUSTER`, so
//! there it cannot be skipped), kind, or any cluster with the images loaded. The node-failure
//! stage stops a kubelet, which only the local cluster can do: it runs when
//! `DVT_LOCAL_CLUSTER_SCRIPT` names `scripts/cluster.sh`.
//!
//! One test, stages in order (each prints what it saw): the scenarios share one operator and
//! one DV, as a user's cluster does, and two cores run one DV's Charons at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Config};

use dvt_operator::api::{DistributedValidator, Phase};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "e2e-simnet";
const OPERATOR_NAMESPACE: &str = "dvt-system";
const DV: &str = "simnet-4";
const THRESHOLD: usize = 3;
const MEMBERS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
const DV_LABEL: &str = "dvt.io/distributed-validator";
const MEMBER_LABEL: &str = "dvt.io/member";
/// The local cluster's StorageClass whose claims grow (scripts/cluster/addons/local-path.yaml).
const EXPANDABLE_CLASS: &str = "dvt-expandable";
/// The validator-client volume's default size, and what the storage stage grows it to.
const VC_SIZE: &str = "5Gi";
const VC_SIZE_GROWN: &str = "6Gi";
/// The example's member on Prysm, whose image on the local cluster is the real validator client.
const PRYSM_MEMBER: &str = "delta";
/// The DV starts on the Charon release before the pinned one (every flag the operator
/// generates is one v1.9.0 has) and is upgraded to the pinned one: a real upgrade, rolled out
/// one member at a time.
const OLD_CHARON_IMAGE: &str = "obolnetwork/charon:v1.9.0";
const NEW_CHARON_IMAGE: &str = dvt_operator::api::DEFAULT_CHARON_IMAGE;

struct Cluster {
    kubeconfig: PathBuf,
    client: Client,
    cluster_script: Option<PathBuf>,
}

fn tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([Path::new(REPO).join(".tools/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is installed (scripts/install-tools.sh)"))
}

impl Cluster {
    /// Runs a command-line tool against the cluster as a user would; panics with its stderr.
    fn run(&self, program: &str, args: &[&str]) -> String {
        self.try_run(program, args)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Runs a command-line tool against the cluster; its output, or what it printed on failing.
    fn try_run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let output = Command::new(tool(program))
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(REPO)
            .args(args)
            .output()
            .map_err(|e| format!("{program} {args:?}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// What a user would look at when something in `namespace` does not come up: its pods,
    /// their description, Events and logs, and the nodes; printed to the test's output.
    fn explain(&self, namespace: &str) {
        let looks: [&[&str]; 5] = [
            &["get", "nodes", "-o", "wide"],
            &["-n", namespace, "get", "pods", "-o", "wide"],
            &["-n", namespace, "describe", "pods"],
            &["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"],
            &[
                "-n",
                namespace,
                "logs",
                "--all-containers",
                "--prefix",
                "--tail=40",
                "-l",
                "app.kubernetes.io/name",
            ],
        ];
        for args in looks {
            match self.try_run("kubectl", args) {
                Ok(out) | Err(out) => eprintln!("--- kubectl {}\n{out}", args.join(" ")),
            }
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.run("kubectl", args)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The DV's objects of one kind (by the label the operator puts on every child); `None`
    /// when the list fails.
    async fn dv_children<K>(&self) -> Option<Vec<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .list(&ListParams::default().labels(&format!("{DV_LABEL}={DV}")))
            .await
            .ok()
            .map(|list| list.items)
    }

    async fn dv(&self) -> Option<DistributedValidator> {
        self.api::<DistributedValidator>().get_opt(DV).await.ok()?
    }

    /// `core_tracker_success_duties_total` of one member's Charon, summed over duty types, read
    /// through the apiserver's proxy to the pod's monitoring port (what Prometheus scrapes).
    async fn duties(&self, member: &str) -> Option<Duties> {
        read_duties(&self.client, member).await
    }
}

async fn read_duties(client: &Client, member: &str) -> Option<Duties> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{DV}-{member}-0:3620/proxy/metrics");
    let request = http::Request::get(path).body(Vec::new()).ok()?;
    // A pod that crash-loops or was just deleted may leave the apiserver's dial hanging for
    // minutes; one slow member must not stall the reads of the others.
    let text = tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
        .await
        .ok()?
        .ok()?;
    Some(Duties::parse(&text))
}

/// Every member process's duty counters as last read, by pod uid (a new process counts from
/// 0, so its counters are kept apart from its predecessor's). Read every 5 s in the background;
/// a stage's duties are the sum over processes of what each counted between two snapshots. What
/// a process counts in its last seconds before it is killed is lost; Charon's tracker reports a
/// duty about an epoch after its slot, so the stage waits for more duties before it judges.
#[derive(Clone, Default)]
struct DutyLedger {
    by_process: BTreeMap<String, (String, Duties)>,
    /// Each read that found more failed duties: when, whose, which reasons; printed beside the
    /// pods' timeline so that a failure can be put next to what the operator was doing.
    failures: Vec<(Instant, String, BTreeMap<String, f64>)>,
}

impl DutyLedger {
    /// Per member, what its processes counted since `before`.
    fn since(&self, before: &DutyLedger) -> BTreeMap<String, Duties> {
        let mut counted: BTreeMap<String, Duties> = BTreeMap::new();
        for (process, (member, now)) in &self.by_process {
            let was = before.by_process.get(process).map(|(_, d)| d.clone());
            let was = was.unwrap_or_default();
            let total = counted.entry(member.clone()).or_default();
            total.success += now.success - was.success;
            total.failed += now.failed - was.failed;
            total.inconsistent += now.inconsistent - was.inconsistent;
            for (reason, more) in now.failed_reasons_since(&was) {
                *total.failed_reasons.entry(reason).or_default() += more;
            }
        }
        counted
    }
}

fn sample_duties(cluster: &Cluster) -> Arc<Mutex<DutyLedger>> {
    let ledger = Arc::new(Mutex::new(DutyLedger::default()));
    let (shared, client) = (ledger.clone(), cluster.client.clone());
    let pods: Api<Pod> = cluster.api();
    tokio::spawn(async move {
        loop {
            let listed = pods
                .list(&ListParams::default().labels(&format!("{DV_LABEL}={DV}")))
                .await;
            for pod in listed.map(|l| l.items).unwrap_or_default() {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                let (Some(member), Some(uid)) = (labels.get(MEMBER_LABEL), pod.metadata.uid) else {
                    continue;
                };
                let Some(now) = read_duties(&client, member).await else {
                    continue;
                };
                let mut ledger = shared.lock().unwrap();
                // Counters that went down belong to a process that replaced the one read
                // before under the same pod (a container restart): a process of its own.
                let mut process = uid;
                while let Some((_, was)) = ledger.by_process.get(&process) {
                    if now.success + now.failed >= was.success + was.failed {
                        break;
                    }
                    process.push('+');
                }
                let was = ledger.by_process.get(&process).map(|(_, d)| d.clone());
                let more = now.failed_reasons_since(&was.unwrap_or_default());
                if !more.is_empty() {
                    ledger.failures.push((Instant::now(), member.clone(), more));
                }
                ledger.by_process.insert(process, (member.clone(), now));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    ledger
}

/// What one member's Charon says it signed.
#[derive(Debug, Default, Clone)]
struct Duties {
    success: f64,
    failed: f64,
    /// `core_tracker_failed_duty_reasons_total` by `duty/reason`.
    failed_reasons: BTreeMap<String, f64>,
    /// `core_tracker_inconsistent_parsigs_total` (charon v1.10.3 core/tracker/metrics.go):
    /// duties for which this member received partial signatures of different data from one
    /// share, the trace two signers with one key share would leave.
    inconsistent: f64,
}

impl Duties {
    /// The failed-duty reasons counted since `was` (of the same process).
    fn failed_reasons_since(&self, was: &Duties) -> BTreeMap<String, f64> {
        self.failed_reasons
            .iter()
            .map(|(reason, n)| {
                let before = was.failed_reasons.get(reason).copied().unwrap_or(0.0);
                (reason.clone(), n - before)
            })
            .filter(|(_, more)| *more > 0.0)
            .collect()
    }

    fn parse(text: &str) -> Duties {
        let mut duties = Duties::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |name: &str| {
                series
                    .split_once(&format!("{name}=\""))
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_owned())
                    .unwrap_or_default()
            };
            if series.starts_with("core_tracker_success_duties_total") {
                duties.success += value;
            } else if series.starts_with("core_tracker_failed_duties_total") {
                duties.failed += value;
            } else if series.starts_with("core_tracker_inconsistent_parsigs_total") {
                duties.inconsistent += value;
            } else if series.starts_with("core_tracker_failed_duty_reasons_total") && value > 0.0 {
                *duties
                    .failed_reasons
                    .entry(format!("{}/{}", label("duty"), label("reason")))
                    .or_default() += value;
            }
        }
        duties
    }
}

async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            eprintln!("  {what}: after {:.0} s", start.elapsed().as_secs_f64());
            return value;
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn phase_is(dv: &DistributedValidator, phase: Phase) -> bool {
    dv.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == dv.metadata.generation && s.phase == Some(phase))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The member pods as a watch sees them, every event in order: the lowest count of members
/// with a Ready pod since `arm`, and the most pods one member ever had at once.
#[derive(Default)]
struct PodTimeline {
    pods: BTreeMap<String, Pod>,
    armed: bool,
    min_ready_members: Option<usize>,
    max_pods_per_member: usize,
    events: usize,
    /// Each change of the set of members with a Ready pod, and when.
    ready_changes: Vec<(Instant, BTreeSet<String>)>,
}

impl PodTimeline {
    fn ready_set(&self) -> BTreeSet<String> {
        self.pods
            .values()
            .filter(|p| pod_ready(p))
            .filter_map(|p| p.metadata.labels.as_ref()?.get(MEMBER_LABEL).cloned())
            .collect()
    }

    fn ready_members(&self) -> usize {
        self.ready_set().len()
    }

    fn record(&mut self) {
        self.events += 1;
        let ready = self.ready_set();
        if self.ready_changes.last().map(|(_, was)| was) != Some(&ready) {
            self.ready_changes.push((Instant::now(), ready));
        }
        let mut per_member: BTreeMap<String, usize> = BTreeMap::new();
        for pod in self.pods.values() {
            if let Some(member) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MEMBER_LABEL))
            {
                *per_member.entry(member.clone()).or_default() += 1;
            }
        }
        self.max_pods_per_member = self
            .max_pods_per_member
            .max(per_member.values().copied().max().unwrap_or(0));
        if self.armed {
            let ready = self.ready_members();
            self.min_ready_members = Some(self.min_ready_members.map_or(ready, |m| m.min(ready)));
        }
    }

    /// Prints what the timeline saw since it was armed, and fails if one member ever had two
    /// pods at once (two signers with one key share).
    fn never_two_pods_per_member(&self, what: &str) {
        eprintln!(
            "  {what}: lowest ready members {:?}, most pods per member {}",
            self.min_ready_members, self.max_pods_per_member
        );
        assert!(
            self.max_pods_per_member <= 1,
            "{what}: two pods for one member"
        );
    }

    fn arm(&mut self) {
        self.armed = true;
        self.min_ready_members = Some(self.ready_members());
        self.max_pods_per_member = 0;
        self.record();
    }
}

fn watch_pods(cluster: &Cluster) -> Arc<Mutex<PodTimeline>> {
    let timeline = Arc::new(Mutex::new(PodTimeline::default()));
    let pods: Api<Pod> = cluster.api();
    let config = watcher::Config::default().labels(&format!("{DV_LABEL}={DV}"));
    let shared = timeline.clone();
    tokio::spawn(async move {
        let mut stream = watcher(pods, config).boxed();
        let mut initial = BTreeMap::new();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let mut t = shared.lock().unwrap();
            match event {
                watcher::Event::Init => initial.clear(),
                watcher::Event::InitApply(pod) => {
                    initial.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                }
                watcher::Event::InitDone => {
                    t.pods = std::mem::take(&mut initial);
                    t.record();
                }
                watcher::Event::Apply(pod) => {
                    t.pods
                        .insert(pod.metadata.name.clone().unwrap_or_default(), pod);
                    t.record();
                }
                watcher::Event::Delete(pod) => {
                    t.pods
                        .remove(&pod.metadata.name.clone().unwrap_or_default());
                    t.record();
                }
            }
        }
    });
    timeline
}

async fn connect() -> Option<Cluster> {
    let required = std::env::var_os("DVT_REQUIRE_REAL_CLUSTER").is_some();
    let Some(kubeconfig) = std::env::var_os("DVT_REAL_CLUSTER_KUBECONFIG").map(PathBuf::from)
    else {
        assert!(
            !required,
            "DVT_REQUIRE_REAL_CLUSTER is set but DVT_REAL_CLUSTER_KUBECONFIG is not"
        );
        eprintln!(
            "skipped: no real cluster (scripts/test starts one; or set DVT_REAL_CLUSTER_KUBECONFIG)"
        );
        return None;
    };
    let kubeconfig_file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig_file, &Default::default())
        .await
        .expect("kubeconfig is usable");
    let client = Client::try_from(config).expect("client");
    let cluster_script = std::env::var_os("DVT_LOCAL_CLUSTER_SCRIPT").map(PathBuf::from);
    Some(Cluster {
        kubeconfig,
        client,
        cluster_script,
    })
}

async fn all_members_signing(cluster: &Cluster, what: &str) -> BTreeMap<String, Duties> {
    let before = wait_until(
        &format!("{what}: every member serves its duty counters"),
        Duration::from_secs(120),
        || async {
            let mut all = BTreeMap::new();
            for member in MEMBERS {
                all.insert(member.to_owned(), cluster.duties(member).await?);
            }
            Some(all)
        },
    )
    .await;
    let after = wait_until(
        &format!("{what}: every member signed more duties"),
        Duration::from_secs(180),
        || async {
            let mut all = BTreeMap::new();
            for member in MEMBERS {
                let now = cluster.duties(member).await?;
                let was = &before[member];
                // Counters that went down are a new process's (the pod was replaced since the
                // first read): it counts from 0.
                let restarted = now.success + now.failed < was.success + was.failed;
                let base = if restarted { 0.0 } else { was.success };
                (now.success > base).then_some(())?;
                all.insert(member.to_owned(), now);
            }
            Some(all)
        },
    )
    .await;
    for (member, duties) in &after {
        eprintln!(
            "  {member}: {} duties signed, {} failed {:?}",
            duties.success, duties.failed, duties.failed_reasons
        );
    }
    after
}

async fn install_operator(cluster: &Cluster) {
    eprintln!("stage: helm install the chart with the local operator image");
    let installed = cluster.try_run(
        "helm",
        &[
            "upgrade",
            "--install",
            "dvt-operator",
            "charts/dvt-operator",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            "image.tag=local",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "300s",
        ],
    );
    if let Err(failure) = installed {
        cluster.explain(OPERATOR_NAMESPACE);
        panic!("{failure}");
    }
    // The image under the tag `local` may have been rebuilt since the Deployment last started
    // (a reused cluster): start its pods again so that they run this checkout's operator.
    cluster.kubectl(&[
        "rollout",
        "restart",
        "deployment",
        "-n",
        OPERATOR_NAMESPACE,
        "dvt-operator",
    ]);
    cluster.kubectl(&[
        "rollout",
        "status",
        "deployment",
        "-n",
        OPERATOR_NAMESPACE,
        "dvt-operator",
        "--timeout=180s",
    ]);
}

async fn dv_available(cluster: &Cluster, what: &str) -> DistributedValidator {
    wait_until(what, Duration::from_secs(420), || async {
        cluster
            .dv()
            .await
            .filter(|dv| phase_is(dv, Phase::Available))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simnet_dv_installed_by_helm_signs_duties_and_keeps_quorum_on_a_real_cluster() {
    let Some(cluster) = connect().await else {
        return;
    };
    install_operator(&cluster).await;

    eprintln!("stage: apply examples/simnet (relay and a 4-member DV) in {NAMESPACE}");
    let _ = Command::new(tool("kubectl"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args([
            "delete",
            "namespace",
            NAMESPACE,
            "--wait=true",
            "--timeout=180s",
        ])
        .output();
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
    cluster.kubectl(&["apply", "-n", NAMESPACE, "-f", "examples/simnet/relay.yaml"]);
    // examples/simnet/simnet-4.yaml on the previous Charon release.
    let example = std::fs::read_to_string(Path::new(REPO).join("examples/simnet/simnet-4.yaml"))
        .expect("the example");
    // ... and on the local cluster's expandable StorageClass, whose claims can grow.
    let on_old_charon = example.replace(
        "  charon:\n    relays:",
        &format!(
            "  storage:\n    storageClassName: {EXPANDABLE_CLASS}\n  charon:\n    image: {OLD_CHARON_IMAGE}\n    relays:"
        ),
    );
    assert_ne!(
        on_old_charon, example,
        "the example's charon settings moved"
    );
    let file = std::env::temp_dir().join(format!("dvt-real-cluster-{}.yaml", std::process::id()));
    std::fs::write(&file, on_old_charon).unwrap();
    cluster.kubectl(&["apply", "-n", NAMESPACE, "-f", file.to_str().unwrap()]);
    let timeline = watch_pods(&cluster);
    let ledger = sample_duties(&cluster);
    dv_available(&cluster, "the DV turns Available").await;

    eprintln!("stage: each member Ready by the kubelet's probe on Charon's /readyz");
    let pods: Api<Pod> = cluster.api();
    let listed: Vec<Pod> = cluster.dv_children().await.expect("pods listed");
    assert_eq!(listed.len(), MEMBERS.len(), "one pod per member");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let mut zones = BTreeSet::new();
    for pod in &listed {
        assert!(pod_ready(pod), "{:?} is Ready", pod.metadata.name);
        let spec = pod.spec.as_ref().unwrap();
        let charon = spec.containers.iter().find(|c| c.name == "charon").unwrap();
        let probe = charon
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref());
        assert_eq!(probe.and_then(|g| g.path.as_deref()), Some("/readyz"));
        let node = nodes.get(spec.node_name.as_deref().unwrap()).await.unwrap();
        let zone = node.metadata.labels.unwrap_or_default()["topology.kubernetes.io/zone"].clone();
        zones.insert(zone);
    }
    assert_eq!(zones.len(), MEMBERS.len(), "one member per zone: {zones:?}");

    eprintln!(
        "stage: the real Prysm imported {PRYSM_MEMBER}'s key share (the operator's init step)"
    );
    // Prysm's own words (v6.1.4 validator/keymanager/local/import.go:95): only the real
    // client prints them; a stand-in image would not.
    let imported = cluster.kubectl(&[
        "logs",
        "-n",
        NAMESPACE,
        &format!("{DV}-{PRYSM_MEMBER}-0"),
        "-c",
        "import-keys",
    ]);
    assert!(
        imported.contains("Successfully imported validator key(s)"),
        "Prysm's import step: {imported}"
    );

    eprintln!("stage: duties signed by every member (Charon's core_tracker)");
    all_members_signing(&cluster, "start").await;

    eprintln!("stage: the PodDisruptionBudget keeps t members");
    let pdb: Vec<PodDisruptionBudget> = cluster.dv_children().await.expect("budgets listed");
    assert_eq!(pdb.len(), 1);
    assert_eq!(
        pdb[0].spec.as_ref().and_then(|s| s.min_available.clone()),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(THRESHOLD as i32))
    );

    eprintln!("stage: a member scaled to 0 by hand is put back");
    let sets: Api<StatefulSet> = cluster.api();
    cluster.kubectl(&[
        "scale",
        "-n",
        NAMESPACE,
        "statefulset",
        &format!("{DV}-alpha"),
        "--replicas=0",
    ]);
    wait_until(
        "replicas put back to 1",
        Duration::from_secs(60),
        || async {
            let set = sets.get(&format!("{DV}-alpha")).await.ok()?;
            (set.spec?.replicas == Some(1)).then_some(())
        },
    )
    .await;
    dv_available(&cluster, "the DV is Available again").await;

    eprintln!("stage: an image set by hand on a child is put back");
    cluster.kubectl(&[
        "set",
        "image",
        "-n",
        NAMESPACE,
        &format!("statefulset/{DV}-bravo"),
        "charon=busybox:edited",
    ]);
    wait_until(
        "the Charon image put back",
        Duration::from_secs(60),
        || async {
            let set = sets.get(&format!("{DV}-bravo")).await.ok()?;
            let image = set
                .spec?
                .template
                .spec?
                .containers
                .iter()
                .find(|c| c.name == "charon")?
                .image
                .clone()?;
            (image == OLD_CHARON_IMAGE).then_some(())
        },
    )
    .await;

    charon_upgrade(&cluster, &timeline, &ledger).await;
    a_refused_flag_stops_the_rollout(&cluster, &timeline, &ledger).await;
    the_validator_client_volumes_grow(&cluster, &timeline, &ledger).await;

    eprintln!("stage: a deleted member pod comes back");
    let charlie = pods.get(&format!("{DV}-charlie-0")).await.unwrap();
    cluster.kubectl(&[
        "delete",
        "pod",
        "-n",
        NAMESPACE,
        &format!("{DV}-charlie-0"),
        "--wait=false",
    ]);
    wait_until(
        "charlie's new pod Ready",
        Duration::from_secs(240),
        || async {
            let pod = pods.get(&format!("{DV}-charlie-0")).await.ok()?;
            (pod.metadata.uid != charlie.metadata.uid && pod_ready(&pod)).then_some(())
        },
    )
    .await;
    dv_available(&cluster, "Available after the pod came back").await;

    if let Some(script) = &cluster.cluster_script {
        node_down(&cluster, script, &timeline).await;
        quorum_broken_on_purpose(&cluster, script, &timeline).await;
    } else {
        eprintln!("stage skipped: a node down and a power cut need the local cluster's script");
    }

    eprintln!("stage: across the whole run, no two signers for one share");
    let whole_run = ledger.lock().unwrap().since(&DutyLedger::default());
    for (member, counted) in &whole_run {
        eprintln!(
            "  {member}'s processes over the run: {} signed, {} failed, {} inconsistent",
            counted.success, counted.failed, counted.inconsistent
        );
    }
    never_two_signers(&whole_run, "the whole run");

    eprintln!("stage: the DV deleted mid-rollout keeps its PVCs and Secrets");
    let claims_before = cluster
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert!(
        claims_before >= MEMBERS.len(),
        "each member has its claims ({claims_before})"
    );
    dv_available(&cluster, "Available before the last rollout").await;
    patch_spec(
        &cluster,
        serde_json::json!({"charon": {"image": OLD_CHARON_IMAGE}}),
    )
    .await;
    a_member_pod_runs(
        &cluster,
        OLD_CHARON_IMAGE,
        "a member's pod replaced for the rollout back to the old image",
    )
    .await;
    cluster.kubectl(&[
        "delete",
        "distributedvalidator",
        "-n",
        NAMESPACE,
        DV,
        "--wait=true",
    ]);
    wait_until(
        "the members' StatefulSets and pods are gone",
        Duration::from_secs(180),
        || async {
            let sets: Vec<StatefulSet> = cluster.dv_children().await?;
            let pods: Vec<Pod> = cluster.dv_children().await?;
            (sets.is_empty() && pods.is_empty()).then_some(())
        },
    )
    .await;
    let claims_after = cluster
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(claims_after, claims_before, "no PVC deleted");
    let secrets: Api<Secret> = cluster.api();
    for member in MEMBERS {
        for suffix in ["keystore", "enr"] {
            let name = format!("{DV}-{member}-{suffix}");
            assert!(
                secrets.get_opt(&name).await.unwrap().is_some(),
                "{name} kept"
            );
        }
    }
}

/// A node whose kubelet stops (its containers keep running, as on a partitioned node): the
/// real node-lifecycle controller marks it NotReady; the member on it must never get a second
/// pod while the first may still run (DESIGN §5), and comes back when the kubelet does.
async fn node_down(cluster: &Cluster, script: &Path, timeline: &Arc<Mutex<PodTimeline>>) {
    eprintln!("stage: a node's kubelet stops");
    let pods: Api<Pod> = cluster.api();
    let delta = pods.get(&format!("{DV}-delta-0")).await.unwrap();
    let node = delta
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap();
    timeline.lock().unwrap().arm();
    local_cluster(script, &["kubelet", "stop", &node]);
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    wait_until(
        &format!("{node} NotReady"),
        Duration::from_secs(120),
        || async {
            let n = nodes.get(&node).await.ok()?;
            let ready = n
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status != "True").then_some(())
        },
    )
    .await;
    // The other three members keep signing while delta's node is unreachable; past the
    // pods' 30 s toleration (scripts/cluster/lib.sh) the taint manager evicts delta's pod, which
    // stays Terminating on the silent node: no second pod may start for delta meanwhile.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stranded = pods.get(&format!("{DV}-delta-0")).await.unwrap();
    assert_eq!(
        stranded.metadata.uid, delta.metadata.uid,
        "delta's pod is the one on {node}"
    );
    assert!(
        stranded.metadata.deletion_timestamp.is_some(),
        "the taint manager evicted delta's pod from the unreachable node"
    );
    let dv = cluster.dv().await.unwrap();
    eprintln!(
        "  with {node} down: phase {:?}, ready {:?}",
        dv.status.as_ref().and_then(|s| s.phase),
        dv.status.as_ref().map(|s| s.ready_members)
    );
    local_cluster(script, &["kubelet", "start", &node]);
    dv_available(
        cluster,
        &format!("Available again after {node}'s kubelet is back"),
    )
    .await;
    let t = timeline.lock().unwrap();
    t.never_two_pods_per_member("node down");
    assert!(
        t.min_ready_members.unwrap_or(0) >= THRESHOLD,
        "one node down cost quorum"
    );
}

/// Two members' nodes lose power (`cluster.sh node poweroff`: their containers killed, their
/// kubelets stopped): with 2 of 4 members left and t = 3 the DV cannot sign, and the members
/// left must say so in their own duty counters: the duty judge can fail. `kubectl get dv` says
/// QuorumLost; no member gets a second pod while its node is silent; when power returns every
/// member signs again.
async fn quorum_broken_on_purpose(
    cluster: &Cluster,
    script: &Path,
    timeline: &Arc<Mutex<PodTimeline>>,
) {
    const POWERED_OFF: [&str; 2] = ["bravo", "charlie"];
    const LEFT: [&str; 2] = ["alpha", "delta"];
    eprintln!("stage: two members' nodes lose power: fewer than t sign, and duties fail");
    dv_available(cluster, "Available before the power cut").await;
    let pods: Api<Pod> = cluster.api();
    let mut nodes = Vec::new();
    for member in POWERED_OFF {
        let pod = pods.get(&format!("{DV}-{member}-0")).await.unwrap();
        nodes.push(pod.spec.and_then(|s| s.node_name).unwrap());
    }
    let before = wait_until(
        "the members left serve their duty counters",
        Duration::from_secs(120),
        || async {
            let mut all = BTreeMap::new();
            for member in LEFT {
                all.insert(member, cluster.duties(member).await?);
            }
            Some(all)
        },
    )
    .await;
    timeline.lock().unwrap().arm();
    for node in &nodes {
        local_cluster(script, &["node", "poweroff", node]);
    }
    wait_until(
        "kubectl get dv says QuorumLost",
        Duration::from_secs(240),
        || async { phase_is(&cluster.dv().await?, Phase::QuorumLost).then_some(()) },
    )
    .await;
    let failing = wait_until(
        "each member left reports failed duties",
        Duration::from_secs(300),
        || async {
            let mut all = BTreeMap::new();
            for member in LEFT {
                let now = cluster.duties(member).await?;
                (now.failed > before[member].failed).then_some(())?;
                all.insert(member, now);
            }
            Some(all)
        },
    )
    .await;
    for (member, now) in &failing {
        let was = &before[member];
        eprintln!(
            "  {member}: {} more duties failed, {} more signed; reasons now {:?}",
            now.failed - was.failed,
            now.success - was.success,
            now.failed_reasons
        );
    }
    for node in &nodes {
        local_cluster(script, &["node", "poweron", node]);
    }
    dv_available(cluster, "Available again once power returns").await;
    all_members_signing(cluster, "after the power cut").await;
    timeline
        .lock()
        .unwrap()
        .never_two_pods_per_member("power cut");
}

/// Runs `scripts/cluster.sh` with `args` (a node's kubelet or power, a container killed); panics
/// if it fails.
fn local_cluster(script: &Path, args: &[&str]) {
    let status = Command::new(script).args(args).status().unwrap();
    assert!(status.success(), "cluster.sh {}", args.join(" "));
}

/// The Charon upgrade `OLD_CHARON_IMAGE` -> `NEW_CHARON_IMAGE`, the operator's own rollout:
/// never below t Ready members (from the watch), never two pods for one member, and no duty
/// failed across it. On the local cluster the leading operator replica is killed with SIGKILL
/// once the first member is down for its new image: the replica that takes the lease over must
/// carry the rollout on from what the cluster holds, without taking a second member down early.
async fn charon_upgrade(
    cluster: &Cluster,
    timeline: &Arc<Mutex<PodTimeline>>,
    ledger: &Arc<Mutex<DutyLedger>>,
) {
    eprintln!(
        "stage: the Charon upgrade {OLD_CHARON_IMAGE} -> {NEW_CHARON_IMAGE} rolls out never below t Ready members (a watch)"
    );
    dv_available(cluster, "Available before the rollout").await;
    let (start, before_rollout) = change_spec(
        cluster,
        timeline,
        ledger,
        serde_json::json!({"charon": {"image": NEW_CHARON_IMAGE}}),
    )
    .await;
    let killed = match &cluster.cluster_script {
        Some(script) => {
            a_member_pod_runs(
                cluster,
                NEW_CHARON_IMAGE,
                "the first member's pod replaced for the new image",
            )
            .await;
            Some(sigkill_the_leader(cluster, script).await)
        }
        None => None,
    };
    wait_until(
        "every member runs the new image, Ready",
        Duration::from_secs(600),
        || async {
            let dv = cluster.dv().await?;
            phase_is(&dv, Phase::Available).then_some(())?;
            let listed: Vec<Pod> = cluster.dv_children().await?;
            (listed.len() == MEMBERS.len()
                && listed
                    .iter()
                    .all(|p| pod_ready(p) && charon_image(p) == Some(NEW_CHARON_IMAGE)))
            .then_some(())
        },
    )
    .await;
    if let Some((pod, restarts_before)) = killed {
        let operators: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
        let after = operator_restarts(&operators.get(&pod).await.unwrap());
        eprintln!(
            "  the killed leader {pod}: container restarts {restarts_before} -> {after}; lease now held by {:?}",
            leader(cluster).await
        );
        assert!(
            after > restarts_before,
            "the kubelet saw {pod}'s operator container die"
        );
    }
    {
        let t = timeline.lock().unwrap();
        eprintln!("  rollout: {} pod events watched", t.events);
        t.never_two_pods_per_member("rollout");
        assert!(
            t.min_ready_members.unwrap_or(0) >= THRESHOLD,
            "the rollout took the DV below t = {THRESHOLD}: {:?}",
            t.min_ready_members
        );
    }
    all_members_signing(cluster, "after the rollout").await;
    // The tracker reports a duty about an epoch after its slot; the stage waited for every
    // member to sign more, so the rollout's slots are in.
    tokio::time::sleep(Duration::from_secs(6)).await;
    print_story(timeline, ledger, start, "the rollout");
    judge_duties(
        ledger,
        &before_rollout,
        start,
        &MEMBERS,
        HeldBy::Operator,
        "the operator's rollout",
    );
}

/// A user's typo in `spec.charon.extraArgs`: the first member rolled runs a flag Charon refuses
/// and crash-loops in its own container. The rollout must stop at that member, with the other
/// t members Ready and signing, `kubectl get dv` naming the failing member and the ones held
/// back; taking the flag out again puts the member back.
async fn a_refused_flag_stops_the_rollout(
    cluster: &Cluster,
    timeline: &Arc<Mutex<PodTimeline>>,
    ledger: &Arc<Mutex<DutyLedger>>,
) {
    const REFUSED: &str = "--dvt-e2e-no-such-flag";
    let runs_refused = |pod: &Pod| {
        let charon = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == "charon"));
        charon
            .and_then(|c| c.args.as_ref())
            .is_some_and(|args| args.iter().any(|a| a == REFUSED))
    };
    eprintln!("stage: a flag Charon refuses stops the rollout at one member");
    dv_available(cluster, "Available before the refused flag").await;
    let (start, before) = change_spec(
        cluster,
        timeline,
        ledger,
        serde_json::json!({"charon": {"extraArgs": [REFUSED]}}),
    )
    .await;
    let broken = wait_until(
        "a member's Charon refuses the flag and restarts",
        Duration::from_secs(300),
        || async {
            let listed: Vec<Pod> = cluster.dv_children().await?;
            listed.iter().find_map(|p| {
                runs_refused(p).then_some(())?;
                let restarts = p
                    .status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .iter()
                    .find(|c| c.name == "charon")?
                    .restart_count;
                (restarts >= 2).then(|| member_of(p))?
            })
        },
    )
    .await;
    // Time enough for a wrong operator to take a second member down.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let listed: Vec<Pod> = cluster.dv_children().await.unwrap();
    let with_flag: Vec<String> = listed
        .iter()
        .filter(|p| runs_refused(p))
        .filter_map(member_of)
        .collect();
    assert_eq!(
        with_flag,
        vec![broken.clone()],
        "the rollout went on past {broken}"
    );
    let undo = serde_json::json!({"spec": {"charon": {"extraArgs": []}}}).to_string();
    one_member_fails_then_returns(
        FailingMember {
            cluster,
            timeline,
            ledger,
            start,
            before: &before,
            member: &broken,
            says: &format!("unknown flag: {REFUSED}"),
            what: "the refused flag",
        },
        &["--type=merge", "-p", &undo],
    )
    .await;
}

/// One member failing in its own container, and what the stage needs to judge it.
struct FailingMember<'a> {
    cluster: &'a Cluster,
    timeline: &'a Arc<Mutex<PodTimeline>>,
    ledger: &'a Arc<Mutex<DutyLedger>>,
    start: Instant,
    before: &'a DutyLedger,
    member: &'a str,
    /// What the DV's status must say of it (from its container's last words).
    says: &'a str,
    what: &'a str,
}

/// While `failing.member` fails: `kubectl get dv` names it with its container's own last words
/// (kept by the kubelet: FallbackToLogsOnError) and shows the others Ready, and the others keep
/// signing. Then `undo` (`kubectl patch` arguments for the DV) puts it back; never below t, never two
/// pods for one member, and no duty failed on the others.
async fn one_member_fails_then_returns(failing: FailingMember<'_>, undo: &[&str]) {
    let FailingMember {
        cluster,
        timeline,
        ledger,
        start,
        before,
        member,
        says,
        what,
    } = failing;
    // The operator may be between a repair and the next crash: wait for a read that shows it.
    let dv = wait_until(
        &format!("kubectl get dv says why {member} fails"),
        Duration::from_secs(180),
        || async {
            let dv = cluster.dv().await?;
            let status = dv.status.as_ref()?;
            let m = status.members.iter().find(|m| m.name == member)?;
            let why = m.not_ready_reason.as_deref()?;
            (!m.ready && why.contains(says)).then_some(())?;
            Some(dv)
        },
    )
    .await;
    let status = dv.status.as_ref().expect("status");
    for m in &status.members {
        eprintln!(
            "  {}: ready {}, outdated {}, restarts {}, not ready because {:?}",
            m.name, m.ready, m.outdated, m.restarts, m.not_ready_reason
        );
        if m.name != member {
            assert!(m.ready, "{} shown Ready: {m:?}", m.name);
        }
    }
    eprintln!("  phase {:?}", status.phase);
    let others: Vec<&str> = MEMBERS.iter().copied().filter(|m| *m != member).collect();
    let held = ledger.lock().unwrap().clone();
    // Charon's tracker reports a duty about an epoch after its slot, in bursts (a 64 s epoch
    // at 2 s slots): as long as the start stage's first duties may take.
    wait_until(
        "the other members keep signing",
        Duration::from_secs(240),
        || async {
            let now = ledger.lock().unwrap().since(&held);
            others
                .iter()
                .all(|m| now.get(*m).is_some_and(|d| d.success > 0.0))
                .then_some(())
        },
    )
    .await;

    dv_patch(cluster, undo);
    dv_available(cluster, &format!("Available again after {what}")).await;
    all_members_signing(cluster, &format!("after {what}")).await;
    {
        let t = timeline.lock().unwrap();
        t.never_two_pods_per_member(what);
        assert!(
            t.min_ready_members.unwrap_or(0) >= THRESHOLD,
            "{what} took the DV below t = {THRESHOLD}: {:?}",
            t.min_ready_members
        );
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    print_story(timeline, ledger, start, what);
    judge_duties(
        ledger,
        before,
        start,
        &others,
        HeldBy::Fault("one member's own container fails; the others sign at t"),
        what,
    );
}

/// `kubectl patch` on the DV with `args` (the patch type and the patch).
fn dv_patch(cluster: &Cluster, args: &[&str]) {
    let mut all = vec!["patch", "distributedvalidator", "-n", NAMESPACE, DV];
    all.extend_from_slice(args);
    cluster.kubectl(&all);
}

/// Who held the DV where it was during a stage, for the duty judge.
#[derive(Clone, Copy)]
enum HeldBy {
    /// The operator's own action (a rollout, storage growth): no duty may fail for the DV.
    Operator,
    /// A fault in a member's own container held the DV at t: the DV's failures are counted
    /// apart, with their cause, not judged (Charon at exactly t, 2 s slots, two shared cores:
    /// 1 duty failed while each member signed 94, with the operator only waiting: measured).
    Fault(&'static str),
}

/// Judges one stage by what the DV signed since `before` (the stage began at `start`): every
/// member in `members` was read and signed, no two signers, and, when the operator held the
/// DV where it was, no duty failed for the DV. A member that missed its part of a duty the
/// others signed (it was restarting) is printed, not judged: the DV did not lose that duty.
fn judge_duties(
    ledger: &Arc<Mutex<DutyLedger>>,
    before: &DutyLedger,
    start: Instant,
    members: &[&str],
    held_by: HeldBy,
    what: &str,
) {
    let ledger = ledger.lock().unwrap();
    let during = ledger.since(before);
    for (member, counted) in &during {
        eprintln!(
            "  during {what}, {member}'s processes: {} signed, {} failed {:?}",
            counted.success, counted.failed, counted.failed_reasons
        );
    }
    // A ledger that read nothing would judge nothing: every member must have been read.
    for member in members {
        let counted = during.get(*member);
        assert!(
            counted.is_some_and(|d| d.success > 0.0),
            "during {what}, {member} was not read or signed nothing: {during:?}"
        );
    }
    never_two_signers(&during, what);
    let lost = dv_failures(&ledger, start);
    match held_by {
        HeldBy::Operator => assert!(
            lost.is_empty(),
            "duties the DV failed during {what} (the operator's action): {lost:?}"
        ),
        HeldBy::Fault(cause) => eprintln!(
            "  duties the DV failed during {what}, counted apart (cause: {cause}): {} {lost:?}",
            lost.len()
        ),
    }
}

/// Two members' reports of one failed duty arrive within this of each other: each member's
/// tracker reports it about an epoch after its slot, and the ledger reads every 5 s.
const SAME_DUTY_WITHIN: Duration = Duration::from_secs(15);

/// The duties the DV failed since `start`, as opposed to a member that missed its part: a
/// failure (duty/reason) that at least two members counted within [`SAME_DUTY_WITHIN`] of each
/// other. A duty the DV fails (no consensus, too few partial signatures) fails on every member
/// that was up; a member restarting alone misses a duty the others signed.
fn dv_failures(ledger: &DutyLedger, start: Instant) -> Vec<(String, BTreeSet<String>)> {
    let mut reports: Vec<(Instant, &str, &str)> = ledger
        .failures
        .iter()
        .filter(|(at, _, _)| *at >= start)
        .flat_map(|(at, member, reasons)| {
            reasons
                .keys()
                .map(move |reason| (*at, member.as_str(), reason.as_str()))
        })
        .collect();
    reports.sort();
    let mut duties: Vec<(Instant, &str, BTreeSet<String>)> = Vec::new();
    for (at, member, reason) in reports {
        let same = duties
            .iter_mut()
            .rev()
            .find(|(first, r, _)| *r == reason && at - *first <= SAME_DUTY_WITHIN);
        match same {
            Some((_, _, members)) => {
                members.insert(member.to_owned());
            }
            None => duties.push((at, reason, BTreeSet::from([member.to_owned()]))),
        }
    }
    duties
        .into_iter()
        .filter(|(_, _, members)| members.len() >= 2)
        .map(|(_, reason, members)| (reason.to_owned(), members))
        .collect()
}

/// No member saw partial signatures of different data from one share: no two signers.
fn never_two_signers(counted: &BTreeMap<String, Duties>, what: &str) {
    let inconsistent: f64 = counted.values().map(|d| d.inconsistent).sum();
    assert_eq!(
        inconsistent, 0.0,
        "inconsistent partial signatures during {what}: {counted:?}"
    );
}

/// Starts a stage: arms the pod timeline, notes the ledger, then changes the DV's spec; when
/// the stage began and the ledger as it was.
async fn change_spec(
    cluster: &Cluster,
    timeline: &Arc<Mutex<PodTimeline>>,
    ledger: &Arc<Mutex<DutyLedger>>,
    spec: serde_json::Value,
) -> (Instant, DutyLedger) {
    timeline.lock().unwrap().arm();
    let start = Instant::now();
    let before = ledger.lock().unwrap().clone();
    patch_spec(cluster, spec).await;
    (start, before)
}

async fn patch_spec(cluster: &Cluster, spec: serde_json::Value) {
    let dvs: Api<DistributedValidator> = cluster.api();
    dvs.patch(
        DV,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": spec })),
    )
    .await
    .unwrap();
}

/// Waits until some member's pod runs Charon `image`: a rollout has replaced its first pod.
async fn a_member_pod_runs(cluster: &Cluster, image: &str, what: &str) {
    wait_until(what, Duration::from_secs(300), || async {
        let listed: Vec<Pod> = cluster.dv_children().await?;
        listed
            .iter()
            .any(|p| charon_image(p) == Some(image))
            .then_some(())
    })
    .await;
}

fn charon_image(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    let charon = spec.containers.iter().find(|c| c.name == "charon")?;
    charon.image.as_deref()
}

/// Each member's pod uid: a pod replaced or restarted by deletion gets a new one.
async fn member_pod_uids(cluster: &Cluster) -> BTreeMap<String, Option<String>> {
    let pods: Vec<Pod> = cluster.dv_children().await.expect("pods listed");
    pods.into_iter()
        .map(|p| (member_of(&p).unwrap_or_default(), p.metadata.uid))
        .collect()
}

fn member_of(pod: &Pod) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(MEMBER_LABEL).cloned()
}

/// The operator replica holding the leader Lease (the chart's `<release>-leader`).
async fn leader(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let lease = leases.get_opt("dvt-operator-leader").await.ok()??;
    lease.spec?.holder_identity
}

fn operator_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "operator"))
        .map_or(0, |c| c.restart_count)
}

/// Kills the leading operator replica's container with SIGKILL on its node (no SIGTERM: the
/// lease is not released, the standby waits for it to expire). Its pod name and its container's
/// restart count before the kill.
async fn sigkill_the_leader(cluster: &Cluster, script: &Path) -> (String, i32) {
    let holder = leader(cluster)
        .await
        .expect("an operator replica holds the lease");
    let operators: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let pod = operators.get(&holder).await.unwrap();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "operator"))
        .and_then(|c| c.container_id.clone())
        .expect("the leader's operator container runs");
    let id = container
        .strip_prefix("containerd://")
        .expect("a containerd container id");
    eprintln!("  SIGKILL to the leading operator {holder} on {node}, mid-rollout");
    let restarts = operator_restarts(&pod);
    local_cluster(script, &["container", "kill", &node, id]);
    (holder, restarts)
}

/// What happened since `start`, in order: each change of the Ready members (from the pod
/// watch) and each read that found failed duties (from the ledger), so that a failed duty can
/// be put beside what was down at the time.
fn print_story(
    timeline: &Arc<Mutex<PodTimeline>>,
    ledger: &Arc<Mutex<DutyLedger>>,
    start: Instant,
    what: &str,
) {
    let mut story: Vec<(Instant, String)> = Vec::new();
    for (at, ready) in &timeline.lock().unwrap().ready_changes {
        let missing: Vec<&str> = MEMBERS
            .iter()
            .copied()
            .filter(|m| !ready.contains(*m))
            .collect();
        story.push((
            *at,
            format!("{} ready, not ready: {missing:?}", ready.len()),
        ));
    }
    for (at, member, reasons) in &ledger.lock().unwrap().failures {
        story.push((*at, format!("{member} read more failed duties {reasons:?}")));
    }
    story.retain(|(at, _)| *at >= start);
    story.sort_by_key(|(at, _)| *at);
    eprintln!("  {what}, in order:");
    for (at, line) in story {
        eprintln!("    +{:>5.1} s  {line}", (at - start).as_secs_f64());
    }
}

/// `spec.storage.validatorClientSize` grows: under the real StatefulSet controller, each
/// member's claim is expanded (the cluster's resizer records it), its StatefulSet (whose claim
/// templates cannot change) deleted with its pod orphaned, and a new one made that adopts the
/// running pod. No pod restarts, no claim is deleted, and the DV signs throughout.
async fn the_validator_client_volumes_grow(
    cluster: &Cluster,
    timeline: &Arc<Mutex<PodTimeline>>,
    ledger: &Arc<Mutex<DutyLedger>>,
) {
    eprintln!("stage: the validator-client volumes grow {VC_SIZE} -> {VC_SIZE_GROWN}");
    dv_available(cluster, "Available before the volumes grow").await;
    let pods_before = member_pod_uids(cluster).await;
    let sets_before: BTreeMap<String, Option<String>> = cluster
        .dv_children::<StatefulSet>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), s.metadata.uid))
        .collect();
    let claims: Api<PersistentVolumeClaim> = cluster.api();
    let claims_before = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    let (start, before) = change_spec(
        cluster,
        timeline,
        ledger,
        serde_json::json!({"storage": {"validatorClientSize": VC_SIZE_GROWN}}),
    )
    .await;
    wait_until(
        "every member's claim grown and its StatefulSet made anew",
        Duration::from_secs(300),
        || async {
            for member in MEMBERS {
                let set = format!("{DV}-{member}");
                let claim = claims
                    .get_opt(&format!("validator-client-data-{set}-0"))
                    .await
                    .ok()??;
                let capacity = claim.status?.capacity?.get("storage")?.0.clone();
                (capacity == VC_SIZE_GROWN).then_some(())?;
                let now: StatefulSet = cluster.api().get_opt(&set).await.ok()??;
                (now.metadata.uid != sets_before[&set]).then_some(())?;
                let template = now
                    .spec?
                    .volume_claim_templates?
                    .into_iter()
                    .find(|t| t.metadata.name.as_deref() == Some("validator-client-data"))?;
                let asked = template
                    .spec?
                    .resources?
                    .requests?
                    .get("storage")?
                    .0
                    .clone();
                (asked == VC_SIZE_GROWN).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    dv_available(cluster, "Available with the grown volumes").await;
    let pods_after = member_pod_uids(cluster).await;
    assert_eq!(
        pods_after, pods_before,
        "the members' pods kept running, adopted by the new StatefulSets"
    );
    let claims_after = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(claims_after, claims_before, "no claim deleted or added");
    all_members_signing(cluster, "after the volumes grew").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    {
        let t = timeline.lock().unwrap();
        t.never_two_pods_per_member("storage growth");
        assert_eq!(
            t.min_ready_members,
            Some(MEMBERS.len()),
            "a member went down while its volume grew"
        );
    }
    print_story(timeline, ledger, start, "the storage growth");
    judge_duties(
        ledger,
        &before,
        start,
        &MEMBERS,
        HeldBy::Operator,
        "the storage growth",
    );
}

#[test]
fn a_duty_failed_by_two_members_is_the_dvs_and_one_members_miss_is_not() {
    let start = Instant::now();
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    let reason = |r: &str| BTreeMap::from([(r.to_owned(), 1.0)]);
    let ledger = DutyLedger {
        by_process: BTreeMap::new(),
        failures: vec![
            // alpha alone, restarting: the others signed that duty.
            (
                at(10),
                "alpha".into(),
                reason("sync_contribution/no_consensus"),
            ),
            // One duty failed on the three members up, read a few seconds apart.
            (at(100), "bravo".into(), reason("attester/no_consensus")),
            (at(104), "charlie".into(), reason("attester/no_consensus")),
            (at(109), "delta".into(), reason("attester/no_consensus")),
            // The same reason a minute later, on two members: another duty.
            (at(170), "bravo".into(), reason("attester/no_consensus")),
            (at(171), "delta".into(), reason("attester/no_consensus")),
        ],
    };
    let lost = dv_failures(&ledger, start);
    assert_eq!(
        lost,
        vec![
            (
                "attester/no_consensus".to_owned(),
                BTreeSet::from(["bravo".into(), "charlie".into(), "delta".into()])
            ),
            (
                "attester/no_consensus".to_owned(),
                BTreeSet::from(["bravo".into(), "delta".into()])
            ),
        ]
    );
    assert!(dv_failures(&ledger, at(200)).is_empty(), "only since start");
}
