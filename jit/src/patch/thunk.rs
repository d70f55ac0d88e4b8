//! An installed Patch thunk and the stores that retarget it.

use std::sync::Arc;

use super::template::{PatchLayout, PatchTemplate, SlotBranch};
use super::{DISABLED, MissExit};
use crate::code_memory::{CodeMemory, ExecutableCode};
use crate::coherence;
use crate::error::JitError;
use crate::isa::{BranchKind, IsaBackend};

/// A Patch thunk installed in code memory. It lives as long as its site;
/// the stores below change it while it runs. Which store is sound when is
/// the protocol in `docs/patching.md`: these methods only promise that each
/// store is a single aligned word (a table entry, a branch) and that a
/// branch is never aimed out of reach.
pub struct PatchThunk {
    mem: Arc<CodeMemory>,
    code: Option<ExecutableCode>,
    backend: &'static dyn IsaBackend,
    layout: PatchLayout,
    branches: Vec<SlotBranch>,
    miss: MissExit,
    counting_entry: bool,
}

impl PatchThunk {
    /// Allocates, links and installs a copy of `template` in `mem` (which
    /// must be code memory for the template's ISA, i.e. the host's). Every
    /// slot starts disabled, its branch aimed at the trap gap; the miss
    /// exit falls through (nothing counted); no counting entry.
    pub fn install(mem: Arc<CodeMemory>, template: &PatchTemplate) -> Result<Self, JitError> {
        Self::install_with(mem, template, None)
    }

    /// [`PatchThunk::install`] with a counting entry that calls
    /// `entry_stub` (a site's entry hook stub, `IsaBackend::hook_stub`
    /// with the target in the first argument register), if given. The stub
    /// must stay executable as long as the thunk.
    pub fn install_with(
        mem: Arc<CodeMemory>,
        template: &PatchTemplate,
        entry_stub: Option<u64>,
    ) -> Result<Self, JitError> {
        if mem.backend().arch() != template.arch() {
            return Err(JitError::Isa(
                template.arch().backend().name(),
                "a patch thunk runs only in code memory of its own ISA".into(),
            ));
        }
        let writable = mem.alloc(template.alloc_len())?;
        let (bytes, layout) = template.link_with(writable.address() as u64, entry_stub)?;
        let code = writable.finish(&bytes);
        Ok(PatchThunk {
            backend: mem.backend(),
            mem,
            code: Some(code),
            layout,
            branches: template.branches().to_vec(),
            miss: template.miss_exit(),
            counting_entry: entry_stub.is_some(),
        })
    }

    fn code(&self) -> &ExecutableCode {
        self.code.as_ref().expect("installed until released")
    }

    /// The entry address (the thunk ABI: target first, then the arguments).
    pub fn entry(&self) -> usize {
        self.code().entry()
    }

    pub fn slot_count(&self) -> usize {
        self.branches.len()
    }

    /// The counting entry (the thunk ABI, like [`PatchThunk::entry`]):
    /// counts the call through the site's entry stub, then runs the thunk.
    /// `None` if installed without one.
    pub fn counting_entry(&self) -> Option<usize> {
        self.counting_entry
            .then(|| self.entry() + self.layout.count)
    }

    /// How the miss path goes through the miss exit.
    pub fn miss_exit(&self) -> MissExit {
        self.miss
    }

    /// The layout of the installed copy.
    pub fn layout(&self) -> PatchLayout {
        self.layout
    }

    /// Where the miss exit goes when it counts nothing: the instruction
    /// right after it (`jmp *reg` / `br xN`, or `ret`).
    pub fn miss_fallback(&self) -> usize {
        self.entry() + self.layout.fallback
    }

    /// Where the miss exit goes now.
    pub fn miss_exit_target(&self) -> usize {
        let field = self.entry() + self.layout.exit_field;
        let word = self.mem.load_u32(self.code(), self.layout.exit_field);
        self.backend.decode_branch(field as u64, word) as usize
    }

    /// Aims the miss exit at `target`: one aligned 32-bit store (the rel32
    /// of a `jmp` in an 8-byte block on x86-64, a `B` on aarch64) while
    /// threads may be running it, then this core's cache maintenance. A
    /// thread runs either the old or the new branch, so both must be
    /// complete code for the rest of the miss.
    ///
    /// # Safety
    /// `target` is [`PatchThunk::miss_fallback`], or a stub that continues
    /// the miss exactly as the fallback does but for counting it: for
    /// [`MissExit::Tail`], the site's miss stub for that register
    /// (`IsaBackend::hook_stub` with `ArgLoc::Hw(reg)` and the tail
    /// bridge); for [`MissExit::Call`], the site's miss hook stub (the
    /// target at `miss_hook_target`, the returning bridge). The stub must
    /// stay executable as long as the thunk.
    pub unsafe fn aim_miss_exit(&self, target: usize) -> Result<(), JitError> {
        let field = self.entry() + self.layout.exit_field;
        let word = self
            .backend
            .encode_branch(BranchKind::Jump, field as u64, target as u64)?;
        // SAFETY: the field is the exit's aligned branch word, inside this
        // allocation; the caller guarantees both branches are correct code
        // for any thread that runs them.
        unsafe {
            self.mem
                .store_u32(self.code(), self.layout.exit_field, word)
        };
        Ok(())
    }

    /// Bytes of code (without the trap gap and the table).
    pub fn code_len(&self) -> usize {
        self.layout.trap
    }

