#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The sync core against one peer at a time: what it accepts, what it serves, and how it treats
//! a misbehaving member (disconnected with a reason, nothing of its message stored).

mod common;

use common::{
    append, credit_body, genesis_roster, genesis_roster_with, gov_key, member_id, sign_roster, T0,
};
use tfx_protocol::ids::sha256;
use tfx_protocol::roster::{Revocation, SignedRoster};
use tfx_protocol::store::{LogHead, MemoryStore, Store};
use tfx_protocol::sync::wire::{Fetch, Heads, Hello, Message, Records, WireRecord};
use tfx_protocol::sync::{DisconnectCause, Event, SyncConfig, SyncCore};
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

const EMPTY: LogHead = LogHead {
    size: 0,
    root: [0; 32],
};

fn core_with(store: &MemoryStore, chain: Vec<Vec<u8>>, local: LogHead) -> SyncCore {
    let genesis = sha256(&SignedRoster::decode(&chain[0]).unwrap().payload);
    SyncCore::new(SyncConfig::new(member_id(0)), store, genesis, chain, local).unwrap()
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
fn valid_records_are_verified_and_applied() {
    let (store, mut core, source) = setup(|_| "bank");
    let r = records_of(&source, 1, 0, 3);
    core.handle_message(&store, &member_id(1), Message::Records(r), T0);
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
fn heads_of_equal_size_and_different_root_are_a_fork() {
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
    };
    core.handle_message(&store, &member_id(1), Message::Heads(heads), T0);
    assert!(matches!(&events(&mut core)[..], [Event::Fork { .. }]));
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
    };
    core.handle_message(&store, &member_id(1), Message::Heads(heads), T0);
    let head = append(&store, 0, &credit_body(), 2, T0, 1);
    core.handle_local_head(&store, head);
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
    })
}

#[test]
fn a_peer_known_to_lag_behind_under_steady_appends_still_gets_pushes() {
    let store = MemoryStore::new();
    let mut core = core_with(&store, vec![sign_roster(genesis_roster(3))], EMPTY);
    core.handle_connected(member_id(1), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 3, T0, 1);
    core.handle_local_head(&store, head);
    assert!(
        sent(&mut core).is_empty(),
        "nothing is known of the peer yet"
    );
    // Its heads were sent before our third record reached it: it holds 2 of our 3.
    core.handle_message(&store, &member_id(1), heads_saying(2), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 1, T0, 2);
    core.handle_local_head(&store, head);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p, Message::Records(r))] if p == &member_id(1) && r.from == 2 && r.records.len() == 2),
        "pushed from what the peer holds: {out:?}"
    );
    // Stale heads from before that push do not make us resend it, nor stop the next push.
    core.handle_message(&store, &member_id(1), heads_saying(2), T0);
    sent(&mut core);
    let head = append(&store, 0, &credit_body(), 1, T0, 3);
    core.handle_local_head(&store, head);
    let out = sent(&mut core);
    assert!(
        matches!(&out[..], [(p, Message::Records(r))] if p == &member_id(1) && r.from == 4 && r.records.len() == 1),
        "{out:?}"
    );
}
