//! Which zone each member runs in. Pure and deterministic: the same members, zones and previous
//! assignment always give the same answer, a member keeps its zone while that zone can still
//! hold it (so unrelated nodes coming and going move nothing), and new members go where the
//! fewest members are, so that no zone holds more than `n - t` members when there are enough
//! zones.

use std::collections::BTreeMap;

/// A member as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberZone {
    pub index: u32,
    /// Zone the spec pins the member to.
    pub pinned: Option<String>,
    /// Zone assigned before (from status): kept while the zone can hold the member.
    pub previous: Option<String>,
}

/// Schedulable nodes per zone.
pub type Zones = BTreeMap<String, usize>;

/// A zone per member (same order as `members`); `None` when no zone has room (the cluster has
/// no zoned, schedulable nodes, or fewer nodes than members).
pub fn assign_zones(members: &[MemberZone], zones: &Zones) -> Vec<Option<String>> {
    let mut counts: BTreeMap<String, usize> = zones.keys().map(|z| (z.clone(), 0)).collect();
    let mut assigned: Vec<Option<String>> = vec![None; members.len()];
    // A zone holds at most one member per node (anti-affinity).
    let total_nodes: usize = zones.values().sum();
    let room = |zone: &str, counts: &BTreeMap<String, usize>| {
        let used = counts.get(zone).copied().unwrap_or(0);
        used < zones.get(zone).copied().unwrap_or(0)
    };
    for (i, member) in members.iter().enumerate() {
        if let Some(zone) = &member.pinned {
            assigned[i] = Some(zone.clone());
            if let Some(count) = counts.get_mut(zone) {
                *count += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].pinned.is_none())
        .collect();
    order.sort_by_key(|&i| members[i].index);
    for &i in &order {
        // A member's volumes live in its zone: moving it would strand its data (and its
        // slashing protection), so a previous zone is kept while it has a node for it.
        if let Some(zone) = &members[i].previous
            && zones.contains_key(zone)
            && room(zone, &counts)
        {
            assigned[i] = Some(zone.clone());
            *counts.entry(zone.clone()).or_default() += 1;
        }
    }
    if total_nodes == 0 {
        return assigned;
    }
    for &i in &order {
        if assigned[i].is_some() {
            continue;
        }
        let choice = zones
            .keys()
            .filter(|z| room(z, &counts))
            .min_by_key(|z| (counts.get(z.as_str()).copied().unwrap_or(0), z.as_str()))
            .cloned();
        if let Some(zone) = &choice {
            *counts.entry(zone.clone()).or_default() += 1;
        }
        assigned[i] = choice;
    }
    assigned
}

/// Members per zone.
pub fn zone_counts(assigned: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for zone in assigned.iter().flatten() {
        *counts.entry(zone.clone()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(n: u32) -> Vec<MemberZone> {
        (0..n)
            .map(|index| MemberZone {
                index,
                pinned: None,
                previous: None,
            })
            .collect()
    }

    fn zones(spec: &[(&str, usize)]) -> Zones {
        spec.iter().map(|(z, n)| ((*z).to_owned(), *n)).collect()
    }

    #[test]
    fn four_members_over_four_zones_get_one_each() {
        let assigned = assign_zones(
            &members(4),
            &zones(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)]),
        );
        assert_eq!(
            assigned,
            ["a", "b", "c", "d"].map(|z| Some(z.to_owned())).to_vec()
        );
    }

    #[test]
    fn seven_members_over_three_zones_spread_three_two_two() {
        let assigned = assign_zones(&members(7), &zones(&[("a", 3), ("b", 3), ("c", 3)]));
        let counts = zone_counts(&assigned);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [3, 2, 2]);
    }

    #[test]
    fn pinned_members_count_and_previous_zones_stick() {
        let mut m = members(4);
        m[0].pinned = Some("a".into());
        let assigned = assign_zones(&m, &zones(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)]));
        assert_eq!(assigned[0].as_deref(), Some("a"));
        assert_eq!(
            zone_counts(&assigned)["a"],
            1,
            "the pinned member fills its zone's share"
        );
        let mut m = members(4);
        m[3].previous = Some("a".into());
        let assigned = assign_zones(&m, &zones(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)]));
        assert_eq!(assigned[3].as_deref(), Some("a"), "a previous zone is kept");
    }

    #[test]
    fn no_zoned_nodes_assign_nothing() {
        assert_eq!(assign_zones(&members(4), &Zones::new()), vec![None; 4]);
    }

    fn zone_sets() -> impl Strategy<Value = Zones> {
        proptest::collection::btree_map("[a-f]", 1usize..4, 1..6)
    }

    proptest! {
        #[test]
        fn assignment_is_deterministic_fits_nodes_and_meets_the_bound_when_possible(n in 3u32..12, zs in zone_sets()) {
            let m = members(n);
            let first = assign_zones(&m, &zs);
            prop_assert_eq!(&first, &assign_zones(&m, &zs));
            let counts = zone_counts(&first);
            for (zone, count) in &counts {
                prop_assert!(*count <= zs[zone], "more members than nodes in {}", zone);
            }
            let threshold = crate::domain::quorum::default_threshold(n);
            let bound = (n - threshold) as usize;
            // With enough room spread evenly, no zone exceeds the liveness budget.
            let even = (n as usize).div_ceil(zs.len());
            if zs.values().all(|nodes| *nodes >= even) && even <= bound {
                prop_assert!(counts.values().all(|c| *c <= bound), "{:?}", counts);
            }
        }

        #[test]
        fn removing_a_spare_node_moves_no_member(n in 3u32..10, zs in zone_sets(), pick in 0usize..6) {
            let first = assign_zones(&members(n), &zs);
            let placed: Vec<MemberZone> = members(n)
                .into_iter()
                .zip(&first)
                .map(|(mut m, z)| { m.previous = z.clone(); m })
                .collect();
            let counts = zone_counts(&first);
            // A node is unrelated when its zone keeps a node for every member placed there.
            let spare: Vec<&String> = zs.keys().filter(|z| zs[*z] > counts.get(*z).copied().unwrap_or(0)).collect();
            prop_assume!(!spare.is_empty());
            let zone = spare[pick % spare.len()].clone();
            let mut fewer = zs.clone();
            *fewer.get_mut(&zone).unwrap() -= 1;
            fewer.retain(|_, nodes| *nodes > 0);
            prop_assert_eq!(assign_zones(&placed, &fewer), first);
        }

        #[test]
        fn an_unrelated_node_coming_or_going_moves_no_member(n in 3u32..10, zs in zone_sets(), extra in "[g-h]") {
            let first = assign_zones(&members(n), &zs);
            let placed: Vec<MemberZone> = members(n)
                .into_iter()
                .zip(&first)
                .map(|(mut m, z)| { m.previous = z.clone(); m })
                .collect();
            let mut more = zs.clone();
            *more.entry(extra).or_default() += 1;
            let again = assign_zones(&placed, &more);
            for (before, after) in first.iter().zip(&again) {
                if before.is_some() {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }
}

/// How members spread over one kind of failure domain (zones, clients, operators, classes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spread {
    /// Members per domain, by domain name.
    pub counts: BTreeMap<String, usize>,
    /// Most members in one domain.
    pub worst: usize,
    /// Whole domains that may fail (largest first) with `t` members left to sign.
    pub survives: usize,
    /// No single domain holds `t` members (it could not sign alone, e.g. through a client bug).
    pub safe: bool,
    /// No single domain holds more than `n - t` members (its failure does not stop signing).
    pub live: bool,
}

/// What a diversity condition concludes of one kind of domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diversity {
    /// No domain can sign alone, and no domain's loss stops signing that a better spread would
    /// avoid.
    Sound,
    /// `domain` holds `members` ≥ t shares: it could sign alone (a client bug, one operator).
    CouldSignAlone { domain: String, members: usize },
    /// Losing `domain` (`members` shares, more than n − t) stops signing, while the available
    /// domains allow at most `even` members in each.
    AvoidableOutage {
        domain: String,
        members: usize,
        even: usize,
    },
}

