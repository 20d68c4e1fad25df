//! Tests of compile + diff: the properties the syncer relies on.
use std::{collections::BTreeSet, net::Ipv4Addr};

use svclb_common::{SVC_F_AFFINITY, SlotKey};

use super::{
    diff::{Delta, apply_to_image, diff},
    ids::IdAllocator,
    image::{MapImage, compile, service_key},
};
use crate::model::{
    BackendAddr, BackendSet, DesiredState, Endpoint, Frontend, FrontendKind, Proto, SetKey,
};

fn ep(n: u8) -> Endpoint {
    Endpoint {
        backend: BackendAddr {
            addr: Ipv4Addr::new(198, 19, n, 2),
            port: 8080,
            proto: Proto::Tcp,
        },
        terminating: false,
        local: true,
    }
}

fn vip(n: u8) -> Frontend {
    Frontend {
        addr: Ipv4Addr::new(198, 18, 0, n),
        port: 80,
        proto: Proto::Tcp,
        scope: Default::default(),
    }
}

fn state(sets: &[(&str, u8, &[u8])]) -> DesiredState {
    let mut s = DesiredState::default();
    for (name, v, eps) in sets {
        let mut set = BackendSet {
            endpoints: eps.iter().map(|&n| ep(n)).collect(),
            ..Default::default()
        };
        set.frontends.insert(vip(*v), FrontendKind::ClusterIp);
        s.sets.insert(SetKey(name.to_string()), set);
    }
    s
}

/// One sync as the dataplane does it: compile, diff, apply, forget unused ids.
fn sync(image: &mut MapImage, ids: &mut IdAllocator, desired: &DesiredState) -> Delta {
    let (target, fresh) = compile(desired, ids, image).unwrap();
    let delta = diff(image, &target, &fresh);
    apply_to_image(image, &delta);
    assert_eq!(*image, target, "applying the delta must yield the target");
    ids.release(&delta.del_names, &delta.del_backends);
    delta
}

#[test]
fn reapplying_the_same_state_writes_nothing() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    let s = state(&[
        ("default/a:http/TCP", 10, &[1, 2, 3]),
        ("default/b:http/TCP", 11, &[2]),
    ]);
    let first = sync(&mut image, &mut ids, &s);
    assert_eq!(first.put_backends.len(), 3);
    assert_eq!(first.put_slots.len(), 4);
    assert_eq!(first.put_services.len(), 2);
    assert_eq!(first.reset_stats, vec![1, 2]);
    let second = sync(&mut image, &mut ids, &s);
    assert!(second.is_empty(), "{second:?}");
}

#[test]
fn growing_writes_slots_before_the_count_and_shrinking_deletes_after() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    sync(&mut image, &mut ids, &state(&[("a", 10, &[1, 2])]));
    let grow = sync(&mut image, &mut ids, &state(&[("a", 10, &[1, 2, 3])]));
    assert_eq!(grow.put_slots, vec![(SlotKey { svc_id: 1, slot: 2 }, 3)]);
    assert_eq!(grow.put_backends.len(), 1);
    assert_eq!(grow.put_services[0].1.backend_count, 3);
    assert!(grow.del_slots.is_empty() && grow.purge.is_empty());

    let shrink = sync(&mut image, &mut ids, &state(&[("a", 10, &[2, 3])]));
    // Slots 0 and 1 now name backends 2 and 3; slot 2 goes after the count flip.
    assert_eq!(
        shrink.put_slots,
        vec![
            (SlotKey { svc_id: 1, slot: 0 }, 2),
            (SlotKey { svc_id: 1, slot: 1 }, 3)
        ]
    );
    assert_eq!(shrink.put_services[0].1.backend_count, 2);
    assert_eq!(shrink.del_slots, vec![SlotKey { svc_id: 1, slot: 2 }]);
    assert_eq!(shrink.del_backends, vec![1]);
    assert_eq!(shrink.purge, vec![(1, 1)]);
}

#[test]
fn deleting_a_service_removes_everything_it_owned() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    sync(
        &mut image,
        &mut ids,
        &state(&[("a", 10, &[1, 2]), ("b", 11, &[2])]),
    );
    let d = sync(&mut image, &mut ids, &state(&[("b", 11, &[2])]));
    assert_eq!(d.del_services, vec![service_key(&vip(10))]);
    assert_eq!(d.del_names, vec![1]);
    assert_eq!(d.del_slots.len(), 2);
    // Backend 2 is still used by b.
    assert_eq!(d.del_backends, vec![1]);
    assert_eq!(d.purge, vec![(1, 1), (1, 2)]);
    let gone = sync(&mut image, &mut ids, &DesiredState::default());
    assert!(gone.put_services.is_empty());
    assert_eq!(
        image,
        MapImage::default(),
        "after removing everything the maps are empty"
    );
}

