//! Tests of the HTTP layer's watch lines.

use super::*;

#[test]
fn a_watch_line_from_stored_bytes_is_the_line_made_from_the_object() {
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "é\"b"}}});
    let raw = raw_event_line("MODIFIED", &serde_json::to_vec(&object).unwrap());
    let made = event_line("MODIFIED", &object);
    let parse = |line: &Bytes| {
        assert!(line.ends_with(b"\n"));
        serde_json::from_slice::<Value>(line).unwrap()
    };
    assert_eq!(parse(&raw), parse(&made));
}

#[test]
fn an_apply_patch_is_read_as_json_or_as_yaml_alike() {
    let json_body = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"on": "yes", "n": "1"}}"#;
    let yaml_body = b"# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  \"on\": \"yes\"\n  n: \"1\"\n";
    let from_json = objects::decode_apply_patch(json_body).unwrap();
    assert_eq!(
        from_json,
        serde_yaml::from_slice::<Value>(json_body).unwrap()
    );
    assert_eq!(objects::decode_apply_patch(yaml_body).unwrap(), from_json);
    let error = objects::decode_apply_patch(b"{not: [closed").unwrap_err();
    assert_eq!(error.code, 400);
    assert!(
        error.message.starts_with("error decoding apply patch"),
        "{}",
        error.message
    );
}
