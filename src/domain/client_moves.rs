//! Which members change validator client now. A change moves the member's slashing-protection
//! history with it (the old client exports it, the new one imports it before its first start):
//! one member at a time, and under the Required diversity policy only when the cluster as it
//! would then run keeps every client below the threshold.

use crate::api::ValidatorClient;

/// A member move recorded in status: from which client to which, and whether it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedMove {
    pub from: ValidatorClient,
    pub to: ValidatorClient,
    pub finished: bool,
    /// Its export or import failed: the new client never started (both run before it).
    pub failed: bool,
}

/// What is known of one member's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberClients {
    pub name: String,
    /// Run by another organisation: counted for diversity, never moved from here.
    pub remote: bool,
    /// The client it runs, as status last recorded it; `None`: it never ran.
    pub running: Option<ValidatorClient>,
    /// The client the spec (pinned or assigned) asks for; `None` for a remote member that pins
    /// none.
    pub wanted: Option<ValidatorClient>,
    pub recorded: Option<RecordedMove>,
    /// Someone moved the history by hand and said so (the DV annotation).
    pub moved_by_hand: bool,
}

/// Why a client change waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// Another member moves first: one move at a time.
    AnotherMoves(String),
    /// The member's move from `from` to `to` has not finished: the new client may already have
    /// signed, so neither the old client nor a third may start from the old client's history
    /// until it has.
    MoveUnfinished {
        from: ValidatorClient,
        to: ValidatorClient,
    },
    /// Required diversity: after this move `count` members would run `client`, at or above
    /// the threshold.
    Diversity {
        client: ValidatorClient,
        count: u32,
        threshold: u32,
    },
}

/// The decision for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Run this client; nothing to move.
    Run(ValidatorClient),
    /// Run `to`, moving the history from `from` first (or, once finished, keeping the steps,
    /// which then only report the file: dropping them would restart the member once more).
    Move {
        from: ValidatorClient,
        to: ValidatorClient,
    },
    /// Keep running `running`; the change to `wanted` waits.
    Hold {
        running: ValidatorClient,
        wanted: ValidatorClient,
        why: HoldReason,
    },
    /// Run by another organisation.
    Remote,
}

/// What the first pass makes of one member: decided (and whether it moves now), or a candidate
/// for a move that the second pass decides against the others.
enum FirstPass {
    Decided {
        choice: Choice,
        moves_now: bool,
    },
    Candidate {
        running: ValidatorClient,
        wanted: ValidatorClient,
    },
}

/// Decides every member's client, in spec order. `threshold` is the DV's `t`; `required`: the
/// diversity policy is Required. One member moves at a time: the first already moving, else
/// the first candidate the diversity rule lets move.
pub fn choose(members: &[MemberClients], threshold: u32, required: bool) -> Vec<Choice> {
    let first: Vec<FirstPass> = members.iter().map(first_pass).collect();
    let mut moving: Option<String> = members
        .iter()
        .zip(&first)
        .find(|(_, pass)| {
            matches!(
                pass,
                FirstPass::Decided {
                    moves_now: true,
                    ..
                }
            )
        })
        .map(|(member, _)| member.name.clone());
    let mut choices: Vec<Option<Choice>> = first
        .iter()
        .map(|pass| match pass {
            FirstPass::Decided { choice, .. } => Some(choice.clone()),
            FirstPass::Candidate { .. } => None,
        })
        .collect();
    for (i, pass) in first.iter().enumerate() {
        let FirstPass::Candidate { running, wanted } = *pass else {
            continue;
        };
        let choice = match &moving {
            Some(other) => Choice::Hold {
                running,
                wanted,
                why: HoldReason::AnotherMoves(other.clone()),
            },
            None => match crowded_after(members, &choices, i, wanted, threshold) {
                Some((client, count)) if required => Choice::Hold {
                    running,
                    wanted,
                    why: HoldReason::Diversity {
                        client,
                        count,
                        threshold,
                    },
                },
                _ => {
                    moving = Some(members[i].name.clone());
                    Choice::Move {
                        from: running,
                        to: wanted,
                    }
                }
            },
        };
        choices[i] = Some(choice);
    }
    // The first pass decided every member but the candidates, the loop above every candidate.
    choices.into_iter().flatten().collect()
}

