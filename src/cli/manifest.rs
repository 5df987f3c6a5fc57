//! Reads multi-document YAML the way `kubectl apply -f` does and checks every
//! DistributedValidator in it, without a cluster.

use std::fmt;

use serde::Deserialize;

use crate::api::{DistributedValidator, GROUP, VERSION};
use crate::domain::spec_checks::{Problem, Report, Severity, validate_spec};

/// Why a manifest could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {source}")]
    ParseYaml {
        document: usize,
        source: serde_yaml::Error,
    },
}

/// The outcome for one DistributedValidator document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedResource {
    /// 1-based position of the document in its file.
    pub document: usize,
    /// `namespace/name` as far as the document says.
    pub name: String,
    pub report: Report,
}

impl fmt::Display for CheckedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.report.errors().count();
        let warnings = self.report.warnings().count();
        write!(
            f,
            "DistributedValidator {} (document {}): ",
            self.name, self.document
        )?;
        match (errors, warnings) {
            (0, 0) => write!(f, "valid"),
            (0, w) => write!(f, "valid with {w} warning{}", plural(w)),
            (e, w) => write!(
                f,
                "invalid: {e} error{}, {w} warning{}",
                plural(e),
                plural(w)
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Checks every DistributedValidator in a multi-document YAML text. Other kinds are skipped;
/// documents that are empty (a trailing `---`) are ignored.
pub fn check_manifests(text: &str) -> Result<Vec<CheckedResource>, ManifestError> {
    let mut checked = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document_number = i + 1;
        let value = serde_yaml::Value::deserialize(document).map_err(|source| {
            ManifestError::ParseYaml {
                document: document_number,
                source,
            }
        })?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(serde_yaml::Value::as_str) != Some("DistributedValidator") {
            continue;
        }
        checked.push(check_document(document_number, value));
    }
    Ok(checked)
}

fn check_document(document: usize, value: serde_yaml::Value) -> CheckedResource {
    let metadata = value.get("metadata");
    let field = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(serde_yaml::Value::as_str)
            .map(str::to_owned)
    };
    let name = field("name").unwrap_or_else(|| "<unnamed>".to_owned());
    let namespace = field("namespace").unwrap_or_else(|| "default".to_owned());
    let mut report = Report::default();
    let expected_api_version = format!("{GROUP}/{VERSION}");
    let api_version = value.get("apiVersion").and_then(serde_yaml::Value::as_str);
    if api_version != Some(expected_api_version.as_str()) {
        report.problems.push(Problem {
            severity: Severity::Error,
            path: "apiVersion".to_owned(),
            message: format!(
                "{} is not served; use {expected_api_version}",
                api_version.unwrap_or("<missing>")
            ),
        });
    }
    let mut unknown_fields = Vec::new();
    let mut record_unknown = |path: serde_ignored::Path<'_>| unknown_fields.push(path.to_string());
    let parsed: Result<DistributedValidator, _> = serde_path_to_error::deserialize(
        serde_ignored::Deserializer::new(value, &mut record_unknown),
    );
    // kubectl's default strict field validation rejects unknown fields, so we do too.
    // The derived type consumes apiVersion and kind without storing them; they were checked above.
    unknown_fields.retain(|path| path != "apiVersion" && path != "kind");
    for path in unknown_fields {
        report.problems.push(Problem {
            severity: Severity::Error,
            path: path.clone(),
            message: "unknown field".to_owned(),
        });
    }
    match parsed {
        Ok(dv) => {
            if dv.metadata.name.is_none() {
                report.problems.push(Problem {
                    severity: Severity::Error,
                    path: "metadata.name".to_owned(),
                    message: "a name is required".to_owned(),
                });
            }
            report
                .problems
                .extend(validate_spec(&name, &dv.spec).problems);
        }
        Err(error) => {
            let path = error.path().to_string();
            report.problems.push(Problem {
                severity: Severity::Error,
                path: if path == "." {
                    "<root>".to_owned()
                } else {
                    path
                },
                message: error.into_inner().to_string(),
            });
        }
    }
    report.problems.sort();
    CheckedResource {
        document,
        name: format!("{namespace}/{name}"),
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
apiVersion: dvt.io/v1alpha1
kind: DistributedValidator
metadata: {name: four, namespace: stake}
spec:
  network: hoodi
  clusterLock: {configMap: {name: lock}}
  beaconNodes: {endpoints: ["http://beacon:5052"]}
  members:
  - {name: a, index: 0, validatorClient: lighthouse, operator: {name: o1, class: permissioned}, keyShareSecret: {name: ks-a}, enrSecret: {name: enr-a}}
  - {name: b, index: 1, validatorClient: teku, operator: {name: o2, class: permissioned}, keyShareSecret: {name: ks-b}, enrSecret: {name: enr-b}}
  - {name: c, index: 2, validatorClient: prysm, operator: {name: o3, class: permissionless}, keyShareSecret: {name: ks-c}, enrSecret: {name: enr-c}}
  - {name: d, index: 3, validatorClient: nimbus, operator: {name: o4, class: permissionless}, keyShareSecret: {name: ks-d}, enrSecret: {name: enr-d}}
"#;

    #[test]
    fn other_kinds_and_empty_documents_are_skipped() {
        let text = format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{VALID}\n---\n"
        );
        let checked = check_manifests(&text).unwrap();
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].document, 2);
        assert_eq!(checked[0].name, "stake/four");
        assert_eq!(checked[0].report.problems, vec![]);
    }

    #[test]
    fn type_errors_name_the_field() {
        let text = VALID.replace("validatorClient: prysm", "validatorClient: besu");
        let checked = check_manifests(&text).unwrap();
        let problems = &checked[0].report.problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "spec.members[2].validatorClient");
        assert!(
            problems[0].message.contains("unknown variant `besu`"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = VALID.replace("network: hoodi", "network: hoodi\n  treshold: 3");
        let checked = check_manifests(&text).unwrap();
        let problems = &checked[0].report.problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "spec.treshold");
        assert_eq!(problems[0].message, "unknown field");
    }

    #[test]
    fn wrong_api_version_is_an_error() {
        let text = VALID.replace("dvt.io/v1alpha1", "dvt.io/v1");
        let checked = check_manifests(&text).unwrap();
        assert_eq!(checked[0].report.problems[0].path, "apiVersion");
    }

    #[test]
    fn broken_yaml_names_the_document() {
        let error = check_manifests("a: b\n---\n: : [\n").unwrap_err();
        assert!(error.to_string().starts_with("document 2:"), "{error}");
    }
}
