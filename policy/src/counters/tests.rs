use std::sync::{Arc, Barrier};

use super::*;
use crate::counts::TargetCount;

const A: u64 = 0x1000;
const B: u64 = 0x2000;
const C: u64 = 0x3000;

fn site(promoted: &[u64], config: CounterConfig) -> Arc<SiteCounters> {
    let s = SiteCounters::new(config);
    s.begin_epoch(promoted, config);
    s
}

fn calls(site: &SiteCounters, target: u64, n: u64) {
    for _ in 0..n {
        record_call(site.cookie().value(), target);
    }
}

fn misses(site: &SiteCounters, target: u64, n: u64) {
    for _ in 0..n {
        record_miss(site.cookie().value(), target);
    }
}

#[test]
fn counts_from_several_threads_add_up_exactly() {
    let s = site(&[A, B], CounterConfig::default());
    const THREADS: u64 = 4;
    const N: u64 = 25_000;
    let barrier = Barrier::new(THREADS as usize);
    // Every thread finishes counting before the snapshot (exactness is
    // promised for a quiescent epoch); then half of them exit and half stay
    // alive, holding their tables: both must be counted.
    let done = Barrier::new(THREADS as usize + 1);
    let parked = Barrier::new(THREADS as usize / 2 + 1);
    std::thread::scope(|scope| {
        for id in 0..THREADS {
            let (s, barrier, done, parked) = (&s, &barrier, &done, &parked);
            scope.spawn(move || {
                barrier.wait();
                calls(s, A, N);
                calls(s, B, N / 2 + id);
                calls(s, C, 7);
                misses(s, C, 3);
                done.wait();
                if id % 2 == 0 {
                    parked.wait(); // counted while alive
                    parked.wait(); // released after the snapshot
                }
            });
        }
        done.wait();
        parked.wait();
        let c = s.snapshot();
        assert_eq!(
            c.calls,
            THREADS * (N + N / 2 + 7) + (0..THREADS).sum::<u64>()
        );
        assert_eq!(
            c.hits,
            vec![THREADS * N, THREADS * (N / 2) + (0..THREADS).sum::<u64>()]
        );
        assert_eq!(c.misses, THREADS * 10);
        assert_eq!(c.candidate(C), THREADS * 10);
        parked.wait();
    });
    // After every thread exited: the same totals, from folded tables. A
    // scoped thread counts as finished before its thread-locals (which
    // hold the tables) are destroyed, so wait for those.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = s.snapshot();
        assert_eq!(
            c.calls,
            THREADS * (N + N / 2 + 7) + (0..THREADS).sum::<u64>()
        );
        assert_eq!(c.misses, THREADS * 10);
        if s.thread_tables() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exited threads' tables are folded"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_new_epoch_starts_from_zero_with_the_new_promoted_list() {
    let config = CounterConfig::default();
    let s = site(&[A], config);
    calls(&s, A, 10);
    calls(&s, B, 4);
    assert_eq!(s.snapshot().hits, vec![10]);
    s.begin_epoch(&[B], config);
    assert_eq!(s.snapshot(), Counts::empty(1), "nothing counted yet");
    calls(&s, A, 3);
    calls(&s, B, 5);
    let c = s.snapshot();
    assert_eq!((c.calls, c.hits.clone(), c.misses), (8, vec![5], 3));
    assert_eq!(
        c.candidates,
        vec![TargetCount {
            target: A,
            count: 3
        }]
    );
}

fn seed_like(limit: u64) -> CounterConfig {
    CounterConfig {
        candidates: 4,
        replacement: Replacement::FirstCome {
            catch_all_limit: limit,
        },
    }
}

#[test]
fn first_come_candidates_and_the_catch_all_limit() {
    let s = site(&[], seed_like(1000));
    for t in 1..=4 {
        misses(&s, t * 0x100, t);
    }
    // A fifth target finds every entry taken.
    misses(&s, 0x999, 1000);
    let c = s.snapshot();
    assert_eq!(c.catch_all, 1000);
    assert_eq!(c.candidates.len(), 4, "at 1000 the candidates stay");
    assert_eq!(c.max_thread_candidates, 1 + 2 + 3 + 4);
    misses(&s, 0x999, 1);
    let c = s.snapshot();
    assert_eq!((c.catch_all, c.candidates.len()), (0, 0), "at 1001 they go");
    assert_eq!(c.misses, 10 + 1001, "total misses stay exact");
    misses(&s, 0x999, 2);
    assert_eq!(
        s.snapshot().candidate(0x999),
        2,
        "new targets get entries again"
    );
}

