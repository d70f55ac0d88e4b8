//! Hardened mode: no indirect branch hotcall emits is left unretpolined.
//! The differential tests check that hardened sites compute the right
//! results for every signature; this checks the code itself.

use hotcall::{Engine, EngineConfig, Strategy, StrategySite, listed_call};
use hotcall_jit::disasm::{disassemble_reachable, render};
use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::{Arch, Branch};

type Callback = extern "C" fn(u64, f64) -> u64;
extern "C" fn t0(x: u64, y: f64) -> u64 {
    x ^ y.to_bits()
}
extern "C" fn t1(x: u64, y: f64) -> u64 {
    x.wrapping_add(y as u64)
}
extern "C" fn t2(x: u64, y: f64) -> u64 {
    x.wrapping_mul(3) ^ (y * 2.0).to_bits()
}

fn hardened() -> Engine {
    let e = Engine::with_config(EngineConfig {
        hardened: true,
        ..Default::default()
    });
    assert!(e.is_enabled() && e.is_hardened(), "{}", e.stats());
    e
}

fn code(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: installed code of a live site; nothing writes it meanwhile.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len).to_vec() }
}

/// Checks that `insns` (a thunk at `entry`) has no indirect branch, exits
/// directly to `hits` in order, and misses through `miss` (the trampoline,
/// preceded in a Patch thunk by the call of its miss exit), the only calls.
fn check_no_indirect(
    insns: &[hotcall_jit::disasm::Insn],
    entry: u64,
    end: u64,
    hits: &[u64],
    miss: &[u64],
) {
    let listing = render(insns);
    assert!(
        !insns
            .iter()
            .any(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump)),
        "indirect branch in a hardened thunk:\n{listing}"
    );
    let exits: Vec<u64> = insns
        .iter()
        .filter_map(|i| i.direct_exit(entry, end))
        .collect();
    let mut want = hits.to_vec();
    want.extend_from_slice(miss);
    assert_eq!(exits, want, "{listing}");
    // The hits still jump (the trampoline scheme keeps the frame minimal).
    let calls = insns
        .iter()
        .filter(|i| matches!(i.branch, Branch::DirectCall(_)))
        .count();
    assert_eq!(calls, miss.len(), "only the miss calls:\n{listing}");
}

#[test]
fn hardened_jit_thunks_have_no_indirect_branch() {
    let arch = Arch::host().unwrap();
    let engine = hardened();
    let site = engine.site::<Callback>();
    let tramp = MissTrampolines::host().unwrap().for_sig(site.signature());
    for n in 0..=3 {
        let targets = &[t0 as Callback, t1, t2][..n];
        let r = site.promote(targets).unwrap();
        assert!(r.slots.iter().all(|s| s.tail), "{r:?}");
        let insns =
            disassemble_reachable(arch, &code(r.entry, r.code_bytes), r.entry as u64).unwrap();
        let hits: Vec<u64> = targets.iter().map(|&f| f as usize as u64).collect();
        check_no_indirect(
            &insns,
            r.entry as u64,
            (r.entry + r.code_bytes) as u64,
            &hits,
            &[tramp],
        );
        let pinned = engine.pin();
        for f in [t0 as Callback, t1, t2] {
            assert_eq!(site.call(&pinned, f, (7, 1.5)), f(7, 1.5));
        }
    }
}

