//! Decoding the protobuf bodies kubectl sends (`application/vnd.kubernetes.protobuf`) for the
//! built-in kinds its generators create: `kubectl create namespace|secret|configmap|serviceaccount|token`,
//! `kubectl auth can-i` and `kubectl auth whoami`. Each becomes the JSON object the same request
//! would have carried, so the rest of the server sees no difference.
//!
//! The envelope is apimachinery's (`pkg/runtime/serializer/protobuf/protobuf.go`): the magic
//! `k8s\0`, then a `runtime.Unknown` whose `raw` holds the object. Field numbers are those of the
//! `generated.proto` files of k8s.io/api and k8s.io/apimachinery v0.33.13 (Kubernetes 1.33);
//! the schemas below list each with its number. Fields a client cannot set (uid, generation,
//! timestamps, managedFields) are skipped, as the server would overwrite them anyway.
//!
//! Answers stay JSON: kubectl accepts `application/vnd.kubernetes.protobuf,application/json`.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::errors::ApiError;

const MAGIC: &[u8] = b"k8s\0";

/// What a field holds on the wire and how it reads in JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int64,
    Bool,
    Message(&'static [Field]),
    RepeatedStr,
    RepeatedMessage(&'static [Field]),
    MapStrStr,
    MapStrBytes,
    /// Read past (server-set fields).
    Skip,
}

struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
}

const fn f(number: u64, name: &'static str, kind: Kind) -> Field {
    Field { number, name, kind }
}

// k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto
const OWNER_REFERENCE: &[Field] = &[
    f(5, "apiVersion", Kind::Str),
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(4, "selfLink", Kind::Skip),
    f(5, "uid", Kind::Skip),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Skip),
    f(8, "creationTimestamp", Kind::Skip),
    f(9, "deletionTimestamp", Kind::Skip),
    f(10, "deletionGracePeriodSeconds", Kind::Skip),
    f(11, "labels", Kind::MapStrStr),
    f(12, "annotations", Kind::MapStrStr),
    f(
        13,
        "ownerReferences",
        Kind::RepeatedMessage(OWNER_REFERENCE),
    ),
    f(14, "finalizers", Kind::RepeatedStr),
    f(17, "managedFields", Kind::Skip),
];

// k8s.io/api/core/v1/generated.proto
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[f(1, "finalizers", Kind::RepeatedStr)]),
    ),
    f(3, "status", Kind::Skip),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::MapStrBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStrStr),
    f(5, "immutable", Kind::Bool),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::MapStrStr),
    f(3, "binaryData", Kind::MapStrBytes),
    f(4, "immutable", Kind::Bool),
];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "secrets", Kind::Skip),
    f(
        3,
        "imagePullSecrets",
        Kind::RepeatedMessage(&[f(1, "name", Kind::Str)]),
    ),
    f(4, "automountServiceAccountToken", Kind::Bool),
];

// k8s.io/api/authentication/v1/generated.proto
const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "audiences", Kind::RepeatedStr),
            f(
                3,
                "boundObjectRef",
                Kind::Message(&[
                    f(1, "kind", Kind::Str),
                    f(2, "apiVersion", Kind::Str),
                    f(3, "name", Kind::Str),
                    f(4, "uid", Kind::Str),
                ]),
            ),
            f(4, "expirationSeconds", Kind::Int64),
        ]),
    ),
    f(3, "status", Kind::Skip),
];
const SELF_SUBJECT_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "status", Kind::Skip),
];

// k8s.io/api/authorization/v1/generated.proto
const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Kind::Str),
    f(2, "verb", Kind::Str),
    f(3, "group", Kind::Str),
    f(4, "version", Kind::Str),
    f(5, "resource", Kind::Str),
    f(6, "subresource", Kind::Str),
    f(7, "name", Kind::Str),
    f(8, "fieldSelector", Kind::Skip),
    f(9, "labelSelector", Kind::Skip),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
            f(
                2,
                "nonResourceAttributes",
                Kind::Message(&[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)]),
            ),
        ]),
    ),
    f(3, "status", Kind::Skip),
];

/// The kinds whose protobuf bodies are decoded, by `(apiVersion, kind)`.
const SCHEMAS: &[(&str, &str, &[Field])] = &[
    ("v1", "Namespace", NAMESPACE),
    ("v1", "Secret", SECRET),
    ("v1", "ConfigMap", CONFIG_MAP),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    ("authentication.k8s.io/v1", "TokenRequest", TOKEN_REQUEST),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        SELF_SUBJECT_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        SELF_SUBJECT_ACCESS_REVIEW,
    ),
];

fn malformed(what: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf: {what}"))
}

