//! Structural-schema handling for custom resources: pruning, defaulting, OpenAPI validation and
//! CEL `x-kubernetes-validations`, in the order an API server applies them.

use std::sync::Arc;

use kube::core::cel::{CompiledSchema, Validator, apply_defaults, compile_schema};
use serde_json::{Map, Value};

/// A custom resource version's structural schema (`openAPIV3Schema`), with its CEL rules
/// compiled once when the CRD is registered: compiling them on every write, as the uncompiled
/// validator does, was a tenth of the simulator's time at 400 DVs (every status write of every
/// DV), where kube-apiserver compiles them once per CRD too.
#[derive(Clone)]
pub struct Schema {
    pub openapi: Value,
    rules: Arc<CompiledSchema>,
    /// The top-level fields whose subtrees hold every CEL rule; `None` when the root has rules
    /// of its own (or there are none to locate).
    rules_under: Option<Vec<String>>,
}

impl Schema {
    pub fn new(openapi: Value) -> Schema {
        let rules = Arc::new(compile_schema(&openapi));
        let rules_under = rules_under(&openapi);
        Schema {
            openapi,
            rules,
            rules_under,
        }
    }
}

/// Whether a schema or any schema below it has CEL rules.
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.iter().any(|(key, value)| {
            key == "x-kubernetes-validations" && value.as_array().is_some_and(|r| !r.is_empty())
                || has_rules(value)
        }),
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

fn rules_under(schema: &Value) -> Option<Vec<String>> {
    let root_rules = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if root_rules {
        return None;
    }
    let properties = schema.get("properties")?.as_object()?;
    let elsewhere = schema
        .as_object()?
        .iter()
        .any(|(key, value)| key != "properties" && has_rules(value));
    if elsewhere {
        return None;
    }
    Some(
        properties
            .iter()
            .filter(|(_, child)| has_rules(child))
            .map(|(name, _)| name.clone())
            .collect(),
    )
}

