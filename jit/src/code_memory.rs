//! Code memory of our own: one arena per engine, as an explicit state
//! machine.
//!
//! ```text
//!  alloc ──> WritableCode ──write──> WritableCode ──finish──> ExecutableCode
//!              │ (dropped: returned, never ran)                 │
//!              ╰──────────────────────────────────────────────  release (unsafe: after a grace period)
//!                                                               ──> poisoned, back to the free list
//! ```
//!
//! * **Two views, W^X without `mprotect`.** The arena is a `memfd` mapped
//!   twice: a read+execute view whose addresses are the ones that run, and a
//!   read+write view elsewhere that is used only to write. No page is ever
//!   writable and executable at once, and nothing calls `mprotect` on a page
//!   another thread may be executing (which would need a TLB shootdown and
//!   could fault a concurrent caller).
//! * **Placed near the host text.** The executable view is mapped with
//!   `MAP_FIXED_NOREPLACE` at the first free candidate address within reach
//!   of the host's code, so promoted calls to host functions can be direct
//!   (`call rel32`: ±2 GiB; `bl`: ±128 MiB). If no candidate is free, the
//!   arena goes anywhere and calls fall back to the absolute form.
//! * **One thunk at a time, packed.** A first-fit allocator over 32-byte
//!   granules hands out varied offsets (measured on this project's machine: thunks sharing their low
//!   26 address bits ran 4x slower, one thunk per page cost 15-19%).
//! * **Freed code is poisoned.** Released code is overwritten with the ISA's
//!   trap instruction *before* its memory can be reused, so a stale entry
//!   crashes (`SIGTRAP`) instead of running another thunk.
//! * **Release never blocks.** Epoch reclamation runs deferred frees on
//!   whatever thread collects, possibly a caller on its hot path; so
//!   [`CodeMemory::release`] poisons through the writable view (the memory
//!   is exclusively the caller's at that point) and pushes the range onto a
//!   lock-free queue. The allocator drains the queue under its own lock the
//!   next time it allocates.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::OwnedFd;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;
use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use crate::coherence;
use crate::error::JitError;
use crate::isa::{Arch, IsaBackend};
use crate::thunk::code::Placement;

/// Allocation granule and alignment of every thunk: 32 bytes, so that the
/// start of a thunk (slot 0's whole hit path for a small signature: the
/// prologue, the compare and the tail jump) sits in one 32-byte fetch block
/// and one cache line. Measured: the same lean slot-0 hit cost 1.20x
/// another copy of it at 16-byte granules, where one copy straddled a
/// 64-byte line, and 1.006x at 32 (`cargo bench --bench learning`, the
/// interleaved summary).
pub const GRANULE: usize = 32;

/// Settings of one arena.
#[derive(Clone, Debug)]
pub struct CodeMemoryOptions {
    /// Bytes reserved for code (rounded up to pages). Default 16 MiB: about
    /// 100,000 two-slot thunks.
    pub capacity: usize,
    /// An address in the host's text that direct calls should reach. By
    /// default, a function of this crate (linked into the host binary).
    pub near: Option<usize>,
    /// Run `membarrier(SYNC_CORE)` after writing each thunk (see
    /// [`crate::coherence`]). Default: on for aarch64, where it is
    /// required; off for x86-64, whose instruction fetch is coherent with
    /// stores (it costs about 15 us per publish on a 2-vCPU VM).
    pub serialize_cores: bool,
}

impl Default for CodeMemoryOptions {
    fn default() -> Self {
        CodeMemoryOptions {
            capacity: 16 << 20,
            near: None,
            serialize_cores: crate::coherence::SERIALIZE_BY_DEFAULT,
        }
    }
}

/// An address in the host binary's text.
#[inline(never)]
pub fn host_text_anchor() -> usize {
    host_text_anchor as *const () as usize
}

/// Counters of one arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CodeMemoryStats {
    pub capacity: usize,
    /// Bytes allocated and not yet released (written or executable).
    pub in_use: usize,
    /// The most `in_use` has ever been.
    pub peak_in_use: usize,
    /// Allocations not yet released.
    pub live: usize,
    pub allocated_total: u64,
    pub released_total: u64,
    /// Whether the arena was placed within direct-call reach of `near`.
    pub near_host_text: bool,
}

struct FreeList {
    /// offset -> length of each free block; adjacent blocks are merged.
    blocks: BTreeMap<usize, usize>,
}

impl FreeList {
    fn take(&mut self, len: usize) -> Option<usize> {
        let (&off, &blen) = self.blocks.iter().find(|&(_, &l)| l >= len)?;
        self.blocks.remove(&off);
        if blen > len {
            self.blocks.insert(off + len, blen - len);
        }
        Some(off)
    }

