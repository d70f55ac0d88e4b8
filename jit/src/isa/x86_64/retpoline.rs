//! The x86-64 retpoline and hardened miss trampolines, as functions of
//! the host binary, so thunks and Rust code reach them with a direct
//! `call`/`jmp`. Their bytes are the sequences in [`super::encode`]
//! (`RETPOLINE_R11`, `MISS_TRAMPOLINE_LOADS`), which the tests below check:
//! the classic retpoline for `%r11`, and one miss trampoline per
//! integer-argument count (see [`crate::hardened`]). The retpoline behaves
//! as `call *%r11` / `jmp *%r11` when reached by a direct `call`/`jmp`.
//!
//! Compiled on x86-64 hosts only.

/// `call *%r11` / `jmp *%r11`, retpolined: reach it with `call`/`jmp`,
/// the target in r11.
///
/// # Safety
/// Not a Rust function: it jumps to whatever r11 holds. Only `call` it
/// from assembly with a valid target in r11 and the target's arguments
/// in place.
#[unsafe(naked)]
pub unsafe extern "C" fn retpoline_r11() {
    core::arch::naked_asm!(
        "call 3f",
        "2:",
        "pause",
        "lfence",
        "jmp 2b",
        "3:",
        "mov qword ptr [rsp], r11",
        "ret",
    )
}

macro_rules! miss_trampoline {
    ($($name:ident: $load:literal;)*) => {$(
        /// A hardened miss trampoline (see `crate::hardened`): the
        /// target, passed as the integer argument after the target's
        /// own, goes to r11, then through the retpoline.
        ///
        /// # Safety
        /// Not a Rust function: only thunks call it.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!($load, "jmp {rp}", rp = sym retpoline_r11)
        }
    )*};
}

miss_trampoline! {
    miss_after_0_ints: "mov r11, rdi";
    miss_after_1_ints: "mov r11, rsi";
    miss_after_2_ints: "mov r11, rdx";
    miss_after_3_ints: "mov r11, rcx";
    miss_after_4_ints: "mov r11, r8";
    miss_after_5_ints: "mov r11, r9";
    miss_after_6_ints: "mov r11, qword ptr [rsp + 8]";
    miss_after_7_ints: "mov r11, qword ptr [rsp + 16]";
    miss_after_8_ints: "mov r11, qword ptr [rsp + 24]";
}

/// The address of the retpoline for the scratch register (r11).
pub fn scratch() -> usize {
    retpoline_r11 as *const () as usize
}

/// The miss trampolines, by integer-argument count.
pub fn miss_trampolines() -> Option<[usize; 9]> {
    Some([
        miss_after_0_ints as *const () as usize,
        miss_after_1_ints as *const () as usize,
        miss_after_2_ints as *const () as usize,
        miss_after_3_ints as *const () as usize,
        miss_after_4_ints as *const () as usize,
        miss_after_5_ints as *const () as usize,
        miss_after_6_ints as *const () as usize,
        miss_after_7_ints as *const () as usize,
        miss_after_8_ints as *const () as usize,
    ])
}

#[cfg(test)]
mod tests {
    use super::super::encode::{MISS_TRAMPOLINE_LOADS, RETPOLINE_R11};
    use super::*;
    use crate::Arch;
    use crate::disasm::disassemble;
    use crate::isa::Branch;

    fn bytes(addr: usize, len: usize) -> &'static [u8] {
        // SAFETY: reading the bytes of a function of this binary; text is
        // mapped readable and never written.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
    }

    /// The function the host runs is exactly the documented sequence.
    #[test]
    fn host_retpoline_is_the_documented_bytes() {
        assert_eq!(bytes(scratch(), RETPOLINE_R11.len()), RETPOLINE_R11);
    }

    /// Each trampoline loads its argument into r11, then jumps (directly)
    /// to the retpoline: no indirect branch.
    #[test]
    fn miss_trampolines_load_then_jump_to_the_retpoline() {
        for (k, addr) in miss_trampolines().unwrap().into_iter().enumerate() {
            let load = MISS_TRAMPOLINE_LOADS[k];
            let code = bytes(addr, load.len() + 5);
            assert_eq!(&code[..load.len()], load, "trampoline {k}");
            let insns = disassemble(Arch::X86_64, code, addr as u64).unwrap();
            assert_eq!(insns.len(), 2, "trampoline {k}: {insns:?}");
            assert_eq!(
                insns[1].branch,
                Branch::Jump {
                    target: scratch() as u64,
                    conditional: false
                },
                "trampoline {k}"
            );
        }
    }
}
