//! Putting compiled thunks into a program: publication (write, then the
//! ISA's cache maintenance, exactly as code memory does it) and the
//! argument layouts and expected results of a thunk call.

use hotcall_jit::isa::aarch64::maintenance::flush_routine_bytes;
use hotcall_jit::{Arch, ThunkSig, ValType};

use crate::abi::{RegFile, layout};
use crate::error::EmuError;
use crate::model::{self, SplitMix64};
use crate::program::{CallResult, OpId, Program};

/// Writes code into a program the way hotcall publishes it: the bytes, then
/// (aarch64) a call of the cache-maintenance routine of
/// `hotcall_jit::isa::aarch64::maintenance` over the written range. x86-64
/// needs no maintenance (coherent instruction fetch; see docs/isa/).
#[derive(Clone, Copy, Debug)]
pub struct Publisher {
    arch: Arch,
    /// Where the maintenance routine was placed (aarch64).
    flush_entry: Option<u64>,
}

/// The operations of one publication, to check their status.
#[derive(Clone, Debug)]
pub struct Published {
    pub write: OpId,
    /// The maintenance call (aarch64).
    pub flush: Option<OpId>,
}

impl Publisher {
    /// Maps one page at `page` and, on aarch64, writes the maintenance
    /// routine there. Returns the publisher and the map operation.
    pub fn install(program: &mut Program, arch: Arch, page: u64) -> (Self, OpId) {
        let map = program.map(page, 4096);
        let flush_entry = match arch {
            Arch::Aarch64 => {
                program.write(page, &flush_routine_bytes());
                Some(page)
            }
            Arch::X86_64 => None,
        };
        (Publisher { arch, flush_entry }, map)
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Address of the maintenance routine (aarch64).
    pub fn flush_entry(&self) -> Option<u64> {
        self.flush_entry
    }

    /// Writes `bytes` at `addr`, then makes them visible to instruction
    /// fetch.
    pub fn publish(
        &self,
        program: &mut Program,
        addr: u64,
        bytes: &[u8],
    ) -> Result<Published, EmuError> {
        let write = program.write(addr, bytes);
        let flush = match self.flush_entry {
            Some(entry) => {
                let mut int = [0u64; 8];
                int[0] = addr;
                int[1] = bytes.len() as u64;
                let regs = RegFile {
                    int,
                    float: [0; 8],
                    stack: Vec::new(),
                };
                let l = program.layout(&regs)?;
                Some(program.call(entry, l, None))
            }
            None => None,
        };
        Ok(Published { write, flush })
    }
}

/// The register files of one argument tuple: for a plain call of a target,
/// and for a call of a thunk (the target pointer first; the program sets it
/// per call, so one thunk layout serves every target).
pub fn call_layouts(
    arch: Arch,
    sig: &ThunkSig,
    mixes: &[u64],
    junk: &mut SplitMix64,
) -> (RegFile, RegFile) {
    let args: Vec<(ValType, u64)> = sig
        .params()
        .iter()
        .copied()
        .zip(mixes.iter().copied())
        .collect();
    let plain = layout(arch, &args, junk);
    let mut thunk_args = vec![(ValType::Ptr, 0)];
    thunk_args.extend_from_slice(&args);
    let thunk = layout(arch, &thunk_args, junk);
    (plain, thunk)
}

/// What target `k` records and returns for `mixes`: `(hash, returned
/// value as a mix)`; the value is 0 for `()` returns.
pub fn expected(sig: &ThunkSig, k: u64, mixes: &[u64]) -> (u64, u64) {
    let h = model::hash_args(k, mixes);
    (h, sig.ret().map_or(0, |t| model::from_hash(t, h)))
}

/// The value a call returned, as a mix of the signature's return type (0
/// for `()`): the register the ABI returns it in, reduced to the type's
/// width.
pub fn returned(sig: &ThunkSig, r: &CallResult) -> u64 {
    match sig.ret() {
        None => 0,
        Some(t) if t.is_float() => model::canonical(t, r.ret_float),
        Some(t) => model::canonical(t, r.ret_int),
    }
}
