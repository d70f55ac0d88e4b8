//! A loom model of the publish/retire protocol (`hotcall_policy::publish`),
//! the code `hotcall`'s sites publish their thunks with, run here under
//! loom's atomics and crossbeam-epoch's loom build.
//!
//! Run it (a target dir of its own: the flags rebuild every dependency):
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg crossbeam_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p hotcall-policy --test loom_publish --release
//! ```
//!
//! The model: the entry leads to fake code object A. A caller thread
//! pins, loads the entry, "runs" the code it leads to (reads its bytes),
//! "the target returns into it" (reads them again) and unpins. The
//! publisher (the main thread) swaps the entry to B and retires A through
//! `EntryCell::replace`, whose deferred free poisons A's bytes (a
//! non-atomic write, as the real release poisons code through the
//! writable view), then retires something else (another flush, another
//! chance to collect A early). loom reports a read of poisoned bytes (the
//! assertion) and a read unordered with the poisoning write (a causality
//! violation). After joining the caller, the main thread drives
//! collection and asserts that A was freed: the free really runs inside
//! the model. The test also counts the executions in which A was freed
//! while the caller, which had loaded A, was still alive, and requires
//! some: the check had chances to fail.
//!
//! loom explores every interleaving with up to 3 preemptions
//! (`LOOM_MAX_PREEMPTIONS` changes it): about 120,000 executions.
//!
//! Two negative controls run the same model with one half of the protocol
//! removed and must be caught: the publisher frees A right after the swap
//! (no grace period), or the caller unpins before the target returns into
//! the code.
#![cfg(loom)]

use std::process::Command;

use hotcall_policy::publish::{EntryCell, retire};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// Live code's bytes, and what a released thunk is overwritten with.
const LIVE: u64 = 0x90c3_90c3_90c3_90c3;
const POISON: u64 = 0xcccc_cccc_cccc_cccc;

/// A thunk as the model sees it: bytes that a caller executes and a free
/// overwrites.
struct FakeCode {
    bytes: UnsafeCell<u64>,
}

// SAFETY: `bytes` is shared between the model's threads on purpose: the
// protocol under test must keep the free's write from being concurrent
// with any caller's read, and loom's `UnsafeCell` checks exactly that on
// every access (a violation panics the model).
unsafe impl Sync for FakeCode {}

impl FakeCode {
    fn new() -> Self {
        FakeCode {
            bytes: UnsafeCell::new(LIVE),
        }
    }

    /// A caller executing the code (entering it, or returning into it).
    fn run(&self) {
        // SAFETY: loom checks that no write to the cell is concurrent with
        // this read; that is the property under test.
        let bytes = self.bytes.with(|p| unsafe { *p });
        assert_eq!(bytes, LIVE, "a caller ran freed (poisoned) code");
    }

    /// The release: poison the bytes.
    fn free(&self) {
        // SAFETY: as in `run`: loom checks the write is ordered with every
        // read.
        self.bytes.with_mut(|p| unsafe { *p = POISON });
    }

    fn is_freed(&self) -> bool {
        // SAFETY: as in `run`.
        self.bytes.with(|p| unsafe { *p }) == POISON
    }
}

/// The code objects of one execution; the entry word is `index + 1`
/// (0 would be a plain indirect call).
struct World {
    entry: EntryCell,
    code: [FakeCode; 2],
    /// Set by A's free after poisoning it, for the tally (the bytes are
    /// what the check reads).
    a_freed: AtomicBool,
}

const A: usize = 1;
const B: usize = 2;

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            entry: EntryCell::new(A),
            code: [FakeCode::new(), FakeCode::new()],
            a_freed: AtomicBool::new(false),
        })
    }

    fn free_a(&self) {
        self.code(A).free();
        self.a_freed.store(true, Ordering::Release);
    }

    fn code(&self, word: usize) -> &FakeCode {
        &self.code[word - 1]
    }
}

/// Which half of the protocol a run leaves out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The protocol as `hotcall` runs it.
    Protocol,
    /// The publisher frees the old code right after the swap.
    NoGracePeriod,
    /// The caller unpins before the target returns into the code.
    UnpinBeforeReturn,
}

/// Sweeps of collection on the main thread after the caller is joined.
/// A retired bag needs two epoch advances and each sweep makes at most
/// one, so three always suffice once nothing is pinned.
const FINAL_SWEEPS: usize = 3;

/// What one execution saw, summed over all of them.
#[derive(Default, Debug)]
struct Seen {
    executions: u64,
    /// The caller loaded the old entry (it was in A during the swap).
    caller_in_old: u64,
    /// ... and A was freed before the caller thread was joined: the free
    /// ran concurrently with the caller, so a missing grace period would
    /// have shown.
    freed_while_caller_alive: u64,
}

