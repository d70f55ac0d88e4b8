//! Hardened mode emits no indirect branch: every hardened JIT thunk shape
//! (0 to `MAX_SLOTS` slots, near and far targets, with and without counting
//! hooks, both ISAs), decoded after linking, has no `call *reg` / `jmp *reg`
//! (`blr` / `br`). A far slot calls its target through the retpoline
//! trampoline, as the miss path does; a far hook is refused.

use hotcall_jit::disasm::{disassemble_reachable, render};
use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::{
    Arch, Branch, CallForm, CompilerOptions, Hooks, JitError, MAX_SLOTS, Placement, ThunkCompiler,
    ThunkSig,
};

/// Where the thunk is placed (16 MiB of code memory).
const CODE: u64 = 0x5555_0000_0000;
const CODE_END: u64 = CODE + (16 << 20);
/// Near targets, the trampolines and the hooks: within reach of the code
/// memory on both ISAs (±128 MiB on aarch64).
const NEAR: u64 = CODE + (32 << 20);
const TRAMPOLINES: u64 = CODE - (1 << 20);
const HOOKS: u64 = CODE + 0x1000;
/// Far targets: out of reach on both ISAs.
const FAR: u64 = 0x7f12_3400_0000;

fn compiler(arch: Arch) -> ThunkCompiler {
    ThunkCompiler::new(
        arch,
        CompilerOptions {
            hardened: Some(MissTrampolines {
                by_int_args: std::array::from_fn(|k| TRAMPOLINES + 64 * k as u64),
            }),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn no_hardened_thunk_shape_has_an_indirect_branch() {
    let sigs = [
        "(i64)->i64",
        "(u64,f64)->u64",
        "()->()",
        "(i64,i64,i64,i64,i64,i64,i64,i64)->i64",
    ];
    let placement = Placement {
        lo: CODE,
        hi: CODE_END,
    };
    let mut checked = 0;
    for arch in Arch::ALL {
        let mut c = compiler(arch);
        for sig in sigs {
            let sig: ThunkSig = sig.parse().unwrap();
            let tramp = MissTrampolines {
                by_int_args: std::array::from_fn(|k| TRAMPOLINES + 64 * k as u64),
            }
            .for_sig(&sig);
            for n in 0..=MAX_SLOTS {
                // All near, all far, and alternating.
                for far_every in [0usize, 1, 2] {
                    let targets: Vec<u64> = (0..n)
                        .map(|k| {
                            let far = far_every != 0 && k % far_every == 0;
                            (if far { FAR } else { NEAR }) + 64 * k as u64
                        })
                        .collect();
                    for hooks in [
                        Hooks::NONE,
                        Hooks {
                            entry: Some(HOOKS),
                            miss: Some(HOOKS + 64),
                            miss_tail: None,
                        },
                    ] {
                        let t = c
                            .compile_with_hooks(&sig, &targets, &hooks, placement)
                            .unwrap_or_else(|e| panic!("{arch:?} {sig} {n} slots: {e}"));
                        let far_slots = t
                            .slots()
                            .iter()
                            .filter(|s| s.form == CallForm::Absolute)
                            .count();
                        let want_far = targets.iter().filter(|&&a| a >= FAR).count();
                        assert_eq!(far_slots, want_far, "{arch:?} {sig} {n}");
                        let code = t.link(CODE).unwrap();
                        let insns = disassemble_reachable(arch, &code, CODE).unwrap();
                        let listing = render(&insns);
                        assert!(
                            !insns.iter().any(|i| matches!(
                                i.branch,
                                Branch::IndirectCall | Branch::IndirectJump
                            )),
                            "{arch:?} {sig} {n} slots, far every {far_every}, {hooks:?}: \
                             indirect branch in a hardened thunk:\n{listing}"
                        );
                        // Every far slot and the miss path call the
                        // trampoline: one call each.
                        let tramp_calls = insns
                            .iter()
                            .filter(|i| i.branch == Branch::DirectCall(tramp))
                            .count();
                        assert_eq!(tramp_calls, far_slots + 1, "{listing}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 4 * (MAX_SLOTS + 1) * 3 * 2);
}

#[test]
fn a_far_hook_is_refused_in_hardened_mode() {
    for arch in Arch::ALL {
        let sig: ThunkSig = "(i64)->i64".parse().unwrap();
        let placement = Placement {
            lo: CODE,
            hi: CODE_END,
        };
        let e = compiler(arch)
            .compile_with_hooks(
                &sig,
                &[NEAR],
                &Hooks {
                    entry: Some(FAR),
                    miss: None,
                    miss_tail: None,
                },
                placement,
            )
            .unwrap_err();
        assert_eq!(e, JitError::HookOutOfReach { hook: FAR }, "{arch:?}");
        // The compiler still works afterwards.
        let mut c = compiler(arch);
        assert!(c.compile(&sig, &[NEAR, FAR], placement).is_ok());
    }
}