#[test]
fn adoption_after_restart_changes_nothing() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    let s = state(&[("a", 10, &[1, 2, 3]), ("b", 11, &[4]), ("c", 12, &[])]);
    sync(&mut image, &mut ids, &s);
    sync(
        &mut image,
        &mut ids,
        &state(&[("b", 11, &[4]), ("c", 12, &[])]),
    );
    sync(&mut image, &mut ids, &s);
    // A new agent only has the maps.
    let mut adopted = IdAllocator::adopt(&image);
    let mut image2 = image.clone();
    let d = sync(&mut image2, &mut adopted, &s);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn changing_only_the_affinity_rewrites_only_service_entries() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    let mut s = state(&[("a", 10, &[1, 2])]);
    sync(&mut image, &mut ids, &s);
    s.sets
        .get_mut(&SetKey("a".into()))
        .unwrap()
        .affinity_timeout_s = Some(30);
    let d = sync(&mut image, &mut ids, &s);
    assert_eq!(d.writes(), 1);
    assert_eq!(d.put_services[0].1.flags & SVC_F_AFFINITY, SVC_F_AFFINITY);
    assert_eq!(d.put_services[0].1.affinity_timeout_s, 30);
}

#[test]
fn an_empty_set_keeps_its_frontend_with_count_zero() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    sync(&mut image, &mut ids, &state(&[("a", 10, &[1])]));
    let d = sync(&mut image, &mut ids, &state(&[("a", 10, &[])]));
    assert_eq!(d.put_services.len(), 1);
    assert_eq!(d.put_services[0].1.backend_count, 0);
    assert_eq!(d.purge, vec![(1, 1)]);
    assert_eq!(image.members(1), BTreeSet::new());
}

#[test]
fn maglev_sets_hold_a_table_and_removal_rewrites_about_one_nth() {
    let (mut image, mut ids) = (MapImage::default(), IdAllocator::default());
    let mut s = state(&[("a", 10, &[1, 2, 3, 4, 5])]);
    s.sets.get_mut(&SetKey("a".into())).unwrap().maglev = true;
    let d = sync(&mut image, &mut ids, &s);
    let (_, v) = d.put_services[0];
    assert_eq!(
        v.flags & svclb_common::SVC_F_MAGLEV,
        svclb_common::SVC_F_MAGLEV
    );
    assert_eq!(v.backend_count, 16381, "the preferred size for 5 backends");
    assert_eq!(d.put_slots.len(), 16381);
    assert_eq!(image.members(1).len(), 5);

    let mut fewer = s.clone();
    fewer
        .sets
        .get_mut(&SetKey("a".into()))
        .unwrap()
        .endpoints
        .pop();
    let d = sync(&mut image, &mut ids, &fewer);
    // The table keeps its size, so only the entries of the removed backend (~1/5) change.
    assert_eq!(
        d.put_services,
        vec![],
        "same size, same flags: the service entry stays"
    );
    assert!(d.del_slots.is_empty());
    let moved = d.put_slots.len();
    // 1/5 of 16381 is 3276; Maglev moves a little more (< 1% of the table extra).
    assert!(
        (3276..=3276 + 164).contains(&moved),
        "{moved} of 16381 entries rewritten"
    );
    assert_eq!(d.purge, vec![(1, 5)]);
    assert_eq!(d.del_backends, vec![5]);
}

/// [`super::applied::Applied`] against a full compile + diff after every step of
/// pseudo-random sequences: sets added, removed and changed, backends shared between
/// sets, frontends moving between sets, Maglev tables.
#[test]
fn incremental_delta_equals_the_full_delta() {
    use super::applied::Applied;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for round in 0..30 {
        let mut applied = Applied::adopt(MapImage::default());
        let mut ids = IdAllocator::default();
        let mut desired = DesiredState::default();
        for step in 0..40 {
            let mut touched = BTreeSet::new();
            for _ in 0..1 + next(3) {
                let key = SetKey(format!("ns/svc-{}:http/TCP", next(6)));
                touched.insert(key.clone());
                if next(5) == 0 {
                    desired.sets.remove(&key);
                    continue;
                }
                let mut set = BackendSet {
                    endpoints: (0..next(5)).map(|_| ep(1 + next(6) as u8)).collect(),
                    // Maglev tables are 16381 entries: a few rounds have them.
                    maglev: round % 10 == 0 && next(3) == 0,
                    affinity_timeout_s: (next(3) == 0).then_some(30),
                    ..Default::default()
                };
                set.endpoints.sort();
                set.endpoints.dedup();
                // Frontends are exclusive: take them from whichever set had them.
                for _ in 0..1 + next(2) {
                    let fe = vip(next(8) as u8);
                    for (k, other) in desired.sets.iter_mut() {
                        if other.frontends.remove(&fe).is_some() {
                            touched.insert(k.clone());
                        }
                    }
                    set.frontends.insert(fe, FrontendKind::ClusterIp);
                }
                desired.sets.insert(key, set);
            }
            desired.sets.retain(|_, s| !s.frontends.is_empty());

            let before = applied.image().clone();
            let mut full_ids = ids.clone();
            let (target, fresh) = compile(&desired, &mut full_ids, &before).unwrap();
            let full = diff(&before, &target, &fresh);
            // With the hint (the keys this step touched) and without, the same delta.
            let unhinted = applied.delta(&desired, None, &mut ids.clone()).unwrap();
            let pending = applied.delta(&desired, Some(&touched), &mut ids).unwrap();
            assert_eq!(pending.delta, full, "step {step}");
            assert_eq!(unhinted.delta, full, "step {step} without a hint");
            let (del_names, del_backends) = (
                pending.delta.del_names.clone(),
                pending.delta.del_backends.clone(),
            );
            applied.commit(pending);
            assert_eq!(applied.image(), &target, "step {step}");
            ids.release(&del_names, &del_backends);
            full_ids.release(&del_names, &del_backends);
        }
    }
}