    fn give(&mut self, off: usize, len: usize) {
        let (mut start, mut end) = (off, off + len);
        if let Some((&p, &plen)) = self.blocks.range(..off).next_back()
            && p + plen == off
        {
            self.blocks.remove(&p);
            start = p;
        }
        if let Some(&nlen) = self.blocks.get(&end) {
            self.blocks.remove(&end);
            end += nlen;
        }
        self.blocks.insert(start, end - start);
    }

    fn largest(&self) -> usize {
        self.blocks.values().copied().max().unwrap_or(0)
    }
}

/// One arena of executable memory for the host ISA.
pub struct CodeMemory {
    backend: &'static dyn IsaBackend,
    _fd: OwnedFd,
    rx: usize,
    rw: usize,
    capacity: usize,
    serialize_cores: bool,
    near_host_text: bool,
    free: Mutex<FreeList>,
    released: SegQueue<(usize, usize)>,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    live: AtomicUsize,
    allocated_total: AtomicU64,
    released_total: AtomicU64,
}

// SAFETY: the raw addresses are plain integers into mappings this value owns;
// all mutation of shared state goes through the mutex, the lock-free queue
// or atomics, and writes to code go only to allocations their owner holds
// exclusively (`WritableCode`) or has given up (`release`).
unsafe impl Send for CodeMemory {}
// SAFETY: as for `Send`.
unsafe impl Sync for CodeMemory {}

fn page_size() -> usize {
    rustix::param::page_size()
}

impl CodeMemory {
    /// Maps a new arena for the host ISA.
    pub fn new(options: &CodeMemoryOptions) -> Result<Self, JitError> {
        let arch = Arch::host().ok_or_else(|| {
            JitError::Isa("host", "hotcall runs only on x86_64 and aarch64".into())
        })?;
        let backend = arch.backend();
        let page = page_size();
        let capacity = options.capacity.max(page).div_ceil(page) * page;
        let map_err = |what: &str, e: rustix::io::Errno| JitError::Map(format!("{what}: {e}"));
        let fd = memfd_create("hotcall-code", MemfdFlags::CLOEXEC)
            .map_err(|e| map_err("memfd_create", e))?;
        ftruncate(&fd, capacity as u64).map_err(|e| map_err("ftruncate", e))?;

        let near = options.near.unwrap_or_else(host_text_anchor);
        let (rx, near_host_text) = Self::map_executable_near(&fd, capacity, near, backend)
            .map(|a| (a, true))
            .or_else(|_| {
                // SAFETY: a fresh shared mapping of our own memfd at an
                // address of the kernel's choosing; it aliases nothing.
                unsafe {
                    mmap(
                        ptr::null_mut(),
                        capacity,
                        ProtFlags::READ | ProtFlags::EXEC,
                        MapFlags::SHARED,
                        &fd,
                        0,
                    )
                }
                .map(|p| (p as usize, false))
                .map_err(|e| map_err("mmap (executable view)", e))
            })?;
        // SAFETY: as above, a fresh mapping that aliases only the memfd.
        let rw = unsafe {
            mmap(
                ptr::null_mut(),
                capacity,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        };
        let rw = match rw {
            Ok(p) => p as usize,
            Err(e) => {
                // SAFETY: `rx` was mapped above with this length and is not
                // yet shared with anyone.
                let _ = unsafe { munmap(rx as *mut c_void, capacity) };
                return Err(map_err("mmap (writable view)", e));
            }
        };
        // The arena is not poisoned up front: nothing can branch into memory
        // that no allocation has handed out (every published entry is in an
        // allocation, whose padding `finish` poisons), and filling it would
        // commit every page of the arena (16 MiB by default) for nothing,
        // and take a noticeable time per engine in unoptimized builds. Fresh
        // memfd pages stay unbacked until code is written to them.
        let mut blocks = BTreeMap::new();
        blocks.insert(0, capacity);
        Ok(CodeMemory {
            backend,
            _fd: fd,
            rx,
            rw,
            capacity,
            serialize_cores: options.serialize_cores,
            near_host_text,
            free: Mutex::new(FreeList { blocks }),
            released: SegQueue::new(),
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            allocated_total: AtomicU64::new(0),
            released_total: AtomicU64::new(0),
        })
    }

    /// Tries candidate addresses at growing distances below and above
    /// `near`, all within half the ISA's direct-call reach (leaving the rest
    /// for the host's own text size). Distances are not multiples of a large
    /// power of two, so arenas of several engines do not alias each other's
    /// low address bits.
    fn map_executable_near(
        fd: &OwnedFd,
        capacity: usize,
        near: usize,
        backend: &dyn IsaBackend,
    ) -> Result<usize, ()> {
        let page = page_size();
        let max_dist = (backend.direct_call_reach() / 2) as usize;
        let step = (capacity + (8 << 20)).div_ceil(page) * page;
        let base = near & !(page - 1);
        let mut dist = step;
        let mut k = 0usize;
        while dist + capacity < max_dist {
            let jitter = (k % 7) * 4 * page;
            let candidates = [
                base.checked_sub(dist + capacity + jitter),
                base.checked_add(dist + jitter),
            ];
            for hint in candidates.into_iter().flatten() {
                // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing
                // mapping: it fails with EEXIST if the range is taken.
                let got = unsafe {
                    mmap(
                        hint as *mut c_void,
                        capacity,
                        ProtFlags::READ | ProtFlags::EXEC,
                        MapFlags::SHARED | MapFlags::FIXED_NOREPLACE,
                        fd,
                        0,
                    )
                };
                match got {
                    Ok(p) if p as usize == hint => return Ok(hint),
                    Ok(p) => {
                        // A kernel older than 4.17 treats the flag as a hint
                        // and may map elsewhere: undo and keep looking.
                        // SAFETY: we just mapped `p` and gave it to no one.
                        let _ = unsafe { munmap(p, capacity) };
                    }
                    Err(_) => {}
                }
            }
            dist += step;
            k += 1;
        }
        Err(())
    }

    /// The ISA of the code in this arena.
    pub fn backend(&self) -> &'static dyn IsaBackend {
        self.backend
    }

