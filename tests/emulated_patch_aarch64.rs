//! The Patch strategy's aarch64 code sequences, executed under qemu-user
//! (`hotcall-emu`): every word the protocol writes, each followed by the
//! project's cache-maintenance routine exactly as `CodeMemory::store_u32`
//! publishes it, with calls before and after that show which code runs.
//!
//! For each signature (register arguments, so slots `B` and the miss
//! tail-jumps through the exit; and nine integer arguments, so slots `BL`
//! and the miss calls the exit), a Patch thunk from `PatchCompiler` for
//! aarch64 is linked at a fixed address with a counting entry and written
//! into the harness process, next to hook stubs made by the aarch64
//! backend's `hook_stub` (the bytes a site's stubs have) that jump to small
//! recording bridges written here (they count into a data page and pass
//! on, as the Rust bridges do). Then, calling the harness's real C targets
//! throughout:
//!
//! 1. the fresh thunk: every slot disabled, the miss exit falling through:
//!    every call misses, nothing is counted;
//! 2. the miss exit's `B` aimed at the miss stub: every call is counted as
//!    a miss, with its target;
//! 3. each slot promoted by the protocol's stores: patch its `B`/`BL` (the
//!    slot still disabled: its calls still miss), then enable it (the table
//!    word): its calls hit (no longer counted), other targets still miss;
//! 4. a retarget of slot 0: disable (its old target misses again), patch,
//!    enable (the new target hits);
//! 5. the counting entry: every call counted with its target, then run by
//!    the thunk (hits not counted as misses);
//! 6. the miss exit aimed back at its fallback: misses no longer counted;
//! 7. a static entry stub (one `B`): called with the thunk ABI, rewritten
//!    to the counting entry (its calls are now counted) and back.
//!
//! Every call must run exactly the right target with the right arguments,
//! return the model's value and keep every callee-saved register and `sp`.
//! qemu keeps instruction fetch coherent by itself, so this proves the
//! encodings, the layout and the order of the stores, not that the cache
//! maintenance is needed (docs/isa/aarch64.md). Missing tools fail these
//! tests (`HOTCALL_SKIP_EMULATION=1` skips them loudly outside CI).

use std::path::Path;
use std::sync::OnceLock;

use hotcall::{Arch, ThunkSig};
use hotcall_emu::model::{SplitMix64, edge_tuple, random_tuple, seed_of};
use hotcall_emu::thunks::{call_layouts, expected, returned};
use hotcall_emu::{CallResult, Harness, LayoutId, OpId, Program, Publisher, toolchain_for_tests};
use hotcall_jit::patch::{DISABLED, MissExit, PatchCompiler, PatchLayout, PatchOptions};
use hotcall_jit::{ArgLoc, BranchKind, miss_hook_target};

const ARCH: Arch = Arch::Aarch64;
/// The static harness's text starts at 4 MiB; all code here is within `bl`
/// reach of its targets.
const PUBLISHER_PAGE: u64 = 0x03F0_0000;
const AREA: u64 = 0x0400_0000;
const AREA_LEN: u64 = 0x1_0000;
const THUNK: u64 = AREA;
const ENTRY_BRIDGE: u64 = AREA + 0x2000;
const TAIL_BRIDGE: u64 = AREA + 0x2100;
const MISS_BRIDGE: u64 = AREA + 0x2200;
const ENTRY_STUB: u64 = AREA + 0x2300;
const MISS_STUB: u64 = AREA + 0x2340;
const READERS: u64 = AREA + 0x2400;
const STATIC_STUB: u64 = AREA + 0x2800;
/// Data page: entry count, last entry target, miss count, last miss target.
const COUNTERS: u64 = 0x0410_0000;
const ENTRIES: usize = 0;
const LAST_ENTRY: usize = 1;
const MISSES: usize = 2;
const LAST_MISS: usize = 3;

const SIGS: [&str; 3] = [
    "(i64)->i64",
    "(i64,f64,u8,f32)->f32",
    "(i64,i64,i64,i64,i64,i64,i64,i64)->i64",
];
const POOL: usize = 6;
const SLOTS: usize = 3;
const COOKIE: u32 = 0x1234_5678;

