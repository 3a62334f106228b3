#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The sync core against one peer at a time: what it accepts, what it serves, and how it treats
//! a misbehaving member (disconnected with a reason, nothing of its message stored).

mod common;

use common::{
    append, credit_body, genesis_roster, genesis_roster_with, gov_key, member_id, sign_policy,
    sign_roster, T0,
};
use tfx_protocol::disclosure::Disclosure;
use tfx_protocol::evidence::Evidence;
use tfx_protocol::ids::sha256;
use tfx_protocol::minimize::{mask_fields, purge};
use tfx_protocol::policy::Policy;
use tfx_protocol::roster::{Revocation, SignedRoster, ROLES};
use tfx_protocol::store::{LogHead, MemoryStore, Store};
use tfx_protocol::sync::wire::{Fetch, Heads, Hello, Message, Records, WireRecord};
use tfx_protocol::sync::{
    DisconnectCause, Event, Prechecked, SyncConfig, SyncCore, QUIET_SIDE_ROUNDS,
};
use tfx_protocol::witness::{verify_cosignature, Cosignature, Witnessed};
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

const EMPTY: LogHead = LogHead {
    size: 0,
    root: [0; 32],
};

fn core_with(store: &MemoryStore, chain: Vec<Vec<u8>>, local: LogHead) -> SyncCore {
    core_as(0, store, chain, local)
}

/// The sync core of member `i`.
fn core_as(i: usize, store: &MemoryStore, chain: Vec<Vec<u8>>, local: LogHead) -> SyncCore {
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let policies = vec![everything_policy()];
    SyncCore::new(
        SyncConfig::new(member_id(i)),
        store,
        genesis,
        chain,
        policies,
        local,
    )
    .unwrap()
}

/// Policy v1 granting every role every field: these tests are about replication, not views
/// (those are tested below with narrower policies).
fn everything_policy() -> Vec<u8> {
    let all: &[&str] = &["*"];
    let grants: Vec<(&str, &str, &[&str])> =
        ["credit", "ip-valuation", "monitoring", "risk-warning"]
            .iter()
            .flat_map(|k| ROLES.iter().map(move |r| (*k, *r, all)))
            .collect();
    sign_policy(1, None, 1, &grants).1
}

fn events(core: &mut SyncCore) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn sent(core: &mut SyncCore) -> Vec<(MemberId, Message)> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

/// Records `from..from+count` of member `i`'s log, read from `source` as a peer would send them.
fn records_of(source: &MemoryStore, i: usize, from: u64, count: usize) -> Records {
    let origin = member_id(i);
    let records = source
        .envelopes(&origin, LogIndex(from), count)
        .unwrap()
        .into_iter()
        .map(|(_, envelope)| WireRecord {
            disclosures: source
                .disclosures(&RecordId::of_envelope(&envelope))
                .unwrap(),
            envelope,
        })
        .collect();
    Records {
        origin,
        from,
        records,
        checkpoint: source.checkpoint(&member_id(i)).unwrap(),
        partial: false,
    }
}

/// A node (m00) connected to m01, and m01's log of three records.
fn setup(roles: impl Fn(usize) -> &'static str) -> (MemoryStore, SyncCore, MemoryStore) {
    let chain = vec![sign_roster(genesis_roster_with(4, roles))];
    let store = MemoryStore::new();
    let mut core = core_with(&store, chain, EMPTY);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let source = MemoryStore::new();
    append(&source, 1, &credit_body(), 3, T0, 1);
    (store, core, source)
}

fn assert_refused(mutate: impl Fn(&mut Records), roles: impl Fn(usize) -> &'static str, why: &str) {
    let (store, mut core, source) = setup(roles);
    let mut r = records_of(&source, 1, 0, 3);
    mutate(&mut r);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { peer, reason, cause: DisconnectCause::Violation }] if peer == &member_id(1) && reason.contains(why)),
        "expected a disconnect mentioning {why:?}, got {ev:?}"
    );
    assert!(store.origins().unwrap().is_empty(), "something was stored");
    assert_eq!(core.connected().count(), 0, "the peer is still connected");
}

#[test]
fn valid_records_are_verified_and_applied_whether_or_not_prechecked() {
    for prechecked in [false, true] {
        let (store, mut core, source) = setup(|_| "bank");
        let r = records_of(&source, 1, 0, 3);
        if prechecked {
            let r = Prechecked::check(r, core.roster(), &store);
            core.handle_records(&store, &member_id(1), r, T0);
        } else {
            core.handle_message(&store, &member_id(1), Message::Records(r), T0);
        }
        let head = source.head(&member_id(1)).unwrap().unwrap();
        assert_eq!(
            events(&mut core),
            vec![Event::Applied {
                origin: member_id(1),
                head
            }]
        );
        assert_eq!(store.head(&member_id(1)).unwrap(), Some(head));
        assert_eq!(
            store.checkpoint(&member_id(1)).unwrap(),
            source.checkpoint(&member_id(1)).unwrap()
        );
    }
}

/// A precheck keeps the disclosure bytes of the records it verified and hands back those of
/// the ones it refused: either way, the message comes back whole for the core to verify again.
#[test]
fn a_prechecked_message_comes_back_as_received() {
    let (store, core, source) = setup(|_| "bank");
    let mut r = records_of(&source, 1, 0, 4);
    let last = r.records[1].envelope.len() - 1;
    r.records[1].envelope[last] ^= 1; // its signature fails
    r.records[2].disclosures[3][0] ^= 1; // its fourth disclosure fails
    let checked = Prechecked::check(r.clone(), core.roster(), &store);
    assert_eq!(checked.into_records(), r);
}

#[test]
fn a_forged_signature_disconnects_the_sender() {
    assert_refused(
        |r| {
            let e = &mut r.records[1].envelope;
            let last = e.len() - 1;
            e[last] ^= 1;
        },
        |_| "bank",
        "does not verify",
    );
}

/// The core's roster (genesis, every member `bank`) with member 1's signing key swapped for
/// member 5's, as version 2: records member 1 signed do not verify under it.
fn roster_rotating_member_1() -> tfx_protocol::roster::Roster {
    let mut r = genesis_roster_with(4, |_| "bank");
    r.version = 2;
    r.members[1].keys[0].key = *common::member_key(5).verifying_key();
    r
}

#[test]
fn a_precheck_that_failed_disconnects_the_sender_and_stores_nothing() {
    let (store, mut core, source) = setup(|_| "bank");
    let mut r = records_of(&source, 1, 0, 3);
    let e = &mut r.records[2].envelope;
    let last = e.len() - 1;
    e[last] ^= 1;
    let r = Prechecked::check(r, core.roster(), &store);
    assert_prechecked_refused(&store, &mut core, r, "#2 does not verify");
}

/// Hands `r` to the core from m01 and expects m01 disconnected with `why` and nothing stored.
fn assert_prechecked_refused(store: &MemoryStore, core: &mut SyncCore, r: Prechecked, why: &str) {
    core.handle_records(store, &member_id(1), r, T0);
    let ev = events(core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { reason, .. }] if reason.contains(why)),
        "{ev:?}"
    );
    assert!(store.origins().unwrap().is_empty(), "something was stored");
}

