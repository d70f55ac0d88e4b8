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

use hotcall_policy::publish::{EntryCell, GracePeriod, Retarget, SlotTable, collect, retire};
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
    explore(move |tally| model(variant, tally))
}

/// Runs `model` in every interleaving loom explores and returns what the
/// executions tallied.
fn explore<S: Default + Send + 'static>(
    model: impl Fn(&std::sync::Arc<std::sync::Mutex<S>>) + Sync + Send + 'static,
) -> S {
    let mut builder = loom::model::Builder::new();
    // Every interleaving with up to this many preemptions (loom's own
    // default is unbounded; LOOM_MAX_PREEMPTIONS overrides this).
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    let tally = std::sync::Arc::new(std::sync::Mutex::new(S::default()));
    let counted = tally.clone();
    builder.check(move || model(&counted));
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
        .find(|l| {
            l.contains("ran freed (poisoned) code")
                || l.contains("branched to a target other than")
                || l.contains("Causality violation")
        })
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

// The Patch sequence (`hotcall_policy::publish::Retarget`).
//
// One slot of a Patch thunk: a table word (a loom atomic, stored with
// SeqCst as the code memory's `store_u64` does) and a branch (a loom
// `UnsafeCell` written non-atomically, as a branch patch is). It starts
// enabled for A, set up through `Retarget` itself before the caller
// exists. A caller thread pins, loads the table word and, if the slot is
// enabled, "takes the branch": reads the branch cell and asserts that it
// goes where the compare said. The writer (the main thread) retargets the
// slot through `Retarget` and polls for completion (`collect` then
// `complete`) while the caller runs, joins it, then polls until the slot
// is enabled for its last target. loom reports a branch that disagrees
// with the table word the caller read (the assertion) and a branch read
// unordered with a patch (a causality violation: the patch rewrote code a
// caller could still be executing).
//
// Serializing the cores is a no-op in the model: what it stands for on
// hardware (no core executes stale instruction bytes) loom cannot see; the
// model checks the ordering around it (patch, then enable with a store the
// caller's load synchronizes with, and no patch while a caller may be
// between its compare and its branch).
//
// Negative controls, as for the entry: the same caller against a writer
// that patches right after the disable (no grace period), or enables the
// new target before patching its branch. Each must be caught.

const DISABLED: usize = usize::MAX;
/// The targets, and where a fresh slot's branch goes (the trap gap).
const TRAP: usize = 0x7;
const T_A: usize = 0xa0;
const T_B: usize = 0xb0;
const T_C: usize = 0xc0;

struct FakeSlot {
    table: loom::sync::atomic::AtomicUsize,
    branch: UnsafeCell<usize>,
}

// SAFETY: `branch` is shared between the model's threads on purpose, as
// `FakeCode::bytes` is: loom checks every access for a concurrent write.
unsafe impl Sync for FakeSlot {}

impl SlotTable for FakeSlot {
    fn disable(&self, _slot: usize) {
        self.table.store(DISABLED, Ordering::SeqCst);
    }

    unsafe fn patch(&self, _slot: usize, target: usize) {
        // SAFETY: a loom cell: loom checks that no read is concurrent with
        // this write (the property under test), and panics if one is.
        self.branch.with_mut(|p| unsafe { *p = target });
    }

    fn serialize(&self) -> bool {
        true
    }

    unsafe fn enable(&self, _slot: usize, target: usize) {
        self.table.store(target, Ordering::SeqCst);
    }
}

impl FakeSlot {
    /// The caller: pinned across its compare and its branch.
    fn call(&self) -> usize {
        let handle = crossbeam_epoch::default_collector().register();
        let guard = handle.pin();
        let word = self.table.load(Ordering::Acquire);
        if word != DISABLED {
            // SAFETY: a loom cell: loom checks this read against every
            // write.
            let branch = self.branch.with(|p| unsafe { *p });
            assert_eq!(
                branch, word,
                "a caller compared equal with {word:#x} and branched to a target other than it"
            );
        }
        drop(guard);
        drop(handle);
        word
    }

    fn branch(&self) -> usize {
        // SAFETY: a loom cell, read after the caller was joined.
        self.branch.with(|p| unsafe { *p })
    }
}

/// What the writer does while the caller runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writer {
    /// One retarget A -> B through `Retarget`, polled twice.
    Retarget,
    /// A -> B, polled once, then -> C at once, polled twice: the slot is
    /// retargeted again while it waits (it keeps its grace period) or just
    /// after B completed.
    TwoRetargets,
    /// By hand: disable, patch, enable, no grace period.
    PatchBeforeGrace,
    /// By hand: disable, grace period, enable B, then patch.
    EnableBeforePatch,
}

#[derive(Default, Debug)]
struct PatchSeen {
    executions: u64,
    /// The caller found the slot enabled for A, B or C.
    took_a: u64,
    took_b: u64,
    took_c: u64,
    /// The caller found A and a patch completed before it was joined: a
    /// patch that ignored the caller would have shown.
    patched_while_caller_alive: u64,
}

/// Polls like `PatchSite::poll`: help the epoch, then complete what is due.
fn poll(retarget: &mut Retarget, slot: &FakeSlot) -> bool {
    collect();
    // SAFETY: `slot` is the table `retarget` was made for, changed only
    // through it; the caller pins across its compare and branch.
    unsafe { retarget.complete(slot) }
}

