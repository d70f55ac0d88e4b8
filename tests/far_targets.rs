//! Far targets on both ISAs: promoted targets beyond direct-call reach
//! (±2 GiB for `call rel32`, ±128 MiB for `bl`) get the absolute form, are
//! called correctly, and the slot statistics say which slots are far;
//! thunks mixing near and far slots work too.
//!
//! A far target is real code placed far away: a small trampoline
//! (`movabs r11, T; jmp r11` on x86-64, `ldr x16, #8; br x16; .quad T` on
//! aarch64, both through the ABI's scratch registers) to a function that
//! hashes its arguments with the model, so a call through the wrong slot
//! or with a mangled argument shows. x86-64 runs natively through the
//! engine; aarch64 runs under qemu (`hotcall-emu`) with the jit's compiler
//! and fixed addresses, including targets just inside and exactly at the
//! `bl` reach.

use std::path::Path;

use hotcall::{Arch, Engine, EngineConfig, SiteFn, ThunkSig};
use hotcall_emu::model::{SplitMix64, edge_tuple, hash_args, random_tuple};
use hotcall_emu::thunks::{call_layouts, expected, returned};
use hotcall_emu::{Harness, Program, Publisher, toolchain_for_tests};
use hotcall_jit::code_memory::host_text_anchor;
use hotcall_jit::{
    CallForm, CodeMemory, CodeMemoryOptions, CompilerOptions, ExecutableCode, Placement,
    ThunkCompiler,
};

// ------------------------------------------------------------ x86-64, native

type F = extern "C" fn(i64, f64) -> i64;

extern "C" fn local<const K: u64>(a: i64, b: f64) -> i64 {
    hash_args(K, &[a as u64, b.to_bits()]) as i64
}

const LOCAL: [F; 8] = [
    local::<0>, local::<1>, local::<2>, local::<3>, local::<4>, local::<5>, local::<6>, local::<7>,
];

/// `movabs r11, target; jmp r11` (r11 is scratch in System V, so the
/// arguments pass through untouched).
fn x86_trampoline(target: u64) -> Vec<u8> {
    let mut v = vec![0x49, 0xBB];
    v.extend_from_slice(&target.to_le_bytes());
    v.extend_from_slice(&[0x41, 0xFF, 0xE3]);
    v
}

/// Trampolines to `LOCAL[k]` in code memory placed near `anchor`.
fn trampolines(anchor: usize) -> (CodeMemory, Vec<ExecutableCode>) {
    let mem = CodeMemory::new(&CodeMemoryOptions {
        capacity: 1 << 16,
        near: Some(anchor),
        serialize_cores: false,
    })
    .expect("code memory for trampolines");
    let code = LOCAL
        .iter()
        .map(|f| {
            let bytes = x86_trampoline(f.addr() as u64);
            let w = mem.alloc(bytes.len()).unwrap();
            w.finish(&bytes)
        })
        .collect();
    (mem, code)
}

