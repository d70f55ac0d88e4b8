//! The hooks' way to their thread's table: a thread-local vector indexed by
//! the site's cookie.

use std::cell::RefCell;
use std::sync::Arc;

use super::{ThreadTable, registry};

thread_local! {
    /// This thread's table for each site it has counted for, by cookie.
    static TABLES: RefCell<Vec<Option<Arc<ThreadTable>>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `count` on this thread's table for the site with `cookie`.
///
/// Never panics and never blocks on the scheduler (it is called from
/// generated code through `extern "C"`): a thread that is exiting, a
/// re-entrant call, an unknown or dead site or a plan that is being
/// changed simply drop the record.
#[inline]
fn with_table(cookie: u64, count: impl FnOnce(&ThreadTable)) {
    let _ = TABLES.try_with(|tables| {
        let Ok(mut tables) = tables.try_borrow_mut() else {
            return;
        };
        let Some(index) = super::SiteCookie::index_of(cookie) else {
            return;
        };
        if let Some(Some(t)) = tables.get(index)
            && t.site.is_alive()
        {
            if t.sync() {
                count(t);
            }
            return;
        }
        let Some(t) = attach(cookie) else {
            return;
        };
        if tables.len() <= index {
            tables.resize(index + 1, None);
        }
        if t.sync() {
            count(&t);
        }
        tables[index] = Some(t);
    });
}

/// Creates this thread's table for a site and hands it to the site.
#[cold]
fn attach(cookie: u64) -> Option<Arc<ThreadTable>> {
    let site = registry::lookup(cookie)?;
    let table = Arc::new(ThreadTable::new(Arc::clone(&site)));
    site.new_tables.push(Arc::clone(&table));
    Some(table)
}

/// Records a call to `target` at the site with `cookie` (hit or miss): the
/// entry hook of counting thunks.
pub extern "C" fn record_call(cookie: u64, target: u64) {
    with_table(cookie, |t| t.on_call(target));
    clobber_for_tests();
}

/// Records a miss to `target` at the site with `cookie`: the miss-path
/// hook of lean thunks.
pub extern "C" fn record_miss(cookie: u64, target: u64) {
    with_table(cookie, |t| t.on_miss(target));
    clobber_for_tests();
}

/// In this crate's tests, the recorders overwrite every register a C
/// function may clobber, so that the bridge test sees any register the
/// bridge forgets to save (the recorders alone happen to leave most of
/// them untouched).
#[inline(always)]
fn clobber_for_tests() {
    #[cfg(all(test, target_arch = "x86_64"))]
    // SAFETY: writes only registers declared clobbered by `clobber_abi`.
    unsafe {
        core::arch::asm!(
            "mov rax, -1",
            "mov rcx, -1",
            "mov rdx, -1",
            "mov rsi, -1",
            "mov rdi, -1",
            "mov r8, -1",
            "mov r9, -1",
            "mov r10, -1",
            "mov r11, -1",
            "pcmpeqd xmm0, xmm0",
            "pcmpeqd xmm1, xmm1",
            "pcmpeqd xmm2, xmm2",
            "pcmpeqd xmm3, xmm3",
            "pcmpeqd xmm4, xmm4",
            "pcmpeqd xmm5, xmm5",
            "pcmpeqd xmm6, xmm6",
            "pcmpeqd xmm7, xmm7",
            "pcmpeqd xmm8, xmm8",
            "pcmpeqd xmm9, xmm9",
            "pcmpeqd xmm10, xmm10",
            "pcmpeqd xmm11, xmm11",
            "pcmpeqd xmm12, xmm12",
            "pcmpeqd xmm13, xmm13",
            "pcmpeqd xmm14, xmm14",
            "pcmpeqd xmm15, xmm15",
            clobber_abi("C"),
            options(nostack, nomem),
        );
    }
}
