//! A thunk at a virtual placement, compiled and rendered as text.
//!
//! `hotcall disasm` prints this, and `tests/golden.rs` includes this very
//! file (`#[path]`) and compares the same text with its golden files, so the
//! layout constants and the header format exist once. It therefore uses
//! nothing of the binary, only the `hotcall` library.
//!
//! The placement is virtual: nothing is mapped or run. The code is linked
//! as if it sat at [`CODE_BASE`], and slot `k` promotes the made-up address
//! [`target_addr`]`(arch, k, far)`.

use std::fmt::Write as _;

use hotcall::{Arch, Counting, JitError, ThunkSig};
use hotcall_jit::disasm::{self, Insn};
use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::{CompilerOptions, Hooks, MissForm, Placement, ThunkCompiler};

/// Where the thunk is linked.
pub const CODE_BASE: u64 = 0x1000_0000;

/// Size of the range the compiler is told the code may be placed in,
/// starting at [`CODE_BASE`].
pub const CODE_SPAN: u64 = 0x1_0000;

/// Distance between in-range targets: slot `k` is at
/// `CODE_BASE + NEAR_STRIDE * (k + 1)`, at most 8 MiB away, which both
/// `call rel32` (±2 GiB) and `bl` (±128 MiB) reach.
pub const NEAR_STRIDE: u64 = 0x10_0000;

/// Distance between out-of-range targets for `arch`: 4 GiB steps on
/// x86-64, 256 MiB steps on aarch64, each beyond the ISA's direct reach.
pub fn far_stride(arch: Arch) -> u64 {
    match arch {
        Arch::X86_64 => 0x1_0000_0000,
        Arch::Aarch64 => 0x1000_0000,
    }
}

/// Virtual addresses of a site's counting-hook stubs (entry, miss, and the
/// miss stub of register r at `MISS_STUBS + 16 r`), in the same code memory
/// as the thunk.
pub const ENTRY_HOOK: u64 = CODE_BASE + CODE_SPAN - 0x400;
pub const MISS_HOOK: u64 = CODE_BASE + CODE_SPAN - 0x3f0;
pub const MISS_STUBS: u64 = CODE_BASE + CODE_SPAN - 0x200;

/// Virtual addresses of the hardened miss trampolines (one per integer
/// argument count, 16 bytes apart), in reach of the code: in a host binary
/// they are functions of its text, next to the code memory.
pub const TRAMPOLINES: u64 = CODE_BASE - 0x1000;

/// The trampoline a hardened thunk of `sig` calls in listings.
fn options_trampoline(sig: &ThunkSig) -> u64 {
    MissTrampolines {
        by_int_args: std::array::from_fn(|k| TRAMPOLINES + 16 * k as u64),
    }
    .for_sig(sig)
}

/// The hooks a thunk counting `counting` calls in listings.
pub fn listing_hooks(counting: Counting) -> Hooks {
    match counting {
        Counting::None => Hooks::NONE,
        Counting::Misses => Hooks {
            entry: None,
            miss: Some(MISS_HOOK),
            miss_tail: Some(std::array::from_fn(|r| MISS_STUBS + 16 * r as u64)),
        },
        Counting::All => Hooks {
            entry: Some(ENTRY_HOOK),
            miss: None,
            miss_tail: None,
        },
    }
}

/// The virtual address promoted in slot `slot`.
pub fn target_addr(arch: Arch, slot: usize, far: bool) -> u64 {
    let stride = if far { far_stride(arch) } else { NEAR_STRIDE };
    CODE_BASE + stride * (slot as u64 + 1)
}

/// A compiled, linked and decoded thunk.
pub struct ThunkListing {
    /// Header: ISA, signature, slots, size; then one line per slot.
    pub header: String,
    /// The instructions of the code, as linked at [`CODE_BASE`].
    pub insns: Vec<Insn>,
    /// Bytes of machine code, constant pool included.
    pub code_len: u64,
    /// The bytes after the code (x86-64 constant pool), rendered.
    data: String,
    /// How the miss path reaches the target (read by `tests/golden.rs`,
    /// which includes this file; the CLI prints it in the header).
    #[allow(dead_code)]
    pub miss: MissForm,
}

