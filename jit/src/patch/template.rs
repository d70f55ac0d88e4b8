//! A compiled Patch thunk before placement, and how it is placed.

use std::time::Duration;

use cranelift_codegen::binemit::Reloc;

use super::{DISABLED, MissExit, TABLE_ALIGN, TRAP_GAP};
use crate::error::JitError;
use crate::isa::{Arch, BranchKind, aarch64, x86_64};
use crate::pipeline::Mapped;
use crate::types::ThunkSig;

/// What a relocation of the template points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelocTarget {
    /// The compare table (placed after the code).
    Table,
    /// Slot `k`'s branch (the trap gap until the slot is first patched).
    Slot(usize),
    /// The hardened miss path's retpoline.
    Retpoline,
    /// The miss exit's branch instruction (see [`MissExit`]).
    MissExit,
}

/// A relocation of the template, as the compile pipeline mapped it.
pub(crate) type PatchReloc = Mapped<RelocTarget>;

/// Where a slot's branch word is and what kind of branch it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotBranch {
    /// Offset of the 32-bit word `IsaBackend::encode_branch` produces: the
    /// rel32 field on x86-64, the `B`/`BL` instruction on aarch64.
    pub offset: u32,
    /// `Jump` when the hit tail-jumps (every argument in registers), else
    /// `Call` (the thunk calls, then returns).
    pub kind: BranchKind,
}

/// A Patch thunk compiled for one (signature, slot count), not yet placed.
/// Every site of that shape is a copy of it: it has no target in it.
#[derive(Clone, Debug)]
pub struct PatchTemplate {
    pub(crate) arch: Arch,
    pub(crate) sig: ThunkSig,
    pub(crate) code: Vec<u8>,
    pub(crate) relocs: Vec<PatchReloc>,
    pub(crate) branches: Vec<SlotBranch>,
    pub(crate) miss: MissExit,
    pub(crate) retpoline: Option<u64>,
    pub(crate) compile_time: Duration,
}

/// Offsets of one placed copy:
///
/// ```text
/// 0          the thunk's code (its entry)
/// trap       TRAP_GAP bytes of traps (where disabled slots' branches go)
/// count      the counting entry (see `count_block` in the ISA folders)
/// exit       the miss exit's branch (8-byte aligned block; x86-64: after
///            a 3-byte `nop`, its rel32 at exit_field, 4-byte aligned)
/// fallback   what the miss exit falls through to (`jmp *reg` / `ret`)
/// table      one aligned 8-byte word per slot, own cache line(s)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchLayout {
    /// Where the trap gap starts (the end of the code).
    pub trap: usize,
    /// The counting entry.
    pub count: usize,
    /// The miss exit's branch instruction (where the miss path goes).
    pub exit: usize,
    /// The miss exit's branch word, as `IsaBackend::encode_branch` writes
    /// it (4-byte aligned).
    pub exit_field: usize,
    /// The instruction the miss exit falls through to.
    pub fallback: usize,
    /// Where the table starts: the first `TABLE_ALIGN`ed address past the
    /// fallback.
    pub table: usize,
    /// Bytes written: up to the end of the table.
    pub len: usize,
}

/// The ISA's pieces after the code: counting-entry size, the miss exit's
/// offsets in its 8-byte block, the fallback bytes.
struct Tail {
    count_len: usize,
    /// The branch's offset in the block, its length, and its word's.
    exit_jump: usize,
    jump_len: usize,
    exit_field: usize,
    fallback: Vec<u8>,
}

fn tail_pieces(arch: Arch, miss: MissExit) -> Tail {
    let reg = match miss {
        MissExit::Tail { reg } => Some(reg),
        MissExit::Call => None,
    };
    match arch {
        Arch::X86_64 => Tail {
            count_len: x86_64::encode::COUNT_BLOCK_LEN,
            exit_jump: x86_64::encode::MISS_EXIT_JUMP_OFFSET as usize,
            jump_len: 5,
            exit_field: x86_64::encode::STUB_FIELD_OFFSET as usize,
            fallback: x86_64::encode::miss_exit_fallback(reg),
        },
        Arch::Aarch64 => Tail {
            count_len: aarch64::encode::COUNT_BLOCK_LEN,
            exit_jump: aarch64::encode::MISS_EXIT_JUMP_OFFSET as usize,
            jump_len: 4,
            exit_field: 0,
            fallback: aarch64::encode::miss_exit_fallback(reg),
        },
    }
}