#[test]
fn a_precheck_under_another_roster_version_is_redone_under_the_cores() {
    // Checked under a roster in which member 1 holds another key, every record "fails"; the
    // core holds version 1, under which they are valid, so it verifies again and applies them.
    let (store, mut core, source) = setup(|_| "bank");
    let other = roster_rotating_member_1();
    let r = Prechecked::check(records_of(&source, 1, 0, 3), &other, &store);
    core.handle_records(&store, &member_id(1), r, T0);
    assert_eq!(
        store.head(&member_id(1)).unwrap(),
        source.head(&member_id(1)).unwrap()
    );
    assert!(matches!(&events(&mut core)[..], [Event::Applied { .. }]));

    // And the other way round: a forged record that a stale precheck passed is still refused.
    // (Checking under version 2 with the forger's key — member 5's — makes the forgery "valid".)
    let (store, mut core, _) = setup(|_| "bank");
    let forged = MemoryStore::new();
    common::append_as(&forged, 1, &common::member_key(5), &credit_body(), 3, T0, 1);
    let r = Prechecked::check(records_of(&forged, 1, 0, 3), &other, &store);
    assert_prechecked_refused(&store, &mut core, r, "does not verify");
}

#[test]
fn records_claiming_another_origin_disconnect_the_sender() {
    let other = MemoryStore::new();
    append(&other, 2, &credit_body(), 3, T0, 2);
    let theirs = records_of(&other, 2, 0, 3);
    assert_refused(
        move |r| r.records = theirs.records.clone(),
        |_| "bank",
        "claims origin m02",
    );
}

#[test]
fn records_at_the_wrong_position_disconnect_the_sender() {
    assert_refused(|r| r.records.swap(0, 1), |_| "bank", "sequence number");
}

#[test]
fn a_disclosure_from_another_record_disconnects_the_sender() {
    assert_refused(
        |r| {
            let d = r.records[0].disclosures[0].clone();
            r.records[1].disclosures[0] = d;
        },
        |_| "bank",
        "not in the signed header",
    );
}

#[test]
fn records_of_a_kind_the_origin_may_not_issue_disconnect_the_sender() {
    // m01 is the risk-warning member: it may not issue credit records.
    assert_refused(
        |_| {},
        |i| if i == 1 { "risk-warning" } else { "bank" },
        "may issue credit",
    );
}

#[test]
fn a_checkpoint_that_does_not_end_the_records_disconnects_the_sender() {
    assert_refused(
        |r| r.records.truncate(2),
        |_| "bank",
        "does not end the records",
    );
}

#[test]
fn a_log_that_contradicts_a_signed_checkpoint_is_a_fork() {
    let (store, mut core, source) = setup(|_| "bank");
    // The same origin signs a second, different history of the same size.
    let forked = MemoryStore::new();
    append(&forked, 1, &credit_body(), 3, T0, 99);
    let mut r = records_of(&source, 1, 0, 3);
    r.checkpoint = forked.checkpoint(&member_id(1)).unwrap();
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Fork { origin, .. }] if origin == &member_id(1)),
        "{ev:?}"
    );
    assert!(store.origins().unwrap().is_empty());
    assert_eq!(core.frozen().count(), 1);
}

#[test]
fn unsigned_heads_with_another_root_freeze_nothing() {
    // Heads are unsigned: a lying peer must not be able to freeze an honest origin.
    let (store, mut core, source) = setup(|_| "bank");
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    events(&mut core);
    let heads = Heads {
        reply: false,
        heads: vec![(
            member_id(1),
            LogHead {
                size: 3,
                root: [0xee; 32],
            },
        )],
        checkpoints: vec![],
    };
    core.handle_message(&store, &member_id(1), Message::Heads(heads), T0);
    assert!(events(&mut core).is_empty());
    assert_eq!(core.frozen().count(), 0);
}

/// m00 holding m01's three records, connected to m01 and m02; and m01's twin log of the same
/// size signed with another history.
fn holder_and_twin() -> (MemoryStore, SyncCore, MemoryStore) {
    let (store, mut core, source) = setup(|_| "bank");
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    events(&mut core);
    let twin = MemoryStore::new();
    append(&twin, 1, &credit_body(), 3, T0, 99);
    (store, core, twin)
}

fn heads_showing(checkpoint: Vec<u8>) -> Message {
    Message::Heads(Heads {
        reply: true,
        heads: vec![],
        checkpoints: vec![checkpoint],
    })
}

#[test]
fn a_signed_checkpoint_contradicting_the_copy_becomes_evidence_sent_first_and_kept() {
    let (store, mut core, twin) = holder_and_twin();
    sent(&mut core);
    let theirs = twin.checkpoint(&member_id(1)).unwrap().unwrap();
    core.handle_message(&store, &member_id(2), heads_showing(theirs), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Fork { origin, detail, .. }] if origin == &member_id(1) && detail.contains("two checkpoints of size 3")),
        "{ev:?}"
    );
    // Persisted, verifiable by anyone with the roster, and sent to the other peer first.
    let kept = store.evidence().unwrap();
    assert_eq!(kept.len(), 1);
    let roster = genesis_roster(4);
    let eq = Evidence::decode(&kept[0].1)
        .unwrap()
        .verify(&roster)
        .unwrap();
    assert_eq!(eq.origin, member_id(1));
    let out = sent(&mut core);
    assert!(
        matches!(out.first(), Some((p, Message::Evidence(b))) if p == &member_id(1) && b == &kept[0].1),
        "{out:?}"
    );
    // Frozen: no more of its records are taken, and a restart keeps it frozen.
    assert_eq!(core.frozen().collect::<Vec<_>>(), vec![&member_id(1)]);
    let chain = vec![sign_roster(genesis_roster(4))];
    let mut again = core_with(&store, chain, EMPTY);
    assert_eq!(again.frozen().collect::<Vec<_>>(), vec![&member_id(1)]);
    // ...and a peer that connects is sent the evidence.
    again.handle_connected(member_id(3), T0);
    let out = sent(&mut again);
    assert!(
        out.iter().any(|(_, m)| matches!(m, Message::Evidence(_))),
        "{out:?}"
    );
}

#[test]
fn evidence_from_a_peer_is_checked_before_it_freezes_anything() {
    let (store, mut core, twin) = holder_and_twin();
    let ours = store.checkpoint(&member_id(1)).unwrap().unwrap();
    let theirs = twin.checkpoint(&member_id(1)).unwrap().unwrap();
    // Not evidence: the same checkpoint twice. The sender is disconnected, nothing frozen.
    let bogus = Evidence::Checkpoints {
        origin: member_id(1),
        a: ours.clone(),
        b: ours.clone(),
    };
    core.handle_message(&store, &member_id(2), Message::Evidence(bogus.encode()), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { peer, cause: DisconnectCause::Violation, .. }] if peer == &member_id(2)),
        "{ev:?}"
    );
    assert_eq!(core.frozen().count(), 0);
    assert!(store.evidence().unwrap().is_empty());
    // Real evidence from a peer freezes the origin even though this node saw no fork itself.
    let real = Evidence::Checkpoints {
        origin: member_id(1),
        a: ours,
        b: theirs,
    };
    core.handle_message(&store, &member_id(1), Message::Evidence(real.encode()), T0);
    assert!(matches!(&events(&mut core)[..], [Event::Fork { .. }]));
    assert_eq!(store.evidence().unwrap().len(), 1);
}