impl ThunkListing {
    /// Compiles the thunk for `sig` on `arch` with `slots` promoted targets
    /// at the virtual placement (out of direct range if `far`); hits
    /// tail-jump to their targets where sound if `tail_jumps`; the thunk
    /// calls the counting hooks `counting` asks for; `hardened`: misses
    /// (and far slots) call through the retpoline trampolines at
    /// [`TRAMPOLINES`].
    pub fn build(
        arch: Arch,
        sig: &ThunkSig,
        slots: usize,
        far: bool,
        tail_jumps: bool,
        counting: Counting,
        hardened: bool,
    ) -> Result<Self, JitError> {
        let targets: Vec<u64> = (0..slots).map(|k| target_addr(arch, k, far)).collect();
        let placement = Placement {
            lo: CODE_BASE,
            hi: CODE_BASE + CODE_SPAN,
        };
        let options = CompilerOptions {
            tail_jumps,
            hardened: hardened.then(|| MissTrampolines {
                by_int_args: std::array::from_fn(|k| TRAMPOLINES + 16 * k as u64),
            }),
            ..CompilerOptions::default()
        };
        let mut compiler = ThunkCompiler::new(arch, options)?;
        let compiled =
            compiler.compile_with_hooks(sig, &targets, &listing_hooks(counting), placement)?;
        let code = compiled.link(CODE_BASE)?;
        // Only what control flow reaches: never the x86-64 constant pool.
        let insns = disasm::disassemble_reachable(arch, &code, CODE_BASE)?;
        let code_end = insns
            .last()
            .map_or(CODE_BASE, |i| i.addr + i.bytes.len() as u64);
        let data = render_data(&code, code_end, pool_start(&insns));

        let mut header = String::new();
        let _ = writeln!(
            header,
            "thunk {arch} {sig}{}: {} slot{}, {} bytes at {CODE_BASE:#x}",
            if hardened { " hardened" } else { "" },
            slots,
            if slots == 1 { "" } else { "s" },
            code.len()
        );
        for (k, s) in compiled.slots().iter().enumerate() {
            let tail = if s.tail { ", tail jump" } else { "" };
            let tail = if hardened && s.form == hotcall::CallForm::Absolute {
                ", through the retpoline"
            } else {
                tail
            };
            let _ = writeln!(
                header,
                "  slot {k}: {:#x} {}{tail}",
                s.target,
                s.form.name()
            );
        }
        match counting {
            Counting::None => {}
            Counting::Misses => {
                let _ = writeln!(header, "  counting: misses");
            }
            Counting::All => {
                let _ = writeln!(header, "  counting: every call (hook at {ENTRY_HOOK:#x})");
            }
        }
        let miss = match compiled.miss_form() {
            MissForm::Call if hardened => format!(
                "call through the retpoline trampoline at {:#x}",
                options_trampoline(sig)
            ),
            MissForm::Call => "indirect call through the target argument".to_string(),
            MissForm::TailJump => "tail jump through the target argument".to_string(),
            MissForm::CountingTailJump => {
                "tail jump to the site's miss stub, which counts and jumps on".to_string()
            }
        };
        let _ = writeln!(header, "  miss: {miss}");
        Ok(ThunkListing {
            header,
            insns,
            code_len: code.len() as u64,
            data,
            miss: compiled.miss_form(),
        })
    }

    /// Targets of the direct calls and direct tail jumps, in code order.
    pub fn direct_exits(&self) -> Vec<u64> {
        let end = CODE_BASE + self.code_len;
        self.insns
            .iter()
            .filter_map(|i| i.direct_exit(CODE_BASE, end))
            .collect()
    }

    /// Header, a blank line, one line per instruction, then the data.
    /// Lines carry no trailing blanks (`render` leaves one after operand-less
    /// mnemonics such as `ret`), so golden files survive editors.
    pub fn text(&self) -> String {
        let listing = disasm::render(&self.insns);
        let mut out = self.header.clone();
        out.push('\n');
        for line in listing.lines().chain(self.data.lines()) {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

// The x86-64 backend compares against 64-bit addresses that do not fit an
// immediate by loading them from a constant pool after the code; the pool
// starts at the lowest `%rip`-relative address the code refers to, and the
// bytes between the code and it are alignment padding. aarch64 materializes
// constants inline: no pool.

/// The lowest `%rip`-relative address the code refers to, if any.
fn pool_start(insns: &[Insn]) -> Option<u64> {
    insns
        .iter()
        .filter_map(|i| {
            let disp = rip_displacement(&i.op_str)?;
            Some((i.addr + i.bytes.len() as u64).wrapping_add_signed(disp))
        })
        .min()
}

/// The displacement of a `0x4d(%rip)` / `-0x10(%rip)` operand (AT&T).
fn rip_displacement(op_str: &str) -> Option<i64> {
    let before = &op_str[..op_str.find("(%rip)")?];
    let token = before.rsplit([' ', ',']).next()?;
    let (neg, hex) = match token.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, token),
    };
    let v = i64::from_str_radix(hex.strip_prefix("0x")?, 16).ok()?;
    Some(if neg { -v } else { v })
}

/// The bytes after the code: alignment padding, then the constant pool as
/// 64-bit words, in the same columns as `disasm::render`.
fn render_data(code: &[u8], code_end: u64, pool: Option<u64>) -> String {
    let mut out = String::new();
    let end = CODE_BASE + code.len() as u64;
    let pool = pool.unwrap_or(end).clamp(code_end, end);
    let bytes = |from: u64, to: u64| &code[(from - CODE_BASE) as usize..(to - CODE_BASE) as usize];
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if pool > code_end {
        let pad = bytes(code_end, pool);
        let _ = writeln!(out, "{code_end:#010x}  {:<22} (padding)", hex(pad));
    }
    let mut at = pool;
    while at < end {
        let chunk = bytes(at, (at + 8).min(end));
        let text = match <[u8; 8]>::try_from(chunk) {
            Ok(word) => format!(".quad {:#x}", u64::from_le_bytes(word)),
            Err(_) => format!(".byte {}", hex(chunk)),
        };
        let _ = writeln!(out, "{at:#010x}  {:<22} {text}", hex(chunk));
        at += chunk.len() as u64;
    }
    out
}
