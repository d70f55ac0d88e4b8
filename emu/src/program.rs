//! Programs for the harness: a list of operations (map memory at a fixed
//! address, write bytes, define an argument register file, call an address)
//! run in order by one harness process, and their results.
//!
//! A program is data, so a test states *what* should run on the emulated
//! machine (say: map a page, write a thunk, run the cache-maintenance
//! routine over it, call it with these arguments, write new bytes, call
//! again) and then checks the results in Rust.

use crate::abi::{MAX_STACK_WORDS, RegFile};
use crate::error::EmuError;

pub(crate) const MAGIC: u64 = 0x3130_554d_4543_4855;
pub(crate) const OP_INFO: u64 = 1;
pub(crate) const OP_MAP: u64 = 2;
pub(crate) const OP_WRITE: u64 = 3;
pub(crate) const OP_LAYOUT: u64 = 4;
pub(crate) const OP_CALL: u64 = 5;

/// Index of an operation in its program; results are looked up by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub usize);

/// A register file defined in a program, to be used by calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayoutId(pub(crate) u64);

/// A sequence of operations for one harness process.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub(crate) words: Vec<u64>,
    pub(crate) ops: Vec<u64>,
    layouts: u64,
}

impl Program {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, tag: u64, payload: &[u64]) -> OpId {
        self.words.push(tag);
        self.words.extend_from_slice(payload);
        self.ops.push(tag);
        OpId(self.ops.len() - 1)
    }

    /// Operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Asks for the harness's addresses and its targets (see
    /// [`crate::harness::HarnessInfo`]).
    pub fn info(&mut self) -> OpId {
        self.push(OP_INFO, &[])
    }

    /// Maps `len` bytes of read-write-execute memory at exactly `addr`
    /// (`MAP_FIXED_NOREPLACE`: fails rather than replacing a mapping).
    pub fn map(&mut self, addr: u64, len: u64) -> OpId {
        self.push(OP_MAP, &[addr, len])
    }

    /// Writes `bytes` at `addr` with plain stores (as a code writer does
    /// through its writable view).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> OpId {
        let mut payload = vec![addr, bytes.len() as u64];
        payload.extend(bytes.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        }));
        self.push(OP_WRITE, &payload)
    }

    /// Defines an argument register file that calls can use.
    pub fn layout(&mut self, regs: &RegFile) -> Result<LayoutId, EmuError> {
        if regs.stack.len() > MAX_STACK_WORDS {
            return Err(EmuError::Program(format!(
                "{} stack words (at most {MAX_STACK_WORDS})",
                regs.stack.len()
            )));
        }
        let mut payload = vec![regs.stack.len() as u64];
        payload.extend_from_slice(&regs.int);
        payload.extend_from_slice(&regs.float);
        payload.extend_from_slice(&regs.stack);
        self.push(OP_LAYOUT, &payload);
        self.layouts += 1;
        Ok(LayoutId(self.layouts - 1))
    }

    /// Calls `func` with the register file `layout`, the first integer
    /// argument register replaced by `first_int` if given (a thunk's
    /// target pointer, so one layout serves every target).
    pub fn call(&mut self, func: u64, layout: LayoutId, first_int: Option<u64>) -> OpId {
        self.push(
            OP_CALL,
            &[
                func,
                layout.0,
                u64::from(first_int.is_some()),
                first_int.unwrap_or(0),
            ],
        )
    }

    /// The bytes the harness reads on stdin.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (self.words.len() + 2));
        for w in [MAGIC, self.words.len() as u64].iter().chain(&self.words) {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// A signal that stopped a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub signal: u64,
    /// Program counter at the fault.
    pub pc: u64,
    /// The faulting address (`si_addr`).
    pub addr: u64,
}

impl Fault {
    pub fn signal_name(&self) -> &'static str {
        match self.signal {
            4 => "SIGILL",
            5 => "SIGTRAP",
            7 => "SIGBUS",
            8 => "SIGFPE",
            11 => "SIGSEGV",
            14 => "SIGALRM (the call did not return in time)",
            _ => "signal",
        }
    }
}

