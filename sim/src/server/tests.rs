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