    /// The executable address range, for choosing call forms.
    pub fn placement(&self) -> Placement {
        Placement {
            lo: self.rx as u64,
            hi: (self.rx + self.capacity) as u64,
        }
    }

    /// Whether `addr` lies inside this arena's executable view.
    pub fn contains(&self, addr: usize) -> bool {
        (self.rx..self.rx + self.capacity).contains(&addr)
    }

    fn drain_released(&self, free: &mut FreeList) {
        while let Some((off, len)) = self.released.pop() {
            free.give(off, len);
        }
    }

    /// Reserves `len` bytes (rounded up to [`GRANULE`]).
    pub fn alloc(&self, len: usize) -> Result<WritableCode<'_>, JitError> {
        let len = len.max(1).div_ceil(GRANULE) * GRANULE;
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        self.drain_released(&mut free);
        let offset = free
            .take(len)
            .ok_or_else(|| JitError::CodeMemoryExhausted {
                requested: len,
                in_use: self.in_use.load(Ordering::Relaxed),
                capacity: self.capacity,
                largest_free: free.largest(),
            })?;
        drop(free);
        let now = self.in_use.fetch_add(len, Ordering::Relaxed) + len;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        self.allocated_total.fetch_add(1, Ordering::Relaxed);
        Ok(WritableCode {
            mem: self,
            offset,
            len,
        })
    }

    fn poison(&self, offset: usize, len: usize) {
        let pattern = self.backend.poison_pattern();
        // SAFETY: [offset, offset+len) is an allocation whose owner gave it
        // up (released, or never executed), inside the writable view.
        let view = unsafe { std::slice::from_raw_parts_mut((self.rw + offset) as *mut u8, len) };
        for chunk in view.chunks_mut(pattern.len()) {
            chunk.copy_from_slice(&pattern[..chunk.len()]);
        }
    }

    fn give_back(&self, offset: usize, len: usize) {
        self.poison(offset, len);
        self.in_use.fetch_sub(len, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.released_total.fetch_add(1, Ordering::Relaxed);
        self.released.push((offset, len));
    }

    /// Poisons executable code and returns its memory. Lock-free and cheap
    /// enough to run inside an epoch-deferred closure on a hot thread.
    ///
    /// # Safety
    /// `code` must come from this arena, and no thread may be executing it
    /// or able to enter it: its address is unpublished and a grace period
    /// has passed since (every thread that could have read the address has
    /// left the code, including returns from calls made inside it).
    pub unsafe fn release(&self, code: ExecutableCode) {
        debug_assert!(self.contains(code.entry));
        self.give_back(code.offset, code.len);
    }

    /// Reads `len` bytes of the executable view at `addr`.
    ///
    /// # Safety
    /// The range must lie inside the arena and must not be written
    /// concurrently (no allocation, install or release overlapping it may
    /// run during the read), or the read is a data race.
    pub unsafe fn read_code(&self, addr: usize, len: usize) -> Vec<u8> {
        assert!(
            self.contains(addr) && addr + len <= self.rx + self.capacity,
            "range outside the arena"
        );
        // SAFETY: in bounds of the readable executable view (checked above);
        // no concurrent writer by the caller's promise.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len).to_vec() }
    }

    /// The writable alias of `offset` bytes into `code`, checked against
    /// the allocation and the alignment of `width`.
    fn alias(&self, code: &ExecutableCode, offset: usize, width: usize) -> *mut u8 {
        assert!(
            offset + width <= code.len && (code.entry + offset).is_multiple_of(width),
            "word at {offset} of a {}-byte allocation",
            code.len
        );
        (self.rw + code.offset + offset) as *mut u8
    }

    /// Stores one aligned 32-bit word into installed code, atomically: a
    /// core fetching or loading it sees the old or the new word, never a
    /// mix. Used to retarget a branch of code that may be running (the
    /// Patch strategy's slots; see `crate::patch`).
    ///
    /// # Safety
    /// `code` must come from this arena and still be installed. Changing
    /// code that may run is sound only under a protocol that makes every
    /// possible execution of the old and the new word correct (the
    /// caller's); the store itself is followed by the instruction-cache
    /// flush of this core, but serializing the other cores is the caller's.
    pub unsafe fn store_u32(&self, code: &ExecutableCode, offset: usize, value: u32) {
        let at = self.alias(code, offset, 4);
        // SAFETY: in bounds and aligned (checked); other threads access the
        // word only atomically (this method) or as instructions.
        let word = unsafe { &*(at as *const std::sync::atomic::AtomicU32) };
        word.store(value, Ordering::Release);
        coherence::flush_icache(code.entry + offset, 4);
    }

    /// Overwrites `bytes` of installed code at `offset`, not atomically,
    /// then flushes this core's instruction cache for them.
    ///
    /// # Safety
    /// `code` must come from this arena and still be installed, and no
    /// thread may execute the bytes while they change (only speculatively:
    /// the caller's protocol must make such a path squash). Serializing the
    /// other cores afterwards is the caller's.
    pub unsafe fn write_code(&self, code: &ExecutableCode, offset: usize, bytes: &[u8]) {
        let at = self.alias(code, offset, 1);
        assert!(
            offset + bytes.len() <= code.len,
            "write past the allocation"
        );
        // SAFETY: in bounds (checked); no concurrent Rust access to these
        // bytes by the caller's promise.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
        coherence::flush_icache(code.entry + offset, bytes.len());
    }

    /// Stores one aligned 64-bit data word inside installed code (the
    /// Patch strategy's compare table), atomically with `SeqCst` ordering.
    ///
    /// # Safety
    /// As for [`Self::store_u32`]: what code that loads the word does with
    /// the new value is the caller's protocol.
    pub unsafe fn store_u64(&self, code: &ExecutableCode, offset: usize, value: u64) {
        let at = self.alias(code, offset, 8);
        // SAFETY: in bounds and aligned (checked); accessed only atomically.
        let word = unsafe { &*(at as *const AtomicU64) };
        word.store(value, Ordering::SeqCst);
    }

    /// Loads an aligned 32-bit word of installed code.
    pub fn load_u32(&self, code: &ExecutableCode, offset: usize) -> u32 {
        let at = self.alias(code, offset, 4);
        // SAFETY: in bounds and aligned (checked); writers store atomically.
        let word = unsafe { &*(at as *const std::sync::atomic::AtomicU32) };
        word.load(Ordering::Acquire)
    }

    /// Loads an aligned 64-bit word of installed code.
    pub fn load_u64(&self, code: &ExecutableCode, offset: usize) -> u64 {
        let at = self.alias(code, offset, 8);
        // SAFETY: in bounds and aligned (checked); writers store atomically.
        let word = unsafe { &*(at as *const AtomicU64) };
        word.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> CodeMemoryStats {
        CodeMemoryStats {
            capacity: self.capacity,
            in_use: self.in_use.load(Ordering::Relaxed),
            peak_in_use: self.peak.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            allocated_total: self.allocated_total.load(Ordering::Relaxed),
            released_total: self.released_total.load(Ordering::Relaxed),
            near_host_text: self.near_host_text,
        }
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: both views were mapped by `new` with `capacity` bytes.
        // Dropping the arena means no `ExecutableCode` of it can still run:
        // owners (sites, deferred frees) hold the arena alive until then.
        unsafe {
            let _ = munmap(self.rx as *mut c_void, self.capacity);
            let _ = munmap(self.rw as *mut c_void, self.capacity);
        }
    }
}

/// Allocated code memory that no one executes yet: the only state in which
/// it may be written. Dropping it returns the memory.
pub struct WritableCode<'a> {
    mem: &'a CodeMemory,
    offset: usize,
    len: usize,
}

