//! The aarch64 cache-maintenance routine as machine code, compiled on every
//! host.
//!
//! hotcall publishes aarch64 code with exactly these instructions: on an
//! aarch64 host `icache::flush` *is* this routine (emitted with
//! `global_asm!` from [`FLUSH_ROUTINE`]), and on any other host the
//! emulation harness (`hotcall-emu`) copies the same words next to the code
//! it publishes and calls them under qemu. One encoding serves both, so the
//! sequence that the emulated tests run is the sequence that ships. The
//! tests check the words against [`FLUSH_ROUTINE_ASM`] assembled by
//! `aarch64-linux-gnu-as`, and their disassembly.
//!
//! `void flush(void *addr, size_t len)` (AAPCS64; clobbers x0-x6 only):
//! clean every data-cache line of `[addr, addr + len)` to the point of
//! unification (`DC CVAU`), `DSB ISH`, invalidate every instruction-cache
//! line of the range (`IC IVAU`), `DSB ISH`, `ISB`. Line sizes come from
//! `CTR_EL0` (DminLine, bits 19:16; IminLine, bits 3:0; log2 of words).
//! See `icache.rs` for the rules this follows.

/// The source of [`FLUSH_ROUTINE`], for GNU as.
pub const FLUSH_ROUTINE_ASM: &str = "\
    cbz x1, 3f
    mrs x3, ctr_el0
    mov x5, #4
    ubfx x4, x3, #16, #4
    lsl x4, x5, x4
    add x1, x0, x1
    sub x6, x4, #1
    bic x2, x0, x6
1:  dc cvau, x2
    add x2, x2, x4
    cmp x2, x1
    b.lo 1b
    dsb ish
    and x4, x3, #0xf
    lsl x4, x5, x4
    sub x6, x4, #1
    bic x2, x0, x6
2:  ic ivau, x2
    add x2, x2, x4
    cmp x2, x1
    b.lo 2b
    dsb ish
    isb
3:  ret
";

/// Number of instructions in [`FLUSH_ROUTINE`].
pub const FLUSH_ROUTINE_LEN: usize = 24;

/// [`FLUSH_ROUTINE_ASM`], encoded (little-endian words).
pub const FLUSH_ROUTINE: [u32; FLUSH_ROUTINE_LEN] = [
    0xb400_02e1, // cbz x1, +0x5c (the ret)
    0xd53b_0023, // mrs x3, ctr_el0
    0xd280_0085, // mov x5, #4
    0xd350_4c64, // ubfx x4, x3, #16, #4   DminLine
    0x9ac4_20a4, // lsl x4, x5, x4         data line bytes
    0x8b01_0001, // add x1, x0, x1         end
    0xd100_0486, // sub x6, x4, #1
    0x8a26_0002, // bic x2, x0, x6         first line
    0xd50b_7b22, // dc cvau, x2
    0x8b04_0042, // add x2, x2, x4
    0xeb01_005f, // cmp x2, x1
    0x54ff_ffa3, // b.lo dc cvau
    0xd503_3b9f, // dsb ish
    0x9240_0c64, // and x4, x3, #0xf       IminLine
    0x9ac4_20a4, // lsl x4, x5, x4         instruction line bytes
    0xd100_0486, // sub x6, x4, #1
    0x8a26_0002, // bic x2, x0, x6
    0xd50b_7522, // ic ivau, x2
    0x8b04_0042, // add x2, x2, x4
    0xeb01_005f, // cmp x2, x1
    0x54ff_ffa3, // b.lo ic ivau
    0xd503_3b9f, // dsb ish
    0xd503_3fdf, // isb
    0xd65f_03c0, // ret
];

/// [`FLUSH_ROUTINE`] as bytes, ready to be written as code.
pub fn flush_routine_bytes() -> Vec<u8> {
    FLUSH_ROUTINE.iter().flat_map(|w| w.to_le_bytes()).collect()
}
