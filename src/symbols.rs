//! Names of target functions for statistics, from the host binary's symbol
//! tables (through the `backtrace` crate, which reads the ELF symbols and
//! debug info of every loaded object and handles PIE load offsets).
//!
//! Feature `symbols` (on with `cli`); without it no target has a name.
//!
//! Resolution is slow (the first lookup parses the binary) and runs only
//! when statistics are taken, never on a call path; results are cached.

/// The symbol whose code starts at or contains `addr`, demangled, with
/// Rust's hash suffix dropped; `None` if the binary has no symbol there.
#[cfg(feature = "symbols")]
pub fn name_of(addr: usize) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    static CACHE: OnceLock<Mutex<HashMap<usize, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&addr) {
        return hit.clone();
    }
    let mut name = None;
    // `resolve` treats the address as a return address and looks up the
    // byte before it (the call instruction); a function's first byte is
    // found by asking for the byte after it.
    backtrace::resolve(addr.wrapping_add(1) as *mut std::ffi::c_void, |symbol| {
        if name.is_none() {
            name = symbol.name().map(|n| format!("{n:#}"));
        }
    });
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(addr, name.clone());
    name
}

/// Without the `symbols` feature: no names.
#[cfg(not(feature = "symbols"))]
pub fn name_of(_addr: usize) -> Option<String> {
    None
}

#[cfg(all(test, feature = "symbols"))]
mod tests {
    use super::*;

    #[inline(never)]
    extern "C" fn a_named_target(x: u64) -> u64 {
        x.wrapping_mul(3)
    }

    #[test]
    fn host_functions_resolve_to_their_names() {
        let f: extern "C" fn(u64) -> u64 = a_named_target;
        let name = name_of(f as usize).expect("test binary has symbols");
        assert!(name.ends_with("a_named_target"), "{name}");
        assert_eq!(name_of(8), None, "no symbol at a tiny address");
    }
}
