//! `listed`: Linux's `INDIRECT_CALL_N` written by a programmer who knows the
//! workload: `hotcall::listed_call!` over the workload's true hot targets,
//! so each hit is a compare and a *direct* call, inline, and anything else a
//! plain indirect call. Nothing runs at run time to choose the targets.
//!
//! The listed functions must be compile-time constants (a compare chain
//! over function pointers held in variables would still call through a
//! register). The pool of targets is fixed (`target::<K>` is `POOL[K]`), but
//! which pool functions a workload makes hot depends on the seed of its
//! streams. So the lists are compiled in, one chain per workload, for the
//! default seed: `listed_targets.rs`, generated from
//! [`Workload::hot_targets_of_all_calls`] by
//! `HOTCALL_BLESS=1 cargo test --bin hotcall listed` and checked to be
//! current by that test. With another `--seed`, whose hot targets differ,
//! the cell is reported as not applicable rather than run with a stale
//! list (it would be correct, but list the wrong targets).
//!
//! A listed chain belongs to one call instruction. For `sites-1k`, whose
//! 1,000 sites share the interpreter's one call instruction, the list is
//! the hot targets of all calls together: none has 10% of them, so nothing
//! is listed and the cell is a plain indirect call. Likewise `uniform-16`
//! and `phase`, which have no hot target.

use hotcall::workload::{Call, Callback, POOL, Workload};

use super::{BuildError, BuildOptions, Cell};

/// `pool_target::<K>(x)` as a true direct call (`call rel32` / `bl`).
/// A Rust call cannot be trusted to be one: the pool functions live in the
/// `hotcall` library crate, and a Rust call of another crate's function in
/// a PIE goes through the GOT, so `listed_call!` here compiles each "direct"
/// call to `call *%reg` (an indirect branch, and retpolined in a hardened
/// build). The `asm!` call, with the C ABI placed by hand, is the one
/// `static_site!` uses.
macro_rules! direct_call {
    ($k:literal, $x:expr) => {{
        let mut regs = hotcall::__private::RegFile::new();
        regs.push(false, $x);
        let (int, _float) = hotcall::__hotcall_asm_call!(
            hotcall::workload::pool_target::<$k>; regs; 1; 0;
        );
        int
    }};
}

/// `listed_call!`'s compare chain over the pool functions `$k`: each match
/// a direct call, anything else `$miss(target, x)`.
macro_rules! listed_hit {
    ($c:ident, $x:ident, $miss:path, []) => {
        $miss($c.target, $x)
    };
    ($c:ident, $x:ident, $miss:path, [$k:literal $(, $rest:literal)*]) => {
        if $c.target as usize == hotcall::workload::pool_target::<$k> as *const () as usize {
            $crate::cli::bench::strategy::listed::direct_call!($k, $x)
        } else {
            $crate::cli::bench::strategy::listed::listed_hit!($c, $x, $miss, [$($rest),*])
        }
    };
}

/// The chain of `calls` through the compare chain over the pool functions
/// `$k`, with misses made by `$miss`.
macro_rules! listed_chain {
    ($calls:ident, $x:ident, $miss:path, [$($k:literal),*]) => {
        $calls.iter().fold($x, |x, c| {
            $crate::cli::bench::strategy::listed::listed_hit!(c, x, $miss, [$($k),*])
        })
    };
}

/// Per workload: the listed pool indices, and the chain compiled over them.
macro_rules! compiled_lists {
    ($($kind:ident => [$($k:literal),*],)*) => {
        /// The pool indices listed for each workload, in compare order.
        pub fn pool_indices(kind: hotcall::workload::WorkloadKind) -> &'static [usize] {
            match kind {
                $(hotcall::workload::WorkloadKind::$kind => &[$($k),*],)*
            }
        }

        /// The compiled chain of each workload, with plain or retpolined
        /// misses.
        pub fn chain(kind: hotcall::workload::WorkloadKind, hardened: bool) -> super::listed::ChainFn {
            use $crate::cli::bench::strategy::listed::{listed_chain, plain_miss, retpoline_miss};
            if hardened {
                match kind {
                    $(hotcall::workload::WorkloadKind::$kind => |calls, x| {
                        listed_chain!(calls, x, retpoline_miss, [$($k),*])
                    },)*
                }
            } else {
                match kind {
                    $(hotcall::workload::WorkloadKind::$kind => |calls, x| {
                        listed_chain!(calls, x, plain_miss, [$($k),*])
                    },)*
                }
            }
        }
    };
}

/// A miss of the chain: a plain indirect call.
#[inline(always)]
pub fn plain_miss(f: Callback, x: u64) -> u64 {
    f(x)
}

/// A miss of the chain in a hardened host: through the retpoline.
#[inline(always)]
pub fn retpoline_miss(f: Callback, x: u64) -> u64 {
    hotcall::retpoline::call::<Callback>(f, (x,))
}

