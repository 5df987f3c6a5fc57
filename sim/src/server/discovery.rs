//! Discovery and OpenAPI: the API groups and versions served, and each group's OpenAPI v3
//! document (what kubectl and kube-rs read before they write).

use super::*;

pub(super) fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

/// OpenAPI v3 for one group/version: the CRD schemas, which `kubectl explain` reads, and a PATCH
/// operation per kind declaring the `fieldValidation` parameter, which tells kubectl to leave
/// validation to the server instead of downloading every built-in schema.
pub(super) fn openapi_v3(store: &Store, group: &str, version: &str) -> Value {
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for rt in store.registry().in_group_version(group, version) {
        let gvk = json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
        let prefix = if rt.group.is_empty() {
            format!("/api/{}", rt.version)
        } else {
            format!("/apis/{}/{}", rt.group, rt.version)
        };
        let scope = if rt.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", rt.plural),
            json!({"patch": {
                "operationId": format!("patch{}", rt.kind),
                "x-kubernetes-group-version-kind": gvk[0],
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
        let Some(schema) = &rt.schema else { continue };
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        let name = format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind);
        let mut schema = schema.openapi.clone();
        schema["x-kubernetes-group-version-kind"] = gvk;
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            properties.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            properties.entry("metadata").or_insert_with(
                || json!({"type": "object", "description": "Standard object's metadata."}),
            );
        }
        schemas.insert(name, schema);
    }
    json!({"openapi": "3.0.0", "info": {"title": "dvt-sim", "version": "v1"}, "paths": paths, "components": {"schemas": schemas}})
}
