//! Thunk templates: compile once per shape, stamp targets into copies.
//!
//! Cranelift needs about 220,000 instructions (half of them register
//! allocation) to compile even a two-slot thunk: 40-60 µs on this project's
//! machine. But a thunk's machine code depends on its targets only through
//! the compare constants (and, for absolute slots, the call constants), and
//! on *how* those constants are encoded, which depends on their magnitude.
//! So the compiler keeps one template per (signature, per-slot call form and
//! constant class, tail jumps): the code compiled with distinctive
//! placeholder targets, and the offsets where each placeholder landed. A new
//! thunk of the same shape is a copy with the real targets written at those
//! offsets (direct-call displacements are relocations, applied at link time
//! as for any compiled thunk).
//!
//! Soundness rests on one property: two targets of the same class produce
//! byte-identical code except for the constant bytes. Debug builds check it
//! on every instantiation against a fresh compile (`ThunkCompiler::compile`),
//! so the whole test suite is an oracle for it.
//!
//! Only x86-64 uses templates: its constants appear as plain little-endian
//! immediates or pool entries. aarch64 spreads a constant over `movz`/`movk`
//! instructions whose number depends on the value's zero halfwords; it is
//! always compiled.

use crate::thunk::code::CompiledThunk;
use crate::thunk::ir::{CallForm, Hooks, SlotPlan};
use crate::types::ThunkSig;

/// How an x86-64 constant is encoded, which decides the code's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ConstClass {
    /// Below 2^31: fits a sign-extended `imm32` (compares) and a
    /// zero-extended 32-bit `mov` (absolute calls).
    Small,
    /// Below 2^32 but not `Small`: a 32-bit `mov` only.
    U32,
    /// Anything larger: a constant-pool entry or `movabs`.
    Wide,
}

impl ConstClass {
    pub(crate) fn of(v: u64) -> Self {
        if v < 1 << 31 {
            ConstClass::Small
        } else if v < 1 << 32 {
            ConstClass::U32
        } else {
            ConstClass::Wide
        }
    }

    /// Bytes the constant occupies where it is encoded.
    fn width(self) -> usize {
        match self {
            ConstClass::Small | ConstClass::U32 => 4,
            ConstClass::Wide => 8,
        }
    }

    /// A placeholder of this class for slot `k`: distinctive byte patterns
    /// that do not occur in x86-64 thunk code by accident (checked: each
    /// must be found, and debug builds compare with a fresh compile).
    fn placeholder(self, k: usize) -> u64 {
        let k = k as u64 + 1;
        match self {
            ConstClass::Small => 0x3c91_a507 + k * 0x0010_1111,
            ConstClass::U32 => 0xbc91_a507 + k * 0x0010_1111,
            ConstClass::Wide => 0x6e3c_91a5_07d2_0000 + k * 0x0001_0101_1111,
        }
    }
}

/// What determines a template's code besides the target values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TemplateKey {
    sig: ThunkSig,
    shape: Vec<(CallForm, ConstClass)>,
    /// Entry hook, miss hook, miss stubs (their addresses are relocations).
    hooks: (bool, bool, bool),
    tail_jumps: bool,
}

impl TemplateKey {
    pub(crate) fn new(sig: &ThunkSig, slots: &[SlotPlan], hooks: &Hooks, tail_jumps: bool) -> Self {
        TemplateKey {
            sig: sig.clone(),
            shape: slots
                .iter()
                .map(|s| (s.form, ConstClass::of(s.target)))
                .collect(),
            hooks: (
                hooks.entry.is_some(),
                hooks.miss.is_some(),
                hooks.miss_tail.is_some(),
            ),
            tail_jumps,
        }
    }

    /// The slots to compile the template with: same forms, placeholders.
    pub(crate) fn placeholder_slots(&self) -> Vec<SlotPlan> {
        self.shape
            .iter()
            .enumerate()
            .map(|(k, &(form, class))| SlotPlan {
                target: class.placeholder(k),
                form,
                tail: false,
            })
            .collect()
    }
}

/// A compiled thunk with placeholders and where they are.
pub(crate) struct Template {
    thunk: CompiledThunk,
    /// (offset, width, slot) of every placeholder occurrence.
    sites: Vec<(usize, usize, usize)>,
}

impl Template {
    /// Locates the placeholders in `thunk`, compiled from `key`'s
    /// placeholder slots. `None` if a slot's placeholder cannot be found
    /// (then the shape is compiled every time, never templated wrongly).
    pub(crate) fn new(key: &TemplateKey, thunk: CompiledThunk) -> Option<Self> {
        let code = thunk.unlinked_code();
        let mut sites = Vec::new();
        for (k, &(_, class)) in key.shape.iter().enumerate() {
            let width = class.width();
            let needle = &class.placeholder(k).to_le_bytes()[..width];
            let before = sites.len();
            for off in 0..code.len().saturating_sub(width - 1) {
                if &code[off..off + width] == needle {
                    sites.push((off, width, k));
                }
            }
            if sites.len() == before {
                return None;
            }
        }
        // Relocation fields must not overlap a constant.
        let overlaps = thunk.relocs().iter().any(|r| {
            let r = r.offset as usize..r.offset as usize + 4;
            sites.iter().any(|&(o, w, _)| o < r.end && r.start < o + w)
        });
        (!overlaps).then_some(Template { thunk, sites })
    }

    /// A thunk for `slots` and `hooks` (of this template's shape).
    pub(crate) fn instantiate(&self, slots: &[SlotPlan], hooks: &Hooks) -> CompiledThunk {
        let mut code = self.thunk.unlinked_code().to_vec();
        for &(off, width, k) in &self.sites {
            code[off..off + width].copy_from_slice(&slots[k].target.to_le_bytes()[..width]);
        }
        let slots: Vec<SlotPlan> = slots
            .iter()
            .zip(self.thunk.slots())
            .map(|(s, t)| SlotPlan { tail: t.tail, ..*s })
            .collect();
        self.thunk.with_code_and_slots(code, slots, *hooks)
    }
}
