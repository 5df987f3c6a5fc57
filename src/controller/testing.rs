//! Test support: the examples as the controller sees them.

use super::model::Facts;
use super::validate::manifest_facts;
use crate::api::DistributedValidator;

/// The DV of `examples/<file>` (in namespace `default`, with a fixed uid) and the facts its
/// ConfigMap and Secrets give, on a cluster of 4 zones with 2 nodes each.
pub fn example(file: &str) -> (DistributedValidator, Facts) {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let zones = ["zone-a", "zone-b", "zone-c", "zone-d"]
        .into_iter()
        .map(|z| (z.to_owned(), 2))
        .collect();
    let (mut dv, facts) = manifest_facts(&text, zones).expect("the example reads");
    dv.metadata.namespace = Some("default".into());
    dv.metadata.uid = Some("00000000-0000-0000-0000-0000000000dv".into());
    (dv, facts)
}

/// The cluster lock document of `examples/<file>` (its ConfigMap's `cluster-lock.json`), as JSON
/// for tests that edit it.
pub fn example_lock(file: &str) -> serde_json::Value {
    use serde::Deserialize;
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("YAML"))
        .find(|value| value["kind"].as_str() == Some("ConfigMap"))
        .and_then(|value| {
            value["data"]["cluster-lock.json"]
                .as_str()
                .map(str::to_owned)
        })
        .map(|text| serde_json::from_str(&text).expect("the lock is JSON"))
        .expect("the example has a lock ConfigMap")
}

/// `lock` as the controller would have read it.
pub fn read_lock(
    lock: &serde_json::Value,
) -> Result<std::sync::Arc<super::model::ReadLock>, String> {
    Ok(std::sync::Arc::new(super::model::ReadLock::from_text(
        &lock.to_string(),
    )))
}

/// A timestamp from RFC 3339 text.
pub fn time(text: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(text.parse().expect("an RFC 3339 time"))
}