/// A protobuf reader over one message.
struct Reader<'a> {
    bytes: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Delimited(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 64 bits"))
    }

    /// The next field's number and value, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, ApiError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| malformed("length"))?;
                if length > self.bytes.len() {
                    return Err(malformed("length past the end of the message"));
                }
                let (value, rest) = self.bytes.split_at(length);
                self.bytes = rest;
                Wire::Delimited(value)
            }
            // Fixed-width fields: none in the schemas here, but legal on the wire.
            1 => Wire::Delimited(self.take(8)?),
            5 => Wire::Delimited(self.take(4)?),
            other => return Err(malformed(&format!("wire type {other}"))),
        };
        Ok(Some((key >> 3, value)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.bytes.len() {
            return Err(malformed("truncated fixed-width field"));
        }
        let (value, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(value)
    }
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a string that is not UTF-8"))
}

fn delimited<'a>(wire: Wire<'a>, field: &str) -> Result<&'a [u8], ApiError> {
    match wire {
        Wire::Delimited(bytes) => Ok(bytes),
        Wire::Varint(_) => Err(malformed(&format!("{field} is not length-delimited"))),
    }
}

fn varint(wire: Wire<'_>, field: &str) -> Result<u64, ApiError> {
    match wire {
        Wire::Varint(value) => Ok(value),
        Wire::Delimited(_) => Err(malformed(&format!("{field} is not a varint"))),
    }
}