fn harness() -> Option<&'static Harness> {
    static H: OnceLock<Option<Harness>> = OnceLock::new();
    H.get_or_init(|| {
        let tc = toolchain_for_tests(ARCH)?;
        let sigs: Vec<ThunkSig> = SIGS.iter().map(|s| s.parse().unwrap()).collect();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
        Some(Harness::build(&tc, &sigs, POOL, cache).unwrap_or_else(|e| panic!("{e}")))
    })
    .as_ref()
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// `movz xD, #lo; movk xD, #hi, lsl #16` for an address below 4 GiB.
fn load_address(d: u32, addr: u64) -> [u32; 2] {
    assert!(addr < 1 << 32);
    let (lo, hi) = (addr as u32 & 0xffff, (addr >> 16) as u32);
    [0xd280_0000 | lo << 5 | d, 0xf2a0_0000 | hi << 5 | d]
}

/// Adds one to the count at `counter` and stores the target the stub
/// pushed (`[sp, #8]`) after it, with x16/x17 only (the stub saved them).
fn count_into(counter: u64) -> Vec<u32> {
    let mut w = load_address(16, counter).to_vec();
    w.extend([
        0xf940_0211, // ldr x17, [x16]
        0x9100_0631, // add x17, x17, #1
        0xf900_0211, // str x17, [x16]
        0xf940_07f1, // ldr x17, [sp, #8]   the target
        0xf900_0611, // str x17, [x16, #8]
    ]);
    w
}

/// A recording bridge that returns into the thunk, as the Rust one does:
/// counts, drops the cookie and target, restores x16/x17, `ret`.
fn returning_bridge(counter: u64) -> Vec<u8> {
    let mut w = count_into(counter);
    w.extend([
        0x9100_43ff, // add sp, sp, #16
        0xa8c1_47f0, // ldp x16, x17, [sp], #16
        0xd65f_03c0, // ret
    ]);
    words(&w)
}

/// A recording bridge for a tail-jumping miss: counts, then branches to
/// the target through x16 (the Rust one does the same).
fn tail_bridge(counter: u64) -> Vec<u8> {
    let mut w = count_into(counter);
    w.extend([
        0xf940_07f0, // ldr x16, [sp, #8]
        0x9100_83ff, // add sp, sp, #32
        0xd61f_0200, // br x16
    ]);
    words(&w)
}

/// Returns the counter word `i` in x0.
fn reader(i: usize) -> Vec<u8> {
    let mut w = load_address(0, COUNTERS + 8 * i as u64).to_vec();
    w.extend([0xf940_0000, 0xd65f_03c0]); // ldr x0, [x0]; ret
    words(&w)
}

enum Want {
    /// Target `k` ran with tuple `t`'s arguments and its value came back.
    Target { k: usize, tuple: usize },
    /// x0 holds this value (a counter reader).
    Value(u64),
}

struct Check {
    op: OpId,
    what: String,
    want: Want,
}

/// A program under construction and what its results must be.
struct Script<'h> {
    h: &'h Harness,
    s: usize,
    sig: ThunkSig,
    p: Program,
    publisher: Publisher,
    tuples: Vec<Vec<u64>>,
    layouts: Vec<LayoutId>,
    any_layout: LayoutId,
    checks: Vec<Check>,
    setup: Vec<OpId>,
    flushes: Vec<OpId>,
    /// What the counters should hold, as the calls so far count them.
    entries: u64,
    misses: u64,
}

impl<'h> Script<'h> {
    fn new(h: &'h Harness, s: usize, name: &str) -> Self {
        let sig = h.signatures()[s].clone();
        let mut p = Program::new();
        let (publisher, map_page) = Publisher::install(&mut p, ARCH, PUBLISHER_PAGE);
        let setup = vec![map_page, p.map(AREA, AREA_LEN), p.map(COUNTERS, 4096)];
        let mut rng = SplitMix64(seed_of(name));
        let tuples = vec![
            edge_tuple(sig.params(), 0),
            edge_tuple(sig.params(), 3),
            random_tuple(sig.params(), &mut rng),
        ];
        let mut junk = SplitMix64(seed_of(name) ^ 0x5EED);
        let layouts: Vec<LayoutId> = tuples
            .iter()
            .map(|t| p.layout(&call_layouts(ARCH, &sig, t, &mut junk).1).unwrap())
            .collect();
        Script {
            h,
            s,
            sig,
            p,
            publisher,
            any_layout: layouts[0],
            tuples,
            layouts,
            checks: Vec::new(),
            setup,
            flushes: Vec::new(),
            entries: 0,
            misses: 0,
        }
    }

    fn target(&self, k: usize) -> u64 {
        self.h.target(self.s, k)
    }