fn patch_model(writer: Writer, tally: &std::sync::Arc<std::sync::Mutex<PatchSeen>>) {
    let slot = Arc::new(FakeSlot {
        table: loom::sync::atomic::AtomicUsize::new(DISABLED),
        branch: UnsafeCell::new(TRAP),
    });
    let mut retarget = Retarget::new(1);
    // Set up slot 0 enabled for A (one thread: no interleavings yet).
    // SAFETY: as in `poll`.
    let first = unsafe { retarget.retarget(&*slot, &[T_A]) };
    assert_eq!(first.pending, 1);
    let mut setup_polls = 0;
    while !poll(&mut retarget, &slot) {
        setup_polls += 1;
        assert!(setup_polls < 16, "the setup's grace period never passed");
    }
    let patches_before = retarget.patches();

    let caller = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || slot.call())
    };

    let last = match writer {
        Writer::Retarget => {
            // SAFETY: as in `poll`.
            let r = unsafe { retarget.retarget(&*slot, &[T_B]) };
            assert_eq!((r.pending, r.enabled_now), (1, 0));
            poll(&mut retarget, &slot);
            poll(&mut retarget, &slot);
            T_B
        }
        Writer::TwoRetargets => {
            // SAFETY: as in `poll`.
            unsafe { retarget.retarget(&*slot, &[T_B]) };
            poll(&mut retarget, &slot);
            // SAFETY: as in `poll`.
            let r = unsafe { retarget.retarget(&*slot, &[T_C]) };
            assert_eq!(r.pending, 1);
            poll(&mut retarget, &slot);
            poll(&mut retarget, &slot);
            T_C
        }
        Writer::PatchBeforeGrace => {
            slot.disable(0);
            // SAFETY: deliberately broken (no grace period): loom's cell
            // panics on the concurrent access instead of letting it race.
            unsafe { slot.patch(0, T_B) };
            slot.serialize();
            // SAFETY: the branch goes to B.
            unsafe { slot.enable(0, T_B) };
            T_B
        }
        Writer::EnableBeforePatch => {
            slot.disable(0);
            let grace = GracePeriod::start();
            // SAFETY: deliberately broken (the branch still goes to A):
            // the caller's assertion reports it.
            unsafe { slot.enable(0, T_B) };
            collect();
            if grace.has_passed() {
                // SAFETY: deliberately late, but after the grace period.
                unsafe { slot.patch(0, T_B) };
            }
            T_B
        }
    };
    let patched_before_join = retarget.patches() > patches_before;

    let word = caller.join().unwrap();

    if matches!(writer, Writer::Retarget | Writer::TwoRetargets) {
        for _ in 0..FINAL_SWEEPS {
            poll(&mut retarget, &slot);
        }
        assert!(!retarget.is_pending(), "the retarget never completed");
        let state = retarget.slot(0);
        assert_eq!(
            (state.wanted, state.enabled, state.branch),
            (Some(last), Some(last), Some(last))
        );
        assert_eq!(slot.branch(), last);
        assert_eq!(slot.table.load(Ordering::Acquire), last);
        // Polling a completed slot again patches nothing.
        let patches = retarget.patches();
        assert!(!poll(&mut retarget, &slot));
        assert_eq!(retarget.patches(), patches);
    }

    let mut seen = tally.lock().unwrap();
    seen.executions += 1;
    match word {
        T_A => {
            seen.took_a += 1;
            if patched_before_join {
                seen.patched_while_caller_alive += 1;
            }
        }
        T_B => seen.took_b += 1,
        T_C => seen.took_c += 1,
        _ => {}
    }
}

fn check_patch(writer: Writer) -> PatchSeen {
    explore(move |tally| patch_model(writer, tally))
}

#[test]
fn a_caller_never_branches_where_its_compare_did_not_say_during_a_retarget() {
    let seen = check_patch(Writer::Retarget);
    eprintln!("{seen:?}");
    assert!(
        seen.patched_while_caller_alive > 0,
        "no execution patched the branch while a caller that compared equal with A was alive: {seen:?}"
    );
    assert!(
        seen.took_b > 0,
        "no caller ever took the new target: {seen:?}"
    );
}

#[test]
fn two_quick_retargets_of_one_slot_never_mislead_a_caller() {
    let seen = check_patch(Writer::TwoRetargets);
    eprintln!("{seen:?}");
    assert!(seen.patched_while_caller_alive > 0, "{seen:?}");
    assert!(seen.took_c > 0, "{seen:?}");
}

#[test]
#[ignore = "negative control: run in a child process by `patching_before_the_grace_period_is_caught`"]
fn control_patch_before_grace() {
    check_patch(Writer::PatchBeforeGrace);
}

#[test]
#[ignore = "negative control: run in a child process by `enabling_before_the_patch_is_caught`"]
fn control_enable_before_patch() {
    check_patch(Writer::EnableBeforePatch);
}

#[test]
fn patching_before_the_grace_period_is_caught() {
    let report = expect_caught("control_patch_before_grace");
    eprintln!("caught: {report}");
}

#[test]
fn enabling_before_the_patch_is_caught() {
    let report = expect_caught("control_enable_before_patch");
    eprintln!("caught: {report}");
}