type Tally = std::sync::Arc<std::sync::Mutex<Seen>>;

/// One execution. The main thread is the publisher; the caller is a
/// spawned thread.
///
/// The caller pins through an epoch handle of its own that it drops
/// before it ends, instead of `crossbeam_epoch::pin()`'s thread-local
/// handle: loom runs a thread's thread-local destructors *after* the point
/// its `join` synchronizes with (std joins after them), so a thread-local
/// handle would unregister unordered with the joiner, which could then see
/// it pinned forever and the final sweeps could not free anything. The
/// handle comes from the same default collector and `handle.pin()` is
/// exactly what `crossbeam_epoch::pin()` runs.
fn model(variant: Variant, tally: &Tally) {
    let world = World::new();

    let caller = {
        let world = Arc::clone(&world);
        thread::spawn(move || {
            let handle = crossbeam_epoch::default_collector().register();
            let guard = handle.pin();
            let word = world.entry.load(&guard);
            let code = world.code(word);
            code.run(); // the thunk's compare and call
            if variant == Variant::UnpinBeforeReturn {
                drop(guard);
                code.run(); // the target returns into the thunk
            } else {
                code.run();
                drop(guard);
            }
            drop(handle);
            word
        })
    };

    // The retired object is a handle on A; its free poisons A.
    let old = Arc::clone(&world);
    if variant == Variant::NoGracePeriod {
        world.entry.store(B);
        old.free_a();
    } else {
        world
            .entry
            .replace(B, Some(old), |old: Arc<World>| old.free_a());
    }
    // A later publish's retirement, as on a site republished often: its
    // flush is another chance to collect A while the caller may still be
    // inside.
    retire((), |()| {});
    let freed_before_join = world.a_freed.load(Ordering::Acquire);

    let word = caller.join().unwrap();

    for _ in 0..FINAL_SWEEPS {
        crossbeam_epoch::pin().flush();
    }
    assert!(
        world.code(A).is_freed(),
        "the deferred free never ran inside the model: the check could not fail"
    );
    assert!(!world.code(B).is_freed(), "the published code was freed");

    let mut seen = tally.lock().unwrap();
    seen.executions += 1;
    if word == A {
        seen.caller_in_old += 1;
        if freed_before_join {
            seen.freed_while_caller_alive += 1;
        }
    }
}

fn check(variant: Variant) -> Seen {
    let mut builder = loom::model::Builder::new();
    // Every interleaving with up to this many preemptions (loom's own
    // default is unbounded; LOOM_MAX_PREEMPTIONS overrides this).
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    let tally = Tally::default();
    let counted = tally.clone();
    builder.check(move || model(variant, &counted));
    std::mem::take(&mut *tally.lock().unwrap())
}

const PREEMPTIONS: usize = 3;

#[test]
fn a_caller_inside_the_old_code_during_a_swap_never_runs_freed_code() {
    let seen = check(Variant::Protocol);
    eprintln!("{seen:?}");
    assert!(
        seen.freed_while_caller_alive > 0,
        "no execution freed the old code while its caller was alive: {seen:?}"
    );
}

// The negative controls. loom reports a failing execution by panicking,
// and then aborts the process while unwinding (crossbeam's thread-local
// handles touch loom state from destructors outside the model), so no
// `catch_unwind` or `#[should_panic]` can observe it. Each control's model
// is therefore an ignored test that the visible test runs in a child
// process of this same binary; the child must fail, and fail with a
// use-after-free report.

#[test]
#[ignore = "negative control: run in a child process by `without_the_grace_period_loom_finds_a_caller_in_freed_code`"]
fn control_no_grace_period() {
    check(Variant::NoGracePeriod);
}

#[test]
#[ignore = "negative control: run in a child process by `unpinning_before_the_target_returns_is_caught`"]
fn control_unpin_before_return() {
    check(Variant::UnpinBeforeReturn);
}

/// Runs the ignored test `control` in a child process, expects it to fail
/// with a use-after-free report, and returns that report.
fn expect_caught(control: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            control,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the negative control");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{control}: loom found no execution that uses freed code"
    );
    let report = stderr
        .lines()
        .find(|l| l.contains("ran freed (poisoned) code") || l.contains("Causality violation"))
        .unwrap_or_else(|| panic!("{control} failed, but not with a use-after-free:\n{stderr}"));
    report.to_string()
}

#[test]
fn without_the_grace_period_loom_finds_a_caller_in_freed_code() {
    let report = expect_caught("control_no_grace_period");
    eprintln!("caught: {report}");
}

#[test]
fn unpinning_before_the_target_returns_is_caught() {
    let report = expect_caught("control_unpin_before_return");
    eprintln!("caught: {report}");
}