/// The function pointer of a trampoline.
fn as_fn(code: &ExecutableCode) -> F {
    // SAFETY: the trampoline is executable code (finished, not released
    // while the test runs: its `CodeMemory` outlives every call) that jumps
    // to a function of type `F` without touching any argument register or
    // the stack, so calling it is calling that function.
    unsafe { std::mem::transmute::<usize, F>(code.entry()) }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_64_far_and_near_slots_in_one_thunk() {
    let reach = Arch::X86_64.backend().direct_call_reach();
    // 64 GiB above the test binary's text: out of rel32 reach of it.
    let (_mem, far) = trampolines(host_text_anchor() + (64 << 30));
    for (i, t) in far.iter().enumerate() {
        assert!(
            t.entry().abs_diff(host_text_anchor()) as u64 > reach,
            "trampoline {i}"
        );
    }
    // Near the host text: local functions direct, trampolines absolute.
    // Near the trampolines: the other way round.
    let near_host = Engine::new();
    let near_far = Engine::with_config(EngineConfig {
        placement: hotcall::Placement::Near(far[0].entry()),
        ..Default::default()
    });
    // Hardened: far slots call through the retpoline trampoline.
    let hardened = Engine::with_config(EngineConfig {
        hardened: true,
        ..Default::default()
    });
    for (engine, local_is_near) in [(&near_host, true), (&near_far, false), (&hardened, true)] {
        assert!(engine.is_enabled(), "{}", engine.stats());
        // Slots alternate: local 0, trampoline to 1, local 2, ...
        let promoted: Vec<F> = (0..8)
            .map(|k| if k % 2 == 0 { LOCAL[k] } else { as_fn(&far[k]) })
            .collect();
        let site = engine.named_site::<F>("far and near");
        let report = site.promote(&promoted).unwrap();
        let stats = site.stats();
        eprintln!("{stats}");
        for (k, s) in stats.slots.iter().enumerate() {
            let is_local = k % 2 == 0;
            let far_slot = is_local != local_is_near;
            assert_eq!(
                s.form,
                if far_slot {
                    CallForm::Absolute
                } else {
                    CallForm::Direct
                },
                "slot {k}: {stats}"
            );
            assert_eq!(
                s.target.abs_diff(report.entry) as u64 >= reach,
                far_slot,
                "slot {k}: {stats}"
            );
        }
        assert_eq!(
            stats
                .slots
                .iter()
                .filter(|s| s.form == CallForm::Absolute)
                .count(),
            4
        );
        let pinned = engine.pin();
        let mut rng = SplitMix64(99);
        for _ in 0..64 {
            let t = random_tuple(&[hotcall::ValType::I64, hotcall::ValType::F64], &mut rng);
            let (a, b) = (t[0] as i64, f64::from_bits(t[1]));
            for (k, &f) in promoted.iter().enumerate() {
                let want = hash_args(k as u64, &[a as u64, b.to_bits()]) as i64;
                assert_eq!(site.call(&pinned, f, (a, b)), want, "hit on slot {k}");
            }
            // Misses: a far trampoline and a local function not promoted.
            for f in [as_fn(&far[0]), LOCAL[1]] {
                assert_eq!(site.call(&pinned, f, (a, b)), f(a, b), "miss");
            }
        }
    }
}

// ------------------------------------------------------------ aarch64, emulated

/// `ldr x16, #8; br x16; .quad target` (x16 is the intra-procedure-call
/// scratch register of AAPCS64, which veneers may clobber).
fn a64_veneer(target: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x5800_0050u32.to_le_bytes());
    v.extend_from_slice(&0xD61F_0200u32.to_le_bytes());
    v.extend_from_slice(&target.to_le_bytes());
    v
}

