//! Test support: the examples as the controller sees them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{Facts, SecretFacts};
use crate::api::DistributedValidator;

/// The DV of `examples/<file>` (in namespace `default`, with a fixed uid) and the facts its
/// ConfigMap and Secrets give.
pub fn example(file: &str) -> (DistributedValidator, Facts) {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut dv = None;
    let mut facts = Facts {
        lock: Err("no lock in the example".into()),
        secrets: BTreeMap::new(),
        keystores: BTreeMap::new(),
        zones: ["zone-a", "zone-b", "zone-c", "zone-d"]
            .into_iter()
            .map(|z| (z.to_owned(), 2))
            .collect(),
    };
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).expect("examples are YAML");
        match value["kind"].as_str() {
            Some("DistributedValidator") => {
                let mut parsed: DistributedValidator =
                    serde_yaml::from_value(value).expect("the example DV parses");
                parsed.metadata.namespace = Some("default".into());
                parsed.metadata.uid = Some("00000000-0000-0000-0000-0000000000dv".into());
                dv = Some(parsed);
            }
            Some("ConfigMap") => {
                facts.lock = Ok(value["data"]["cluster-lock.json"]
                    .as_str()
                    .expect("the example lock")
                    .to_owned())
            }
            Some("Secret") => {
                let name = value["metadata"]["name"]
                    .as_str()
                    .expect("named")
                    .to_owned();
                // The keystores' public keys, read as the operator reads them.
                if let Some(data) = value["stringData"].as_mapping() {
                    let entries: Vec<(String, Vec<u8>)> = data
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str()?.to_owned(), v.as_str()?.as_bytes().to_vec()))
                        })
                        .collect();
                    if entries.iter().any(|(k, _)| k.starts_with("keystore-")) {
                        let keys = crate::keystore::public_keys(
                            entries.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                        );
                        facts.keystores.insert(name.clone(), keys);
                    }
                }
                facts.secrets.insert(
                    name,
                    SecretFacts {
                        resource_version: "1".into(),
                    },
                );
            }
            _ => {}
        }
    }
    (dv.expect("the example has a DV"), facts)
}
