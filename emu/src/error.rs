//! Errors of the emulation harness.

use hotcall_jit::Arch;

#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error("{tool} not found on PATH, needed to run {arch} code (install: {hint})")]
    ToolMissing {
        arch: Arch,
        tool: String,
        hint: &'static str,
    },
    #[error("building the {arch} harness failed: {0}", arch = .1)]
    Build(String, Arch),
    #[error("running the harness: {0}")]
    Io(#[from] std::io::Error),
    #[error("the harness {0}")]
    Harness(String),
    #[error("the program is invalid: {0}")]
    Program(String),
    #[error("reading the qemu trace: {0}")]
    Trace(String),
    #[error(transparent)]
    Jit(#[from] hotcall_jit::JitError),
}
