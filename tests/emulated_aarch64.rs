//! The differential cases, compiled for aarch64 and executed under
//! qemu-user (`hotcall-emu`): the same case list as the native x86-64 suite
//! (`tests/common/cases.rs`), every supported type, arities 0 to 8 with
//! stack arguments, 0 to 8 slots, hits on every slot and misses.
//!
//! * Targets are real aarch64 C functions of each case's signature,
//!   compiled by gcc into the static harness (`hotcall_emu::targets`); they
//!   fold their typed arguments into the model's hash, record `(K, hash)`
//!   and return a value derived from it. gcc's callee-side ABI handling is
//!   the reference.
//! * Each thunk is compiled by `ThunkCompiler` for aarch64, linked at a
//!   fixed address, written into the harness process and published with
//!   the project's own cache-maintenance routine
//!   (`hotcall_jit::isa::aarch64::maintenance`), then called with a full
//!   AAPCS64 register file whose unspecified bits (above narrow arguments)
//!   are junk. Two placements: near the harness text (`bl`, tail jumps
//!   where all arguments travel in registers) and 64 GiB away (absolute
//!   calls). Two thunk addresses alternate, so code is rewritten in place
//!   and republished through the maintenance routine again and again.
//! * Every call must run exactly one target, the right one, with the right
//!   hash, return the model's value, restore every callee-saved register
//!   and the stack pointer, and not fault. Plain calls of every target with
//!   the same arguments check the harness and the model themselves.
//!
//! Missing tools fail these tests (see `hotcall_emu::toolchain_for_tests`;
//! `HOTCALL_SKIP_EMULATION=1` skips them loudly outside CI).

use std::path::Path;
use std::sync::OnceLock;

use hotcall::{Arch, SiteFn, ThunkSig, ValType};
use hotcall_emu::model::{self, SplitMix64, edge_tuple, random_tuple, seed_of};
use hotcall_emu::thunks::{call_layouts, expected, returned};
use hotcall_emu::{CallResult, Harness, OpId, Program, Publisher, toolchain_for_tests};
use hotcall_jit::{CallForm, CompiledThunk, CompilerOptions, MAX_SLOTS, Placement, ThunkCompiler};

#[macro_use]
mod common;
use common::cases::{EDGE_TUPLES, POOL, RANDOM_TUPLES};

const ARCH: Arch = Arch::Aarch64;
/// The static harness's text starts at 4 MiB; these are in `bl` reach of it.
const PUBLISHER_PAGE: u64 = 0x03F0_0000;
const NEAR: u64 = 0x0400_0000;
/// 64 GiB: out of `bl` reach of the harness's text.
const FAR: u64 = 0x10_0000_0000;
const AREA_LEN: u64 = 0x1_0000;

macro_rules! emulated_cases {
    ($($name:ident: ($($T:ty),* $(,)?) -> $R:ty;)*) => {
        /// Every case, in list order: the harness has `POOL` targets for
        /// each signature.
        fn case_list() -> Vec<(&'static str, ThunkSig)> {
            vec![$((stringify!($name), <extern "C" fn($($T),*) -> $R as SiteFn>::signature()),)*]
        }
        $(
            #[test]
            fn $name() {
                let Some(h) = harness() else { return };
                let failures = run_case(h, stringify!($name), None);
                assert!(failures.is_empty(), "{}", failures.join("\n"));
            }
        )*
    };
}

differential_cases!(emulated_cases);

/// One harness for the whole test binary, with targets for every case.
fn harness() -> Option<&'static Harness> {
    static H: OnceLock<Option<Harness>> = OnceLock::new();
    H.get_or_init(|| {
        let tc = toolchain_for_tests(ARCH)?;
        let sigs: Vec<ThunkSig> = case_list().into_iter().map(|(_, s)| s).collect();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
        Some(Harness::build(&tc, &sigs, POOL, cache).unwrap_or_else(|e| panic!("{e}")))
    })
    .as_ref()
}

fn case_index(name: &str) -> usize {
    case_list()
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// A change to a thunk's linked bytes before it is published (the negative
/// controls break thunks on purpose with it).
type Mutation<'a> = &'a dyn Fn(&CompiledThunk, &mut Vec<u8>);

/// Where a case's thunks go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Near,
    Far,
}

/// A call made by the program, and what it should observe.
struct Check {
    op: OpId,
    what: String,
    k: u64,
    tuple: usize,
}