#[test]
fn a_longer_copy_proves_a_fork_far_back_with_a_consistency_proof() {
    let (store, mut core, twin) = holder_and_twin();
    // m00 holds six records of m01; the twin's checkpoint at three contradicts them.
    let source = MemoryStore::new();
    append(&source, 1, &credit_body(), 3, T0, 1);
    append(&source, 1, &credit_body(), 3, T0, 2);
    let r = records_of(&source, 1, 3, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    events(&mut core);
    let theirs = twin.checkpoint(&member_id(1)).unwrap().unwrap();
    core.handle_message(&store, &member_id(2), heads_showing(theirs), T0);
    assert!(matches!(&events(&mut core)[..], [Event::Fork { .. }]));
    let kept = store.evidence().unwrap();
    let ev = Evidence::decode(&kept[0].1).unwrap();
    assert!(matches!(ev, Evidence::Diverged { .. }), "{ev:?}");
    ev.verify(&genesis_roster(4)).unwrap();
}

#[test]
fn witnesses_cosign_checked_checkpoints_and_gossip_them_until_final() {
    let chain = vec![sign_roster(genesis_roster(4))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let mut config = SyncConfig::new(member_id(0));
    config.witness_key = Some(std::sync::Arc::new(common::member_key(0)));
    config.witness_ms = 1_000;
    let store = MemoryStore::new();
    let mut core = SyncCore::new(
        config,
        &store,
        genesis,
        chain,
        vec![everything_policy()],
        EMPTY,
    )
    .unwrap();
    core.handle_connected(member_id(1), T0);
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    let source = MemoryStore::new();
    append(&source, 1, &credit_body(), 3, T0, 1);
    core.handle_message(
        &store,
        &member_id(1),
        Message::Records(records_of(&source, 1, 0, 3)),
        T0,
    );
    events(&mut core);
    sent(&mut core);
    core.handle_timeout(&store, T0 + 1);
    let out = sent(&mut core);
    let gossip: Vec<_> = out
        .iter()
        .filter_map(|(p, m)| match m {
            Message::Witness(w) => Some((p.clone(), w.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(gossip.len(), 1, "one cosignature, to the origin: {out:?}");
    assert_eq!(gossip[0].0, member_id(1));
    let roster = genesis_roster(4);
    let w = &gossip[0].1;
    let cosig = verify_cosignature(&w.cosignatures[0], &roster).unwrap();
    assert_eq!((cosig.witness.clone(), cosig.size), (member_id(0), 3));
    // Quorum 1 (the default): final with this node's own cosignature, and stored.
    let held = core.witnessed(&member_id(1));
    assert_eq!(held.len(), 1);
    assert!(held[0].1);
    assert_eq!(store.witnessed(&member_id(1)).unwrap().len(), 1);
    // Nothing new to cosign in the next round.
    core.handle_timeout(&store, T0 + 2_000);
    assert!(!sent(&mut core)
        .iter()
        .any(|(_, m)| matches!(m, Message::Witness(_))));
    // Another witness's cosignature of the same checkpoint is verified and kept.
    let other = Cosignature::of(
        &tfx_protocol::checkpoint::Checkpoint::decode_unverified(&w.checkpoint).unwrap(),
        member_id(2),
        Timestamp(T0),
    )
    .sign(&common::member_key(2));
    let msg = Message::Witness(Witnessed {
        checkpoint: w.checkpoint.clone(),
        cosignatures: vec![other],
    });
    core.handle_message(&store, &member_id(2), msg, T0 + 3);
    assert!(events(&mut core).is_empty());
    let stored = Witnessed::decode(&store.witnessed(&member_id(1)).unwrap()[0].1).unwrap();
    assert_eq!(stored.cosignatures.len(), 2);
    // A cosignature that does not verify is a violation.
    let mut forged = stored.cosignatures[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let msg = Message::Witness(Witnessed {
        checkpoint: w.checkpoint.clone(),
        cosignatures: vec![forged],
    });
    core.handle_message(&store, &member_id(2), msg, T0 + 4);
    assert!(matches!(
        &events(&mut core)[..],
        [Event::Disconnect {
            cause: DisconnectCause::Violation,
            ..
        }]
    ));
}

#[test]
fn the_local_log_is_served_only_up_to_its_durable_head() {
    let store = MemoryStore::new();
    append(&store, 0, &credit_body(), 3, T0, 1);
    let durable = store.head(&member_id(0)).unwrap().unwrap();
    append(&store, 0, &credit_body(), 2, T0 + 1, 2); // written, not yet flushed
    let mut core = core_with(&store, vec![sign_roster(genesis_roster(3))], durable);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let fetch = Message::Fetch(Fetch {
        origin: member_id(0),
        from: 0,
        count: 10,
    });
    core.handle_message(&store, &member_id(1), fetch, T0);
    let out = sent(&mut core);
    let [(_, Message::Records(r))] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(r.records.len(), 3);
}

#[test]
fn a_new_local_append_is_pushed_to_a_peer_in_step() {
    let store = MemoryStore::new();
    let mut core = core_with(&store, vec![sign_roster(genesis_roster(3))], EMPTY);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    // The peer says it holds nothing of ours: it is exactly at our (empty) head.
    let heads = Heads {
        reply: true,
        heads: vec![(member_id(0), EMPTY)],
        checkpoints: vec![],
    };
    core.handle_message(&store, &member_id(1), Message::Heads(heads), T0);
    let head = append(&store, 0, &credit_body(), 2, T0, 1);
    core.handle_local_head(&store, head, T0);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p, Message::Records(r))] if p == &member_id(1) && r.records.len() == 2 && r.checkpoint.is_some()),
        "{out:?}"
    );
}

#[test]
fn a_newer_roster_is_adopted_and_revoked_peers_are_dropped() {
    let v1 = genesis_roster(4);
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.previous = Some(v1.hash());
    v2.issued_at = Timestamp(T0);
    v2.revocations.push(Revocation {
        member: member_id(2),
        at: Timestamp(T0),
        reason: "left the consortium".into(),
    });
    let v2_bytes = sign_roster(v2);
    let store = MemoryStore::new();
    let mut core = core_with(&store, vec![sign_roster(v1)], EMPTY);
    core.handle_connected(member_id(1), T0);
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    let hello = Hello {
        roster_version: 2,
        policy_version: 0,
        digest: [0; 32],
    };
    core.handle_message(&store, &member_id(1), Message::Hello(hello), T0 + 1);
    assert!(sent(&mut core)
        .iter()
        .any(|(p, m)| p == &member_id(1) && m == &Message::RosterRequest { have: 1 }));
    core.handle_message(
        &store,
        &member_id(1),
        Message::Rosters(vec![v2_bytes.clone()]),
        T0 + 2,
    );
    let ev = events(&mut core);
    assert!(ev.contains(&Event::RosterAdopted {
        version: 2,
        bytes: v2_bytes
    }));
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Disconnect { peer, cause: DisconnectCause::NotMember, .. } if peer == &member_id(2))),
        "{ev:?}"
    );
    assert_eq!(core.roster().version, 2);
    assert_eq!(
        core.connected().cloned().collect::<Vec<_>>(),
        vec![member_id(1)]
    );
    // A revoked member cannot come back.
    core.handle_connected(member_id(2), T0 + 3);
    assert!(matches!(&events(&mut core)[..], [Event::Disconnect { .. }]));
}

