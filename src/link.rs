//! Static-stub linking: finding a static entry stub's branch word in the
//! host's text, checking that it reaches a target, and aiming it (one
//! aligned store). Used by static sites and by every site a stub follows.

use hotcall_jit::{Arch, BranchKind, JitError, text_poke};

use crate::error::Error;

/// The address of the stub's branch word.
pub(crate) fn branch_field(stub: usize) -> Result<usize, JitError> {
    match Arch::host() {
        Some(Arch::X86_64) => {
            use hotcall_jit::isa::x86_64::encode::{STUB_FIELD_OFFSET, STUB_PREFIX};
            let block = stub.next_multiple_of(8);
            // SAFETY: the stub is a function of this binary; its bytes are
            // mapped readable (and 12 bytes long at most).
            let prefix = unsafe { std::slice::from_raw_parts(block as *const u8, 4) };
            if prefix != STUB_PREFIX {
                return Err(JitError::Map(format!(
                    "{stub:#x} is not a static entry stub (bytes {prefix:02x?})"
                )));
            }
            Ok(block + STUB_FIELD_OFFSET as usize)
        }
        Some(Arch::Aarch64) => {
            use hotcall_jit::isa::aarch64::encode::{B, branch_opcode};
            if branch_opcode(text_poke::load_u32(stub)) != Some(B) {
                return Err(JitError::Map(format!(
                    "{stub:#x} is not a static entry stub"
                )));
            }
            Ok(stub)
        }
        None => Err(JitError::Isa(
            "host",
            "no static entries on this ISA".into(),
        )),
    }
}

/// Checks that the stub branch word at `field` can go to `target`.
pub(crate) fn check_stub_reach(field: usize, target: usize) -> Result<(), Error> {
    let backend = Arch::host()
        .ok_or_else(|| JitError::Isa("host", "no static entries on this ISA".into()))?
        .backend();
    backend.encode_branch(BranchKind::Jump, field as u64, target as u64)?;
    Ok(())
}

/// Aims the static stub whose branch word is at `field` (made patchable)
/// at `target`: one aligned 32-bit store. Fails, leaving the stub as it
/// was, if the target is out of direct-branch reach.
pub(crate) fn aim_stub_field(field: usize, target: usize) -> Result<(), Error> {
    let backend = Arch::host()
        .ok_or_else(|| JitError::Isa("host", "no static entries on this ISA".into()))?
        .backend();
    let word = backend.encode_branch(BranchKind::Jump, field as u64, target as u64)?;
    // SAFETY: the field is a static stub's `jmp rel32` displacement / `B`
    // word, made patchable, aligned (`branch_field`); both the old and the
    // new target are complete code for the stub's thunk ABI (a thunk, a
    // Patch thunk or its counting entry, or a miss stub) that stays alive
    // until a grace period after it is replaced (the callers retire it),
    // so any thread that executes either word is correct. One aligned
    // store: see docs/patching.md for the architecture rules.
    unsafe { text_poke::store_u32(field, word)? };
    // A core may still hold the old stub word; before the old target can
    // be freed, every core must have serialized. x86-64 instruction fetch
    // snoops stores; on aarch64 this is required.
    if cfg!(target_arch = "aarch64") {
        hotcall_jit::coherence::serialize_all_cores();
    }
    Ok(())
}