/// What one call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// Set if the call faulted; the other fields are then meaningless.
    pub fault: Option<Fault>,
    /// x0 / rax after the call.
    pub ret_int: u64,
    /// Low 64 bits of v0 / xmm0 after the call.
    pub ret_float: u64,
    /// How many generated targets ran during the call.
    pub target_calls: u64,
    /// `(K, hash)` recorded by the last target that ran.
    pub last_call: Option<(u64, u64)>,
    /// Callee-saved registers not restored, as a bit mask in the order
    /// x19-x29, d8-d15 (aarch64) or rbx, rbp, r12-r15 (x86-64).
    pub clobbered: u64,
    /// Whether the stack pointer came back as it was at the call.
    pub sp_restored: bool,
}

impl CallResult {
    /// Whether the call returned normally and kept the callee-saved state.
    pub fn clean(&self) -> bool {
        self.fault.is_none() && self.clobbered == 0 && self.sp_restored
    }
}

/// The result of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// `info`: raw words, decoded by the harness module.
    Info(Vec<u64>),
    /// `map`: 0 or an errno; `write`: 0 or the signal the write raised
    /// (unmapped or read-only memory).
    Status(u64),
    Layout,
    Call(CallResult),
}

/// Results of a program run, in operation order.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub results: Vec<OpResult>,
    /// Instructions executed per call operation inside the traced ranges
    /// (only for traced runs; see [`crate::harness::Harness::run_traced`]).
    pub traced: Vec<(OpId, u64)>,
}

impl Outcome {
    pub fn get(&self, op: OpId) -> Option<&OpResult> {
        self.results.get(op.0)
    }

    /// The result of a call operation; panics if `op` is not a call of
    /// this program or did not run.
    pub fn call(&self, op: OpId) -> &CallResult {
        match self.get(op) {
            Some(OpResult::Call(c)) => c,
            other => panic!("operation {} is not a completed call: {other:?}", op.0),
        }
    }

    /// The status of a map or write; `Err(errno or signal)` if it failed.
    pub fn status(&self, op: OpId) -> Result<(), u64> {
        match self.get(op) {
            Some(OpResult::Status(0)) => Ok(()),
            Some(OpResult::Status(e)) => Err(*e),
            other => panic!("operation {} is not a completed map/write: {other:?}", op.0),
        }
    }

    /// The traced instruction count of call `op`.
    pub fn traced(&self, op: OpId) -> Option<u64> {
        self.traced.iter().find(|(o, _)| *o == op).map(|(_, n)| *n)
    }
}

/// Decodes the harness's output for `program` (possibly cut short).
pub(crate) fn decode(program: &Program, bytes: &[u8]) -> Result<Vec<OpResult>, EmuError> {
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let mut results = Vec::new();
    let mut i = 0;
    while i + 2 <= words.len() {
        let (tag, n) = (words[i], words[i + 1] as usize);
        let Some(payload) = words.get(i + 2..i + 2 + n) else {
            break;
        };
        let expected = program.ops.get(results.len()).copied();
        if expected != Some(tag) {
            return Err(EmuError::Harness(format!(
                "answered operation {} with tag {tag}, expected {expected:?}",
                results.len()
            )));
        }
        let bad = || EmuError::Harness(format!("short result for operation {}", results.len()));
        results.push(match tag {
            OP_INFO => OpResult::Info(payload.to_vec()),
            OP_MAP | OP_WRITE => OpResult::Status(*payload.first().ok_or_else(bad)?),
            OP_LAYOUT => OpResult::Layout,
            OP_CALL => {
                let p: &[u64; 10] = payload.try_into().map_err(|_| bad())?;
                OpResult::Call(CallResult {
                    fault: (p[0] != 0).then_some(Fault {
                        signal: p[0],
                        pc: p[8],
                        addr: p[9],
                    }),
                    ret_int: p[1],
                    ret_float: p[2],
                    target_calls: p[3],
                    last_call: (p[3] != 0).then_some((p[4], p[5])),
                    clobbered: p[6],
                    sp_restored: p[7] == 1,
                })
            }
            _ => unreachable!("tag checked against the program"),
        });
        i += 2 + n;
    }
    Ok(results)
}
