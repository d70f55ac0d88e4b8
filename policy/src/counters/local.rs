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
}

/// Records a miss to `target` at the site with `cookie`: the miss-path
/// hook of lean thunks.
pub extern "C" fn record_miss(cookie: u64, target: u64) {
    with_table(cookie, |t| t.on_miss(target));
}