/// The compiled rules follow from the schema.
impl PartialEq for Schema {
    fn eq(&self, other: &Schema) -> bool {
        self.openapi == other.openapi
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("openapi", &self.openapi)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// A validator with the Kubernetes CEL functions registered, one per thread (registering
    /// them costs more than evaluating a DV's rules).
    static VALIDATOR: Validator = Validator::new();
}

/// One schema violation: a field path (`spec.members[2].index`) and what is wrong with it.
pub type Violation = (String, String);

/// Prunes, defaults and validates `object` (the whole custom resource) against `schema`, with
/// `old` for transition rules. Returns the object as it would be stored.
pub fn admit(schema: &Schema, object: Value, old: Option<&Value>) -> Result<Value, Vec<Violation>> {
    let (rules, rules_under) = (&schema.rules, &schema.rules_under);
    let schema = &schema.openapi;
    let mut pruned = object;
    prune(schema, &mut pruned, true);
    let defaulted = apply_defaults(schema, &pruned);
    let mut violations = Vec::new();
    validate(schema, &defaulted, "", &mut violations, true);
    // Validation ratcheting (CRDValidationRatcheting, GA in Kubernetes 1.33): on an update,
    // errors raised on fields left unchanged are ignored. When every subtree holding rules is
    // unchanged (a DV's status write leaves its spec as it was), no rule's error could count,
    // so none is evaluated.
    let ratcheted = old.is_some_and(|old| {
        rules_under.as_ref().is_some_and(|fields| {
            fields
                .iter()
                .all(|field| old.get(field) == defaulted.get(field))
        })
    });
    if violations.is_empty()
        && !ratcheted
        && let Err(errors) =
            VALIDATOR.with(|validator| validator.validate_compiled(rules, &defaulted, old))
    {
        for error in errors.into_vec() {
            violations.push((
                error.field_path.trim_start_matches('.').to_owned(),
                error.message,
            ));
        }
    }
    if violations.is_empty() {
        Ok(defaulted)
    } else {
        Err(violations)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Drops fields the schema does not declare, as a structural schema requires. `metadata`,
/// `apiVersion` and `kind` at the root are kept.
fn prune(schema: &Value, value: &mut Value, root: bool) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep_root = |k: &str| root && matches!(k, "apiVersion" | "kind" | "metadata");
            if let Some(properties) = properties {
                map.retain(|k, _| properties.contains_key(k) || keep_root(k));
                for (k, v) in map.iter_mut() {
                    if let Some(child) = properties.get(k) {
                        prune(child, v, false);
                    }
                }
            } else if let Some(additional) = additional {
                for v in map.values_mut() {
                    prune(additional, v, false);
                }
            } else if schema.get("type").and_then(Value::as_str) == Some("object") {
                map.retain(|k, _| keep_root(k));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

thread_local! {
    /// Schema patterns, compiled once per thread: compiling them on every write was a quarter
    /// of a DV status write's time in the simulator (a DV has dozens of patterned strings), and
    /// kube-apiserver compiles a CRD's patterns once too.
    static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, Result<regex::Regex, ()>>> =
        std::cell::RefCell::default();
}

fn compiled_pattern(pattern: &str) -> Result<regex::Regex, ()> {
    PATTERNS.with(|patterns| {
        if let Some(compiled) = patterns.borrow().get(pattern) {
            return compiled.clone();
        }
        let compiled = regex::Regex::new(pattern).map_err(drop);
        patterns
            .borrow_mut()
            .insert(pattern.to_owned(), compiled.clone());
        compiled
    })
}

fn validate(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>, root: bool) {
    let shown = if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !root {
            out.push((
                shown,
                "Invalid value: \"null\": field must not be null".to_owned(),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == expected
            || (expected == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            let message = format!(
                "Invalid value: \"{actual}\": {shown} in body must be of type {expected}: \"{actual}\""
            );
            out.push((shown, message));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed
            .iter()
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect();
        out.push((
            shown.clone(),
            format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::Number(n) => {
            let number = n.as_f64().unwrap_or_default();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && number < min
            {
                out.push((shown.clone(), format!("Invalid value: {n}: {shown} in body should be greater than or equal to {min}")));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && number > max
            {
                out.push((
                    shown.clone(),
                    format!(
                        "Invalid value: {n}: {shown} in body should be less than or equal to {max}"
                    ),
                ));
            }
        }
        Value::String(s) => {
            let length = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                out.push((shown.clone(), format!("Invalid value: {value}: {shown} in body should be at least {min} chars long")));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                out.push((
                    shown.clone(),
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match compiled_pattern(pattern) {
                    Ok(re) if !re.is_match(s) => out.push((
                        shown.clone(),
                        format!("Invalid value: {value}: {shown} in body should match '{pattern}'"),
                    )),
                    Ok(_) => {}
                    Err(_) => out.push((
                        shown.clone(),
                        format!("the schema's pattern {pattern:?} does not compile"),
                    )),
                }
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && count < min
            {
                out.push((
                    shown.clone(),
                    format!(
                        "Invalid value: {count}: {shown} in body should have at least {min} items"
                    ),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && count > max
            {
                out.push((
                    shown.clone(),
                    format!("Too many: {count}: must have at most {max} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), out, false);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, out),
        _ => {}
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Violation>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push((join(path, key), "Required value".to_owned()));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in map {
        let child_path = join(path, key);
        if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
            validate(child_schema, child, &child_path, out, false);
        } else if let Some(additional) = additional {
            validate(additional, child, &child_path, out, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 5},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}}
                    },
                    "x-kubernetes-validations": [{"rule": "self.size != 3", "message": "three is unlucky"}]
                }
            }
        }))
    }

    #[test]
    fn an_update_leaving_the_ruled_fields_unchanged_is_ratcheted() {
        // Stored before the rule existed: size 3 breaks it.
        let old = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"size": 3, "mode": "a"}});
        let relabelled =
            json!({"metadata": {"name": "x", "labels": {"a": "2"}}, "spec": {"size": 3}});
        assert!(
            admit(&schema(), relabelled.clone(), Some(&old)).is_ok(),
            "errors on unchanged fields are ignored on update"
        );
        let created =
            admit(&schema(), relabelled.clone(), None).expect_err("a create is validated");
        assert_eq!(created[0].1, "three is unlucky");
        let respecified = json!({"metadata": {"name": "x"}, "spec": {"size": 3, "name": "b"}});
        let errors = admit(&schema(), respecified.clone(), Some(&old))
            .expect_err("a changed spec is validated");
        assert_eq!(errors[0].1, "three is unlucky");
    }

    #[test]
    fn rules_at_the_root_are_never_skipped() {
        let root = json!({"type": "object", "x-kubernetes-validations": [{"rule": "true"}],
            "properties": {"spec": {"type": "object"}}});
        assert_eq!(rules_under(&root), None);
        assert_eq!(
            rules_under(&schema().openapi),
            Some(vec!["spec".to_owned()])
        );
    }

    #[test]
    fn defaults_and_prunes() {
        let stored = admit(
            &schema(),
            json!({"metadata": {"name": "x"}, "spec": {"size": 1, "extra": true}}),
            None,
        )
        .unwrap();
        assert_eq!(
            stored,
            json!({"metadata": {"name": "x"}, "spec": {"size": 1, "mode": "a"}})
        );
    }

    #[test]
    fn reports_each_violation_with_its_path() {
        let bad =
            json!({"spec": {"size": 9, "mode": "c", "name": "ABC", "items": ["a", "b", "c"]}});
        let violations = admit(&schema(), bad.clone(), None).unwrap_err();
        let paths: Vec<&str> = violations.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec!["spec.items", "spec.mode", "spec.name", "spec.size"],
            "{violations:?}"
        );
        let missing = admit(&schema(), json!({"spec": {}}), None).unwrap_err();
        assert_eq!(
            missing,
            vec![("spec.size".to_owned(), "Required value".to_owned())]
        );
    }

    #[test]
    fn a_pattern_compiled_once_still_judges_every_value() {
        let named = |name: &str| json!({"spec": {"size": 1, "name": name}});
        for _ in 0..2 {
            assert!(admit(&schema(), named("abc"), None).is_ok());
            let refused = admit(&schema(), named("ABC"), None).unwrap_err();
            assert_eq!(
                refused,
                vec![(
                    "spec.name".to_owned(),
                    "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'".to_owned()
                )]
            );
        }
        let broken = Schema::new(json!({"type": "object", "properties": {
            "spec": {"type": "string", "pattern": "(unclosed"}}}));
        for _ in 0..2 {
            let refused = admit(&broken, json!({"spec": "x"}), None).unwrap_err();
            assert!(refused[0].1.contains("does not compile"), "{refused:?}");
        }
    }

    #[test]
    fn runs_cel_rules() {
        let violations = admit(&schema(), json!({"spec": {"size": 3}}), None).unwrap_err();
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].1, "three is unlucky");
    }
}
