//! Decodes installed thunks and checks that every in-range promoted call is
//! a true direct transfer to its target (a direct call, or with tail jumps a
//! direct jump after the epilogue), and that the only indirect branch is the
//! miss path's call.

use hotcall::{CallForm, Engine, EngineConfig};
use hotcall_jit::Branch;
use hotcall_jit::disasm::{disassemble_reachable, render};

type Callback = extern "C" fn(u64, f64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: u64, y: f64) -> u64 { x.wrapping_mul($k) ^ y.to_bits() })*
        const TARGETS: [Callback; 8] = [$($name),*];
    };
}
targets!(
    t0 = 3,
    t1 = 5,
    t2 = 7,
    t3 = 11,
    t4 = 13,
    t5 = 17,
    t6 = 19,
    t7 = 23
);

#[test]
fn promoted_calls_are_direct() {
    check_direct(EngineConfig::default(), true);
}

#[test]
fn promoted_calls_are_direct_calls_without_tail_jumps() {
    check_direct(
        EngineConfig {
            tail_jumps: false,
            ..Default::default()
        },
        false,
    );
}

fn check_direct(config: EngineConfig, tail: bool) {
    let engine = Engine::with_config(config);
    assert!(engine.stats().code.near_host_text, "{}", engine.stats());
    let arch = engine.stats().arch.unwrap();
    let site = engine.site::<Callback>();
    for n in 0..=8 {
        let report = site.promote(&TARGETS[..n]).unwrap();
        assert!(
            report.slots.iter().all(|s| s.form == CallForm::Direct),
            "host functions are in range of the code memory: {report:?}"
        );
        // SAFETY: this engine's code, and nothing else installs or frees
        // code in it while we read (one site, this thread).
        let code = unsafe { engine.read_code(report.entry, report.code_bytes) }.unwrap();
        let insns = disassemble_reachable(arch, &code, report.entry as u64).unwrap();
        let listing = render(&insns);
        let end = report.entry as u64 + report.code_bytes as u64;
        let direct: Vec<u64> = insns
            .iter()
            .filter_map(|i| i.direct_exit(report.entry as u64, end))
            .collect();
        let calls = insns
            .iter()
            .filter(|i| matches!(i.branch, Branch::DirectCall(_)))
            .count();
        // (u64, f64) passes in registers on both ISAs: every hit can jump.
        assert_eq!(calls, if tail { 0 } else { n }, "{listing}");
        assert!(report.slots.iter().all(|s| s.tail == tail), "{report:?}");
        let want: Vec<u64> = TARGETS[..n].iter().map(|&f| f as usize as u64).collect();
        assert_eq!(direct, want, "direct calls in slot order\n{listing}");
        let indirect = insns
            .iter()
            .filter(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump))
            .count();
        assert_eq!(indirect, 1, "only the miss is indirect\n{listing}");
        // Slot 0's hit path is a straight line: no jump inside the thunk
        // before the first direct transfer to a target.
        if n > 0 {
            let first_call = insns
                .iter()
                .position(|i| i.direct_exit(report.entry as u64, end).is_some())
                .unwrap();
            assert!(
                insns[..first_call].iter().all(|i| !matches!(
                    i.branch,
                    Branch::Jump {
                        conditional: false,
                        ..
                    }
                )),
                "{listing}"
            );
        }
    }
}

#[test]
fn two_slot_thunk_fits_in_256_bytes() {
    let engine = Engine::new();
    // No learning probe first: the only code in use is the thunk measured.
    let site = engine
        .site_with::<Callback>(hotcall::SiteOptions::new().policy(hotcall::PolicyConfig::Off));
    let report = site.promote(&TARGETS[..2]).unwrap();
    let allocated = report
        .code_bytes
        .div_ceil(hotcall_jit::code_memory::GRANULE)
        * hotcall_jit::code_memory::GRANULE;
    eprintln!(
        "2-slot thunk: {} bytes, {allocated} allocated",
        report.code_bytes
    );
    assert!(allocated <= 256, "{allocated} bytes");
    assert_eq!(engine.stats().code.in_use, allocated);
}