    /// Writes code and runs the cache maintenance over it.
    fn publish(&mut self, addr: u64, bytes: &[u8]) {
        let pb = self.publisher.publish(&mut self.p, addr, bytes).unwrap();
        self.setup.push(pb.write);
        self.flushes
            .push(pb.flush.expect("aarch64 publishes flush"));
    }

    /// A data store (a table word): no maintenance, as `store_u64`.
    fn store(&mut self, addr: u64, value: u64) {
        let op = self.p.write(addr, &value.to_le_bytes());
        self.setup.push(op);
    }

    /// Calls `addr` with every tuple and target `k`, which must run.
    fn call(&mut self, addr: u64, k: usize, what: &str) {
        for tuple in 0..self.tuples.len() {
            let op = self.p.call(addr, self.layouts[tuple], Some(self.target(k)));
            self.checks.push(Check {
                op,
                what: format!("{what} (target {k}, tuple {tuple})"),
                want: Want::Target { k, tuple },
            });
        }
    }

    /// [`Script::call`] for a call that the miss stub counts.
    fn call_miss(&mut self, addr: u64, k: usize, what: &str) {
        self.call(addr, k, what);
        self.misses += self.tuples.len() as u64;
    }

    /// Checks counter word `i` now.
    fn counter(&mut self, i: usize, want: u64, what: &str) {
        let op = self.p.call(READERS + 16 * i as u64, self.any_layout, None);
        self.checks.push(Check {
            op,
            what: format!("{what}: counter {i}"),
            want: Want::Value(want),
        });
    }

    fn counts(&mut self, what: &str) {
        let (e, m) = (self.entries, self.misses);
        self.counter(ENTRIES, e, what);
        self.counter(MISSES, m, what);
    }

    /// Rewrites the branch word at `field` to go to `to` and publishes it:
    /// one `B`/`BL` word, as the engine stores it.
    fn branch(&mut self, kind: BranchKind, field: u64, to: u64) {
        let word = ARCH.backend().encode_branch(kind, field, to).unwrap();
        self.publish(field, &word.to_le_bytes());
    }

    /// Runs the program; returns every check that failed.
    fn run(self) -> Vec<String> {
        let outcome = self.h.run(&self.p).unwrap_or_else(|e| panic!("{e}"));
        for &op in &self.setup {
            assert_eq!(outcome.status(op), Ok(()), "a map or write failed");
        }
        for &op in &self.flushes {
            let r = outcome.call(op);
            assert!(r.clean(), "the cache-maintenance routine: {r:?}");
        }
        let mut failures = Vec::new();
        for c in &self.checks {
            let r = outcome.call(c.op);
            let why = match c.want {
                Want::Target { k, tuple } => disagreement(&self.sig, k, &self.tuples[tuple], r),
                Want::Value(v) => match r.fault {
                    Some(f) => Some(format!("{} at {:#x}", f.signal_name(), f.pc)),
                    None if r.ret_int != v => Some(format!("read {}, want {v}", r.ret_int)),
                    None => None,
                },
            };
            if let Some(why) = why {
                failures.push(format!("{}: {why}", c.what));
            }
        }
        failures
    }
}

