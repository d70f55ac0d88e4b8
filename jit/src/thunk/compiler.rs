//! From a signature and promoted targets to relocatable machine code.

use std::time::Instant;

use crate::error::JitError;
use crate::hardened::MissTrampolines;
use crate::isa::{Arch, IsaBackend, MissForm};
use crate::pipeline::{Compiled, Pipeline, may_jump};
use crate::thunk::code::{CallReloc, CompiledThunk, Placement, RelocTo};
use crate::thunk::ir::{self, CallForm, HookKind, HookPlan, Hooks, NS_HOOK, NS_SLOT, SlotPlan};
use crate::thunk::stamp::{Template, TemplateKey};
use crate::types::ThunkSig;
use std::collections::HashMap;

/// Most templates a compiler keeps; past this the cache starts over (a
/// template is a few hundred bytes).
const MAX_TEMPLATES: usize = 4096;

/// Most promoted targets one thunk holds.
pub const MAX_SLOTS: usize = 8;

/// Compiler settings.
#[derive(Clone, Debug)]
pub struct CompilerOptions {
    /// Run Cranelift's IR verifier on every thunk. It costs about a third of
    /// the compile time (measured on this project's machine); on by default in debug builds.
    pub verify: bool,
    /// Let direct hits tail-jump to their target where sound (see
    /// `ThunkCompiler::make_tail_jumps`). On by default; off reproduces
    /// Cranelift's plain call-and-return shape.
    pub tail_jumps: bool,
    /// Reuse one compiled template per thunk shape and patch targets into
    /// copies (x86-64; see [`crate::thunk::stamp`]). On by default.
    pub templates: bool,
    /// Hardened mode: the miss trampolines (`MissTrampolines::host()`)
    /// through which the miss path calls its target with a retpoline
    /// instead of an indirect call (see [`crate::hardened`]). They must be
    /// within direct-call reach of the placement. `None` by default.
    pub hardened: Option<MissTrampolines>,
}

impl Default for CompilerOptions {
    fn default() -> Self {
        CompilerOptions {
            verify: cfg!(debug_assertions),
            tail_jumps: true,
            templates: true,
            hardened: None,
        }
    }
}

/// Builds thunks for one ISA, reusing Cranelift's contexts between thunks.
pub struct ThunkCompiler {
    backend: &'static dyn IsaBackend,
    pipeline: Pipeline,
    options: CompilerOptions,
    templates: HashMap<TemplateKey, Template>,
}

impl ThunkCompiler {
    /// A compiler for `arch` (any supported ISA, whatever the host is).
    pub fn new(arch: Arch, options: CompilerOptions) -> Result<Self, JitError> {
        Ok(ThunkCompiler {
            backend: arch.backend(),
            pipeline: Pipeline::new(arch, options.verify)?,
            options,
            templates: HashMap::new(),
        })
    }

    pub fn arch(&self) -> Arch {
        self.backend.arch()
    }

    pub fn options(&self) -> &CompilerOptions {
        &self.options
    }

    /// Checks the promoted list: at most [`MAX_SLOTS`], no null, no repeats.
    pub fn check_targets(targets: &[u64]) -> Result<(), JitError> {
        if targets.len() > MAX_SLOTS {
            return Err(JitError::TooManySlots {
                requested: targets.len(),
                max: MAX_SLOTS,
            });
        }
        for (i, &t) in targets.iter().enumerate() {
            if t == 0 {
                return Err(JitError::NullTarget { index: i });
            }
            if let Some(first) = targets[..i].iter().position(|&u| u == t) {
                return Err(JitError::DuplicateTarget {
                    addr: t,
                    first,
                    second: i,
                });
            }
        }
        Ok(())
    }

    /// Compiles the thunk for `sig` promoting `targets` in order, to be
    /// placed somewhere in `placement`. Each slot gets a direct call if its
    /// target is in range from the whole placement, an absolute call if not.
    ///
    /// Cranelift reports some failures by panicking; those are caught here
    /// and returned as [`JitError::Compile`], leaving the compiler usable.
    pub fn compile(
        &mut self,
        sig: &ThunkSig,
        targets: &[u64],
        placement: Placement,
    ) -> Result<CompiledThunk, JitError> {
        self.compile_with_hooks(sig, targets, &Hooks::NONE, placement)
    }