#[test]
fn space_saving_finds_the_heavy_hitters() {
    let s = site(&[], CounterConfig::default());
    // 40 distinct cold targets first, then two hot ones, interleaved with
    // more cold ones: the hot ones must end with entries and counts at
    // least their true counts.
    for t in 0..40 {
        misses(&s, 0x10_000 + t, 1);
    }
    for i in 0..3000u64 {
        misses(&s, A, 1);
        if i % 3 == 0 {
            misses(&s, B, 1);
        }
        misses(&s, 0x20_000 + i % 97, 1);
    }
    let c = s.snapshot();
    // Lower bounds: never above the truth, and the heavy hitters' close.
    assert!(
        (2900..=3000).contains(&c.candidate(A)),
        "{:?}",
        c.candidates
    );
    assert!((900..=1000).contains(&c.candidate(B)), "{:?}", c.candidates);
    assert_eq!(c.candidates[0].target, A);
    assert_eq!(c.catch_all, 0);
    for cand in &c.candidates {
        if cand.target >= 0x10_000 {
            assert!(
                cand.count <= 31,
                "a cold target's bound stays small: {cand:?}"
            );
        }
    }
}

#[test]
fn space_saving_bounds_stay_low_for_a_uniform_stream() {
    // 16 targets in turn through 8 entries: every entry is replaced over
    // and over, so its raw count says nothing; the bounds say so.
    let s = site(&[], CounterConfig::default());
    for i in 0..16_000u64 {
        misses(&s, 0x100 * (1 + i % 16), 1);
    }
    let c = s.snapshot();
    let bounded: u64 = c.candidates.iter().map(|c| c.count).sum();
    assert!(bounded < 16_000 / 10, "{:?}", c.candidates);
    assert_eq!(c.misses, 16_000);
}

#[test]
fn a_retired_site_counts_nothing_and_its_cookie_is_reused_later() {
    let s = site(&[A], CounterConfig::default());
    let cookie = s.cookie();
    calls(&s, A, 2);
    s.retire();
    calls(&s, A, 5);
    assert_eq!(
        s.snapshot().calls,
        2,
        "records after retirement are dropped"
    );
    // An unknown cookie is ignored, not a crash.
    record_call(u64::from(u32::MAX) + 7, A);
    record_miss(u64::from(u32::MAX - 1), A);
    // Once the grace period passes, the cookie can go to a new site.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let guard = crossbeam_epoch::pin();
        guard.flush();
        drop(guard);
        let fresh = SiteCounters::new(CounterConfig::default());
        if fresh.cookie() == cookie {
            fresh.begin_epoch(&[B], CounterConfig::default());
            calls(&fresh, B, 3);
            assert_eq!(
                fresh.snapshot().hits,
                vec![3],
                "a reused cookie counts for the new site"
            );
            break;
        }
        // Not yet reclaimed: keep `fresh` registered (it took another
        // cookie) and try again.
        std::mem::forget(fresh);
        assert!(std::time::Instant::now() < deadline, "cookie never freed");
        std::thread::yield_now();
    }
}

#[test]
fn tables_of_two_threads_never_share_a_cache_line() {
    assert!(std::mem::align_of::<ThreadTable>() >= 128);
    assert_eq!(std::mem::size_of::<ThreadTable>() % 128, 0);
}

#[test]
fn a_new_epoch_forgets_what_space_saving_entries_inherited() {
    // Epoch 1: twelve targets through eight entries, so entries are
    // replaced and record what they inherited.
    let s = site(&[A], CounterConfig::default());
    for i in 0..1200u64 {
        misses(&s, 0x100 * (1 + i % 12), 1);
    }
    // Epoch 2 (a new plan, as a phase change installs): eight targets with
    // distinct counts, one entry each, nothing replaced. Their bounds are
    // exact; stale inheritances from epoch 1 would cut them down (a
    // profile that then finds no hot set bypasses a site it should
    // promote).
    s.begin_epoch(&[A], CounterConfig::default());
    let counts = [400u64, 300, 200, 150, 100, 80, 60, 40];
    for (k, &n) in counts.iter().enumerate() {
        misses(&s, 0x10_000 * (1 + k as u64), n);
    }
    let c = s.snapshot();
    for (k, &n) in counts.iter().enumerate() {
        assert_eq!(
            c.candidate(0x10_000 * (1 + k as u64)),
            n,
            "{:?}",
            c.candidates
        );
    }
}