pub(super) use {compiled_lists, direct_call, listed_chain, listed_hit};

use super::listed_targets::{self, SEED};

/// A chunk of calls through one compiled chain.
pub type ChainFn = fn(&[Call], u64) -> u64;

/// The pool index of each of the workload's hot targets.
fn hot_pool_indices(w: &Workload) -> Vec<usize> {
    w.hot_targets_of_all_calls()
        .into_iter()
        .map(|t| {
            POOL.iter()
                .position(|&p| p as usize == t as usize)
                .expect("every target is a pool function")
        })
        .collect()
}

struct Listed {
    chain: ChainFn,
    listed: &'static [usize],
    hardened: bool,
}

impl Cell for Listed {
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        (self.chain)(calls, x)
    }

    fn detail(&self) -> String {
        let miss = if self.hardened {
            "a call through the retpoline"
        } else {
            "a plain indirect call"
        };
        if self.listed.is_empty() {
            format!("nothing listed (no target has 10% of the calls): {miss}")
        } else {
            format!(
                "listed_call!'s chain over {} target(s), pool {:?}: a compare and a direct call each, inline; \
                 others {miss}",
                self.listed.len(),
                self.listed
            )
        }
    }
}

pub fn build(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let listed = listed_targets::pool_indices(w.kind());
    let hot = hot_pool_indices(w);
    if hot != listed {
        return Err(BuildError::NotApplicable(format!(
            "the lists are compiled for seed {SEED:#x}: {} lists pool {listed:?}, but this seed's hot targets \
             are pool {hot:?} (regenerate with HOTCALL_BLESS=1 cargo test --bin hotcall listed, and rebuild)",
            w.name()
        )));
    }
    Ok(Box::new(Listed {
        chain: listed_targets::chain(w.kind(), o.hardened),
        listed,
        hardened: o.hardened,
    }))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use hotcall::workload::{CHAIN_START, WorkloadKind, run_plain};

    use super::super::listed_targets::pool_indices;
    use super::*;

    /// `listed_targets.rs` lists each workload's hot targets under the
    /// default seed; `HOTCALL_BLESS=1` rewrites it from the workloads.
    #[test]
    fn listed_the_compiled_lists_are_current() {
        assert_eq!(SEED, crate::cli::bench::DEFAULT_SEED);
        let mut text = String::from(
            "//! Generated by `HOTCALL_BLESS=1 cargo test --bin hotcall listed` from\n\
             //! `Workload::hot_targets_of_all_calls` under the default seed; that test\n\
             //! fails while this file is out of date. Pool indices (`POOL[K]` is\n\
             //! `pool_target::<K>`), largest share first: the `listed` strategy's\n\
             //! compare chains (see `listed.rs`).\n\n\
             /// The seed whose hot targets are listed.\n",
        );
        let _ = writeln!(text, "pub const SEED: u64 = {SEED:#x};\n");
        text.push_str("super::listed::compiled_lists! {\n");
        let mut current = true;
        for kind in WorkloadKind::ALL {
            let hot = hot_pool_indices(&Workload::new(kind, SEED));
            current &= hot == pool_indices(kind);
            let list: Vec<String> = hot.iter().map(usize::to_string).collect();
            let _ = writeln!(text, "    {kind:?} => [{}],", list.join(", "));
        }
        text.push_str("}\n");
        if std::env::var_os("HOTCALL_BLESS").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/cli/bench/strategy/listed_targets.rs"
            );
            std::fs::write(path, text).unwrap();
            return;
        }
        assert!(
            current,
            "listed_targets.rs is out of date; HOTCALL_BLESS=1 regenerates it as:\n{text}"
        );
    }

    /// Each compiled chain returns what plain calls return, and lists the
    /// workloads' hot targets (at least one workload lists some).
    #[test]
    fn listed_chains_equal_plain_calls() {
        let mut listed_any = false;
        for kind in WorkloadKind::ALL {
            let w = Workload::new(kind, SEED);
            for hardened in [false, true] {
                let cell = build(&w, BuildOptions { hardened })
                    .unwrap_or_else(|e| panic!("{}: {e:?}", kind.name()));
                let s = w.stream(0);
                assert_eq!(cell.run(s, CHAIN_START), run_plain(s, CHAIN_START));
            }
            listed_any |= !pool_indices(kind).is_empty();
        }
        assert!(listed_any);
        assert_eq!(pool_indices(WorkloadKind::Mono).len(), 1);
    }

    /// Another seed gives other hot targets: not applicable, with the
    /// reason.
    #[test]
    fn listed_other_seeds_are_not_applicable() {
        let w = Workload::new(WorkloadKind::Zipf8, SEED + 1);
        match build(&w, BuildOptions::default()) {
            Err(BuildError::NotApplicable(why)) => {
                assert!(why.contains("compiled for seed"), "{why}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a stale list was accepted"),
        }
    }
}