impl WritableCode<'_> {
    /// The address the code will execute at.
    pub fn address(&self) -> usize {
        self.mem.rx + self.offset
    }

    /// Bytes reserved (a multiple of [`GRANULE`]).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `code` (linked for [`Self::address`]), fills the rest of the
    /// allocation with the trap instruction, and makes it executable
    /// everywhere: flush this core's instruction cache, then serialize every
    /// core of the process (see [`crate::coherence`]). Only after this may
    /// the address be published.
    pub fn finish(self, code: &[u8]) -> ExecutableCode {
        assert!(code.len() <= self.len, "code larger than its allocation");
        let (mem, offset, len) = (self.mem, self.offset, self.len);
        std::mem::forget(self);
        mem.poison(offset + code.len(), len - code.len());
        // SAFETY: this allocation is exclusively ours (WritableCode is
        // neither Clone nor published), inside the writable view.
        unsafe {
            ptr::copy_nonoverlapping(code.as_ptr(), (mem.rw + offset) as *mut u8, code.len());
        }
        coherence::flush_icache(mem.rx + offset, len);
        if mem.serialize_cores {
            coherence::serialize_all_cores();
        }
        ExecutableCode {
            offset,
            len,
            entry: mem.rx + offset,
        }
    }
}

impl Drop for WritableCode<'_> {
    fn drop(&mut self) {
        // Never executed: it can go back at once.
        self.mem.give_back(self.offset, self.len);
    }
}

