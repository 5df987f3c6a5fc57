//! What the benchmark applies: the example manifest copied into many namespaces, applied with
//! bounded concurrency, on a simulated cluster started for the run.

use super::*;

/// The user agent of the client that plays the user applying DVs (and of the ceiling loop).
pub(super) const USER: &str = "dvt-bench";

pub(super) fn example(members: usize) -> Result<&'static str, String> {
    match members {
        4 => Ok(EXAMPLE_STADER_4),
        7 => Ok(EXAMPLE_STADER_7),
        other => Err(format!(
            "--members {other}: the benchmark copies examples/stader-4.yaml or stader-7.yaml; use 4 or 7"
        )),
    }
}

/// An object of the example manifest, as JSON for server-side apply.
pub(super) struct Document {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) body: serde_json::Value,
}

pub(super) fn documents(manifest: &str) -> Result<Vec<Document>, String> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(manifest)
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            let body = serde_json::to_value(&value).map_err(|e| e.to_string())?;
            Ok(Document {
                kind: body["kind"].as_str().unwrap_or_default().to_owned(),
                name: body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body,
            })
        })
        .collect()
}

/// Server-side applies `body` (a `kind` this benchmark knows) into `namespace`.
pub(super) async fn apply(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let params = PatchParams::apply(USER).force();
    let patch = Patch::Apply(body);
    let client = client.clone();
    let result = match kind {
        "ConfigMap" => Api::<ConfigMap>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "Secret" => Api::<Secret>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "DistributedValidator" => Api::<DistributedValidator>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "Service" => Api::<Service>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "PodDisruptionBudget" => Api::<PodDisruptionBudget>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "NetworkPolicy" => Api::<NetworkPolicy>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        other => return Err(format!("the benchmark does not apply {other}")),
    };
    result.map_err(|e| format!("applying {kind} {namespace}/{name}: {e}"))
}

/// Applies every job, `concurrency` at a time.
pub(super) async fn apply_all(
    client: &kube::Client,
    jobs: Vec<Job>,
    concurrency: u16,
) -> Result<(), String> {
    futures::stream::iter(jobs)
        .map(|(namespace, kind, name, body)| async move {
            let applied = apply(client, &namespace, &kind, &name, &body).await;
            APPLIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            applied
        })
        .buffer_unordered(usize::from(concurrency.max(1)))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

pub(super) async fn start_world(options: &Options) -> Result<World, String> {
    let world = World::start(WorldOptions {
        nodes: options.nodes,
        zones: ZONES,
        fast: true,
        operator: false,
        ..WorldOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(world)
}

pub(super) async fn create_namespaces(
    world: &World,
    prefix: &str,
    options: &Options,
) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(world.client.clone());
    futures::stream::iter(0..options.dvs)
        .map(|i| {
            let api = api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    serde_json::json!({"metadata": {"name": format!("{prefix}-{i}")}}),
                )
                .map_err(|e| e.to_string())?;
                api.create(&Default::default(), &ns)
                    .await
                    .map(drop)
                    .map_err(|e| format!("creating namespace {prefix}-{i}: {e}"))
            }
        })
        .buffer_unordered(usize::from(options.concurrency.max(1)))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}
