//! Watches: the events since a resourceVersion, then the live feed, as JSON lines (with
//! bookmarks when asked, and 410 Gone for a compacted version).

use super::*;

/// How often an idle watch sends a bookmark when the client allows them.
pub(super) const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// The most bytes of waiting events sent as one chunk of a watch stream.
const WATCH_CHUNK_BYTES: usize = 256 << 10;

/// A watch line around an object already in JSON: the bytes `event_line` would make.
pub(super) fn raw_event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

pub(super) fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

pub(super) fn watch(
    sim: &Sim,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let store = sim.store.clone();
    let as_table = wants_table(headers);
    let as_metadata = wants_metadata(headers);
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let requested: Option<u64> = params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))
        })
        .transpose()?;
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    // Without a resourceVersion (or with "0"), a watch starts with the current state as ADDED
    // events, as the real API server does.
    let mut initial = Vec::new();
    let since = match requested {
        Some(rv) if !send_initial => rv,
        _ => {
            let (items, rv) = store.list(&rt, namespace.as_deref(), &labels, &fields);
            initial = items;
            rv
        }
    };
    let (backlog, mut receiver) = match store.watch_from(&rt.storage_key(), since) {
        Ok(start) => start,
        // kube-apiserver answers a watch from a compacted resourceVersion with 200 and a single
        // ERROR event carrying `410 Expired`; clients (kube-rs' watcher, client-go's reflector)
        // relist on exactly that.
        Err(gone) => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(event_line("ERROR", &gone.to_status())))
                .map_err(|e| ApiError::internal(format!("cannot answer the watch: {e}")));
        }
    };
    // The backlog and the channel hold this resource's changes only (`Store::watch_from`).
    let matches = {
        let namespace = namespace.clone();
        move |event: &WatchEvent| namespace.as_ref().is_none_or(|n| *n == event.namespace)
    };
    let render = {
        let store = store.clone();
        let rt = rt.clone();
        move |object: &Value| {
            let presented = store.present(&rt, object);
            if as_table {
                let rv = presented
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                table::to_table(&rt, &[presented], rv, "PartialObjectMetadata")
            } else if as_metadata {
                metadata_only(&presented)
            } else {
                presented
            }
        }
    };
    // The common case sends the event's bytes as they are; a table, a metadata-only watch or
    // another version needs the object as a tree.
    let render_event = {
        let rt = rt.clone();
        let render = render.clone();
        move |event: &WatchEvent| {
            if !as_table && !as_metadata && event.api_version == rt.api_version() {
                raw_event_line(event.event_type.as_str(), &event.json)
            } else {
                event_line(event.event_type.as_str(), &render(&event.object()))
            }
        }
    };
    let bookmark = {
        let rt = rt.clone();
        move |rv: u64, initial_end: bool| {
            let mut metadata = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            event_line(
                "BOOKMARK",
                &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
            )
        }
    };
    let clock = store.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut disconnects = store.watch_disconnects();
    // An injected fault closes a fraction of watch streams within two seconds.
    let faults = sim.api_faults.current();
    let dropped_after = (faults.watch_drop_fraction > 0.0
        && sim.api_faults.roll() < faults.watch_drop_fraction)
        .then(|| Duration::from_secs_f64(0.1 + 1.9 * sim.api_faults.roll()));
    let timeout = match (timeout, dropped_after) {
        (Some(t), Some(d)) => Some(t.min(d)),
        (t, d) => t.or(d),
    };
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = since;
        for object in &initial {
            if tx.send(event_line("ADDED", &render(object))).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(bookmark(since, true)).await.is_err() {
            return;
        }
        // Selector changes turn into ADDED/DELETED for the watcher, as Kubernetes does; here an
        // object that stops matching is reported DELETED and one that starts matching ADDED.
        let selected = |event: &WatchEvent| {
            labels.matches_label_map(Some(&event.labels))
                && (fields.is_empty() || fields.matches_fields(&event.object()))
        };
        for event in backlog {
            last_rv = event.resource_version;
            if matches(&event) && selected(&event) && tx.send(render_event(&event)).await.is_err() {
                return;
            }
        }
        // Timers made once per watch, not once per event: with thousands of changes a second,
        // making two timers for each was much of a watch's cost.
        let ends = tokio::time::sleep_until(
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
        );
        tokio::pin!(ends);
        let mut bookmark_ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        bookmark_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A bookmark goes out when a whole interval passed without an event sent.
        let mut sent_since_tick = false;
        // Sends one change of this resource, if it is new and selected.
        macro_rules! deliver {
            ($event:expr) => {{
                let event = $event;
                if event.resource_version > last_rv {
                    last_rv = event.resource_version;
                    if matches(&event) && selected(&event) {
                        if tx.send(render_event(&event)).await.is_err() {
                            return;
                        }
                        sent_since_tick = true;
                    }
                }
            }};
        }
        loop {
            tokio::select! {
                received = receiver.recv() => match received {
                    Ok(event) => deliver!(event),
                    // A watcher that falls behind is closed, and resumes from its last resourceVersion.
                    Err(_) => return,
                },
                _ = bookmark_ticks.tick(), if bookmarks => {
                    // The store's resourceVersion now, read before the changes waiting are
                    // taken: every change up to it is in the channel already (a commit publishes
                    // under the store's lock), so once they are sent a client resuming from it
                    // misses nothing. A watch of a quiet resource so follows the cluster's
                    // resourceVersion, as kube-apiserver's progress notifications make it, and
                    // resumes after its timeout instead of from a compacted version (a relist
                    // of every Secret at 3,000 DVs).
                    let current = clock.current_resource_version();
                    loop {
                        match receiver.try_recv() {
                            Ok(event) => deliver!(event),
                            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    last_rv = last_rv.max(current);
                    if !std::mem::take(&mut sent_since_tick)
                        && tx.send(bookmark(last_rv, false)).await.is_err()
                    {
                        return;
                    }
                }
                () = &mut ends => return,
                _ = disconnects.changed() => return,
            }
        }
    });
    // Events that are already waiting go out in one chunk: one write and one wake-up of the
    // client for a burst, rather than one per event (as kube-apiserver's buffered watch
    // encoder does).
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let first = rx.recv().await?;
        let Ok(second) = rx.try_recv() else {
            return Some((Ok::<Bytes, Infallible>(first), rx));
        };
        let mut chunk = Vec::with_capacity(first.len() + second.len());
        chunk.extend_from_slice(&first);
        chunk.extend_from_slice(&second);
        while chunk.len() < WATCH_CHUNK_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            chunk.extend_from_slice(&next);
        }
        Some((Ok(Bytes::from(chunk)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream.boxed()))
        .map_err(|e| ApiError::internal(format!("cannot start the watch stream: {e}")))
}