#[test]
fn members_in_sync_spend_about_one_hello_per_round() {
    let chain = vec![sign_roster(genesis_roster(3))];
    let (store_a, store_b) = (MemoryStore::new(), MemoryStore::new());
    let mut a = core_as(0, &store_a, chain.clone(), EMPTY);
    let mut b = core_as(1, &store_b, chain, EMPTY);
    assert!(a.starts_rounds(&member_id(1)) && !b.starts_rounds(&member_id(0)));
    // On connect both say what they hold; equal digests and versions: nothing more.
    a.handle_connected(member_id(1), T0);
    b.handle_connected(member_id(0), T0);
    let (from_a, from_b) = (sent(&mut a), sent(&mut b));
    assert!(
        matches!(&from_a[..], [(_, Message::Hello(_))]),
        "{from_a:?}"
    );
    assert!(
        matches!(&from_b[..], [(_, Message::Hello(_))]),
        "{from_b:?}"
    );
    b.handle_message(&store_b, &member_id(0), from_a[0].1.clone(), T0);
    a.handle_message(&store_a, &member_id(1), from_b[0].1.clone(), T0);
    assert!(sent(&mut a).is_empty() && sent(&mut b).is_empty());
    // m00 starts every round; m01 says hello only every QUIET_SIDE_ROUNDS-th; nobody answers.
    let interval = SyncConfig::new(member_id(0)).anti_entropy_ms;
    let (mut cores, stores) = ([a, b], [store_a, store_b]);
    let mut hellos = [0; 2];
    for round in 1..=2 * QUIET_SIDE_ROUNDS {
        let now = T0 + round * interval;
        for i in 0..2 {
            cores[i].handle_timeout(&stores[i], now);
            for (to, m) in sent(&mut cores[i]) {
                assert!(matches!(m, Message::Hello(_)), "round {round}: {m:?}");
                assert_eq!(to, member_id(1 - i));
                hellos[i] += 1;
                cores[1 - i].handle_message(&stores[1 - i], &member_id(i), m, now);
                let answer = sent(&mut cores[1 - i]);
                assert!(answer.is_empty(), "round {round}: in sync, yet {answer:?}");
            }
        }
    }
    assert_eq!(hellos, [2 * QUIET_SIDE_ROUNDS, 2]);
    // A Hello from a member holding something else is answered with the heads.
    let Message::Hello(mut other) = from_a[0].1.clone() else {
        panic!("{from_a:?}");
    };
    other.digest = [7; 32];
    cores[1].handle_message(&stores[1], &member_id(0), Message::Hello(other), T0);
    let out = sent(&mut cores[1]);
    assert!(
        matches!(&out[..], [(p, Message::Heads(h))] if p == &member_id(0) && !h.reply),
        "{out:?}"
    );
}

#[test]
fn a_roster_without_enough_governor_signatures_disconnects_the_sender() {
    let v1 = genesis_roster(3);
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.previous = Some(v1.hash());
    let mut weak = SignedRoster::new(v2).unwrap();
    weak.sign(&gov_key(0)); // one of three; the threshold is two
    let store = MemoryStore::new();
    let mut core = core_with(&store, vec![sign_roster(v1)], EMPTY);
    core.handle_connected(member_id(1), T0);
    core.handle_message(
        &store,
        &member_id(1),
        Message::Rosters(vec![weak.encode()]),
        T0,
    );
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { reason, cause: DisconnectCause::Violation, .. }] if reason.contains("does not verify")),
        "{ev:?}"
    );
    assert_eq!(core.roster().version, 1);
}

fn heads_saying(ours: u64) -> Message {
    Message::Heads(Heads {
        reply: true,
        heads: vec![(
            member_id(0),
            LogHead {
                size: ours,
                root: [0; 32],
            },
        )],
        checkpoints: vec![],
    })
}

#[test]
fn a_peer_known_to_lag_behind_under_steady_appends_still_gets_pushes() {
    let store = MemoryStore::new();
    let mut core = core_with(&store, vec![sign_roster(genesis_roster(3))], EMPTY);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 3, T0, 1);
    core.handle_local_head(&store, head, T0);
    assert!(
        sent(&mut core).is_empty(),
        "nothing is known of the peer yet"
    );
    // Its heads were sent before our third record reached it: it holds 2 of our 3.
    core.handle_message(&store, &member_id(1), heads_saying(2), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 1, T0, 2);
    core.handle_local_head(&store, head, T0);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p, Message::Records(r))] if p == &member_id(1) && r.from == 2 && r.records.len() == 2),
        "pushed from what the peer holds: {out:?}"
    );
    // Stale heads from before that push do not make us resend it, nor stop the next push.
    core.handle_message(&store, &member_id(1), heads_saying(2), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 1, T0, 3);
    core.handle_local_head(&store, head, T0);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p, Message::Records(r))] if p == &member_id(1) && r.from == 4 && r.records.len() == 1),
        "{out:?}"
    );
}

// ---- Data minimization (DESIGN §8) ----

const RW_FIELDS: &[&str] = &[
    "subject_pseudonym",
    "overdue_days",
    "classification",
    "balance_band",
];