#[test]
fn aarch64_far_and_near_slots_in_one_thunk() {
    let Some(tc) = toolchain_for_tests(Arch::Aarch64) else {
        return;
    };
    let sig: ThunkSig = <F as SiteFn>::signature();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let h = Harness::build(&tc, std::slice::from_ref(&sig), 12, cache).unwrap();
    let reach = Arch::Aarch64.backend().direct_call_reach();
    // Thunk code 60 MiB above the harness text (which starts at 4 MiB).
    const THUNKS: u64 = 0x0400_0000;
    const FAR_THUNKS: u64 = 0x40_0000_0000;
    let placement = |lo: u64| Placement {
        lo,
        hi: lo + 0x1000,
    };
    // Veneers to target k at chosen distances from the near thunk area.
    let edge_in = THUNKS + reach - 16; // in reach of the whole area
    let edge_out = THUNKS + reach; // exactly `reach` from its start: out
    let mid = THUNKS + (32 << 20);
    let far = 0x20_0000_0000u64;
    let near_far_thunks = FAR_THUNKS + 0x10_0000; // next to the far area
    let veneers: [(u64, usize); 6] = [
        (edge_out, 1),
        (edge_in, 2),
        (far, 3),
        (mid, 4),
        (far + 0x40, 6),
        (near_far_thunks, 7),
    ];
    let mut p = Program::new();
    let (publisher, _) = Publisher::install(&mut p, Arch::Aarch64, 0x03F0_0000);
    let mut maps = vec![p.map(THUNKS, 0x1000), p.map(FAR_THUNKS, 0x1000)];
    let mut pages: Vec<u64> = veneers.iter().map(|(a, _)| a & !0xFFF).collect();
    pages.sort();
    pages.dedup();
    for page in pages {
        maps.push(p.map(page, 0x1000));
    }
    for &(addr, k) in &veneers {
        publisher
            .publish(&mut p, addr, &a64_veneer(h.target(0, k)))
            .unwrap();
    }
    let veneer = |k: usize| veneers.iter().find(|v| v.1 == k).unwrap().0;
    // Slot k is target k, through a veneer where there is one.
    let near_slots: Vec<u64> = (0..8)
        .map(|k| match k {
            1 | 2 | 3 | 4 | 6 => veneer(k),
            _ => h.target(0, k),
        })
        .collect();
    let near_forms = [
        CallForm::Direct,   // harness text, 60 MiB
        CallForm::Absolute, // exactly at the reach
        CallForm::Direct,   // 16 bytes inside the reach
        CallForm::Absolute, // 128 GiB
        CallForm::Direct,   // 32 MiB
        CallForm::Direct,   // harness text
        CallForm::Absolute, // 128 GiB
        CallForm::Direct,   // harness text
    ];
    // The far thunk: harness functions out of reach, one veneer next to it.
    let far_slots: Vec<u64> = (0..8)
        .map(|k| if k == 7 { veneer(7) } else { h.target(0, k) })
        .collect();
    let mut far_forms = [CallForm::Absolute; 8];
    far_forms[7] = CallForm::Direct;

    let mut compiler = ThunkCompiler::new(Arch::Aarch64, CompilerOptions::default()).unwrap();
    let mut rng = SplitMix64(5);
    let tuples: Vec<Vec<u64>> = (0..20)
        .map(|i| edge_tuple(sig.params(), i))
        .chain((0..20).map(|_| random_tuple(sig.params(), &mut rng)))
        .collect();
    let mut checks = Vec::new();
    for (area, slots, forms) in [
        (THUNKS, &near_slots, near_forms),
        (FAR_THUNKS, &far_slots, far_forms),
    ] {
        let thunk = compiler.compile(&sig, slots, placement(area)).unwrap();
        // The statistics say which slots are far.
        let got: Vec<CallForm> = thunk.slots().iter().map(|s| s.form).collect();
        assert_eq!(got, forms, "thunk at {area:#x}");
        let bytes = thunk.link(area).unwrap();
        publisher.publish(&mut p, area, &bytes).unwrap();
        for t in &tuples {
            let (_, regs) = call_layouts(Arch::Aarch64, &sig, t, &mut rng);
            let l = p.layout(&regs).unwrap();
            for (k, &target) in slots.iter().enumerate() {
                checks.push((
                    format!("{area:#x}: hit on slot {k}"),
                    k,
                    t.clone(),
                    p.call(area, l, Some(target)),
                ));
            }
            // Misses: harness functions this thunk does not promote (and,
            // for the far thunk, a far veneer).
            for k in [9, 11] {
                checks.push((
                    format!("{area:#x}: miss"),
                    k,
                    t.clone(),
                    p.call(area, l, Some(h.target(0, k))),
                ));
            }
            if area == FAR_THUNKS {
                let op = p.call(area, l, Some(veneer(3)));
                checks.push((
                    format!("{area:#x}: miss through a far veneer"),
                    3,
                    t.clone(),
                    op,
                ));
            }
        }
    }
    let outcome = h.run(&p).unwrap();
    for m in maps {
        assert_eq!(outcome.status(m), Ok(()), "map");
    }
    for (what, k, t, op) in &checks {
        let r = outcome.call(*op);
        let (hash, ret) = expected(&sig, *k as u64, t);
        assert!(r.clean(), "{what}: {r:?}");
        assert_eq!(r.last_call, Some((*k as u64, hash)), "{what}: args {t:x?}");
        assert_eq!(returned(&sig, r), ret, "{what}");
    }
    eprintln!("{} emulated calls through near and far slots", checks.len());
}
