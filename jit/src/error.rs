//! Errors of the thunk compiler and code memory.

/// Everything that can go wrong while building or installing a thunk.
///
/// None of these is fatal to the host: the caller keeps a plain indirect
/// call when any of them occurs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    #[error("unsupported signature: {0}")]
    UnsupportedSignature(String),
    #[error("{requested} promoted targets requested; a thunk holds at most {max}")]
    TooManySlots { requested: usize, max: usize },
    #[error("promoted target {index} is null")]
    NullTarget { index: usize },
    #[error("target {addr:#x} is promoted twice (slots {first} and {second})")]
    DuplicateTarget {
        addr: u64,
        first: usize,
        second: usize,
    },
    #[error("Cranelift failed to compile the thunk: {0}")]
    Compile(String),
    #[error("unknown architecture `{0}` (expected x86_64 or aarch64)")]
    UnknownArch(String),
    #[error("ISA {0} is not available: {1}")]
    Isa(&'static str, String),
    #[error("relocation at offset {offset} cannot reach {target:#x} from {place:#x}")]
    OutOfRange {
        offset: u32,
        place: u64,
        target: u64,
    },
    #[error(
        "hardened mode: the retpoline at {retpoline:#x} is out of direct-call reach of the code memory (place it near the host text)"
    )]
    RetpolineOutOfReach { retpoline: u64 },
    #[error(
        "hardened mode: the counting hook at {hook:#x} is out of direct-call reach of the thunk (hook stubs belong in the thunk's code memory)"
    )]
    HookOutOfReach { hook: u64 },
    #[error("unexpected relocation {0} in a thunk")]
    UnexpectedReloc(String),
    #[error(
        "code memory exhausted: {requested} bytes requested, {in_use} of {capacity} in use (largest free block {largest_free})"
    )]
    CodeMemoryExhausted {
        requested: usize,
        in_use: usize,
        capacity: usize,
        largest_free: usize,
    },
    #[error("cannot map code memory: {0}")]
    Map(String),
    #[error("disassembly failed: {0}")]
    Disasm(String),
}