/// Most bytes the miss exit's block and its fallback take (8-byte block,
/// fallback up to 4 bytes, padding to the block's alignment).
const EXIT_MAX: usize = 7 + 8 + 4;
/// Most bytes a counting entry takes on any ISA.
const COUNT_MAX: usize = 16;

impl PatchTemplate {
    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn sig(&self) -> &ThunkSig {
        &self.sig
    }

    pub fn slot_count(&self) -> usize {
        self.branches.len()
    }

    /// The code without its table, relocations unapplied.
    pub fn unlinked_code(&self) -> &[u8] {
        &self.code
    }

    /// Each slot's branch, in slot order.
    pub fn branches(&self) -> &[SlotBranch] {
        &self.branches
    }

    /// How the miss path leaves through the miss exit.
    pub fn miss_exit(&self) -> MissExit {
        self.miss
    }

    /// Cranelift time for this template (paid once per shape).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Bytes to allocate so that a copy fits at any 16-byte aligned
    /// address: code, trap gap, alignment slack, and whole cache lines for
    /// the table (so no neighbour's code shares the table's line).
    pub fn alloc_len(&self) -> usize {
        let table = (8 * self.slot_count()).div_ceil(TABLE_ALIGN) * TABLE_ALIGN;
        self.code.len() + TRAP_GAP + COUNT_MAX + EXIT_MAX + (TABLE_ALIGN - 1) + table
    }

    pub fn layout(&self, place: u64) -> PatchLayout {
        let pieces = tail_pieces(self.arch, self.miss);
        let trap = self.code.len();
        let count = trap + TRAP_GAP;
        let block =
            ((place + (count + pieces.count_len) as u64).next_multiple_of(8) - place) as usize;
        let exit = block + pieces.exit_jump;
        let exit_field = block + pieces.exit_field;
        let fallback = exit + pieces.jump_len;
        let align = TABLE_ALIGN as u64;
        let table_addr =
            (place + (fallback + pieces.fallback.len()) as u64).next_multiple_of(align);
        let table = (table_addr - place) as usize;
        PatchLayout {
            trap,
            count,
            exit,
            exit_field,
            fallback,
            table,
            len: table + 8 * self.slot_count(),
        }
    }

    /// [`PatchTemplate::link_with`] without a counting entry (its bytes
    /// stay traps).
    pub fn link(&self, place: u64) -> Result<(Vec<u8>, PatchLayout), JitError> {
        self.link_with(place, None)
    }

