//! Tests of the resource's schema: CEL rules, defaults and the seed shapes.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

use super::*;

fn schema() -> Value {
    let crd = DistributedValidator::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("derived CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Walks every property of a schema, calling `visit(path, property_schema)`.
fn walk_properties(path: &str, schema: &Value, visit: &mut dyn FnMut(&str, &Value)) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            visit(&child, property);
            walk_properties(&child, property, visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk_properties(&format!("{path}[]"), items, visit);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk_properties(&format!("{path}{{}}"), additional, visit);
    }
}

#[test]
fn every_crd_field_has_a_description() {
    let mut missing = Vec::new();
    let mut fields = 0;
    walk_properties("", &schema(), &mut |path, property| {
        fields += 1;
        let described = property
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty());
        if !described {
            missing.push(path.to_owned());
        }
    });
    assert!(fields > 100, "walked only {fields} fields");
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "fields without a description"
    );
}

#[test]
fn crd_identity_and_printer_columns() {
    let crd = DistributedValidator::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("distributedvalidators.dvt.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["dv".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["dvt".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Ready", ".status.ready"),
            ("Threshold", ".status.threshold"),
            ("Tolerance", ".status.faultTolerance"),
            ("Phase", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn schema_expresses_enums_and_bounds() {
    let schema = schema();
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        spec["network"]["enum"],
        json!(["mainnet", "hoodi", "sepolia", "holesky"])
    );
    assert_eq!(spec["members"]["minItems"], json!(3));
    assert_eq!(spec["members"]["maxItems"], json!(32));
    let member = &spec["members"]["items"]["properties"];
    // Optional enums are nullable, and kube lists null among their values.
    assert_eq!(
        member["validatorClient"]["enum"],
        json!(["lighthouse", "teku", "prysm", "nimbus", "lodestar", null])
    );
    assert_eq!(member["index"]["maximum"], json!(31.0));
    assert_eq!(
        member["name"]["pattern"],
        json!("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    );
    assert_eq!(
        member["operator"]["properties"]["class"]["enum"],
        json!(["permissioned", "permissionless"])
    );
}

fn four_as_json() -> Value {
    serde_json::to_value(DistributedValidator::fixture_four("dv")).expect("fixture serializes")
}

fn cel_messages(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn cel_accepts_the_seed_shapes() {
    assert_eq!(cel_messages(&four_as_json(), None), Vec::<String>::new());
    let seven = serde_json::to_value(DistributedValidator::fixture_seven("dv")).unwrap();
    assert_eq!(cel_messages(&seven, None), Vec::<String>::new());
}

#[test]
fn cel_rejects_duplicate_member_names() {
    let mut dv = four_as_json();
    dv["spec"]["members"][1]["name"] = json!("m0");
    assert_eq!(cel_messages(&dv, None), vec!["member names must be unique"]);
}

#[test]
fn cel_rejects_duplicate_and_out_of_range_share_indexes() {
    let mut dv = four_as_json();
    dv["spec"]["members"][2]["index"] = json!(1);
    assert_eq!(
        cel_messages(&dv, None),
        vec!["member share indexes must be unique"]
    );
    let mut dv = four_as_json();
    dv["spec"]["members"][3]["index"] = json!(4);
    assert_eq!(
        cel_messages(&dv, None),
        vec!["every share index must be below the number of members"]
    );
}

#[test]
fn cel_rejects_shared_key_share_secrets() {
    let mut dv = four_as_json();
    dv["spec"]["members"][1]["keyShareSecret"]["name"] = json!("dv-m0-keystore");
    assert_eq!(
        cel_messages(&dv, None),
        vec!["each member needs its own key-share Secret"]
    );
}

#[test]
fn cel_bounds_the_threshold() {
    for (threshold, ok) in [(2, false), (3, true), (4, true), (5, false)] {
        let mut dv = four_as_json();
        dv["spec"]["threshold"] = json!(threshold);
        let messages = cel_messages(&dv, None);
        assert_eq!(
            messages.is_empty(),
            ok,
            "threshold {threshold}: {messages:?}"
        );
        if !ok {
            assert_eq!(
                messages,
                vec!["threshold must be more than half of the members and at most all of them"]
            );
        }
    }
}

#[test]
fn cel_keeps_share_indexes_of_existing_members() {
    let old = four_as_json();
    let mut swapped = old.clone();
    swapped["spec"]["members"][0]["index"] = json!(1);
    swapped["spec"]["members"][1]["index"] = json!(0);
    assert_eq!(
        cel_messages(&swapped, Some(&old)),
        vec![
            "the share index of an existing member cannot change; remove the member and add a new one"
        ]
    );
    // Replacing a member under a new name may reuse the freed index.
    let mut replaced = old.clone();
    replaced["spec"]["members"][3]["name"] = json!("m3-new");
    assert_eq!(cel_messages(&replaced, Some(&old)), Vec::<String>::new());
}

#[test]
fn cel_requires_exactly_one_lock_source() {
    let mut dv = four_as_json();
    dv["spec"]["clusterLock"]["secret"] = json!({"name": "lock", "key": "cluster-lock.json"});
    assert_eq!(
        cel_messages(&dv, None),
        vec!["set exactly one of configMap or secret"]
    );
    let mut dv = four_as_json();
    dv["spec"]["clusterLock"] = json!({});
    assert_eq!(
        cel_messages(&dv, None),
        vec!["set exactly one of configMap or secret"]
    );
}

#[test]
fn defaults_fill_a_minimal_spec() {
    let dv: DistributedValidator = serde_json::from_value(json!({
        "apiVersion": "dvt.io/v1alpha1",
        "kind": "DistributedValidator",
        "metadata": {"name": "x"},
        "spec": {
            "network": "mainnet",
            "clusterLock": {"configMap": {"name": "lock"}},
            "beaconNodes": {"endpoints": ["http://bn:5052"]},
            "members": []
        }
    }))
    .unwrap();
    assert_eq!(
        dv.spec.cluster_lock.config_map.unwrap().key,
        DEFAULT_LOCK_KEY
    );
    assert_eq!(dv.spec.placement.zone_label, DEFAULT_ZONE_LABEL);
    assert_eq!(dv.spec.placement.policy, Policy::Preferred);
    assert_eq!(dv.spec.client_diversity.policy, Policy::Required);
    assert_eq!(
        dv.spec.client_diversity.clients,
        ValidatorClient::ALL.to_vec()
    );
    assert_eq!(dv.spec.rollout.max_unavailable, 1);
    assert!(dv.spec.storage.retain_on_delete);
}

#[test]
fn cel_requires_secrets_of_local_members_only_and_one_local_member() {
    let mut dv = four_as_json();
    dv["spec"]["members"][3]["remote"] = json!(true);
    assert_eq!(
        cel_messages(&dv, None),
        vec![
            "a member run here names its keyShareSecret and enrSecret; a remote member names neither"
        ]
    );
    let member = dv["spec"]["members"][3].as_object_mut().unwrap();
    member.remove("keyShareSecret");
    member.remove("enrSecret");
    assert_eq!(cel_messages(&dv, None), Vec::<String>::new());
    for i in 0..3 {
        let member = dv["spec"]["members"][i].as_object_mut().unwrap();
        member.insert("remote".into(), json!(true));
        member.remove("keyShareSecret");
        member.remove("enrSecret");
    }
    assert_eq!(
        cel_messages(&dv, None),
        vec!["at least one member must run in this cluster (remote: false)"]
    );
}