/// One member on its own: remote, moved by hand, an unfinished or recorded move, no change, or
/// a candidate.
fn first_pass(member: &MemberClients) -> FirstPass {
    let decided = |choice, moves_now| FirstPass::Decided { choice, moves_now };
    let Some(wanted) = member.wanted.filter(|_| !member.remote) else {
        return decided(Choice::Remote, false);
    };
    if member.moved_by_hand {
        return decided(Choice::Run(wanted), false);
    }
    // An unfinished move asked to go elsewhere. Back to the old client is safe only after a
    // failed step (the new client never started); anything else waits for the move.
    if let Some(recorded) = member
        .recorded
        .filter(|r| r.to != wanted && !r.finished && member.running == Some(r.from))
    {
        if recorded.failed && wanted == recorded.from {
            return decided(Choice::Run(wanted), false);
        }
        let hold = Choice::Hold {
            running: recorded.to,
            wanted,
            why: HoldReason::MoveUnfinished {
                from: recorded.from,
                to: recorded.to,
            },
        };
        return decided(hold, true);
    }
    if let Some(recorded) = member.recorded.filter(|r| r.to == wanted) {
        let recorded_move = Choice::Move {
            from: recorded.from,
            to: recorded.to,
        };
        // Still on the old client: the move goes on. On the new one: the steps stay.
        if member.running == Some(recorded.from) {
            return decided(recorded_move, true);
        }
        if member.running == Some(recorded.to) {
            return decided(recorded_move, false);
        }
    }
    match member.running {
        Some(running) if running != wanted => FirstPass::Candidate { running, wanted },
        _ => decided(Choice::Run(wanted), false),
    }
}

/// A client that `threshold` or more members would run if member `i` moved to `wanted` while
/// every other undecided candidate stays on its running client, with its count.
fn crowded_after(
    members: &[MemberClients],
    choices: &[Option<Choice>],
    i: usize,
    wanted: ValidatorClient,
    threshold: u32,
) -> Option<(ValidatorClient, u32)> {
    let mut counts = std::collections::BTreeMap::<ValidatorClient, u32>::new();
    for (j, member) in members.iter().enumerate() {
        let client = if j == i {
            Some(wanted)
        } else {
            match &choices[j] {
                Some(Choice::Run(c)) => Some(*c),
                Some(Choice::Move { to, .. }) => Some(*to),
                Some(Choice::Remote) => member.wanted,
                Some(Choice::Hold { running, .. }) => Some(*running),
                None => member.running,
            }
        };
        if let Some(client) = client {
            *counts.entry(client).or_default() += 1;
        }
    }
    counts.into_iter().find(|(_, count)| *count >= threshold)
}

#[cfg(test)]
mod tests {
    use super::ValidatorClient::{Lighthouse, Lodestar, Nimbus, Prysm, Teku};
    use super::*;

    fn member(
        name: &str,
        running: Option<ValidatorClient>,
        wanted: ValidatorClient,
    ) -> MemberClients {
        MemberClients {
            name: name.to_owned(),
            remote: false,
            running,
            wanted: Some(wanted),
            recorded: None,
            moved_by_hand: false,
        }
    }

    #[test]
    fn a_new_or_unchanged_member_runs_what_is_asked() {
        let members = [member("a", None, Teku), member("b", Some(Nimbus), Nimbus)];
        assert_eq!(
            choose(&members, 3, true),
            [Choice::Run(Teku), Choice::Run(Nimbus)]
        );
    }