/// A map entry: key = 1, value = 2.
fn entry(bytes: &[u8]) -> Result<(String, &[u8]), ApiError> {
    let mut reader = Reader { bytes };
    let (mut key, mut value) = (String::new(), &[][..]);
    while let Some((number, wire)) = reader.next()? {
        match number {
            1 => key = text(delimited(wire, "map key")?)?,
            2 => value = delimited(wire, "map value")?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn message(bytes: &[u8], schema: &[Field]) -> Result<Value, ApiError> {
    let mut object = Map::new();
    let mut reader = Reader { bytes };
    while let Some((number, wire)) = reader.next()? {
        // Unknown fields are skipped, as a proto2 decoder does.
        let Some(field) = schema.iter().find(|field| field.number == number) else {
            continue;
        };
        match field.kind {
            Kind::Skip => {}
            Kind::Str => {
                let value = text(delimited(wire, field.name)?)?;
                if !value.is_empty() {
                    object.insert(field.name.to_owned(), json!(value));
                }
            }
            Kind::Int64 => {
                // Two's complement, as proto int64 is encoded.
                object.insert(
                    field.name.to_owned(),
                    json!(varint(wire, field.name)? as i64),
                );
            }
            Kind::Bool => {
                object.insert(field.name.to_owned(), json!(varint(wire, field.name)? != 0));
            }
            Kind::Message(inner) => {
                object.insert(
                    field.name.to_owned(),
                    message(delimited(wire, field.name)?, inner)?,
                );
            }
            Kind::RepeatedStr => {
                let value = text(delimited(wire, field.name)?)?;
                push(&mut object, field.name, json!(value));
            }
            Kind::RepeatedMessage(inner) => {
                let value = message(delimited(wire, field.name)?, inner)?;
                push(&mut object, field.name, value);
            }
            Kind::MapStrStr | Kind::MapStrBytes => {
                let (key, value) = entry(delimited(wire, field.name)?)?;
                let value = match field.kind {
                    Kind::MapStrBytes => {
                        json!(base64::engine::general_purpose::STANDARD.encode(value))
                    }
                    _ => json!(text(value)?),
                };
                let map = object
                    .entry(field.name.to_owned())
                    .or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(Value::Object(object))
}

fn push(object: &mut Map<String, Value>, name: &str, value: Value) {
    let list = object.entry(name.to_owned()).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.push(value);
    }
}

/// The JSON object a kubectl protobuf body stands for.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("the body does not start with the k8s\\0 prefix"))?;
    let mut reader = Reader { bytes: envelope };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((number, wire)) = reader.next()? {
        match number {
            1 => {
                let mut type_meta = Reader {
                    bytes: delimited(wire, "typeMeta")?,
                };
                while let Some((number, wire)) = type_meta.next()? {
                    match number {
                        1 => api_version = text(delimited(wire, "apiVersion")?)?,
                        2 => kind = text(delimited(wire, "kind")?)?,
                        _ => {}
                    }
                }
            }
            2 => raw = delimited(wire, "raw")?,
            _ => {}
        }
    }
    let Some((_, _, schema)) = SCHEMAS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
    else {
        let known: Vec<String> = SCHEMAS.iter().map(|(v, k, _)| format!("{v} {k}")).collect();
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "dvt-sim decodes protobuf bodies only for {}; send {api_version} {kind} as JSON",
                known.join(", ")
            ),
        ));
    };
    let mut object = message(raw, schema)?;
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".to_owned(), json!(api_version));
        map.insert("kind".to_owned(), json!(kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies kubectl v1.32 sent (captured from its requests; see each test for the command).
    const NAMESPACE_BODY: &[u8] = include_bytes!("protobuf_fixtures/namespace.bin");
    const SECRET_BODY: &[u8] = include_bytes!("protobuf_fixtures/secret.bin");
    const CONFIG_MAP_BODY: &[u8] = include_bytes!("protobuf_fixtures/configmap.bin");
    const TOKEN_REQUEST_BODY: &[u8] = include_bytes!("protobuf_fixtures/token-request.bin");
    const SSAR_RESOURCE_BODY: &[u8] = include_bytes!("protobuf_fixtures/ssar-resource.bin");
    const SSAR_SUBRESOURCE_BODY: &[u8] = include_bytes!("protobuf_fixtures/ssar-subresource.bin");
    const SSAR_PATH_BODY: &[u8] = include_bytes!("protobuf_fixtures/ssar-non-resource.bin");
    const WHOAMI_BODY: &[u8] = include_bytes!("protobuf_fixtures/self-subject-review.bin");

    #[test]
    fn kubectl_create_namespace() {
        // kubectl create namespace ops
        let object = decode(NAMESPACE_BODY).expect("decodes");
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}, "spec": {}})
        );
    }

    #[test]
    fn kubectl_create_secret_from_a_binary_file_and_a_literal() {
        // kubectl create secret generic keys -n ops --from-file=key.json=share.bin
        //   --from-literal=password=hunter2   (share.bin holds "abc\0\xff")
        let object = decode(SECRET_BODY).expect("decodes");
        assert_eq!(
            object["metadata"],
            json!({"name": "keys", "namespace": "ops"})
        );
        assert_eq!(object["data"]["key.json"], json!("YWJjAP8="));
        assert_eq!(object["data"]["password"], json!("aHVudGVyMg=="));
        assert_eq!(object["kind"], json!("Secret"));
    }

    #[test]
    fn kubectl_create_configmap_with_text_and_binary_data() {
        // kubectl create configmap lock -n ops --from-literal=cluster-lock.json='{"a":1}'
        //   --from-file=bin=share.bin
        let object = decode(CONFIG_MAP_BODY).expect("decodes");
        assert_eq!(object["data"], json!({"cluster-lock.json": "{\"a\":1}"}));
        assert_eq!(object["binaryData"], json!({"bin": "YWJjAP8="}));
    }

    #[test]
    fn kubectl_create_token() {
        // kubectl create token op -n ops --duration=1h --audience=x
        let object = decode(TOKEN_REQUEST_BODY).expect("decodes");
        assert_eq!(object["spec"]["audiences"], json!(["x"]));
        assert_eq!(object["spec"]["expirationSeconds"], json!(3600));
    }

    #[test]
    fn kubectl_auth_can_i() {
        // kubectl auth can-i patch statefulsets.apps/sts-1 -n ops (without discovery, so the
        // resource is sent unresolved)
        let object = decode(SSAR_RESOURCE_BODY).expect("decodes");
        assert_eq!(
            object["spec"]["resourceAttributes"],
            json!({"namespace": "ops", "verb": "patch", "resource": "statefulsets.apps", "name": "sts-1"})
        );
        // kubectl auth can-i create pods --subresource=eviction -n ops
        let object = decode(SSAR_SUBRESOURCE_BODY).expect("decodes");
        assert_eq!(
            object["spec"]["resourceAttributes"]["subresource"],
            json!("eviction")
        );
        // kubectl auth can-i get /healthz
        let object = decode(SSAR_PATH_BODY).expect("decodes");
        assert_eq!(
            object["spec"]["nonResourceAttributes"],
            json!({"path": "/healthz", "verb": "get"})
        );
    }

    #[test]
    fn kubectl_auth_whoami() {
        let object = decode(WHOAMI_BODY).expect("decodes");
        assert_eq!(object["kind"], json!("SelfSubjectReview"));
    }

    #[test]
    fn other_kinds_and_broken_bodies_are_refused() {
        let mut pod = b"k8s\0\n\x09\n\x02v1\x12\x03Pod\x12\x00".to_vec();
        assert_eq!(decode(&pod).expect_err("not decoded").code, 415);
        pod.truncate(8);
        assert_eq!(decode(&pod).expect_err("truncated").code, 400);
        assert_eq!(decode(b"{}").expect_err("not protobuf").code, 400);
    }
}