    /// Bytes written: code, trap gap and table.
    pub fn installed_len(&self) -> usize {
        self.layout.len
    }

    /// Address of slot `k`'s table word.
    pub fn table_address(&self, k: usize) -> usize {
        self.entry() + self.layout.table + 8 * k
    }

    /// Address of slot `k`'s branch word.
    pub fn branch_address(&self, k: usize) -> usize {
        self.entry() + self.branches[k].offset as usize
    }

    /// The branches, in slot order.
    pub fn branches(&self) -> &[SlotBranch] {
        &self.branches
    }

    /// Where disabled slots' branches point (the trap gap).
    pub fn trap_address(&self) -> usize {
        self.entry() + self.layout.trap
    }

    /// The compare value of slot `k` ([`DISABLED`] when disabled).
    pub fn table_word(&self, k: usize) -> u64 {
        self.mem.load_u64(self.code(), self.layout.table + 8 * k)
    }

    /// Where slot `k`'s branch currently goes.
    pub fn branch_target(&self, k: usize) -> usize {
        let b = self.branches[k];
        let word = self.read_branch_word(b.offset as usize);
        self.backend
            .decode_branch(self.branch_address(k) as u64, word) as usize
    }

    fn read_branch_word(&self, offset: usize) -> u32 {
        if offset.is_multiple_of(4) {
            self.mem.load_u32(self.code(), offset)
        } else {
            // SAFETY: inside this installed allocation (offset from the
            // template); branch words are written only by this object.
            let bytes = unsafe { self.mem.read_code(self.entry() + offset, 4) };
            u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
        }
    }

    /// Checks that slot `k`'s branch can reach `target`.
    pub fn check_reach(&self, k: usize, target: usize) -> Result<(), JitError> {
        let b = self.branches[k];
        self.backend
            .encode_branch(b.kind, self.branch_address(k) as u64, target as u64)
            .map(|_| ())
    }

    /// Disables slot `k`: from the moment the store is visible, no call
    /// that loads the table word takes that slot. Always sound.
    pub fn disable(&self, k: usize) {
        // SAFETY: DISABLED matches no call, so any caller that loads it goes
        // on to the next compare or the miss path: correct in every state
        // of the branch.
        unsafe {
            self.mem
                .store_u64(self.code(), self.layout.table + 8 * k, DISABLED)
        };
    }

    /// Aims slot `k`'s branch at `target` (one aligned 32-bit store where
    /// the word is aligned, as on aarch64 always), then flushes this core's
    /// instruction cache.
    ///
    /// # Safety
    /// No thread may be able to take slot `k`'s hit path: the slot has been
    /// disabled and a grace period has passed since (every thread that could
    /// have loaded the old table word has left the thunk). Before the slot
    /// is enabled again, every core must be serialized
    /// ([`PatchThunk::serialize_cores`]).
    pub unsafe fn write_branch(&self, k: usize, target: usize) -> Result<(), JitError> {
        let b = self.branches[k];
        let word =
            self.backend
                .encode_branch(b.kind, self.branch_address(k) as u64, target as u64)?;
        let offset = b.offset as usize;
        if offset.is_multiple_of(4) {
            // SAFETY: the caller's contract (no thread can run the branch).
            unsafe { self.mem.store_u32(self.code(), offset, word) };
        } else {
            // x86-64 only: Cranelift placed the rel32 field unaligned. No
            // thread executes it (the caller's contract), so the store need
            // not be atomic.
            // SAFETY: as above.
            unsafe {
                self.mem
                    .write_code(self.code(), offset, &word.to_le_bytes())
            };
        }
        Ok(())
    }

    /// Runs a serializing instruction on every core running a thread of
    /// this process (`membarrier(SYNC_CORE)`): after it, no core can execute
    /// a branch word older than the last [`PatchThunk::write_branch`].
    /// Returns `false` if the kernel does not offer it.
    pub fn serialize_cores() -> bool {
        coherence::serialize_all_cores()
    }

    /// Enables slot `k` for `target`.
    ///
    /// # Safety
    /// Slot `k`'s branch must go to `target` (a function of the site's
    /// signature), and every core must have been serialized since the branch
    /// was last written; `target` must not be the table word of another
    /// slot.
    pub unsafe fn enable(&self, k: usize, target: usize) {
        debug_assert_eq!(self.branch_target(k), target);
        // SAFETY: the caller's contract: the slot is consistent.
        unsafe {
            self.mem
                .store_u64(self.code(), self.layout.table + 8 * k, target as u64)
        };
    }

    /// The installed bytes (code, trap gap, table), for inspection.
    ///
    /// # Safety
    /// No store of this thunk may run concurrently (the read is not
    /// atomic).
    pub unsafe fn read_installed(&self) -> Vec<u8> {
        // SAFETY: inside this allocation; no concurrent writer by contract.
        unsafe { self.mem.read_code(self.entry(), self.layout.len) }
    }

    /// Poisons and frees the thunk. Dropping a `PatchThunk` without it
    /// leaks its code (never unsafe: a thread may still be inside it).
    ///
    /// # Safety
    /// As [`CodeMemory::release`]: its entry is unpublished and a grace
    /// period has passed since.
    pub unsafe fn release(mut self) {
        if let Some(code) = self.code.take() {
            // SAFETY: forwarded from the caller.
            unsafe { self.mem.release(code) };
        }
    }
}