    #[test]
    fn a_changed_client_moves_its_history() {
        let members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Nimbus), Nimbus),
            member("c", Some(Prysm), Prysm),
            member("d", Some(Lodestar), Lodestar),
        ];
        assert_eq!(
            choose(&members, 3, true)[0],
            Choice::Move {
                from: Lighthouse,
                to: Teku
            }
        );
    }

    #[test]
    fn only_one_member_moves_at_a_time() {
        let members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Nimbus), Prysm),
            member("c", Some(Prysm), Lodestar),
            member("d", Some(Lodestar), Lighthouse),
        ];
        let choices = choose(&members, 3, true);
        assert!(matches!(choices[0], Choice::Move { .. }));
        for choice in &choices[1..] {
            assert!(
                matches!(choice, Choice::Hold { why: HoldReason::AnotherMoves(m), .. } if m == "a"),
                "{choice:?}"
            );
        }
    }

    #[test]
    fn a_move_in_progress_goes_first_whatever_its_place() {
        let mut members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Nimbus), Prysm),
        ];
        members[1].recorded = Some(RecordedMove {
            from: Nimbus,
            to: Prysm,
            finished: false,
            failed: false,
        });
        let choices = choose(&members, 3, false);
        assert_eq!(
            choices[1],
            Choice::Move {
                from: Nimbus,
                to: Prysm
            }
        );
        assert!(
            matches!(&choices[0], Choice::Hold { why: HoldReason::AnotherMoves(m), .. } if m == "b")
        );
    }

    #[test]
    fn a_finished_move_keeps_its_steps_and_holds_no_one() {
        let mut members = [
            member("a", Some(Teku), Teku),
            member("b", Some(Nimbus), Prysm),
        ];
        members[0].recorded = Some(RecordedMove {
            from: Lighthouse,
            to: Teku,
            finished: true,
            failed: false,
        });
        let choices = choose(&members, 3, false);
        assert_eq!(
            choices[0],
            Choice::Move {
                from: Lighthouse,
                to: Teku
            }
        );
        assert_eq!(
            choices[1],
            Choice::Move {
                from: Nimbus,
                to: Prysm
            }
        );
    }

    // A move whose new client may already have signed is not redirected or reverted: the old
    // client's history no longer holds everything the member signed.
    #[test]
    fn an_unfinished_move_finishes_before_another_change() {
        let mut members = [
            member("a", Some(Lighthouse), Nimbus),
            member("b", Some(Prysm), Lodestar),
        ];
        let recorded = RecordedMove {
            from: Lighthouse,
            to: Teku,
            finished: false,
            failed: false,
        };
        members[0].recorded = Some(recorded);
        let choices = choose(&members, 3, false);
        assert_eq!(
            choices[0],
            Choice::Hold {
                running: Teku,
                wanted: Nimbus,
                why: HoldReason::MoveUnfinished {
                    from: Lighthouse,
                    to: Teku
                }
            }
        );
        // It still counts as the one move in progress.
        assert!(
            matches!(&choices[1], Choice::Hold { why: HoldReason::AnotherMoves(m), .. } if m == "a")
        );
        // Going back while it is under way waits too.
        members[0].wanted = Some(Lighthouse);
        assert!(matches!(
            choose(&members, 3, false)[0],
            Choice::Hold {
                why: HoldReason::MoveUnfinished { .. },
                ..
            }
        ));
        // After a failed step the new client never started: going back is safe.
        members[0].recorded = Some(RecordedMove {
            failed: true,
            ..recorded
        });
        assert_eq!(choose(&members, 3, false)[0], Choice::Run(Lighthouse));
        // But a failed move is not redirected to a third client from under its file either.
        members[0].wanted = Some(Nimbus);
        assert!(matches!(
            choose(&members, 3, false)[0],
            Choice::Hold {
                why: HoldReason::MoveUnfinished { .. },
                ..
            }
        ));
    }

    #[test]
    fn required_diversity_is_checked_on_the_cluster_after_the_move() {
        // 4 members, t = 3: moving a to Teku would put three on Teku.
        let members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Teku), Teku),
            member("c", Some(Teku), Teku),
            member("d", Some(Nimbus), Nimbus),
        ];
        assert_eq!(
            choose(&members, 3, true)[0],
            Choice::Hold {
                running: Lighthouse,
                wanted: Teku,
                why: HoldReason::Diversity {
                    client: Teku,
                    count: 3,
                    threshold: 3
                }
            }
        );
        // Preferred: the move goes ahead.
        assert!(matches!(choose(&members, 3, false)[0], Choice::Move { .. }));
    }

    #[test]
    fn a_held_candidate_lets_the_next_one_move() {
        let members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Teku), Teku),
            member("c", Some(Teku), Teku),
            member("d", Some(Nimbus), Lodestar),
        ];
        let choices = choose(&members, 3, true);
        assert!(matches!(
            choices[0],
            Choice::Hold {
                why: HoldReason::Diversity { .. },
                ..
            }
        ));
        assert_eq!(
            choices[3],
            Choice::Move {
                from: Nimbus,
                to: Lodestar
            }
        );
    }

    #[test]
    fn a_hand_moved_member_and_a_remote_member_are_left_alone() {
        let mut moved = member("a", Some(Lighthouse), Teku);
        moved.moved_by_hand = true;
        let remote = MemberClients {
            remote: true,
            running: None,
            wanted: Some(Prysm),
            ..member("r", None, Prysm)
        };
        assert_eq!(
            choose(&[moved, remote], 3, true),
            [Choice::Run(Teku), Choice::Remote]
        );
    }

    #[test]
    fn a_remote_members_pinned_client_counts_for_diversity() {
        let remote = MemberClients {
            remote: true,
            ..member("r", None, Teku)
        };
        let members = [
            member("a", Some(Lighthouse), Teku),
            member("b", Some(Teku), Teku),
            remote,
        ];
        assert!(matches!(
            choose(&members, 3, true)[0],
            Choice::Hold {
                why: HoldReason::Diversity { count: 3, .. },
                ..
            }
        ));
    }
}
