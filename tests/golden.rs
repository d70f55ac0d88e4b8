//! Golden disassembly: representative thunks for both ISAs, compiled at the
//! virtual placement `hotcall disasm` uses and compared with
//! `tests/golden/<arch>/<case>.txt`.
//!
//! After an intended change of the generated code, rewrite the files with
//!
//! ```text
//! HOTCALL_BLESS=1 cargo test --test golden
//! ```
//!
//! and review the diff like any other change.

use std::path::{Path, PathBuf};

use hotcall::{Arch, Counting, ThunkSig};
use hotcall_jit::Branch;
use hotcall_jit::MissForm;

// The CLI's own layout and rendering, so that the two cannot drift apart.
#[path = "../src/cli/listing.rs"]
mod listing;

use listing::{CODE_BASE, CODE_SPAN, ENTRY_HOOK, ThunkListing, target_addr};

/// One golden case: a file name, a signature, a slot count, far targets,
/// counting hooks.
struct Case {
    name: &'static str,
    sig: &'static str,
    slots: usize,
    far: bool,
    counting: Counting,
}

const fn case(name: &'static str, sig: &'static str, slots: usize, far: bool) -> Case {
    counting_case(name, sig, slots, far, Counting::None)
}

const fn counting_case(
    name: &'static str,
    sig: &'static str,
    slots: usize,
    far: bool,
    counting: Counting,
) -> Case {
    Case {
        name,
        sig,
        slots,
        far,
        counting,
    }
}

const CASES: &[Case] = &[
    case("i64_0slots", "(i64)->i64", 0, false),
    case("i64_1slot", "(i64)->i64", 1, false),
    case("i64_2slots", "(i64)->i64", 2, false),
    case("i64_8slots", "(i64)->i64", 8, false),
    case("i64_f64_2slots", "(i64,f64)->i64", 2, false),
    // Nine thunk parameters: some go on the stack on both ISAs.
    case(
        "int8_stack_2slots",
        "(i64,i64,i64,i64,i64,i64,i64,i64)->i64",
        2,
        false,
    ),
    case("f32_f64_1slot", "(f32,f64)->f64", 1, false),
    case("void_1slot", "()->()", 1, false),
    // Narrow integers: the thunk must extend them as C callers do.
    case("narrow_ints_1slot", "(i8,u16,bool)->i32", 1, false),
    case("far_2slots", "(i64)->i64", 2, true),
    // Learning sites: a stable site counts its misses (the miss tail-jumps
    // through the site's miss stub), a site being profiled counts every
    // call (a call to the entry stub in front). With stack arguments the
    // miss cannot tail-jump and calls the miss hook instead.
    counting_case(
        "i64_2slots_count_misses",
        "(i64)->i64",
        2,
        false,
        Counting::Misses,
    ),
    counting_case(
        "i64_2slots_count_all",
        "(i64)->i64",
        2,
        false,
        Counting::All,
    ),
    counting_case(
        "int8_stack_2slots_count_misses",
        "(i64,i64,i64,i64,i64,i64,i64,i64)->i64",
        2,
        false,
        Counting::Misses,
    ),
];

fn golden_dir(arch: Arch) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(arch.name())
}

fn blessing() -> bool {
    std::env::var_os("HOTCALL_BLESS").is_some_and(|v| v == "1")
}