    /// [`Self::compile`] for a thunk that also calls counting `hooks` (see
    /// [`crate::thunk::ir`]). A hook gets a direct call when it is in reach of the
    /// whole placement, like a slot.
    pub fn compile_with_hooks(
        &mut self,
        sig: &ThunkSig,
        targets: &[u64],
        hooks: &Hooks,
        placement: Placement,
    ) -> Result<CompiledThunk, JitError> {
        Self::check_targets(targets)?;
        let reach = self.backend.direct_call_reach();
        if let Some(tramps) = &self.options.hardened
            && !placement.reaches(tramps.for_sig(sig), reach)
        {
            return Err(JitError::RetpolineOutOfReach {
                retpoline: tramps.for_sig(sig),
            });
        }
        let slots: Vec<SlotPlan> = targets
            .iter()
            .map(|&target| SlotPlan {
                target,
                form: if placement.reaches(target, reach) {
                    CallForm::Direct
                } else {
                    CallForm::Absolute
                },
                tail: false,
            })
            .collect();
        let plan_hook = |address: Option<u64>| {
            address.map(|address| HookPlan {
                address,
                form: if placement.reaches(address, reach) {
                    CallForm::Direct
                } else {
                    CallForm::Absolute
                },
            })
        };
        let hook_plans = (plan_hook(hooks.entry), plan_hook(hooks.miss));
        let absolute_hook = [hook_plans.0, hook_plans.1]
            .into_iter()
            .flatten()
            .find(|h| h.form == CallForm::Absolute);
        // A far hook is called with `call *reg`: never in a hardened thunk.
        if let (Some(hook), Some(_)) = (absolute_hook, &self.options.hardened) {
            return Err(JitError::HookOutOfReach { hook: hook.address });
        }
        let absolute_hook = absolute_hook.is_some();
        // Templates patch slot constants only; a hook's absolute address
        // would be one more constant, and hook stubs live in the same code
        // memory anyway: such thunks are compiled every time.
        if self.options.templates && self.backend.arch() == Arch::X86_64 && !absolute_hook {
            return self.compile_from_template(sig, &slots, hooks, hook_plans);
        }
        self.compile_fresh(sig, slots, hooks, hook_plans)
    }

    /// Compiles with Cranelift, every time. A thunk that counts misses
    /// first tries the lean shape (no hook in the IR; the miss path
    /// tail-jumps through the site's miss stub), and falls back to a hook
    /// call in the miss path where the miss cannot tail-jump.
    fn compile_fresh(
        &mut self,
        sig: &ThunkSig,
        slots: Vec<SlotPlan>,
        hooks: &Hooks,
        hook_plans: (Option<HookPlan>, Option<HookPlan>),
    ) -> Result<CompiledThunk, JitError> {
        let can_tail = self.options.tail_jumps && may_jump(self.backend, sig);
        if hooks.miss.is_some() && hooks.miss_tail.is_some() && can_tail {
            let lean = self.compile_once(sig, slots.clone(), hooks, (hook_plans.0, None), true)?;
            if lean.miss == MissForm::CountingTailJump {
                return Ok(lean);
            }
        }
        let hooks = Hooks {
            miss_tail: None,
            ..*hooks
        };
        self.compile_once(sig, slots, &hooks, hook_plans, false)
    }