#[test]
fn hardened_patch_thunks_have_no_indirect_branch() {
    let arch = Arch::host().unwrap();
    let engine = hardened();
    let site = engine.patch_site::<Callback>(2).unwrap();
    site.retarget(&[t1, t0]).unwrap();
    assert!(site.wait(std::time::Duration::from_secs(10)));
    let thunk = site.thunk_code();
    let entry = thunk.entry();
    let insns = disassemble_reachable(arch, &code(entry, thunk.code_len()), entry as u64).unwrap();
    let tramp = MissTrampolines::host().unwrap().for_sig(site.signature());
    let layout = thunk.layout();
    let exit = entry + layout.exit;
    check_no_indirect(
        &insns,
        entry as u64,
        (entry + thunk.code_len()) as u64,
        &[t1 as *const () as u64, t0 as *const () as u64],
        &[exit as u64, tramp],
    );
    // The miss exit (not counting: it falls through to a `ret`) and the
    // counting entry (a call of the entry stub, a jump into the thunk).
    assert_eq!(thunk.miss_exit_target(), thunk.miss_fallback());
    for (start, end) in [
        (exit, entry + layout.fallback + 4),
        (entry + layout.count, exit),
    ] {
        let insns = disassemble_reachable(arch, &code(start, end - start), start as u64).unwrap();
        assert!(
            !insns
                .iter()
                .any(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump)),
            "indirect branch after a hardened Patch thunk:\n{}",
            render(&insns)
        );
        assert!(!insns.is_empty());
    }
    let pinned = engine.pin();
    for f in [t0 as Callback, t1, t2] {
        assert_eq!(site.call(&pinned, f, (9, -2.0)), f(9, -2.0));
    }
}

#[test]
fn every_strategy_computes_the_same() {
    for hardened_mode in [false, true] {
        let engine = Engine::with_config(EngineConfig {
            hardened: hardened_mode,
            ..Default::default()
        });
        for strategy in [
            Strategy::Indirect,
            Strategy::Retpoline,
            Strategy::Jit,
            Strategy::Patch { slots: 2 },
        ] {
            let site = StrategySite::<Callback>::new(&engine, strategy).unwrap();
            assert_eq!(site.strategy(), strategy);
            site.promote(&[t0, t1]).unwrap();
            while let StrategySite::Patch(p) = &site {
                if p.wait(std::time::Duration::from_secs(10)) {
                    break;
                }
            }
            let pinned = engine.pin();
            for f in [t0 as Callback, t1, t2] {
                for (x, y) in [(0, 0.0), (u64::MAX, -0.5), (42, 1e10)] {
                    assert_eq!(
                        site.call(&pinned, f, (x, y)),
                        f(x, y),
                        "{strategy:?} hardened={hardened_mode}"
                    );
                }
            }
        }
    }
    // And the compile-time baseline.
    for f in [t0 as Callback, t1, t2] {
        let g: Callback = std::hint::black_box(f);
        assert_eq!(listed_call!(g, (3, 0.25), [t0, t1]), f(3, 0.25));
    }
}

hotcall::static_site! {
    static HARDENED_STATIC: extern "C" fn(u64, f64) -> u64;
}

/// A static site starts at the hardened miss stub, stays on it when bound
/// to a hardened engine and demoted, and its JIT thunks miss through the
/// trampolines.
#[test]
fn hardened_static_site() {
    let engine = hardened();
    let hardened_miss = hotcall::static_entry::miss_hardened as *const () as usize;
    assert_eq!(HARDENED_STATIC.jumps_to().unwrap(), hardened_miss);
    let check = || {
        let pinned = engine.pin();
        for f in [t0 as Callback, t1, t2] {
            assert_eq!(HARDENED_STATIC.call(&pinned, f, (5, 0.5)), f(5, 0.5));
        }
    };
    check();
    let r = HARDENED_STATIC.promote(&engine, &[t2]).unwrap();
    assert_eq!(HARDENED_STATIC.jumps_to().unwrap(), r.entry);
    let insns = disassemble_reachable(
        Arch::host().unwrap(),
        &code(r.entry, r.code_bytes),
        r.entry as u64,
    )
    .unwrap();
    let tramp = MissTrampolines::host().unwrap().for_sig(
        &hotcall::ThunkSig::new(
            &[hotcall::ValType::U64, hotcall::ValType::F64],
            Some(hotcall::ValType::U64),
        )
        .unwrap(),
    );
    check_no_indirect(
        &insns,
        r.entry as u64,
        (r.entry + r.code_bytes) as u64,
        &[t2 as *const () as u64],
        &[tramp],
    );
    check();
    HARDENED_STATIC.demote().unwrap();
    assert_eq!(HARDENED_STATIC.jumps_to().unwrap(), hardened_miss);
    check();
}