/// m00 holds role `risk-warning`, m01 and m02 are banks; policy v1 gives risk-warning
/// [`RW_FIELDS`] of credit records and banks everything.
fn minimized_setup() -> (MemoryStore, SyncCore, MemoryStore, (Policy, Vec<u8>)) {
    let roles = |i: usize| if i == 0 { "risk-warning" } else { "bank" };
    let chain = vec![sign_roster(genesis_roster_with(3, roles))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let all: &[&str] = &["*"];
    let v1 = sign_policy(
        1,
        None,
        1,
        &[
            ("credit", "bank", all),
            ("credit", "risk-warning", RW_FIELDS),
        ],
    );
    let store = MemoryStore::new();
    let config = SyncConfig::new(member_id(0));
    let mut core =
        SyncCore::new(config, &store, genesis, chain, vec![v1.1.clone()], EMPTY).unwrap();
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let source = MemoryStore::new();
    append(&source, 1, &credit_body(), 3, T0, 1);
    (store, core, source, v1)
}

fn field_names(ds: &[Vec<u8>]) -> Vec<String> {
    let mut n: Vec<String> = ds
        .iter()
        .map(|d| Disclosure::decode(d).unwrap().name().to_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn a_non_entitled_disclosure_is_dropped_recorded_and_the_sender_flagged() {
    let (store, mut core, source, _) = minimized_setup();
    // m01 pushes its full records, identities included, to the risk-warning member.
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    let ev = events(&mut core);
    let refused = ev.iter().find_map(|e| match e {
        Event::Refused {
            peer,
            disclosures,
            fields,
            ..
        } => Some((peer, disclosures, fields)),
        _ => None,
    });
    let (peer, count, fields) = refused.expect("a Refused event");
    assert_eq!(peer, &member_id(1));
    assert!(fields.contains("subject_uscc") && fields.contains("subject_name"));
    assert!(!fields.iter().any(|f| RW_FIELDS.contains(&f.as_str())));
    // Records are kept (the log stays whole) with exactly the view's fields the origin disclosed.
    assert!(ev.iter().any(|e| matches!(e, Event::Applied { .. })));
    let held = store.records(&member_id(1), LogIndex(0), 10).unwrap();
    assert_eq!(held.len(), 3);
    let full = source.records(&member_id(1), LogIndex(0), 10).unwrap();
    let want: Vec<String> = field_names(&full[0].disclosures)
        .into_iter()
        .filter(|f| RW_FIELDS.contains(&f.as_str()))
        .collect();
    for h in &held {
        assert_eq!(field_names(&h.disclosures), want);
    }
    assert_eq!(
        *count as usize,
        3 * (full[0].disclosures.len() - want.len())
    );
    // Flagged, not disconnected: a sender on an older policy version is not an attacker.
    assert_eq!(core.connected().count(), 1);
}

#[test]
fn a_holder_serves_each_requester_only_its_view_and_reports_it_for_the_ledger() {
    // m00 here is a bank holding m01's full records; m02 (risk-warning) fetches them.
    let roles = |i: usize| if i == 2 { "risk-warning" } else { "bank" };
    let chain = vec![sign_roster(genesis_roster_with(3, roles))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let all: &[&str] = &["*"];
    let (_, v1) = sign_policy(
        1,
        None,
        1,
        &[
            ("credit", "bank", all),
            ("credit", "risk-warning", RW_FIELDS),
        ],
    );
    let store = MemoryStore::new();
    append(&store, 1, &credit_body(), 3, T0, 1);
    let config = SyncConfig::new(member_id(0));
    let mut core = SyncCore::new(config, &store, genesis, chain, vec![v1], EMPTY).unwrap();
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    let fetch = Fetch {
        origin: member_id(1),
        from: 0,
        count: 3,
    };
    core.handle_message(&store, &member_id(2), Message::Fetch(fetch), T0);
    let out = sent(&mut core);
    let [(to, Message::Records(r))] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(to, &member_id(2));
    let full = store.records(&member_id(1), LogIndex(0), 3).unwrap();
    for (w, f) in r.records.iter().zip(&full) {
        assert_eq!(w.envelope, f.envelope, "envelopes travel whole");
        let want: Vec<String> = field_names(&f.disclosures)
            .into_iter()
            .filter(|n| RW_FIELDS.contains(&n.as_str()))
            .collect();
        assert_eq!(field_names(&w.disclosures), want);
    }
    let ev = events(&mut core);
    let [Event::Disclosed {
        peer,
        origin,
        policy_version: 1,
        records,
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((peer, origin), (&member_id(2), &member_id(1)));
    assert_eq!(records.len(), 3);
    for (seq, id, kind, mask) in records {
        let f = &full[*seq as usize];
        assert_eq!(*id, RecordId::of_envelope(&f.envelope));
        let mut logged: Vec<String> = mask_fields(*kind, *mask)
            .into_iter()
            .map(str::to_owned)
            .collect();
        logged.sort();
        assert_eq!(logged, field_names(&r.records[*seq as usize].disclosures));
    }
}

/// The risk-warning member (m00) holding m01's three records under policy v1, then adopting
/// v2, which also grants it the lender: returns it with the back-fill fetch it sent m01, and
/// the answer m01 gives (its records with the fields v2 grants risk-warning).
fn backfill_setup() -> (
    MemoryStore,
    SyncCore,
    MemoryStore,
    Policy,
    Vec<&'static str>,
    Records,
) {
    let (store, mut core, source, (p1, _)) = minimized_setup();
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    events(&mut core);
    sent(&mut core);
    // v2 also grants the lender to risk-warning; m01 announces it and serves it on request.
    let all: &[&str] = &["*"];
    let mut wider: Vec<&str> = RW_FIELDS.to_vec();
    wider.push("lender");
    let (p2, v2) = sign_policy(
        2,
        Some(&p1),
        1,
        &[("credit", "bank", all), ("credit", "risk-warning", &wider)],
    );
    let hello = Hello {
        roster_version: 1,
        policy_version: 2,
        digest: [0; 32],
    };
    core.handle_message(&store, &member_id(1), Message::Hello(hello), T0);
    let out = sent(&mut core);
    assert!(
        out.iter()
            .any(|(_, m)| matches!(m, Message::PolicyRequest { have: 1 })),
        "{out:?}"
    );
    core.handle_message(
        &store,
        &member_id(1),
        Message::Policies(vec![v2.clone()]),
        T0,
    );
    let ev = events(&mut core);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::PolicyAdopted { version: 2, .. })),
        "{ev:?}"
    );
    let out = sent(&mut core);
    let fetch = out
        .iter()
        .find_map(|(p, m)| match m {
            Message::Fetch(f) if p == &member_id(1) => Some(f.clone()),
            _ => None,
        })
        .expect("a back-fill fetch to the origin");
    assert_eq!((fetch.from, fetch.count), (0, 3));
    // The origin answers with what risk-warning may now hold.
    let mut answer = records_of(&source, 1, 0, 3);
    for w in &mut answer.records {
        w.disclosures
            .retain(|d| wider.contains(&Disclosure::decode(d).unwrap().name()));
    }
    let (p2, _) = (p2, v2);
    (store, core, source, p2, wider, answer)
}

/// The core reported m01's three records back-filled, and each now holds the lender.
fn assert_lender_back_filled(store: &MemoryStore, core: &mut SyncCore) {
    let ev = events(core);
    assert!(
        ev.contains(&Event::Backfilled {
            origin: member_id(1),
            records: 3
        }),
        "{ev:?}"
    );
    for h in store.records(&member_id(1), LogIndex(0), 10).unwrap() {
        assert!(field_names(&h.disclosures).contains(&"lender".to_owned()));
    }
}

#[test]
fn a_policy_granting_a_field_back_fills_it_and_one_revoking_it_asks_for_a_purge() {
    let all: &[&str] = &["*"];
    let (store, mut core, _, p2, _, answer) = backfill_setup();
    core.handle_message(&store, &member_id(1), Message::Records(answer), T0);
    assert_lender_back_filled(&store, &mut core);

    // v3 takes overdue_days and the lender away again: the node is told to purge.
    let (_, v3) = sign_policy(
        3,
        Some(&p2),
        1,
        &[
            ("credit", "bank", all),
            (
                "credit",
                "risk-warning",
                &["subject_pseudonym", "classification", "balance_band"],
            ),
        ],
    );
    core.handle_message(&store, &member_id(1), Message::Policies(vec![v3]), T0);
    let ev = events(&mut core);
    assert!(ev.contains(&Event::PurgeNeeded), "{ev:?}");
    let report = purge(&store, core.view(), &member_id(0), T0).unwrap();
    assert_eq!(report.changed, 3);
    assert!(report.fields.contains("lender") && report.fields.contains("overdue_days"));
    for h in store.records(&member_id(1), LogIndex(0), 10).unwrap() {
        let names = field_names(&h.disclosures);
        assert!(
            !names.contains(&"lender".to_owned()) && !names.contains(&"overdue_days".to_owned())
        );
        assert!(names.contains(&"classification".to_owned()));
    }
}

/// m01's key in `roster` replaced by m05's, the version unchanged: records m01 signed do not
/// verify under it, and a precheck under it is one the core trusts (same version).
fn with_member_1_key_swapped(
    roster: &tfx_protocol::roster::Roster,
) -> tfx_protocol::roster::Roster {
    let mut r = roster.clone();
    r.members[1].keys[0].key = *common::member_key(5).verifying_key();
    r
}

/// A back-fill answer repeats envelopes the node stored, byte for byte: their signatures were
/// checked before they were stored and are not checked again — only their disclosures. Shown
/// with a precheck under a roster (same version, so the core trusts it) in which m01's key is
/// another: the held records still verify, and their new fields are merged.
#[test]
fn a_back_fill_checks_the_disclosures_of_held_records_not_their_signatures_again() {
    let (store, mut core, _, _, _, mut answer) = backfill_setup();
    // Without the checkpoint, which is checked like any other (it would fail under `swapped`).
    answer.checkpoint = None;
    let swapped = with_member_1_key_swapped(core.roster());
    let checked = Prechecked::check(answer, &swapped, &store);
    core.handle_records(&store, &member_id(1), checked, T0);
    assert_lender_back_filled(&store, &mut core);
}

/// The control: records not held are checked in full by the same precheck, and refused.
#[test]
fn records_not_held_are_checked_for_their_signature_in_full() {
    let (store, mut core, source) = setup(|_| "bank");
    let swapped = with_member_1_key_swapped(core.roster());
    let r = Prechecked::check(records_of(&source, 1, 0, 3), &swapped, &store);
    assert_prechecked_refused(&store, &mut core, r, "#0 does not verify");
}

/// Held envelopes skip only the signature: a disclosure altered in a back-fill answer is
/// refused, the sender disconnected, and nothing of the answer merged — prechecked or not.
#[test]
fn a_back_fill_with_an_altered_disclosure_is_refused() {
    for prechecked in [false, true] {
        let (store, mut core, _, _, _, mut answer) = backfill_setup();
        let lender = answer.records[1]
            .disclosures
            .iter()
            .position(|d| Disclosure::decode(d).unwrap().name() == "lender")
            .unwrap();
        let d = &mut answer.records[1].disclosures[lender];
        let last = d.len() - 1;
        d[last] ^= 1;
        if prechecked {
            let checked = Prechecked::check(answer, core.roster(), &store);
            core.handle_records(&store, &member_id(1), checked, T0);
        } else {
            core.handle_message(&store, &member_id(1), Message::Records(answer), T0);
        }
        let ev = events(&mut core);
        assert!(
            matches!(&ev[..], [Event::Disconnect { reason, cause: DisconnectCause::Violation, .. }] if reason.contains("#1 does not verify")),
            "{ev:?}"
        );
        for h in store.records(&member_id(1), LogIndex(0), 10).unwrap() {
            assert!(!field_names(&h.disclosures).contains(&"lender".to_owned()));
        }
    }
}

#[test]
fn a_policy_without_enough_governor_signatures_disconnects_the_sender() {
    let (store, mut core, _, (p1, _)) = minimized_setup();
    let v2 = tfx_protocol::policy::SignedPolicy::new(Policy {
        version: 2,
        previous: Some(p1.hash()),
        ..p1.clone()
    })
    .map(|mut s| {
        s.sign(&gov_key(0));
        s.encode()
    })
    .unwrap();
    core.handle_message(&store, &member_id(1), Message::Policies(vec![v2]), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { reason, cause: DisconnectCause::Violation, .. }] if reason.contains("signed by 1 of 2")),
        "{ev:?}"
    );
    assert_eq!(core.policy().map(|p| p.version), Some(1));
}

#[test]
fn fields_past_their_retention_are_purged_and_the_log_still_verifies() {
    let (store, mut core, source, (p1, _)) = minimized_setup();
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    events(&mut core);
    // v2 keeps risk-warning's fields for 30 days after issue only.
    let mut p2 = Policy {
        version: 2,
        previous: Some(p1.hash()),
        ..p1.clone()
    };
    for g in &mut p2.grants {
        if g.role == "risk-warning" {
            g.retention_days = Some(30);
        }
    }
    let mut signed = tfx_protocol::policy::SignedPolicy::new(p2).unwrap();
    signed.sign(&gov_key(0));
    signed.sign(&gov_key(1));
    core.handle_message(
        &store,
        &member_id(1),
        Message::Policies(vec![signed.encode()]),
        T0,
    );
    let ev = events(&mut core);
    assert!(
        ev.contains(&Event::PurgeNeeded),
        "a shorter retention narrows the view: {ev:?}"
    );
    const DAY: u64 = 86_400_000;
    let early = purge(&store, core.view(), &member_id(0), T0 + 29 * DAY).unwrap();
    assert_eq!(
        (early.records, early.disclosures),
        (3, 0),
        "inside the retention"
    );
    let late = purge(&store, core.view(), &member_id(0), T0 + 31 * DAY).unwrap();
    assert_eq!(late.changed, 3);
    for h in store.records(&member_id(1), LogIndex(0), 10).unwrap() {
        assert!(h.disclosures.is_empty(), "expired fields are gone");
    }
    // Envelopes stay: the log re-verifies end to end.
    tfx_protocol::log::verify_log(&store, &member_id(1), core.roster(), &mut |_| {}).unwrap();
}

#[test]
fn a_policy_signed_by_governors_since_replaced_is_refused() {
    // Roster v2 replaces governor gov2 with gov3; the policy in force was signed under v1.
    let roles = |i: usize| if i == 0 { "risk-warning" } else { "bank" };
    let v1 = genesis_roster_with(3, roles);
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.previous = Some(v1.hash());
    v2.governors[2] = tfx_protocol::roster::Governor {
        id: tfx_protocol::MemberId::new("gov3").unwrap(),
        key: *gov_key(3).verifying_key(),
    };
    let chain = vec![sign_roster(v1), sign_roster(v2)];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let all: &[&str] = &["*"];
    let (p1, b1) = sign_policy(1, None, 1, &[("credit", "bank", all)]);
    let store = MemoryStore::new();
    let config = SyncConfig::new(member_id(0));
    let mut core = SyncCore::new(config, &store, genesis, chain, vec![b1], EMPTY).unwrap();
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    // gov0 and the replaced gov2 sign v2 under the old roster version: refused.
    let stale = sign_policy(
        2,
        Some(&p1),
        1,
        &[("credit", "bank", all), ("credit", "risk-warning", all)],
    )
    .1;
    core.handle_message(&store, &member_id(1), Message::Policies(vec![stale]), T0);
    let ev = events(&mut core);
    assert!(
        matches!(&ev[..], [Event::Disconnect { reason, .. }] if reason.contains("no longer the current roster's")),
        "{ev:?}"
    );
    assert_eq!(core.policy().map(|p| p.version), Some(1));
    // The current governors sign it under roster v2: adopted.
    core.handle_connected(member_id(1), T0);
    let mut fresh = tfx_protocol::policy::SignedPolicy::new(Policy {
        version: 2,
        previous: Some(p1.hash()),
        roster_version: 2,
        ..p1.clone()
    })
    .unwrap();
    fresh.sign(&gov_key(0));
    fresh.sign(&gov_key(3));
    core.handle_message(
        &store,
        &member_id(1),
        Message::Policies(vec![fresh.encode()]),
        T0,
    );
    assert_eq!(core.policy().map(|p| p.version), Some(2));
}

/// m00 restored from a backup holding 2 of its 5 records; m01 holds all 5 of m00's log, m02
/// holds 3. Returns (restored store, m01's copy, core in recovery with `recovery_peers`).
fn restored(recovery_peers: Option<usize>) -> (MemoryStore, MemoryStore, SyncCore) {
    let full = MemoryStore::new();
    append(&full, 0, &credit_body(), 5, T0, 1);
    let store = MemoryStore::new();
    let head = append(&store, 0, &credit_body(), 2, T0, 1);
    assert_eq!(
        store.envelopes(&member_id(0), LogIndex(0), 2).unwrap(),
        full.envelopes(&member_id(0), LogIndex(0), 2).unwrap(),
        "the backup is a prefix of the log"
    );
    let chain = vec![sign_roster(genesis_roster(3))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let mut config = SyncConfig::new(member_id(0));
    config.recovering = true;
    config.recovery_peers = recovery_peers;
    let core = SyncCore::new(
        config,
        &store,
        genesis,
        chain,
        vec![everything_policy()],
        head,
    )
    .unwrap();
    (store, full, core)
}

fn heads_of(store: &MemoryStore, origin: usize, size: u64) -> Message {
    let root = if size == store.head(&member_id(origin)).unwrap().unwrap().size {
        store.head(&member_id(origin)).unwrap().unwrap().root
    } else {
        [9; 32]
    };
    Message::Heads(Heads {
        reply: true,
        heads: vec![(member_id(origin), LogHead { size, root })],
        checkpoints: vec![],
    })
}

#[test]
fn a_restored_node_recovers_its_own_log_from_peers_before_issuing_again() {
    let (store, full, mut core) = restored(None);
    assert!(core.recovering());
    assert!(events(&mut core).is_empty(), "no peer has reported yet");
    // m01 holds all five of m00's records: the missing three are fetched from it.
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(1), heads_of(&full, 0, 5), T0);
    let out = sent(&mut core);
    assert!(
        out.iter().any(|(p, m)| p == &member_id(1)
            && matches!(m, Message::Fetch(f) if f.origin == member_id(0) && f.from == 2)),
        "{out:?}"
    );
    let r = records_of(&full, 0, 2, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
    let full_head = full.head(&member_id(0)).unwrap().unwrap();
    assert_eq!(store.head(&member_id(0)).unwrap(), Some(full_head));
    assert_eq!(
        store.checkpoint(&member_id(0)).unwrap(),
        full.checkpoint(&member_id(0)).unwrap(),
        "the origin's own latest checkpoint is back"
    );
    let ev = events(&mut core);
    assert_eq!(
        ev,
        vec![Event::Applied {
            origin: member_id(0),
            head: full_head
        }],
        "m02 has not reported: still recovering"
    );
    assert!(core.recovering());
    // m02 reports holding three: nobody holds more than m00 now.
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(2), heads_of(&full, 0, 3), T0);
    assert_eq!(
        events(&mut core),
        vec![Event::Recovered { head: full_head }]
    );
    assert!(!core.recovering());
}

#[test]
fn recovery_can_end_on_fewer_peers_and_never_before_the_log_is_caught_up() {
    let (store, full, mut core) = restored(Some(1));
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(1), heads_of(&full, 0, 5), T0);
    assert!(events(&mut core).is_empty(), "reported, but ahead of us");
    assert!(core.recovering());
    core.handle_message(
        &store,
        &member_id(1),
        Message::Records(records_of(&full, 0, 2, 3)),
        T0,
    );
    let full_head = full.head(&member_id(0)).unwrap().unwrap();
    assert_eq!(
        events(&mut core),
        vec![
            Event::Applied {
                origin: member_id(0),
                head: full_head
            },
            Event::Recovered { head: full_head }
        ]
    );
    // Out of recovery, the node's own records from a peer are ignored again.
    core.handle_message(
        &store,
        &member_id(1),
        Message::Records(records_of(&full, 0, 0, 5)),
        T0,
    );
    assert!(events(&mut core).is_empty());
}