    /// One Cranelift compile, then the tail-jump rewrites; with
    /// `miss_stub`, the miss path jumps through the site's miss stub.
    fn compile_once(
        &mut self,
        sig: &ThunkSig,
        slots: Vec<SlotPlan>,
        hooks: &Hooks,
        hook_plans: (Option<HookPlan>, Option<HookPlan>),
        miss_stub: bool,
    ) -> Result<CompiledThunk, JitError> {
        let mut slots = slots;
        let start = Instant::now();
        let mut out = self.compile_inner(sig, &slots, hook_plans.1)?;
        let mut miss = MissForm::Call;
        if self.options.tail_jumps {
            Self::make_tail_jumps(sig, &mut out, &mut slots);
            if may_jump(self.backend, sig)
                && let Some((reg, reloc)) = out.rewrite_miss(miss_stub)
            {
                miss = MissForm::TailJump;
                if let Some(offset) = reloc {
                    miss = MissForm::CountingTailJump;
                    out.relocs.push(crate::pipeline::Mapped {
                        offset,
                        kind: self.backend.direct_call_reloc(),
                        addend: self.backend.jump_addend(),
                        to: RelocTo::MissStub(reg),
                    });
                }
            }
        }
        let mut code = out.code;
        let mut relocs: Vec<CallReloc> = out
            .relocs
            .iter()
            .map(|r| CallReloc {
                offset: r.offset,
                to: r.to,
                addend: r.addend,
            })
            .collect();
        let hooks = if miss == MissForm::CountingTailJump {
            *hooks
        } else {
            Hooks {
                miss_tail: None,
                ..*hooks
            }
        };
        if let Some(entry) = hook_plans.0 {
            // Counting every call: a call to the entry stub in front of it
            // all, where the arguments are still where the caller put them.
            if entry.form != CallForm::Direct {
                return Err(JitError::OutOfRange {
                    offset: 0,
                    place: 0,
                    target: entry.address,
                });
            }
            let (prefix, offset, addend) = self.backend.entry_hook_prefix();
            let shift = prefix.len() as u32;
            code.splice(0..0, prefix);
            for r in &mut relocs {
                r.offset += shift;
            }
            relocs.insert(
                0,
                CallReloc {
                    offset,
                    to: RelocTo::Hook(HookKind::Entry),
                    addend,
                },
            );
        }
        Ok(CompiledThunk {
            arch: self.backend.arch(),
            sig: sig.clone(),
            code,
            relocs,
            slots,
            hooks,
            miss,
            retpoline: self.options.hardened.map(|t| t.for_sig(sig)),
            compile_time: start.elapsed(),
        })
    }

    /// Instantiates the template for this shape, compiling it first if
    /// needed (see [`crate::thunk::stamp`]).
    fn compile_from_template(
        &mut self,
        sig: &ThunkSig,
        slots: &[SlotPlan],
        hooks: &Hooks,
        hook_plans: (Option<HookPlan>, Option<HookPlan>),
    ) -> Result<CompiledThunk, JitError> {
        let start = Instant::now();
        let key = TemplateKey::new(sig, slots, hooks, self.options.tail_jumps);
        if !self.templates.contains_key(&key) {
            let compiled = self.compile_fresh(sig, key.placeholder_slots(), hooks, hook_plans)?;
            let Some(template) = Template::new(&key, compiled) else {
                // Placeholders not found as plain constants: no template for
                // this shape; compile it every time.
                return self.compile_fresh(sig, slots.to_vec(), hooks, hook_plans);
            };
            if self.templates.len() >= MAX_TEMPLATES {
                self.templates.clear();
            }
            self.templates.insert(key.clone(), template);
        }
        let mut thunk = self.templates[&key].instantiate(slots, hooks);
        thunk.compile_time = start.elapsed();
        #[cfg(debug_assertions)]
        {
            let fresh = self.compile_fresh(sig, slots.to_vec(), hooks, hook_plans)?;
            assert_eq!(
                (thunk.unlinked_code(), thunk.relocs(), thunk.slots()),
                (fresh.unlinked_code(), fresh.relocs(), fresh.slots()),
                "template instantiation differs from a fresh compile for {sig} {slots:?}"
            );
        }
        Ok(thunk)
    }