/// The rendered thunk, after checking what the golden file cannot show by
/// itself: one direct call or jump to each in-range target, an indirect
/// call for each far target, the miss as an indirect call or jump (or, when
/// counting misses, a jump to a hook stub), and hook stubs only as asked.
fn render_checked(arch: Arch, c: &Case) -> String {
    let sig: ThunkSig = c.sig.parse().expect("case signature parses");
    let l = ThunkListing::build(arch, &sig, c.slots, c.far, true, c.counting, false)
        .unwrap_or_else(|e| panic!("{arch} {}: {e}", c.name));
    // Direct calls, or direct tail jumps out of the thunk: to targets, or
    // to the site's hook stubs (at and above ENTRY_HOOK).
    let (stubs, direct): (Vec<u64>, Vec<u64>) = l
        .direct_exits()
        .into_iter()
        .partition(|a| (ENTRY_HOOK..CODE_BASE + CODE_SPAN).contains(a));
    let want_stubs = usize::from(c.counting != Counting::None);
    assert_eq!(
        stubs.len(),
        want_stubs,
        "{arch} {}: hook stub calls",
        c.name
    );
    let indirect = l
        .insns
        .iter()
        .filter(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump))
        .count();
    let want_direct: Vec<u64> = if c.far {
        Vec::new()
    } else {
        (0..c.slots).map(|k| target_addr(arch, k, false)).collect()
    };
    let miss_indirect = usize::from(l.miss != MissForm::CountingTailJump);
    let want_indirect = miss_indirect + if c.far { c.slots } else { 0 };
    assert_eq!(
        direct, want_direct,
        "{arch} {}: direct calls, in slot order",
        c.name
    );
    assert_eq!(
        indirect, want_indirect,
        "{arch} {}: indirect calls (the miss, plus one per far slot)",
        c.name
    );
    l.text()
}

/// The differing region (from the first to the last differing line, at most
/// ten lines each side), with two lines of context, as `-expected`/`+actual`.
fn diff(expected: &str, actual: &str) -> String {
    const MAX: usize = 10;
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let common_tail = e[first..]
        .iter()
        .rev()
        .zip(a[first..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (e_end, a_end) = (e.len() - common_tail, a.len() - common_tail);
    let mut out = format!("first difference at line {}:\n", first + 1);
    for line in &e[first.saturating_sub(2)..first] {
        out += &format!("  {line}\n");
    }
    for (sign, lines) in [('-', &e[first..e_end]), ('+', &a[first..a_end])] {
        for line in lines.iter().take(MAX) {
            out += &format!("{sign} {line}\n");
        }
        if lines.len() > MAX {
            out += &format!("{sign} ... {} more\n", lines.len() - MAX);
        }
    }
    for line in e[e_end..].iter().take(2) {
        out += &format!("  {line}\n");
    }
    out += &format!("({} lines expected, {} actual)\n", e.len(), a.len());
    out
}

fn check_arch(arch: Arch) {
    let dir = golden_dir(arch);
    let mut failures = Vec::new();
    for c in CASES {
        let actual = render_checked(arch, c);
        let path = dir.join(format!("{}.txt", c.name));
        if blessing() {
            std::fs::create_dir_all(&dir).expect("create the golden directory");
            std::fs::write(&path, &actual).expect("write a golden file");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{} differs from the generated code\n{}",
                path.display(),
                diff(&expected, &actual)
            )),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {arch} golden files do not match:\n\n{}\n\
         If the change is intended, rewrite them with\n    \
         HOTCALL_BLESS=1 cargo test --test golden\nand review the diff.",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_x86_64() {
    check_arch(Arch::X86_64);
}

#[test]
fn golden_aarch64() {
    check_arch(Arch::Aarch64);
}

/// Every golden file belongs to a case, so renamed cases leave no stale file.
#[test]
fn no_stale_golden_files() {
    for arch in Arch::ALL {
        let Ok(entries) = std::fs::read_dir(golden_dir(arch)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("read the golden directory").file_name();
            let name = name.to_string_lossy();
            let known = CASES.iter().any(|c| format!("{}.txt", c.name) == name);
            assert!(
                known,
                "tests/golden/{arch}/{name} belongs to no case in tests/golden.rs: delete it"
            );
        }
    }
}

#[test]
fn diff_shows_the_first_difference() {
    let d = diff("a\nb\nc\nd\n", "a\nB\nc\nd\n");
    assert!(d.contains("line 2"), "{d}");
    assert!(d.contains("- b\n+ B\n  c\n"), "{d}");
    assert!(!d.contains("- c") && !d.contains("- d"), "{d}");
    let d = diff("a\n", "a\nextra\n");
    assert!(d.contains("line 2") && d.contains("+ extra\n"), "{d}");
}
