//! The `hotcall` binary, run as a user would.

use std::process::{Command, Output};

fn hotcall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotcall"))
        .args(args)
        .output()
        .expect("run the hotcall binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Lines of the listing whose mnemonic (third column) is `mnemonic`.
fn insns<'a>(out: &'a str, mnemonic: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.starts_with("0x"))
        .filter(|l| l.split_whitespace().nth(2) == Some(mnemonic))
        .collect()
}

// The CLI's virtual layout: code at 0x1000_0000, slot k in range at
// 0x1000_0000 + 0x10_0000 * (k + 1).
const T0: &str = "0x10100000";
const T1: &str = "0x10200000";

#[test]
fn disasm_aarch64_calls_promoted_targets_with_bl() {
    let o = hotcall(&[
        "disasm",
        "--arch",
        "aarch64",
        "--sig",
        "(i64,i64)->i64",
        "--slots",
        "2",
        "--no-tail-jumps",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.starts_with("thunk aarch64 (i64,i64)->i64: 2 slots"),
        "{out}"
    );
    let bl = insns(&out, "bl");
    assert_eq!(bl.len(), 2, "two direct calls:\n{out}");
    assert!(bl[0].ends_with(&format!("bl #{T0}")), "{out}");
    assert!(bl[1].ends_with(&format!("bl #{T1}")), "{out}");
    assert_eq!(
        insns(&out, "blr").len(),
        1,
        "one indirect call, the miss:\n{out}"
    );
}

#[test]
fn disasm_x86_64_calls_promoted_targets_with_call_rel32() {
    let o = hotcall(&[
        "disasm",
        "--arch",
        "x86_64",
        "--sig",
        "(i64,i64)->i64",
        "--slots",
        "2",
        "--no-tail-jumps",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let calls = insns(&out, "callq");
    let direct: Vec<&str> = calls
        .iter()
        .copied()
        .filter(|l| l.contains("callq 0x"))
        .collect();
    assert_eq!(direct.len(), 2, "two direct calls:\n{out}");
    assert!(direct[0].ends_with(&format!("callq {T0}")), "{out}");
    assert!(direct[1].ends_with(&format!("callq {T1}")), "{out}");
    let indirect: Vec<&str> = calls
        .iter()
        .copied()
        .filter(|l| l.contains("callq *%"))
        .collect();
    assert_eq!(indirect.len(), 1, "one indirect call, the miss:\n{out}");
    assert_eq!(calls.len(), 3, "{out}");
}

/// By default, hits tail-jump: a direct `b` / `jmp rel32` to each promoted
/// target and no call at all; the miss tail-jumps through the register
/// holding the target.
#[test]
fn disasm_default_hits_tail_jump_directly() {
    for (arch, jump, call, indirect) in [
        ("aarch64", "b", "bl", "br"),
        ("x86_64", "jmp", "callq", "jmpq"),
    ] {
        let o = hotcall(&[
            "disasm",
            "--arch",
            arch,
            "--sig",
            "(i64,i64)->i64",
            "--slots",
            "2",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}{}", stderr(&o));
        let sep = if arch == "aarch64" { " #" } else { " " };
        let jumps = insns(&out, jump);
        assert_eq!(jumps.len(), 2, "{arch}: two direct jumps:\n{out}");
        assert!(jumps[0].ends_with(&format!("{jump}{sep}{T0}")), "{out}");
        assert!(jumps[1].ends_with(&format!("{jump}{sep}{T1}")), "{out}");
        let calls = insns(&out, call);
        assert_eq!(calls.len(), 0, "{arch}: no call at all:\n{out}");
        assert_eq!(
            insns(&out, indirect).len(),
            1,
            "{arch}: the miss tail-jumps through a register:\n{out}"
        );
        assert_eq!(out.matches("direct, tail jump").count(), 2, "{out}");
    }
}

#[test]
fn disasm_far_targets_use_the_absolute_form() {
    let o = hotcall(&[
        "disasm",
        "--arch",
        "aarch64",
        "--sig",
        "(i64)->i64",
        "--far",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("slot 0: 0x20000000 absolute"), "{out}");
    assert!(insns(&out, "bl").is_empty(), "{out}");
    assert_eq!(insns(&out, "blr").len(), 2, "{out}");
    assert_eq!(insns(&out, "br").len(), 1, "the miss tail-jumps: {out}");
}

/// Hardened with far targets: every slot and the miss call the retpoline
/// trampoline directly; the decoder's own count of indirect branches is 0.
#[test]
fn disasm_hardened_far_targets_have_no_indirect_branch() {
    for arch in ["x86_64", "aarch64"] {
        let o = hotcall(&[
            "disasm",
            "--arch",
            arch,
            "--sig",
            "(i64)->i64",
            "--slots",
            "3",
            "--far",
            "--hardened",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}{}", stderr(&o));
        assert!(out.contains("absolute, through the retpoline"), "{out}");
        assert!(out.contains(", 0 indirect"), "{out}");
        let call = if arch == "x86_64" { "callq" } else { "bl" };
        let calls = insns(&out, call);
        assert_eq!(calls.len(), 4, "3 far slots and the miss: {out}");
        assert!(calls.iter().all(|c| c.contains("0xffff0")), "{out}");
    }
}

/// A usage error: exit code 2, nothing on stdout, a message naming `what`
/// on stderr, and no panic.
fn assert_usage_error(args: &[&str], what: &[&str]) {
    let o = hotcall(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for w in what {
        assert!(err.contains(w), "{args:?}: `{w}` not in: {err}");
    }
}

#[test]
fn bad_signature_is_a_clear_usage_error() {
    assert_usage_error(
        &["disasm", "--arch", "x86_64", "--sig", "(i64,i128)->i64"],
        &["--sig", "unknown type `i128`"],
    );
    assert_usage_error(
        &["disasm", "--arch", "x86_64", "--sig", "i64->i64"],
        &["--sig", "cannot parse signature"],
    );
}

#[test]
fn too_many_slots_is_a_clear_usage_error() {
    assert_usage_error(
        &[
            "disasm",
            "--arch",
            "x86_64",
            "--sig",
            "(i64)->i64",
            "--slots",
            "9",
        ],
        &["--slots", "at most 8"],
    );
}

#[test]
fn bad_arch_is_a_clear_usage_error() {
    assert_usage_error(
        &["disasm", "--arch", "riscv64", "--sig", "(i64)->i64"],
        &["--arch", "unknown architecture `riscv64`"],
    );
}
