//! Label and field selectors, as `kubectl get -l` and `--field-selector` send them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::errors::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector; an empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses (`a in (x,y),b`).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(text: &str) -> Result<BTreeSet<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: expected (values) in {text:?}"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl Selector {
    /// Parses a label selector (`a=b,c!=d,e in (f,g),!h,i`).
    pub fn parse_labels(text: &str) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, set)) = part.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_owned(), parse_set(set)?)
            } else if let Some((key, set)) = part.split_once(" in ") {
                Requirement::In(key.trim().to_owned(), parse_set(set)?)
            } else {
                Requirement::Exists(part.to_owned())
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    /// Parses a field selector (`metadata.name=x,spec.nodeName!=y`); only equality is defined.
    pub fn parse_fields(text: &str) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            if let Some((key, value)) = part.split_once("!=") {
                requirements.push(Requirement::NotEquals(
                    key.trim().to_owned(),
                    value.trim().to_owned(),
                ));
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                requirements.push(Requirement::Equals(
                    key.trim().to_owned(),
                    value.trim().to_owned(),
                ));
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {part:?}"
                )));
            }
        }
        Ok(Selector { requirements })
    }

    fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            // A missing field or label counts as "not equal", as in Kubernetes.
            Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Requirement::In(k, set) => lookup(k).is_some_and(|v| set.contains(&v)),
            Requirement::NotIn(k, set) => lookup(k).is_none_or(|v| !set.contains(&v)),
            Requirement::Exists(k) => lookup(k).is_some(),
            Requirement::DoesNotExist(k) => lookup(k).is_none(),
        })
    }

    /// Whether an object's labels satisfy this label selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        self.matches_label_map(object.pointer("/metadata/labels"))
    }

    /// Whether a `metadata.labels` map (or none) satisfies this selector.
    pub fn matches_label_map(&self, labels: Option<&Value>) -> bool {
        self.matches_with(|key| {
            labels
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    /// Whether an object's fields satisfy this field selector (any dotted path of scalars).
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches_with(|path| {
            let mut current = object;
            for segment in path.split('.') {
                current = current.get(segment)?;
            }
            match current {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// Whether a `LabelSelector` object (`matchLabels` / `matchExpressions`) selects `labels`.
pub fn label_selector_matches(selector: &Value, object: &Value) -> bool {
    let labels = object.pointer("/metadata/labels");
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let expressions_ok = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: BTreeSet<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|v| values.contains(v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        });
    match_labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selectors() {
        let pod = json!({"metadata": {"labels": {"app": "dv", "member": "a"}}});
        for (selector, expected) in [
            ("", true),
            ("app=dv", true),
            ("app==dv,member=a", true),
            ("app=other", false),
            ("app!=other", true),
            ("missing!=x", true),
            ("member in (a,b)", true),
            ("member notin (a,b)", false),
            ("app,member", true),
            ("!missing", true),
            ("!app", false),
        ] {
            let parsed = Selector::parse_labels(selector).unwrap();
            assert_eq!(parsed.matches_labels(&pod), expected, "{selector}");
        }
    }

    #[test]
    fn field_selectors() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "node-1"}});
        assert!(
            Selector::parse_fields("metadata.name=p")
                .unwrap()
                .matches_fields(&pod)
        );
        assert!(
            Selector::parse_fields("spec.nodeName=node-1,metadata.namespace=n")
                .unwrap()
                .matches_fields(&pod)
        );
        assert!(
            !Selector::parse_fields("metadata.name!=p")
                .unwrap()
                .matches_fields(&pod)
        );
        assert!(Selector::parse_fields("bad").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let pod = json!({"metadata": {"labels": {"app": "dv"}}});
        assert!(label_selector_matches(
            &json!({"matchLabels": {"app": "dv"}}),
            &pod
        ));
        assert!(!label_selector_matches(
            &json!({"matchLabels": {"app": "x"}}),
            &pod
        ));
        assert!(label_selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["dv"]}]}),
            &pod
        ));
    }
}
