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

/// A timestamp from RFC 3339 text.
pub fn time(text: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(text.parse().expect("an RFC 3339 time"))
}