/// The spread of `domains` (one entry per member) for a DV of `n` members and threshold `t`.
pub fn spread<I: IntoIterator<Item = String>>(domains: I, n: u32, t: u32) -> Spread {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for domain in domains {
        *counts.entry(domain).or_default() += 1;
    }
    let mut sizes: Vec<usize> = counts.values().copied().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let budget = n.saturating_sub(t) as usize;
    let mut lost = 0;
    let mut survives = 0;
    for size in &sizes {
        lost += size;
        if lost > budget {
            break;
        }
        survives += 1;
    }
    let worst = sizes.first().copied().unwrap_or(0);
    Spread {
        counts,
        worst,
        survives,
        safe: worst < t as usize,
        live: worst <= budget,
    }
}

impl Spread {
    /// `zone-a 1, zone-b 2`.
    /// The largest domain and its members (the first by name among equals).
    pub fn largest(&self) -> Option<(&str, usize)> {
        self.counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(domain, members)| (domain.as_str(), *members))
    }

    /// What a diversity condition says of this spread over `available` domains (allowed
    /// clients, named operators, operator classes): False only for a risk the user can fix.
    /// A domain holding `t` shares could sign alone (safety). A domain whose loss stops signing
    /// (more than `n - t` shares) is a risk only where a spread over the available domains would
    /// put fewer in each; otherwise it is the DV's shape (2 + 2 classes at t = 3: losing a class
    /// stops signing whatever the spread), reported as a fact.
    pub fn verdict(&self, n: u32, t: u32, available: usize) -> Diversity {
        let Some((domain, members)) = self.largest() else {
            return Diversity::Sound;
        };
        let domains = available.max(self.counts.len()).max(1);
        let even = (n as usize).div_ceil(domains);
        if members >= t as usize {
            Diversity::CouldSignAlone {
                domain: domain.to_owned(),
                members,
            }
        } else if !self.live && members > even {
            Diversity::AvoidableOutage {
                domain: domain.to_owned(),
                members,
                even,
            }
        } else {
            Diversity::Sound
        }
    }

    pub fn describe(&self) -> String {
        self.counts
            .iter()
            .map(|(d, c)| format!("{d} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod spread_tests {
    use super::*;

    fn verdict(domains: &[&str], n: u32, t: u32, available: usize) -> Diversity {
        spread(domains.iter().map(|d| (*d).to_owned()), n, t).verdict(n, t, available)
    }

    #[test]
    fn stader_classes_are_sound_though_losing_one_stops_signing() {
        // 2 + 2 at t = 3 and 3 + 4 at t = 5: no class signs alone; losing a class stops signing
        // whatever the spread over two classes, so it is the shape, not a fixable risk.
        let four = [
            "permissioned",
            "permissioned",
            "permissionless",
            "permissionless",
        ];
        assert_eq!(verdict(&four, 4, 3, 2), Diversity::Sound);
        let seven = ["a", "a", "a", "b", "b", "b", "b"];
        assert_eq!(verdict(&seven, 7, 5, 2), Diversity::Sound);
        let s = spread(four.map(String::from), 4, 3);
        assert!(s.safe && !s.live && s.survives == 0);
    }

    #[test]
    fn a_class_holding_t_shares_could_sign_alone() {
        let three_one = [
            "permissioned",
            "permissioned",
            "permissioned",
            "permissionless",
        ];
        assert_eq!(
            verdict(&three_one, 4, 3, 2),
            Diversity::CouldSignAlone {
                domain: "permissioned".into(),
                members: 3
            }
        );
    }

    #[test]
    fn two_members_on_one_client_of_five_is_an_avoidable_outage() {
        let clients = ["teku", "teku", "prysm", "lodestar"];
        assert_eq!(
            verdict(&clients, 4, 3, 5),
            Diversity::AvoidableOutage {
                domain: "teku".into(),
                members: 2,
                even: 1
            }
        );
        // With only three clients allowed, two on one client is as even as it gets.
        assert_eq!(verdict(&clients, 4, 3, 3), Diversity::Sound);
        assert_eq!(verdict(&["a", "b", "c", "d"], 4, 3, 5), Diversity::Sound);
    }

    #[test]
    fn four_members_in_four_domains_survive_one_failure() {
        let s = spread(["a", "b", "c", "d"].map(String::from), 4, 3);
        assert_eq!((s.worst, s.survives, s.safe, s.live), (1, 1, true, true));
    }

    #[test]
    fn two_in_one_domain_of_a_three_of_four_stops_signing_when_it_fails() {
        let s = spread(["a", "a", "b", "c"].map(String::from), 4, 3);
        assert_eq!((s.worst, s.survives, s.safe, s.live), (2, 0, true, false));
        assert_eq!(s.describe(), "a 2, b 1, c 1");
    }

    #[test]
    fn a_domain_with_t_members_is_unsafe() {
        let s = spread(["x", "x", "x", "y"].map(String::from), 4, 3);
        assert!(!s.safe);
    }
}