    /// Templates held (one per shape compiled so far).
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// One Cranelift compile (see [`crate::pipeline`]), with every
    /// relocation mapped to what it calls and checked against the plan.
    fn compile_inner(
        &mut self,
        sig: &ThunkSig,
        slots: &[SlotPlan],
        miss_hook: Option<HookPlan>,
    ) -> Result<Compiled<RelocTo>, JitError> {
        let hardened = self.options.hardened.is_some();
        let direct = self.backend.direct_call_reloc();
        let out = self.pipeline.compile(
            |func, fctx, frontend| {
                ir::build_thunk(func, fctx, sig, frontend, slots, miss_hook, hardened);
            },
            |kind, name| {
                let to = match name? {
                    (NS_SLOT, k) if (k as usize) < slots.len() => RelocTo::Slot(k as usize),
                    (NS_HOOK, 0) => RelocTo::Hook(HookKind::Entry),
                    (NS_HOOK, 1) => RelocTo::Hook(HookKind::Miss),
                    (crate::hardened::RETPOLINE_NAMESPACE, _) if hardened => RelocTo::Retpoline,
                    _ => return None,
                };
                (kind == direct).then_some(to)
            },
        )?;
        let relocs = &out.relocs;
        // Every direct slot must have produced exactly one relocation, or the
        // thunk would call a zero displacement.
        for (i, s) in slots.iter().enumerate() {
            let n = relocs.iter().filter(|r| r.to == RelocTo::Slot(i)).count();
            let want = usize::from(s.form == CallForm::Direct);
            if n != want {
                return Err(JitError::UnexpectedReloc(format!(
                    "slot {i} ({:?}) has {n} call relocations",
                    s.form
                )));
            }
        }
        // The IR calls only the miss hook (the entry hook is a prefix).
        for (kind, plan) in [(HookKind::Entry, None), (HookKind::Miss, miss_hook)] {
            let n = relocs
                .iter()
                .filter(|r| r.to == RelocTo::Hook(kind))
                .count();
            let want = usize::from(plan.is_some_and(|h| h.form == CallForm::Direct));
            if n != want {
                return Err(JitError::UnexpectedReloc(format!(
                    "{kind:?} hook has {n} call relocations"
                )));
            }
        }
        Ok(out)
    }

