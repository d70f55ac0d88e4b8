//! Rewriting branch words in the host binary's own text (static entry
//! stubs), without ever making an executing page writable.
//!
//! The first time a word in a page is patched, the page is *moved* into a
//! memfd: its bytes are copied into a fresh memfd page, that page is
//! mapped read+write somewhere else (the alias every later write goes
//! through), and `mmap(MAP_FIXED)` then maps the memfd page read+execute
//! over the original page. The bytes are identical, so a thread executing
//! that page meanwhile is unaffected: until its TLB entry is shot down it
//! runs the old physical page, afterwards it faults (serialized with the
//! `mmap` by the kernel's mmap lock) and runs the new one. No page is ever
//! writable and executable, and nothing calls `mprotect` on text.
//!
//! Costs and caveats (documented in `docs/patching.md`): each moved page
//! is 4 KiB of shared memory instead of a clean file page; profilers that
//! symbolize through `/proc/self/maps` see `memfd:hotcall-text` for it, so
//! other functions on that page lose their symbols there; and because the
//! mapping is shared, a `fork`ed child shares the patched stubs with its
//! parent, as it shares hotcall's code memory.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::OwnedFd;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

use crate::coherence;
use crate::error::JitError;

/// One moved page: its writable alias and the memfd behind both views.
struct MovedPage {
    rw: usize,
    _fd: OwnedFd,
}

/// Pages moved so far, by executable page address. They stay moved for the
/// life of the process (the stubs they hold are `static`).
static PAGES: Mutex<BTreeMap<usize, MovedPage>> = Mutex::new(BTreeMap::new());

fn page_size() -> usize {
    rustix::param::page_size()
}

/// Makes the 4-byte word at `addr` (in the host's text) patchable by
/// [`store_u32`], moving its page into a memfd if not done yet. Idempotent
/// and thread-safe.
pub fn make_patchable(addr: usize) -> Result<(), JitError> {
    if !addr.is_multiple_of(4) {
        return Err(JitError::Map(format!(
            "text word at {addr:#x} is not 4-byte aligned"
        )));
    }
    let page = addr & !(page_size() - 1);
    let mut pages = PAGES.lock().unwrap_or_else(|p| p.into_inner());
    if pages.contains_key(&page) {
        return Ok(());
    }
    let moved = move_page(page)?;
    pages.insert(page, moved);
    Ok(())
}

fn move_page(page: usize) -> Result<MovedPage, JitError> {
    let size = page_size();
    let err = |what: &str, e: rustix::io::Errno| JitError::Map(format!("{what}: {e}"));
    let fd =
        memfd_create("hotcall-text", MemfdFlags::CLOEXEC).map_err(|e| err("memfd_create", e))?;
    ftruncate(&fd, size as u64).map_err(|e| err("ftruncate", e))?;
    // SAFETY: a fresh shared mapping of our own memfd; it aliases nothing yet.
    let rw = unsafe {
        mmap(
            ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &fd,
            0,
        )
    }
    .map_err(|e| err("mmap (writable alias)", e))? as usize;
    // SAFETY: `page` is mapped readable (it holds the caller's code, which
    // the text segment maps r-x) and nothing writes it (text is immutable
    // except through this module, under the lock); `rw` is our new page.
    unsafe { ptr::copy_nonoverlapping(page as *const u8, rw as *mut u8, size) };
    // SAFETY: replaces one page of text by a mapping with identical bytes
    // and the same permissions (r-x); see the module docs for why threads
    // executing it meanwhile are unaffected. MAP_FIXED is intended: the
    // address is the text page itself.
    let got = unsafe {
        mmap(
            page as *mut c_void,
            size,
            ProtFlags::READ | ProtFlags::EXEC,
            MapFlags::SHARED | MapFlags::FIXED,
            &fd,
            0,
        )
    };
    match got {
        Ok(p) if p as usize == page => Ok(MovedPage { rw, _fd: fd }),
        other => {
            // SAFETY: `rw` was mapped above and given to no one.
            let _ = unsafe { munmap(rw as *mut c_void, size) };
            Err(JitError::Map(format!(
                "cannot move text page {page:#x} into a memfd: {other:?}"
            )))
        }
    }
}

/// Whether `addr`'s page has been made patchable.
pub fn is_patchable(addr: usize) -> bool {
    let page = addr & !(page_size() - 1);
    PAGES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(&page)
}

/// Atomically replaces the aligned word at `addr` with `value` through the
/// page's writable alias, then flushes this core's instruction cache for it.
///
/// # Safety
/// `addr` must have been made patchable with [`make_patchable`], and every
/// execution of either the old or the new word must be correct (a branch
/// word that the ISA allows to change while it executes, whose old and new
/// targets are both valid for any thread that reaches it). Serializing the
/// other cores and retiring the old target are the caller's.
pub unsafe fn store_u32(addr: usize, value: u32) -> Result<(), JitError> {
    let page = addr & !(page_size() - 1);
    let rw = {
        let pages = PAGES.lock().unwrap_or_else(|p| p.into_inner());
        pages
            .get(&page)
            .map(|m| m.rw)
            .ok_or_else(|| JitError::Map(format!("text word {addr:#x} is not patchable")))?
    };
    // SAFETY: `rw + (addr - page)` is inside the alias of `page`, aligned
    // (checked by make_patchable); accessed only atomically.
    let word = unsafe { &*((rw + (addr - page)) as *const AtomicU32) };
    word.store(value, Ordering::Release);
    coherence::flush_icache(addr, 4);
    Ok(())
}

/// Loads the aligned word at `addr` of the host's text.
pub fn load_u32(addr: usize) -> u32 {
    // SAFETY: text is mapped readable; the word is written only atomically
    // (store_u32), and the executable view shows the same memory.
    unsafe { &*(addr as *const AtomicU32) }.load(Ordering::Acquire)
}