#[test]
fn a_recovering_node_asks_every_member_yet_to_report_with_heads() {
    let (store, full, mut core) = restored(None);
    core.handle_connected(member_id(1), T0);
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    // A member in sync does not answer a Hello; Heads are always answered.
    let interval = SyncConfig::new(member_id(0)).anti_entropy_ms;
    core.handle_timeout(&store, T0 + interval);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p1, Message::Heads(h1)), (p2, Message::Heads(h2))]
            if p1 == &member_id(1) && p2 == &member_id(2) && !h1.reply && !h2.reply),
        "{out:?}"
    );
    core.handle_message(&store, &member_id(1), heads_of(&full, 0, 2), T0 + interval);
    sent(&mut core);
    core.handle_timeout(&store, T0 + 2 * interval);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p1, Message::Hello(_)), (p2, Message::Heads(_))]
            if p1 == &member_id(1) && p2 == &member_id(2)),
        "m01 reported, m02 did not: {out:?}"
    );
}

#[test]
fn a_restored_node_alone_in_its_consortium_recovers_at_once() {
    let store = MemoryStore::new();
    let head = append(&store, 0, &credit_body(), 2, T0, 1);
    let chain = vec![sign_roster(genesis_roster(1))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let mut config = SyncConfig::new(member_id(0));
    config.recovering = true;
    let mut core = SyncCore::new(config, &store, genesis, chain, vec![], head).unwrap();
    assert_eq!(events(&mut core), vec![Event::Recovered { head }]);
}

#[test]
fn an_origin_recovering_its_log_gets_its_own_records_whole_whatever_its_view() {
    let roles = |i: usize| if i == 1 { "central-bank" } else { "bank" };
    let chain = vec![sign_roster(genesis_roster_with(3, roles))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let all: &[&str] = &["*"];
    let policy = sign_policy(
        1,
        None,
        1,
        &[
            ("credit", "bank", &["lender"]),
            ("credit", "central-bank", all),
        ],
    )
    .1;
    // m01 (central bank) holds m00's two records with every field.
    let relay_store = MemoryStore::new();
    append(&relay_store, 0, &credit_body(), 2, T0, 1);
    let mut relay = SyncCore::new(
        SyncConfig::new(member_id(1)),
        &relay_store,
        genesis,
        chain.clone(),
        vec![policy.clone()],
        EMPTY,
    )
    .unwrap();
    let every =
        field_names(&relay_store.records(&member_id(0), LogIndex(0), 1).unwrap()[0].disclosures);
    assert!(every.len() > 1);
    let fetch = |relay: &mut SyncCore, who: usize| {
        relay.handle_connected(member_id(who), T0);
        sent(relay);
        let f = Message::Fetch(Fetch {
            origin: member_id(0),
            from: 0,
            count: 2,
        });
        relay.handle_message(&relay_store, &member_id(who), f, T0);
        let out = sent(relay);
        let [(_, Message::Records(r))] = &out[..] else {
            panic!("{out:?}")
        };
        r.clone()
    };
    // Another bank gets only its view; the origin gets everything it signed.
    let to_bank = fetch(&mut relay, 2);
    assert_eq!(field_names(&to_bank.records[0].disclosures), vec!["lender"]);
    let to_origin = fetch(&mut relay, 0);
    assert_eq!(field_names(&to_origin.records[0].disclosures), every);
    assert!(!to_origin.partial);

    // m00, restored with nothing of its log, recovers both records with every field.
    let store = MemoryStore::new();
    let mut config = SyncConfig::new(member_id(0));
    config.recovering = true;
    config.recovery_peers = Some(1);
    let mut core = SyncCore::new(config, &store, genesis, chain, vec![policy], EMPTY).unwrap();
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(1), heads_of(&relay_store, 0, 2), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(1), Message::Records(to_origin), T0);
    let held = store.records(&member_id(0), LogIndex(0), 2).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(field_names(&held[0].disclosures), every);
    assert!(matches!(
        events(&mut core).last(),
        Some(Event::Recovered { .. })
    ));
}

#[test]
fn recovery_never_ends_below_a_size_some_peer_reported() {
    // m01 reports all five of m00's records, then answers short (as a peer whose stored
    // checkpoint lags its head does) and goes away; m02 reports three. The target stays five.
    let (store, full, mut core) = restored(None);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(1), heads_of(&full, 0, 5), T0);
    sent(&mut core);
    let mut short = records_of(&full, 0, 2, 1);
    short.checkpoint = None;
    core.handle_message(&store, &member_id(1), Message::Records(short), T0);
    core.handle_disconnected(&member_id(1), T0);
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    core.handle_message(&store, &member_id(2), heads_of(&full, 0, 3), T0);
    assert!(core.recovering(), "{:?}", events(&mut core));
    assert!(!events(&mut core)
        .iter()
        .any(|e| matches!(e, Event::Recovered { .. })));
    assert_eq!(core.recovery_progress().map(|(_, t)| t), Some(5));
    // A peer claiming another root of our own log at our size does not freeze it.
    let lie = Message::Heads(Heads {
        reply: true,
        heads: vec![(
            member_id(0),
            LogHead {
                size: store.head(&member_id(0)).unwrap().unwrap().size,
                root: [7; 32],
            },
        )],
        checkpoints: vec![],
    });
    core.handle_message(&store, &member_id(2), lie, T0);
    assert_eq!(core.frozen().count(), 0);
}

