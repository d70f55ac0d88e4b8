//! The process-wide table from cookie to site, for the hooks' slow path.
//!
//! Generated code passes a small integer cookie rather than a pointer so
//! that a stale thunk can never make a hook dereference a freed site: the
//! hook looks the cookie up here and finds either the live site or nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{SiteCookie, SiteCounters};

struct Registry {
    sites: Vec<Option<Arc<SiteCounters>>>,
    free: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    sites: Vec::new(),
    free: Vec::new(),
});

fn lock() -> MutexGuard<'static, Registry> {
    // Every update leaves the registry consistent.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a site built by `make` with its new cookie.
pub(super) fn register(make: impl FnOnce(SiteCookie) -> SiteCounters) -> Arc<SiteCounters> {
    let mut r = lock();
    let index = r.free.pop().unwrap_or_else(|| {
        r.sites.push(None);
        u32::try_from(r.sites.len() - 1).expect("fewer than 2^32 live sites")
    });
    let site = Arc::new(make(SiteCookie(index)));
    r.sites[index as usize] = Some(Arc::clone(&site));
    site
}

/// The live site with this cookie.
pub(super) fn lookup(cookie: u64) -> Option<Arc<SiteCounters>> {
    let r = lock();
    let site = r.sites.get(SiteCookie::index_of(cookie)?)?.as_ref()?;
    site.is_alive().then(|| Arc::clone(site))
}

/// Frees a retired site's cookie for reuse.
pub(super) fn free(cookie: SiteCookie) {
    let mut r = lock();
    if let Some(slot) = r.sites.get_mut(cookie.0 as usize)
        && slot.take().is_some()
    {
        r.free.push(cookie.0);
    }
}
