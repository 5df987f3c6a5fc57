//! `kubectl dv`: what the plugin shows and asks for, apart from the cluster. Pure: a
//! DistributedValidator and its Events in, a [`StatusView`] (text or JSON) out; restarts and
//! pauses as the annotation patches the operator honours (the plugin never deletes a pod: the
//! operator's planner performs a requested restart when the quorum budget allows it).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::{DistributedValidator, condition_types};
use crate::controller::ANNOTATION_PAUSED;
use crate::controller::model::{ANNOTATION_RESTART_ALL, ANNOTATION_RESTART_MEMBER_PREFIX};

/// Events shown by `status`.
pub const EVENTS_SHOWN: usize = 8;

/// One screen about a DV: what it is doing and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub ready: u32,
    pub members: u32,
    pub threshold: Option<u32>,
    pub fault_tolerance: Option<u32>,
    /// Ready members minus threshold: how many the operator may still take down.
    pub budget: Option<i32>,
    /// The status describes the current spec (else the operator has not caught up yet).
    pub up_to_date: bool,
    pub paused: bool,
    pub rollout: RolloutView,
    pub member_rows: Vec<MemberView>,
    /// Placement, diversity and key-share verdicts: the conditions that judge the layout.
    pub verdicts: Vec<Verdict>,
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// The Progressing condition: status, reason and message (what waits, and for what).
    pub progressing: bool,
    pub reason: String,
    pub message: String,
    /// Members that run an older revision or have a restart pending, in the order the
    /// operator takes them (share index).
    pub pending: Vec<String>,
    /// The member the operator takes next, when one is up and can go.
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub name: String,
    pub index: u32,
    pub zone: Option<String>,
    pub node: Option<String>,
    pub client: String,
    pub operator: String,
    pub class: String,
    pub ready: bool,
    pub restarts: u32,
    pub last_restart: Option<String>,
    pub last_restart_reason: Option<String>,
    pub outdated: bool,
    /// A restart asked with `kubectl dv restart` / `rollout restart`, not yet performed.
    pub restart_requested: Option<String>,
    pub stranded: bool,
    pub share_verified: Option<bool>,
    /// Run by another organisation; `ready` means a member here saw it answer lately.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// How long ago the member was last seen answering (e.g. `12s`), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Why the member's Charon says it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// The member's client change and its slashing-protection history, in a few words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_move: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub condition: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Seconds before `now`.
    pub age_seconds: i64,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    pub count: i32,
}

fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The view of `dv`, with the Events about it (any order; the latest [`EVENTS_SHOWN`] are
/// kept), at `now`.
pub fn view(dv: &DistributedValidator, events: &[Event], now: Timestamp) -> StatusView {
    let status = dv.status.clone().unwrap_or_default();
    let annotations = dv.metadata.annotations.clone().unwrap_or_default();
    let restart_all = annotations.get(ANNOTATION_RESTART_ALL);
    let spec_members: BTreeMap<&str, &crate::api::MemberSpec> = dv
        .spec
        .members
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    let member_rows: Vec<MemberView> = status
        .members
        .iter()
        .map(|m| {
            let spec = spec_members.get(m.name.as_str());
            let last_restart = m.last_restart_time.as_ref().map(|t| t.0);
            let requested = [
                restart_all,
                annotations.get(&format!("{ANNOTATION_RESTART_MEMBER_PREFIX}{}", m.name)),
            ]
            .into_iter()
            .flatten()
            .filter_map(|at| at.parse::<Timestamp>().ok())
            .max()
            // Pending while the member runs a pod from before the request: it is outdated (the
            // request is in its template) and the operator has not restarted it since.
            .filter(|at| m.outdated && last_restart.is_none_or(|last| last < *at));
            MemberView {
                name: m.name.clone(),
                index: m.index,
                zone: m.zone.clone(),
                node: m.node.clone(),
                client: m.client_name().to_owned(),
                operator: spec.map(|s| s.operator.name.clone()).unwrap_or_default(),
                class: spec
                    .map(|s| s.operator.class.as_str().to_owned())
                    .unwrap_or_default(),
                ready: m.ready,
                restarts: m.restarts,
                last_restart: last_restart.map(|t| t.to_string()),
                last_restart_reason: m.last_restart_reason.clone(),
                outdated: m.outdated,
                restart_requested: requested.map(|t| t.to_string()),
                stranded: m.stranded,
                share_verified: m.share_public_key_verified,
                remote: m.remote,
                last_seen: m
                    .last_seen
                    .as_ref()
                    .map(|t| short_age(now.duration_since(t.0).as_secs())),
                not_ready_reason: m.not_ready_reason.clone(),
                client_move: m.client_move.as_ref().map(|c| {
                    let change = format!("{} to {}", c.from.as_str(), c.to.as_str());
                    match c.phase {
                        crate::api::ClientMovePhase::Moving => {
                            format!("changing client {change}, moving its history")
                        }
                        crate::api::ClientMovePhase::Failed => format!(
                            "client change {change} failed, stopped: {}",
                            c.message.as_deref().unwrap_or("a step failed")
                        ),
                        crate::api::ClientMovePhase::Moved => format!(
                            "moved {change} with {} validator(s)' history (sha256 {}…)",
                            c.validators.unwrap_or_default(),
                            c.sha256.as_deref().map_or("-", |s| &s[..s.len().min(12)])
                        ),
                    }
                }),
            }
        })
        .collect();
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let progressing = condition(condition_types::PROGRESSING);
    let pending: Vec<String> = member_rows
        .iter()
        .filter(|m| m.outdated)
        .map(|m| m.name.clone())
        .collect();
    let paused = crate::controller::is_paused(dv);
    let budget_allows = status.disruption_budget.is_some_and(|b| b > 0);
    let next = member_rows
        .iter()
        .find(|m| m.outdated && m.ready)
        .filter(|_| budget_allows && !paused)
        .map(|m| m.name.clone());
    let verdicts = [
        condition_types::PLACEMENT_SATISFIED,
        condition_types::CLIENT_DIVERSITY,
        condition_types::OPERATOR_DIVERSITY,
        condition_types::KEY_SHARES_VERIFIED,
        condition_types::CLIENT_MOVED,
    ]
    .into_iter()
    .filter_map(condition)
    .map(|c| Verdict {
        condition: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
    .collect();
    let mut timed: Vec<(Timestamp, &Event)> = events
        .iter()
        .filter_map(|e| event_time(e).map(|t| (t, e)))
        .collect();
    timed.sort_by_key(|(t, e)| (*t, e.metadata.name.clone()));
    let skip = timed.len().saturating_sub(EVENTS_SHOWN);
    let events = timed
        .into_iter()
        .skip(skip)
        .map(|(at, e)| EventView {
            age_seconds: now.duration_since(at).as_secs().max(0),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            note: e.note.clone().unwrap_or_default(),
            count: e.series.as_ref().map_or(1, |s| s.count.max(1)),
        })
        .collect();
    StatusView {
        name: dv.metadata.name.clone().unwrap_or_default(),
        namespace: dv.metadata.namespace.clone().unwrap_or_default(),
        phase: status.phase.map_or("Pending", |p| p.as_str()).to_owned(),
        ready: status.ready_members,
        members: dv.spec.members.len() as u32,
        threshold: status.threshold,
        fault_tolerance: status.fault_tolerance,
        budget: status.disruption_budget,
        up_to_date: status.observed_generation == dv.metadata.generation,
        paused,
        rollout: RolloutView {
            progressing: progressing.is_some_and(|c| c.status == "True"),
            reason: progressing.map(|c| c.reason.clone()).unwrap_or_default(),
            message: progressing.map(|c| c.message.clone()).unwrap_or_default(),
            pending,
            next,
        },
        member_rows,
        verdicts,
        events,
    }
}

/// `12s`, `5m`, `3h`, `2d`: kubectl's short ages.
pub fn short_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Colours for a terminal; none when the output is piped.
#[derive(Clone, Copy, Debug)]
pub struct Palette {
    pub colour: bool,
}

impl Palette {
    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }
    fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }
    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// The text screen of `kubectl dv status`.
pub fn render(view: &StatusView, palette: Palette) -> String {
    let mut out = String::new();
    let phase = match view.phase.as_str() {
        "Available" => palette.good(&view.phase),
        "QuorumLost" => palette.bad(&view.phase),
        _ => palette.warn(&view.phase),
    };
    let number = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
    out.push_str(&format!(
        "{} ({})  {phase}{}{}\n",
        palette.bold(&view.name),
        view.namespace,
        if view.paused {
            format!("  {}", palette.warn("PAUSED"))
        } else {
            String::new()
        },
        if view.up_to_date {
            ""
        } else {
            "  (status not yet for the latest spec)"
        }
    ));
    let budget = match view.budget {
        Some(b) if b > 0 => palette.good(&b.to_string()),
        Some(0) => palette.warn("0"),
        Some(b) => palette.bad(&b.to_string()),
        None => "-".to_owned(),
    };
    out.push_str(&format!(
        "Ready {}/{}  threshold {}  tolerance {}  budget {budget} (ready minus threshold: members the operator may still take down)\n",
        view.ready,
        view.members,
        number(view.threshold),
        number(view.fault_tolerance),
    ));
    let rollout = &view.rollout;
    if rollout.progressing {
        out.push_str(&format!(
            "Rollout: {} {}\n",
            palette.warn(&rollout.reason),
            rollout.message
        ));
        if !rollout.pending.is_empty() {
            out.push_str(&format!(
                "  pending: {}; next: {}\n",
                rollout.pending.join(", "),
                rollout.next.as_deref().unwrap_or("none now (see above)")
            ));
        }
    } else {
        out.push_str(&format!(
            "Rollout: {} {}\n",
            rollout.reason, rollout.message
        ));
    }
    out.push('\n');
    let header = [
        "MEMBER",
        "INDEX",
        "ZONE",
        "NODE",
        "CLIENT",
        "OPERATOR",
        "CLASS",
        "READY",
        "RESTARTS",
        "LAST RESTART",
        "NOTES",
    ];
    let rows: Vec<[String; 11]> = view
        .member_rows
        .iter()
        .map(|m| {
            let mut notes = Vec::new();
            if let Some(at) = &m.restart_requested {
                notes.push(format!("restart requested {at}, pending"));
            } else if m.outdated {
                notes.push("outdated".to_owned());
            }
            if m.stranded {
                notes.push("stranded: node unreachable".to_owned());
            }
            if m.share_verified == Some(false) {
                notes.push("key share does not match the lock".to_owned());
            }
            if let Some(why) = &m.not_ready_reason {
                notes.push(format!("not ready: {why}"));
            }
            if let Some(change) = &m.client_move {
                notes.push(change.clone());
            }
            if m.remote {
                notes.push(match (&m.last_seen, m.ready) {
                    (_, true) => "remote, answering".to_owned(),
                    (Some(age), false) => format!("remote, not seen for {age}"),
                    (None, false) => "remote, not seen".to_owned(),
                });
            }
            [
                m.name.clone(),
                m.index.to_string(),
                m.zone.clone().unwrap_or_else(|| "-".into()),
                m.node
                    .clone()
                    .unwrap_or_else(|| if m.remote { "(remote)" } else { "(pending)" }.into()),
                m.client.clone(),
                m.operator.clone(),
                m.class.clone(),
                if m.ready { "yes" } else { "no" }.to_owned(),
                m.restarts.to_string(),
                match (&m.last_restart, &m.last_restart_reason) {
                    (Some(at), Some(why)) => format!("{at} ({why})"),
                    (Some(at), None) => at.clone(),
                    _ => "-".to_owned(),
                },
                notes.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>, plain: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(plain[i].chars().count());
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let header_cells: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    out.push_str(&line(header_cells.clone(), &header_cells));
    for row in &rows {
        let mut cells = row.to_vec();
        cells[7] = if row[7] == "yes" {
            palette.good("yes")
        } else {
            palette.bad("no")
        };
        out.push_str(&line(cells, row));
    }
    out.push('\n');
    for verdict in &view.verdicts {
        let status = if verdict.status == "True" {
            palette.good(&verdict.status)
        } else {
            palette.bad(&verdict.status)
        };
        out.push_str(&format!(
            "{}: {status} {}: {}\n",
            verdict.condition, verdict.reason, verdict.message
        ));
    }
    if !view.events.is_empty() {
        out.push_str("\nEvents (latest last):\n");
        for event in &view.events {
            let type_ = if event.type_ == "Warning" {
                palette.warn(&event.type_)
            } else {
                event.type_.clone()
            };
            let count = if event.count > 1 {
                format!(" (x{})", event.count)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {:>4}  {type_}  {}{count}: {}\n",
                short_age(event.age_seconds),
                event.reason,
                event.note
            ));
        }
    }
    out
}

/// The merge patch asking the operator to restart `member` (or, with `None`, every member, one
/// at a time) at `at`.
pub fn restart_patch(member: Option<&str>, at: Timestamp) -> serde_json::Value {
    let key = match member {
        Some(member) => format!("{ANNOTATION_RESTART_MEMBER_PREFIX}{member}"),
        None => ANNOTATION_RESTART_ALL.to_owned(),
    };
    serde_json::json!({"metadata": {"annotations": {
        key: at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }}})
}

/// The merge patch pausing (or resuming) every restart and rollout of a DV.
pub fn pause_patch(paused: bool) -> serde_json::Value {
    let value = if paused {
        serde_json::Value::String("true".into())
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({"metadata": {"annotations": {ANNOTATION_PAUSED: value}}})
}