    /// The bytes of a copy placed at `place` (16-byte aligned): the code
    /// with its relocations applied (every slot's branch aimed at the trap
    /// gap, the miss path at the miss exit), traps, the counting entry
    /// calling `entry_stub` (traps without one), the miss exit falling
    /// through (counting nothing), and the table with every slot
    /// [`DISABLED`].
    pub fn link_with(
        &self,
        place: u64,
        entry_stub: Option<u64>,
    ) -> Result<(Vec<u8>, PatchLayout), JitError> {
        if !place.is_multiple_of(16) {
            return Err(JitError::Map(format!(
                "a patch thunk must be placed 16-byte aligned, not at {place:#x}"
            )));
        }
        let layout = self.layout(place);
        let pieces = tail_pieces(self.arch, self.miss);
        let backend = self.arch.backend();
        let mut bytes = vec![0u8; layout.len];
        let poison = backend.poison_pattern();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = poison[i % poison.len()];
        }
        bytes[..self.code.len()].copy_from_slice(&self.code);
        let table_addr = place + layout.table as u64;
        let trap_addr = place + layout.trap as u64;
        let exit_addr = place + layout.exit as u64;
        for r in &self.relocs {
            let target = match r.to {
                RelocTarget::Table => table_addr,
                RelocTarget::Slot(_) => trap_addr,
                RelocTarget::Retpoline => {
                    self.retpoline.expect("hardened template has a retpoline")
                }
                RelocTarget::MissExit => exit_addr,
            };
            apply_reloc(self.arch, &mut bytes, r, place, target)?;
        }
        if let Some(stub) = entry_stub {
            let at = place + layout.count as u64;
            let count = match self.arch {
                Arch::X86_64 => x86_64::encode::count_block(at, stub, place)?,
                Arch::Aarch64 => aarch64::encode::count_block(at, stub, place)?,
            };
            debug_assert_eq!(count.len(), pieces.count_len);
            bytes[layout.count..layout.count + count.len()].copy_from_slice(&count);
        }
        // The miss exit, falling through: its block, then the fallback.
        let block = layout.exit - pieces.exit_jump;
        if self.arch == Arch::X86_64 {
            bytes[block..block + 4].copy_from_slice(&x86_64::encode::STUB_PREFIX);
        }
        let fall = place + layout.fallback as u64;
        let word =
            backend.encode_branch(BranchKind::Jump, place + layout.exit_field as u64, fall)?;
        bytes[layout.exit_field..layout.exit_field + 4].copy_from_slice(&word.to_le_bytes());
        bytes[layout.fallback..layout.fallback + pieces.fallback.len()]
            .copy_from_slice(&pieces.fallback);
        for k in 0..self.slot_count() {
            let at = layout.table + 8 * k;
            bytes[at..at + 8].copy_from_slice(&DISABLED.to_le_bytes());
        }
        Ok((bytes, layout))
    }
}

/// Applies one relocation of the kinds a Patch thunk has.
fn apply_reloc(
    arch: Arch,
    code: &mut [u8],
    r: &PatchReloc,
    place: u64,
    target: u64,
) -> Result<(), JitError> {
    let at = r.offset as usize;
    let pc = place + u64::from(r.offset);
    let s_a = (target as i64).wrapping_add(r.addend);
    let out_of_range = || JitError::OutOfRange {
        offset: r.offset,
        place: pc,
        target,
    };
    let word = |code: &[u8]| u32::from_le_bytes(code[at..at + 4].try_into().expect("4 bytes"));
    match r.kind {
        // S + A - P in a 32-bit field (calls, and `lea` of the table).
        Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => {
            let disp = i32::try_from(s_a.wrapping_sub(pc as i64)).map_err(|_| out_of_range())?;
            code[at..at + 4].copy_from_slice(&disp.to_le_bytes());
        }
        Reloc::Arm64Call => {
            arch.backend()
                .link_direct_call(code, r.offset, place, target, r.addend)?;
        }
        // ADRP: the 4 KiB page of S + A relative to the page of P, 21 bits
        // split into immlo (bits 29-30) and immhi (bits 5-23).
        Reloc::Aarch64AdrPrelPgHi21 => {
            let pages = (s_a >> 12) - ((pc as i64) >> 12);
            if !(-(1 << 20)..(1 << 20)).contains(&pages) {
                return Err(out_of_range());
            }
            let imm = pages as u32 & 0x1f_ffff;
            let insn = word(code) & !((0x3 << 29) | (0x7_ffff << 5));
            let insn = insn | ((imm & 0x3) << 29) | ((imm >> 2) << 5);
            code[at..at + 4].copy_from_slice(&insn.to_le_bytes());
        }
        // ADD (immediate): the low 12 bits of S + A in bits 10-21.
        Reloc::Aarch64AddAbsLo12Nc => {
            let insn = word(code) & !(0xfff << 10);
            let insn = insn | (((s_a as u32) & 0xfff) << 10);
            code[at..at + 4].copy_from_slice(&insn.to_le_bytes());
        }
        other => {
            return Err(JitError::UnexpectedReloc(format!(
                "{other} at {} in a patch thunk",
                r.offset
            )));
        }
    }
    Ok(())
}