/// What is wrong with call result `r` of target `k` with `mixes`.
fn disagreement(sig: &ThunkSig, k: usize, mixes: &[u64], r: &CallResult) -> Option<String> {
    if let Some(f) = r.fault {
        return Some(format!(
            "{} at pc {:#x} (address {:#x})",
            f.signal_name(),
            f.pc,
            f.addr
        ));
    }
    let (h, ret) = expected(sig, k as u64, mixes);
    let mut why = Vec::new();
    if r.target_calls != 1 {
        why.push(format!("{} target calls", r.target_calls));
    }
    if r.last_call != Some((k as u64, h)) {
        why.push(format!("target saw {:x?}, want ({k}, {h:#x})", r.last_call));
    }
    let got = returned(sig, r);
    if got != ret {
        why.push(format!("returned {got:#x}, want {ret:#x}"));
    }
    if r.clobbered != 0 {
        why.push(format!(
            "callee-saved registers clobbered ({:#x})",
            r.clobbered
        ));
    }
    if !r.sp_restored {
        why.push("sp not restored".into());
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// A deliberate protocol error, for the negative control.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    Nothing,
    /// Enable slot 1 without patching its branch first.
    SkipPatchOfSlot1,
}

fn run_sig(name: &str) {
    let Some(h) = harness() else { return };
    let failures = script(h, name, Break::Nothing);
    assert!(
        failures.is_empty(),
        "{name}: {} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Builds and runs the whole sequence for signature `name`; returns the
/// failed checks.
fn script(h: &Harness, name: &str, broken: Break) -> Vec<String> {
    let s = SIGS
        .iter()
        .position(|&x| x.parse::<ThunkSig>().unwrap() == name.parse::<ThunkSig>().unwrap())
        .unwrap();
    let backend = ARCH.backend();
    let mut compiler = PatchCompiler::new(
        ARCH,
        PatchOptions {
            verify: true,
            hardened: None,
        },
    )
    .unwrap();
    let t = compiler.template(&h.signatures()[s], SLOTS).unwrap();
    let mut sc = Script::new(h, s, name);

    // The site's stubs, with bridges that count into the data page.
    sc.publish(
        ENTRY_BRIDGE,
        &returning_bridge(COUNTERS + 8 * ENTRIES as u64),
    );
    sc.publish(TAIL_BRIDGE, &tail_bridge(COUNTERS + 8 * MISSES as u64));
    sc.publish(MISS_BRIDGE, &returning_bridge(COUNTERS + 8 * MISSES as u64));
    let entry_stub = backend.hook_stub(COOKIE, ENTRY_BRIDGE, ENTRY_STUB, ArgLoc::Reg(0), None);
    sc.publish(ENTRY_STUB, &entry_stub);
    let miss_stub = match t.miss_exit() {
        MissExit::Tail { reg } => {
            backend.hook_stub(COOKIE, TAIL_BRIDGE, MISS_STUB, ArgLoc::Hw(reg), None)
        }
        MissExit::Call => backend.hook_stub(
            COOKIE,
            MISS_BRIDGE,
            MISS_STUB,
            miss_hook_target(backend, &sc.sig),
            None,
        ),
    };
    sc.publish(MISS_STUB, &miss_stub);
    for i in 0..4 {
        sc.publish(READERS + 16 * i as u64, &reader(i));
    }
    let (bytes, layout): (Vec<u8>, PatchLayout) = t.link_with(THUNK, Some(ENTRY_STUB)).unwrap();
    assert!((layout.len as u64) < ENTRY_BRIDGE - THUNK);
    sc.publish(THUNK, &bytes);
    let table = |k: usize| THUNK + (layout.table + 8 * k) as u64;
    let exit_field = THUNK + layout.exit_field as u64;
    let fallback = THUNK + layout.fallback as u64;
    let counting_entry = THUNK + layout.count as u64;
    let slot_kind = t.branches()[0].kind;
    let slot_field = |k: usize| THUNK + u64::from(t.branches()[k].offset);

    // 1. Fresh: all disabled, nothing counted.
    for k in 0..POOL {
        sc.call(THUNK, k, "fresh thunk, a miss");
    }
    sc.counts("fresh thunk");

    // 2. Count misses.
    sc.branch(BranchKind::Jump, exit_field, MISS_STUB);
    for k in 0..POOL {
        sc.call_miss(THUNK, k, "counting misses");
    }
    sc.counts("miss exit at the miss stub");
    let last = sc.target(POOL - 1);
    sc.counter(LAST_MISS, last, "the miss stub passed the target");

    // 3. Promote target k into slot k: patch, then enable.
    for k in 0..SLOTS {
        let tk = sc.target(k);
        if !(k == 1 && broken == Break::SkipPatchOfSlot1) {
            sc.branch(slot_kind, slot_field(k), tk);
        }
        sc.call_miss(THUNK, k, &format!("slot {k} patched, still disabled"));
        sc.store(table(k), tk);
        sc.call(THUNK, k, &format!("slot {k} enabled: a hit"));
        sc.counts(&format!("slot {k} enabled"));
    }
    for k in 0..POOL {
        if k < SLOTS {
            sc.call(THUNK, k, "promoted: a hit");
        } else {
            sc.call_miss(THUNK, k, "not promoted: a miss");
        }
    }
    sc.counts("three slots enabled");

    // 4. Retarget slot 0 from target 0 to target 3.
    sc.store(table(0), DISABLED);
    sc.call_miss(THUNK, 0, "slot 0 disabled: its old target misses");
    let t3 = sc.target(3);
    sc.branch(slot_kind, slot_field(0), t3);
    sc.call_miss(THUNK, 3, "slot 0 patched to target 3, still disabled");
    sc.store(table(0), t3);
    sc.call(THUNK, 3, "slot 0 enabled for target 3: a hit");
    sc.call_miss(THUNK, 0, "target 0 no longer promoted");
    sc.counts("slot 0 retargeted");
    let t0 = sc.target(0);
    sc.counter(LAST_MISS, t0, "slot 0 retargeted");

    // 5. The counting entry counts every call, then runs the thunk.
    for k in [3, 1, 5] {
        if k == 5 {
            sc.call_miss(counting_entry, k, "counting entry, a miss");
        } else {
            sc.call(counting_entry, k, "counting entry, a hit");
        }
        sc.entries += sc.tuples.len() as u64;
    }
    sc.counts("counting entry");
    let t5 = sc.target(5);
    sc.counter(LAST_ENTRY, t5, "the entry stub passed the target");

    // 6. Misses no longer counted.
    sc.branch(BranchKind::Jump, exit_field, fallback);
    for k in [0, 4, 5] {
        sc.call(THUNK, k, "miss exit at its fallback, a miss");
    }
    sc.call(THUNK, 3, "miss exit at its fallback, a hit");
    sc.counts("miss exit back at its fallback");

    // 7. A static entry stub: one `B`, retargeted.
    sc.branch(BranchKind::Jump, STATIC_STUB, THUNK);
    sc.call(STATIC_STUB, 3, "static stub to the thunk, a hit");
    sc.call(STATIC_STUB, 4, "static stub to the thunk, a miss");
    sc.counts("static stub to the thunk");
    sc.branch(BranchKind::Jump, STATIC_STUB, counting_entry);
    sc.call(STATIC_STUB, 2, "static stub to the counting entry");
    sc.entries += sc.tuples.len() as u64;
    sc.counts("static stub to the counting entry");
    sc.branch(BranchKind::Jump, STATIC_STUB, THUNK);
    sc.call(STATIC_STUB, 1, "static stub back to the thunk");
    sc.counts("static stub back to the thunk");

    let checks = sc.checks.len();
    let failures = sc.run();
    eprintln!(
        "{name}: slots {slot_kind:?}, miss exit {:?}: {checks} checks, {} failed",
        t.miss_exit(),
        failures.len()
    );
    failures
}

/// Negative control: a slot enabled before its branch is patched sends its
/// hits to the trap gap. Every such hit is caught (a `SIGTRAP`, reported by
/// the harness, which goes on), and nothing else fails.
#[test]
fn negative_control_enabling_before_patching_traps() {
    let Some(h) = harness() else { return };
    for name in [SIGS[0], SIGS[2]] {
        let failures = script(h, name, Break::SkipPatchOfSlot1);
        eprintln!(
            "negative control {name}: {} failures, e.g. {}",
            failures.len(),
            failures.first().map_or("", String::as_str)
        );
        // Slot 1's hits, 3 tuples each: when enabled, among the promoted,
        // through the counting entry, through the static stub.
        assert_eq!(failures.len(), 12, "{}", failures.join("\n"));
        assert!(
            failures
                .iter()
                .all(|f| f.contains("SIGTRAP") && f.contains("target 1,")),
            "{}",
            failures.join("\n")
        );
    }
}

#[test]
fn register_arguments_slots_b_miss_tail_exit() {
    run_sig(SIGS[0]);
}

#[test]
fn mixed_arguments_slots_b_miss_tail_exit() {
    run_sig(SIGS[1]);
}

#[test]
fn stack_arguments_slots_bl_miss_exit_call() {
    run_sig(SIGS[2]);
}

/// The shapes the tests above rely on: which branch kind and exit each
/// signature gets (so a change of shape shows here, not as a vacuous pass).
#[test]
fn the_signatures_cover_both_branch_kinds_and_both_exits() {
    let mut c = PatchCompiler::new(ARCH, PatchOptions::default()).unwrap();
    let shape = |c: &mut PatchCompiler, s: &str| {
        let t = c.template(&s.parse().unwrap(), SLOTS).unwrap();
        (t.branches()[0].kind, t.miss_exit())
    };
    assert!(matches!(
        shape(&mut c, SIGS[0]),
        (BranchKind::Jump, MissExit::Tail { .. })
    ));
    assert!(matches!(
        shape(&mut c, SIGS[1]),
        (BranchKind::Jump, MissExit::Tail { .. })
    ));
    assert_eq!(shape(&mut c, SIGS[2]), (BranchKind::Call, MissExit::Call));
}
