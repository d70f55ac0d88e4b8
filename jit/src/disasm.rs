//! Decoding thunks with capstone, for the CLI, the golden tests and the
//! tests that prove promoted calls are direct.

use std::fmt::Write as _;

use capstone::Capstone;

use crate::compiler::{CompilerOptions, build_isa};
use crate::error::JitError;
use crate::isa::{Arch, Branch};

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub mnemonic: String,
    pub op_str: String,
    pub branch: Branch,
}

fn capstone_for(arch: Arch) -> Result<Capstone, JitError> {
    let isa = build_isa(arch, &CompilerOptions { verify: false })?;
    isa.to_capstone()
        .map_err(|e| JitError::Disasm(e.to_string()))
}

/// Decodes `code` as if it executed at `base`. Decoding stops at the first
/// byte sequence that is not an instruction (the constant pool that follows
/// the code on x86-64 may decode partly; callers that need exactness pass
/// only the code).
pub fn disassemble(arch: Arch, code: &[u8], base: u64) -> Result<Vec<Insn>, JitError> {
    let cs = capstone_for(arch)?;
    let insns = cs
        .disasm_all(code, base)
        .map_err(|e| JitError::Disasm(e.to_string()))?;
    let backend = arch.backend();
    Ok(insns
        .iter()
        .map(|i| {
            let mnemonic = i.mnemonic().unwrap_or("").to_string();
            let op_str = i.op_str().unwrap_or("").to_string();
            Insn {
                addr: i.address(),
                bytes: i.bytes().to_vec(),
                branch: backend.classify(&mnemonic, &op_str),
                mnemonic,
                op_str,
            }
        })
        .collect())
}

/// One line per instruction: address, bytes, text.
pub fn render(insns: &[Insn]) -> String {
    let mut out = String::new();
    for i in insns {
        let bytes: String = i.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            out,
            "{:#010x}  {:<22} {} {}",
            i.addr, bytes, i.mnemonic, i.op_str
        );
    }
    out
}