#[test]
fn an_origin_gathers_cosignatures_of_its_log_and_passes_them_on_once_a_round() {
    let store = MemoryStore::new();
    let head = append(&store, 0, &credit_body(), 3, T0, 1);
    let mut config = SyncConfig::new(member_id(0));
    config.witness_ms = 1_000;
    let chain = vec![sign_roster(genesis_roster(4))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let mut core = SyncCore::new(
        config,
        &store,
        genesis,
        chain,
        vec![everything_policy()],
        head,
    )
    .unwrap();
    core.handle_connected(member_id(1), T0);
    core.handle_connected(member_id(2), T0);
    sent(&mut core);
    let cp_bytes = store.checkpoint(&member_id(0)).unwrap().unwrap();
    let cp = tfx_protocol::checkpoint::Checkpoint::decode_unverified(&cp_bytes).unwrap();
    for w in [1, 2] {
        let cosig = Cosignature::of(&cp, member_id(w), Timestamp(T0)).sign(&common::member_key(w));
        let msg = Message::Witness(Witnessed {
            checkpoint: cp_bytes.clone(),
            cosignatures: vec![cosig],
        });
        core.handle_message(&store, &member_id(w), msg, T0 + 1);
    }
    assert!(events(&mut core).is_empty());
    assert!(
        sent(&mut core).is_empty(),
        "nothing is passed on before the round"
    );
    core.handle_timeout(&store, T0 + 1_000);
    let out = sent(&mut core);
    let passed: Vec<_> = out
        .iter()
        .filter_map(|(p, m)| match m {
            Message::Witness(w) => Some((p.clone(), w.cosignatures.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        passed,
        vec![(member_id(1), 2), (member_id(2), 2)],
        "{out:?}"
    );
    let (held, is_final) = &core.witnessed(&member_id(0))[0];
    assert!(*is_final);
    assert_eq!(held.cosignatures.len(), 2);
}

#[test]
fn a_checkpoint_under_a_key_this_roster_does_not_know_yet_is_left_unchecked_without_blame() {
    // A peer with a newer roster (a rotated key) shows a checkpoint signed with that key before
    // this node has adopted the roster: not a violation, not evidence.
    let (store, mut core, _) = holder_and_twin();
    let rotated = tfx_protocol::keys::SigningKey::from_seed(&[0x77; 32]);
    let cp = tfx_protocol::checkpoint::Checkpoint {
        origin: member_id(1),
        size: 3,
        root: [0xab; 32],
        time: Timestamp(T0 + 10),
    }
    .sign(&rotated);
    core.handle_message(&store, &member_id(2), heads_showing(cp.bytes), T0);
    assert!(events(&mut core).is_empty());
    assert_eq!(core.connected().count(), 2);
    assert_eq!(core.frozen().count(), 0);
}

/// m00 (central bank, every field) connected to m02 (science department, a narrower view) and
/// to m01, the origin of three records, in that order and within the same millisecond.
fn relay_first_setup() -> (MemoryStore, SyncCore, MemoryStore) {
    let roles = |i: usize| match i {
        0 => "central-bank",
        1 => "bank",
        _ => "science-dept",
    };
    let chain = vec![sign_roster(genesis_roster_with(3, roles))];
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    let all: &[&str] = &["*"];
    let (_, v1) = sign_policy(
        1,
        None,
        1,
        &[
            ("credit", "central-bank", all),
            ("credit", "bank", all),
            ("credit", "science-dept", &["lender"]),
        ],
    );
    let store = MemoryStore::new();
    let mut core = SyncCore::new(
        SyncConfig::new(member_id(0)),
        &store,
        genesis,
        chain,
        vec![v1],
        EMPTY,
    )
    .unwrap();
    core.handle_connected(member_id(2), T0);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let source = MemoryStore::new();
    append(&source, 1, &credit_body(), 3, T0, 1);
    (store, core, source)
}

fn fetched_from(out: &[(MemberId, Message)]) -> Vec<MemberId> {
    out.iter()
        .filter(|(_, m)| matches!(m, Message::Fetch(_)))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Records a narrower relay would send must be fetched again from the origin for their other
/// fields, so while the origin has connected but not yet said what it holds, the relay is not
/// asked — the origin is, as soon as its heads arrive.
#[test]
fn a_relay_is_not_asked_while_the_connected_origin_has_yet_to_send_its_heads() {
    let (store, mut core, source) = relay_first_setup();
    core.handle_message(&store, &member_id(2), heads_of(&source, 1, 3), T0);
    assert_eq!(fetched_from(&sent(&mut core)), Vec::<MemberId>::new());
    core.handle_message(&store, &member_id(1), heads_of(&source, 1, 3), T0 + 5);
    assert_eq!(fetched_from(&sent(&mut core)), vec![member_id(1)]);
}

/// …but only for a while: an origin that never says what it holds does not stop the catch-up.
#[test]
fn a_relay_is_asked_once_the_origin_has_been_silent_for_an_anti_entropy_interval() {
    let (store, mut core, source) = relay_first_setup();
    core.handle_message(&store, &member_id(2), heads_of(&source, 1, 3), T0);
    assert_eq!(fetched_from(&sent(&mut core)), Vec::<MemberId>::new());
    let due = core.poll_timeout().unwrap();
    assert!(due <= T0 + SyncConfig::new(member_id(0)).anti_entropy_ms);
    core.handle_timeout(&store, due);
    assert_eq!(fetched_from(&sent(&mut core)), vec![member_id(2)]);
}