    /// Turns each direct hit's `call; epilogue; ret` into `epilogue; jmp`
    /// where that is sound: every argument travels in registers (so the
    /// target finds them where the thunk's caller put them, shifted by the
    /// register moves already done), the call is immediately followed by
    /// the epilogue (nothing to do after the target returns: no return
    /// value extension, no saved registers), and no basic block starts
    /// inside the rewritten bytes (nothing else jumps into that epilogue).
    fn make_tail_jumps(sig: &ThunkSig, out: &mut Compiled<RelocTo>, slots: &mut [SlotPlan]) {
        if !may_jump(out.backend, sig) {
            return;
        }
        for k in 0..out.relocs.len() {
            let RelocTo::Slot(slot) = out.relocs[k].to else {
                continue; // hooks return into the thunk
            };
            if let Some(new) = out.rewrite_tail_jump(out.relocs[k].offset) {
                out.relocs[k].offset = new;
                slots[slot].tail = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEAR: Placement = Placement {
        lo: 0x1000_0000,
        hi: 0x1100_0000,
    };

    #[test]
    fn a_panic_in_codegen_is_an_error_and_the_compiler_recovers() {
        let sig: ThunkSig = "(i64)->i64".parse().unwrap();
        let mut c = ThunkCompiler::new(Arch::X86_64, CompilerOptions::default()).unwrap();
        c.pipeline.inject_panic = true;
        let e = c.compile(&sig, &[0x1200_0000], NEAR).unwrap_err();
        assert_eq!(e, JitError::Compile("panicked: injected failure".into()));
        let t = c.compile(&sig, &[0x1200_0000], NEAR).unwrap();
        assert_eq!(t.slots()[0].form, CallForm::Direct);
    }

    #[test]
    fn call_form_follows_reach_from_the_whole_placement() {
        let sig: ThunkSig = "(i64)->i64".parse().unwrap();
        for arch in Arch::ALL {
            let reach = arch.backend().direct_call_reach();
            let mut c = ThunkCompiler::new(arch, CompilerOptions::default()).unwrap();
            // Just in reach of `hi`... but from `lo` one byte too far.
            let edge = NEAR.lo + reach;
            let inside = NEAR.lo + reach - 4;
            let near_hi = NEAR.hi - 4096;
            let t = c.compile(&sig, &[near_hi, edge, inside], NEAR).unwrap();
            let forms: Vec<_> = t.slots().iter().map(|s| s.form).collect();
            assert_eq!(
                forms,
                [CallForm::Direct, CallForm::Absolute, CallForm::Direct],
                "{arch}"
            );
            assert_eq!(t.relocs().len(), 2, "{arch}");
            // Linked anywhere in the placement, direct calls still reach.
            t.link(NEAR.lo).unwrap();
            t.link(NEAR.hi - t.len() as u64).unwrap();
        }
    }

    #[test]
    fn linking_out_of_range_is_an_error_not_a_truncation() {
        let sig: ThunkSig = "(i64)->i64".parse().unwrap();
        for arch in Arch::ALL {
            let mut c = ThunkCompiler::new(arch, CompilerOptions::default()).unwrap();
            let t = c.compile(&sig, &[NEAR.hi + 4096], NEAR).unwrap();
            let far = NEAR.hi + 4096 + 2 * arch.backend().direct_call_reach();
            let e = t.link(far).unwrap_err();
            assert!(matches!(e, JitError::OutOfRange { .. }), "{arch}: {e}");
        }
    }

    /// Templates are used (one per shape) and produce exactly what a fresh
    /// compile does, for every constant class with both call forms, with
    /// and without tail jumps.
    #[test]
    fn templates_match_fresh_compiles_for_every_constant_class() {
        use crate::thunk::stamp::ConstClass;
        use std::collections::HashSet;
        let placements = [
            Placement {
                lo: 0x4000_0000,
                hi: 0x4100_0000,
            },
            Placement {
                lo: 0x1_4000_0000,
                hi: 0x1_4100_0000,
            },
        ];
        let bases = [
            0x0123_4560u64,   // Small
            0x9000_0000,      // U32
            0xf000_0000,      // U32
            0x4200_0000,      // Small
            0x1_3000_0000,    // Wide
            0x7f12_3456_7800, // Wide, far from both
        ];
        let mut seen = HashSet::new();
        for sig in [
            "(i64)->i64",
            "(i8,f64,u16)->f32",
            "()->()",
            "(i64,i64,i64,i64,i64,i64,i64)->i64",
        ] {
            let sig: ThunkSig = sig.parse().unwrap();
            for tail_jumps in [true, false] {
                for placement in placements {
                    let opts = |templates| CompilerOptions {
                        verify: true,
                        tail_jumps,
                        templates,
                        hardened: None,
                    };
                    let mut templated = ThunkCompiler::new(Arch::X86_64, opts(true)).unwrap();
                    let mut fresh = ThunkCompiler::new(Arch::X86_64, opts(false)).unwrap();
                    for round in 0..3u64 {
                        for n in 1..=bases.len() {
                            let targets: Vec<u64> =
                                bases[..n].iter().map(|&b| b + round * 0x1_0010).collect();
                            let a = templated.compile(&sig, &targets, placement).unwrap();
                            let b = fresh.compile(&sig, &targets, placement).unwrap();
                            for s in a.slots() {
                                seen.insert((ConstClass::of(s.target), s.form));
                            }
                            assert_eq!(a.unlinked_code(), b.unlinked_code(), "{sig} {targets:x?}");
                            assert_eq!(a.relocs(), b.relocs(), "{sig}");
                            assert_eq!(a.slots(), b.slots(), "{sig}");
                            let place = placement.lo + 0x1000;
                            assert_eq!(a.link(place).unwrap(), b.link(place).unwrap());
                        }
                    }
                    assert!(templated.template_count() >= 1, "templates are used, {sig}");
                    assert!(
                        templated.template_count() <= bases.len(),
                        "one per shape, {sig}"
                    );
                    assert_eq!(fresh.template_count(), 0);
                }
            }
        }
        for class in [ConstClass::Small, ConstClass::U32, ConstClass::Wide] {
            for form in [CallForm::Direct, CallForm::Absolute] {
                assert!(
                    seen.contains(&(class, form)),
                    "{class:?} {form:?} not covered"
                );
            }
        }
    }

    /// Counting on a stable site costs its hits nothing: a thunk that
    /// counts its misses is the thunk that does not count, except that its
    /// miss path tail-jumps to the site's miss stub instead of to the
    /// target. A thunk that counts every call adds its hook call and little
    /// else. Checked along every path of the decoded code.
    #[test]
    fn counting_adds_nothing_to_hit_paths_but_the_hook() {
        use crate::disasm::{Insn, path};
        const PLACE: Placement = Placement {
            lo: 0x4000_0000,
            hi: 0x4100_0000,
        };
        const STUBS: u64 = 0x4200_0000;
        let misses = Hooks {
            entry: None,
            miss: Some(0x4300_0000),
            miss_tail: Some(std::array::from_fn(|r| STUBS + 16 * r as u64)),
        };
        let all = Hooks {
            entry: Some(0x4300_0000),
            miss: None,
            miss_tail: None,
        };
        let calls = |v: &[Insn]| {
            v.iter()
                .filter(|i| matches!(i.branch, crate::Branch::DirectCall(_)))
                .count()
        };
        for arch in Arch::ALL {
            let mut c = ThunkCompiler::new(arch, CompilerOptions::default()).unwrap();
            for sig in [
                "(i64)->i64",
                "(i64,f64)->i64",
                "(i8,u16,bool)->i32",
                "()->()",
                "(f32,f64,i64,i64,i64)->f64",
            ] {
                let sig: ThunkSig = sig.parse().unwrap();
                for n in 0..=MAX_SLOTS {
                    let targets: Vec<u64> = (0..n as u64).map(|k| 0x4400_0000 + k * 0x40).collect();
                    let mut code = |hooks: &Hooks| {
                        let t = c.compile_with_hooks(&sig, &targets, hooks, PLACE).unwrap();
                        (t.link(PLACE.lo).unwrap(), t.slots().to_vec(), t.miss_form())
                    };
                    let (plain, plain_slots, plain_miss) = code(&Hooks::NONE);
                    let (lean, lean_slots, lean_miss) = code(&misses);
                    let (full, _, _) = code(&all);
                    let ctx = format!("{arch} {sig}, {n} slots");
                    assert_eq!(plain_slots, lean_slots, "{ctx}: same forms and tails");
                    assert_eq!(
                        (plain_miss, lean_miss),
                        (MissForm::TailJump, MissForm::CountingTailJump),
                        "{ctx}"
                    );
                    for k in 0..n {
                        let p = path(arch, &plain, PLACE.lo, Some(k)).unwrap();
                        let l = path(arch, &lean, PLACE.lo, Some(k)).unwrap();
                        let f = path(arch, &full, PLACE.lo, Some(k)).unwrap();
                        assert_eq!(p, l, "{ctx}, hit on slot {k}: lean hit path");
                        assert_eq!(calls(&f), calls(&p) + 1, "{ctx}, slot {k}: one hook call");
                        // The prefix, then the plain thunk's instructions.
                        let prefix = f.len() - p.len();
                        assert_eq!(prefix, if arch == Arch::X86_64 { 1 } else { 3 }, "{ctx}");
                        let bytes = |v: &[Insn]| -> Vec<Vec<u8>> {
                            v.iter().map(|i| i.bytes.clone()).collect()
                        };
                        // Relative jumps keep their bytes when everything
                        // moves; jumps out of the thunk (tail jumps) differ.
                        let (fb, pb) = (bytes(&f[prefix..]), bytes(&p));
                        let same = fb.iter().zip(&pb).filter(|(a, b)| a == b).count();
                        assert!(same + 1 >= pb.len(), "{ctx}, slot {k}: counting path");
                    }
                    // The miss: the same instructions, but the last jumps to
                    // the stub of the register holding the target.
                    let p = path(arch, &plain, PLACE.lo, None).unwrap();
                    let l = path(arch, &lean, PLACE.lo, None).unwrap();
                    assert_eq!(p.len(), l.len(), "{ctx}: miss path");
                    assert_eq!(p[..p.len() - 1], l[..l.len() - 1], "{ctx}: miss path");
                    assert_eq!(
                        p.last().unwrap().branch,
                        crate::Branch::IndirectJump,
                        "{ctx}"
                    );
                    let crate::Branch::Jump { target, .. } = l.last().unwrap().branch else {
                        panic!("{ctx}: the lean miss ends in a direct jump");
                    };
                    assert!(
                        (STUBS..STUBS + 16 * 32).contains(&target),
                        "{ctx}: {target:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_target_lists_are_rejected() {
        assert!(matches!(
            ThunkCompiler::check_targets(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(JitError::TooManySlots {
                requested: 9,
                max: 8
            })
        ));
        assert_eq!(
            ThunkCompiler::check_targets(&[5, 0]),
            Err(JitError::NullTarget { index: 1 })
        );
        assert!(ThunkCompiler::check_targets(&[]).is_ok());
    }
}