/// Runs one case on the emulated machine; returns every disagreement (empty
/// if the thunks behave exactly as the plain calls and the model).
fn run_case(h: &Harness, name: &str, mutate: Option<Mutation>) -> Vec<String> {
    let s = case_index(name);
    let sig = h.signatures()[s].clone();
    assert!(EDGE_TUPLES >= model::longest_edge_list());
    let mut rng = SplitMix64(seed_of(name));
    let mut tuples: Vec<Vec<u64>> = (0..EDGE_TUPLES)
        .map(|i| edge_tuple(sig.params(), i))
        .collect();
    tuples.extend((0..RANDOM_TUPLES).map(|_| random_tuple(sig.params(), &mut rng)));

    let mut p = Program::new();
    let (publisher, map_page) = Publisher::install(&mut p, ARCH, PUBLISHER_PAGE);
    let maps = [map_page, p.map(NEAR, AREA_LEN), p.map(FAR, AREA_LEN)];
    let mut junk = SplitMix64(seed_of(name) ^ 0x5EED);
    let layouts: Vec<_> = tuples
        .iter()
        .map(|t| {
            let (plain, thunk) = call_layouts(ARCH, &sig, t, &mut junk);
            (p.layout(&plain).unwrap(), p.layout(&thunk).unwrap())
        })
        .collect();
    let mut checks = Vec::new();
    for (ti, (plain, _)) in layouts.iter().enumerate() {
        for k in 0..POOL {
            let op = p.call(h.target(s, k), *plain, None);
            checks.push(Check {
                op,
                what: format!("plain call of target {k}"),
                k: k as u64,
                tuple: ti,
            });
        }
    }
    let mut failures = Vec::new();
    let mut publishes = Vec::new();
    let mut thunk_params = vec![ValType::Ptr];
    thunk_params.extend_from_slice(sig.params());
    let all_in_registers = ARCH.backend().args_in_registers(&thunk_params);
    let mut compiler = ThunkCompiler::new(ARCH, CompilerOptions::default()).unwrap();
    for w in [Where::Near, Where::Far] {
        let area = match w {
            Where::Near => NEAR,
            Where::Far => FAR,
        };
        let placement = Placement {
            lo: area,
            hi: area + AREA_LEN,
        };
        for slots in 0..=MAX_SLOTS {
            let order: Vec<usize> = (0..slots).map(|j| (slots * 5 + j) % POOL).collect();
            let targets: Vec<u64> = order.iter().map(|&k| h.target(s, k)).collect();
            let ctx = format!("{name} {sig} ({w:?}, {slots} slots)");
            let thunk = compiler
                .compile(&sig, &targets, placement)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            for (i, slot) in thunk.slots().iter().enumerate() {
                let (form, tail) = match w {
                    Where::Near => (CallForm::Direct, all_in_registers),
                    Where::Far => (CallForm::Absolute, false),
                };
                assert_eq!((slot.form, slot.tail), (form, tail), "{ctx}: slot {i}");
            }
            // Two addresses in turn: code is rewritten where other code ran.
            let addr = area + 0x800 * (slots as u64 % 2);
            let mut bytes = thunk.link(addr).unwrap();
            if let Some(m) = mutate {
                m(&thunk, &mut bytes);
            }
            publishes.push(publisher.publish(&mut p, addr, &bytes).unwrap());
            for (ti, (_, thunk_layout)) in layouts.iter().enumerate() {
                for k in 0..POOL {
                    let op = p.call(addr, *thunk_layout, Some(h.target(s, k)));
                    let what = match order.iter().position(|&o| o == k) {
                        Some(slot) => format!("{ctx}: hit on slot {slot}, target {k}"),
                        None => format!("{ctx}: miss, target {k}"),
                    };
                    checks.push(Check {
                        op,
                        what,
                        k: k as u64,
                        tuple: ti,
                    });
                }
            }
        }
    }
    let outcome = h.run(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
    for m in maps {
        assert_eq!(outcome.status(m), Ok(()), "{name}: mapping failed");
    }
    for pb in &publishes {
        assert_eq!(outcome.status(pb.write), Ok(()));
        let flush = outcome.call(pb.flush.expect("aarch64 publishes flush"));
        assert!(
            flush.clean(),
            "{name}: the cache-maintenance routine: {flush:?}"
        );
    }
    for c in &checks {
        let r = outcome.call(c.op);
        if let Some(why) = disagreement(&sig, c.k, &tuples[c.tuple], r) {
            failures.push(format!("{}: {why}; args {:x?}", c.what, tuples[c.tuple]));
        }
    }
    failures
}

/// What is wrong with call result `r` of target `k` with `mixes`, if
/// anything.
fn disagreement(sig: &ThunkSig, k: u64, mixes: &[u64], r: &CallResult) -> Option<String> {
    if let Some(f) = r.fault {
        return Some(format!(
            "{} at pc {:#x} (address {:#x})",
            f.signal_name(),
            f.pc,
            f.addr
        ));
    }
    let (h, ret) = expected(sig, k, mixes);
    let mut why = Vec::new();
    if r.target_calls != 1 {
        why.push(format!("{} target calls", r.target_calls));
    }
    if r.last_call != Some((k, h)) {
        why.push(format!(
            "target saw {:x?}, expected (K, hash) = ({k}, {h:#x})",
            r.last_call
        ));
    }
    let got = returned(sig, r);
    if got != ret {
        why.push(format!("returned {got:#x}, expected {ret:#x}"));
    }
    if r.clobbered != 0 {
        why.push(format!(
            "callee-saved registers clobbered (mask {:#x})",
            r.clobbered
        ));
    }
    if !r.sp_restored {
        why.push("stack pointer not restored".into());
    }
    (!why.is_empty()).then(|| why.join(", "))
}

// ------------------------------------------------------------ negative controls

/// `mov xD, xM` (`orr xD, xzr, xM`) with both registers argument registers.
fn arg_move(word: u32) -> Option<(u32, u32)> {
    let (rd, rm) = (word & 31, (word >> 16) & 31);
    (word & 0xffe0_ffe0 == 0xaa00_03e0 && rd < 8 && rm < 8 && rd != rm).then_some((rd, rm))
}

/// Breaks a thunk the way a register-allocation or ABI bug would: the first
/// argument move reads the wrong register (`mov x1, x2` becomes
/// `mov x1, x3`). Returns whether a move was found.
fn wrong_argument_register(code: &mut [u8]) -> bool {
    for w in code.chunks_exact_mut(4) {
        let word = u32::from_le_bytes(w.try_into().unwrap());
        if let Some((_, rm)) = arg_move(word) {
            let other = if rm == 7 { 6 } else { rm + 1 };
            let broken = (word & !(31 << 16)) | (other << 16);
            w.copy_from_slice(&broken.to_le_bytes());
            return true;
        }
    }
    false
}

#[test]
fn negative_control_a_wrong_argument_register_is_caught() {
    let Some(h) = harness() else { return };
    // Eight integers: the thunk shifts every argument down one register.
    let found = std::cell::Cell::new(0usize);
    let mutate = |_: &CompiledThunk, code: &mut Vec<u8>| {
        if wrong_argument_register(code) {
            found.set(found.get() + 1);
        }
    };
    let failures = run_case(h, "eight_i64", Some(&mutate));
    assert_eq!(
        found.get(),
        2 * (MAX_SLOTS + 1),
        "every thunk had a move to break"
    );
    // Every thunk call fails (the move is on every path), with the target
    // seeing other arguments; the plain calls still agree with the model.
    let thunk_calls = 2 * (MAX_SLOTS + 1) * POOL * (EDGE_TUPLES + RANDOM_TUPLES);
    eprintln!(
        "negative control: {} of {thunk_calls} thunk calls disagree, e.g.\n  {}",
        failures.len(),
        failures.first().map_or("", |s| s.as_str())
    );
    assert!(
        failures.len() > thunk_calls * 9 / 10,
        "only {} of {thunk_calls} broken calls were caught",
        failures.len()
    );
    assert!(failures.iter().all(|f| !f.contains("plain call")));
    assert!(
        failures.iter().all(|f| f.contains("target saw")),
        "{}",
        failures[0]
    );
    // The same case unbroken passes.
    assert!(run_case(h, "eight_i64", None).is_empty());
}

#[test]
fn negative_control_a_tail_jump_turned_into_a_call_is_caught() {
    let Some(h) = harness() else { return };
    // `b T` becomes `bl T`: the target returns into the `brk` after it.
    let broken = std::cell::Cell::new(0usize);
    let mutate = |thunk: &CompiledThunk, code: &mut Vec<u8>| {
        for r in thunk.relocs() {
            let hotcall_jit::RelocTo::Slot(slot) = r.to else {
                continue;
            };
            if thunk.slots()[slot].tail {
                let at = r.offset as usize;
                let word = u32::from_le_bytes(code[at..at + 4].try_into().unwrap());
                assert_eq!(word >> 26, 0b000101, "a tail slot's relocation is a `b`");
                code[at..at + 4].copy_from_slice(&(word | 1 << 31).to_le_bytes());
                broken.set(broken.get() + 1);
            }
        }
    };
    let failures = run_case(h, "mixed_2", Some(&mutate));
    assert!(broken.get() > 0);
    eprintln!(
        "negative control: {} broken hits caught, e.g.\n  {}",
        failures.len(),
        failures.first().map_or("", |s| s.as_str())
    );
    // Every hit on a tail slot traps; misses and far slots are unaffected.
    let hits: usize = (0..=MAX_SLOTS).sum::<usize>() * (EDGE_TUPLES + RANDOM_TUPLES);
    assert_eq!(failures.len(), hits);
    assert!(
        failures
            .iter()
            .all(|f| f.contains("SIGTRAP") && f.contains("Near"))
    );
}
