//! Helpers shared by the end-to-end tests on the simulated cluster.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dvt_operator::api::{DistributedValidator, Phase};
use dvt_operator::controller::names::FIELD_MANAGER;
pub use dvt_operator::demo::{World, WorldOptions};
use dvt_sim::timeline::Change;
use kube::api::Api;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const WAIT: Duration = Duration::from_secs(60);

/// A world whose operator runs under the chart's RBAC, and which fails the test at its end if
/// any request of the operator was refused (401/403): on a real cluster that request would not
/// have happened, whatever the test saw.
pub struct TestWorld(World);

impl std::ops::Deref for TestWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

impl std::ops::DerefMut for TestWorld {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}

impl Drop for TestWorld {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let refused = dvt_operator::chaos::operator_refusals(&self.0);
        assert!(
            refused.is_empty(),
            "the chart's RBAC refused the operator:\n{}",
            refused.join("\n")
        );
    }
}

pub async fn world() -> TestWorld {
    world_with(WorldOptions::default()).await
}

pub async fn world_with(options: WorldOptions) -> TestWorld {
    // Logs only when asked (`RUST_LOG=dvt_operator=debug cargo test ...`); shown for failing tests.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    TestWorld(World::start(options).await.expect("the world starts"))
}

pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn dv_where(
    world: &World,
    name: &str,
    what: &str,
    check: impl Fn(&DistributedValidator) -> bool,
) -> DistributedValidator {
    let api: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dv = api.get(name).await.ok();
        if let Some(dv) = dv.as_ref().filter(|dv| check(dv)) {
            return dv.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            // What the user would see, to tell a slow cluster from a stuck operator.
            let status = dv
                .and_then(|dv| dv.status)
                .map(|s| serde_yaml::to_string(&s).unwrap_or_default());
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::default_namespaced(world.client.clone());
            let pods: Vec<String> = pods
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|p| {
                            format!(
                                "{} {:?}",
                                p.metadata.name.clone().unwrap_or_default(),
                                p.status.as_ref().and_then(|s| s.phase.clone())
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "timed out waiting for {what}; status:\n{}\npods: {pods:?}",
                status.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn available(dv: &DistributedValidator) -> bool {
    dv.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Available))
}

pub fn condition(dv: &DistributedValidator, type_: &str) -> Option<(String, String, String)> {
    dv.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// `kubectl get dv` against the world, as a user would run it.
pub fn kubectl(world: &World, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "dvt-e2e-{}-{}",
        std::process::id(),
        world.sim.address().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    world.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([Path::new(REPO).join(".tools/bin")])
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl is installed (scripts/test installs it)");
    let output = Command::new(kubectl)
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn writes_by_operator(world: &World, since: usize) -> Vec<String> {
    world
        .sim
        .store()
        .timeline_since(since)
        .into_iter()
        .filter_map(|e| match e.change {
            Change::Write {
                actor,
                verb,
                resource,
                name,
                ..
            } if actor == FIELD_MANAGER => Some(format!("{verb} {resource}/{name}")),
            _ => None,
        })
        .collect()
}

/// The example without the documents `drop` matches, written to a temporary file.
pub fn example_without(file: &str, drop: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(Path::new(REPO).join("examples").join(file)).unwrap();
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains(drop))
        .collect();
    write_temporary(file, &kept.join("\n---\n"))
}

/// The example with `extra` YAML lines added at the top of its DV's spec, written to a
/// temporary file.
pub fn example_with(file: &str, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(Path::new(REPO).join("examples").join(file)).unwrap();
    let edited = text.replace("\nspec:\n", &format!("\nspec:\n{extra}"));
    write_temporary(file, &edited)
}

/// Writes `contents` to a file named `file` in a directory of its own. Tests run in parallel: a
/// shared path would let one test read the file while another truncates it to rewrite it (an
/// empty manifest applies nothing, and the test then waits for a DV that never comes).
pub fn write_temporary(file: &str, contents: &str) -> std::path::PathBuf {
    static WRITTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("dvt-e2e-manifest-{}-{serial}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Quick rollout settings so that a test sees restarts within seconds.
pub const FAST_ROLLOUT: &str = "  rollout: {minReadySeconds: 1, restartDelaySeconds: 1, restartBackoffSeconds: 1, maxRestartBackoffSeconds: 4}\n";

/// Applies `examples/stader-4.yaml` as it is and waits until its DV is Available.
pub async fn stader_4_available(world: &World) -> DistributedValidator {
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(world, "stader-4", "stader-4 Available", available).await
}

/// Applies an example with [`FAST_ROLLOUT`] and waits until its DV is Available.
pub async fn converged(world: &World, file: &str, name: &str) -> DistributedValidator {
    world
        .apply_file(&example_with(file, FAST_ROLLOUT), "default")
        .await
        .unwrap();
    dv_where(world, name, &format!("{name} Available"), available).await
}

/// Available, and no member runs an older revision: a rollout (or a restart asked) is done.
pub fn rolled_out(dv: &DistributedValidator) -> bool {
    available(dv)
        && dv
            .status
            .as_ref()
            .is_some_and(|s| s.members.iter().all(|m| !m.outdated))
}

/// The names of `resource` objects (`pods`, `statefulsets.apps`) the operator wrote from
/// timeline entry `since` on, in order (for pods: deletes and evictions).
pub fn operator_writes(world: &World, since: usize, resource: &str) -> Vec<String> {
    let prefix = format!("{resource}/");
    writes_by_operator(world, since)
        .into_iter()
        .filter_map(|write| {
            let (_, object) = write.split_once(' ')?;
            object.strip_prefix(&prefix).map(str::to_owned)
        })
        .collect()
}
