//! A second, independent count for x86-64: the instructions a thunk
//! executes per path, measured natively by callgrind, equal the static walk
//! (and so the qemu trace counts of `hotcall isa-report`, which equal it
//! too; `tests/isa_report.rs`).
//!
//! Method: two harness programs that differ only in what is called. A runs
//! N calls of the thunk on one path; B runs N plain calls of the same
//! target with the same arguments. The harness executes exactly the same
//! instructions for both (same operation sizes, same register-file copy,
//! the first argument register set in both), and so does the target; the
//! difference of callgrind's totals is N times the thunk's own count.

#![cfg(target_arch = "x86_64")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use hotcall_emu::model::{SplitMix64, edge_tuple};
use hotcall_emu::paths::{ThunkPath, static_count};
use hotcall_emu::thunks::call_layouts;
use hotcall_emu::toolchain::tool_for_tests;
use hotcall_emu::{Harness, Program, toolchain_for_tests};
use hotcall_jit::{Arch, CompilerOptions, Placement, ThunkCompiler, ThunkSig};

const N: u64 = 1000;
const AREA: u64 = 0x0400_0000;

/// Instructions callgrind counted for `program` run natively.
fn callgrind_total(valgrind: &Path, h: &Harness, program: &Program, out: &Path) -> u64 {
    let mut child = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(h.exe())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&program.encode())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary in {}", out.display()))
}

#[test]
fn callgrind_counts_equal_the_static_walk() {
    let Some(tc) = toolchain_for_tests(Arch::X86_64) else {
        return;
    };
    let Some(valgrind) = tool_for_tests(Arch::X86_64, "valgrind", "apt-get install valgrind")
    else {
        return;
    };
    let sig: ThunkSig = "(i64)->i64".parse().unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let h = Harness::build(&tc, std::slice::from_ref(&sig), 9, cache).unwrap();
    let out = cache.join(format!("callgrind-{}.out", std::process::id()));
    let mut compiler = ThunkCompiler::new(Arch::X86_64, CompilerOptions::default()).unwrap();
    let placement = Placement {
        lo: AREA,
        hi: AREA + 0x1000,
    };
    let mixes = edge_tuple(sig.params(), 2);
    for slots in [1usize, 3, 8] {
        let targets: Vec<u64> = (0..slots).map(|k| h.target(0, k)).collect();
        let thunk = compiler.compile(&sig, &targets, placement).unwrap();
        let bytes = thunk.link(AREA).unwrap();
        let paths: Vec<(ThunkPath, usize)> = (0..slots)
            .map(|k| (ThunkPath::Hit(k), k))
            .chain([(ThunkPath::Miss, 8)])
            .collect();
        for (path, k) in paths {
            let run = |via_thunk: bool| {
                let mut p = Program::new();
                p.map(AREA, 0x1000);
                p.write(AREA, &bytes);
                let (plain, thunk_regs) =
                    call_layouts(Arch::X86_64, &sig, &mixes, &mut SplitMix64(3));
                let lp = p.layout(&plain).unwrap();
                let lt = p.layout(&thunk_regs).unwrap();
                for _ in 0..N {
                    if via_thunk {
                        p.call(AREA, lt, Some(h.target(0, k)));
                    } else {
                        p.call(h.target(0, k), lp, Some(plain.int[0]));
                    }
                }
                callgrind_total(&valgrind, &h, &p, &out)
            };
            let (through, plain) = (run(true), run(false));
            let walked = static_count(Arch::X86_64, &bytes, AREA, path).unwrap();
            assert_eq!(
                through - plain,
                N * walked,
                "{slots} slots, {path}: callgrind {through} - {plain} over {N} calls, static walk {walked}"
            );
            eprintln!(
                "{slots} slots, {path}: callgrind {} instructions per call, static walk {walked}",
                (through - plain) as f64 / N as f64
            );
        }
    }
    let _ = std::fs::remove_file(&out);
}