/// Installed code. Its address may be published; it is returned only
/// through the `unsafe` [`CodeMemory::release`] after a grace period.
/// Dropping it without release leaks the memory (never unsafe).
#[derive(Debug)]
#[must_use = "executable code is only freed through CodeMemory::release"]
pub struct ExecutableCode {
    offset: usize,
    len: usize,
    entry: usize,
}

impl ExecutableCode {
    /// The entry address.
    pub fn entry(&self) -> usize {
        self.entry
    }

    /// Bytes reserved for it.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CodeMemory {
        CodeMemory::new(&CodeMemoryOptions {
            capacity: 64 << 10,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn placed_near_host_text() {
        let mem = small();
        assert!(mem.stats().near_host_text);
        let reach = mem.backend().direct_call_reach();
        assert!(mem.placement().reaches(host_text_anchor() as u64, reach));
    }

    #[test]
    fn allocations_are_packed_and_reused_after_release() {
        let mem = small();
        let a = mem.alloc(100).unwrap().finish(&[0x90; 100]);
        let b = mem.alloc(40).unwrap().finish(&[0x90; 40]);
        assert_eq!(a.len(), 128);
        assert_eq!(b.entry(), a.entry() + 128, "packed, not page-aligned");
        // SAFETY: never published; no thread executes it.
        unsafe { mem.release(a) };
        let c = mem.alloc(60).unwrap();
        assert_eq!(c.address(), b.entry() - 128, "first fit reuses the hole");
        drop(c);
        assert_eq!(mem.stats().live, 1);
    }

    #[test]
    fn released_code_is_poisoned() {
        let mem = small();
        let code = mem.alloc(32).unwrap().finish(&[0x90; 20]);
        let (entry, len) = (code.entry(), code.len());
        // SAFETY: our own range, no concurrent writer.
        let tail = unsafe { mem.read_code(entry + 20, 12) };
        assert!(tail.iter().all(|&b| b == 0xCC), "padding is poisoned");
        // SAFETY: never published.
        unsafe { mem.release(code) };
        // SAFETY: as above.
        let bytes = unsafe { mem.read_code(entry, len) };
        assert!(
            bytes
                .chunks(mem.backend().poison_pattern().len())
                .all(|c| c == mem.backend().poison_pattern())
        );
    }

    #[test]
    fn exhaustion_is_an_error_and_recoverable() {
        let mem = small();
        let mut held = Vec::new();
        let err = loop {
            match mem.alloc(4096) {
                Ok(w) => held.push(w.finish(&[0x90])),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, JitError::CodeMemoryExhausted { .. }), "{err}");
        for c in held {
            // SAFETY: never published.
            unsafe { mem.release(c) };
        }
        assert!(mem.alloc(4096).is_ok());
    }
}
