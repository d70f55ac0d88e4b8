//! The aarch64 publication sequence under qemu: code is written, the
//! project's cache-maintenance routine (`DC CVAU` / `DSB ISH` / `IC IVAU` /
//! `DSB ISH` / `ISB`, the words of `hotcall_jit::isa::aarch64::maintenance`
//! that `icache::flush` runs on aarch64 hosts) runs over it, then it is
//! called; then new code is written over it and published again.
//!
//! qemu keeps instruction fetch coherent with stores by itself, so these
//! tests show that the routine is valid aarch64 code that runs at EL0 and
//! returns with the AAPCS64 state intact, and that code published this way
//! runs; they cannot show that leaving a step out would fail on hardware
//! (docs/isa/aarch64.md).

use std::path::Path;
use std::process::Command;

use hotcall_emu::model::{SplitMix64, edge_tuple};
use hotcall_emu::paths::{ThunkPath, static_count};
use hotcall_emu::thunks::{call_layouts, expected, returned};
use hotcall_emu::{Harness, Program, Publisher, toolchain_for_tests};
use hotcall_jit::disasm::disassemble;
use hotcall_jit::isa::aarch64::maintenance::{FLUSH_ROUTINE_ASM, flush_routine_bytes};
use hotcall_jit::{Arch, CompilerOptions, Placement, ThunkCompiler, ThunkSig};

fn cache() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn the_flush_routine_is_its_assembly_source() {
    let Some(tc) = toolchain_for_tests(Arch::Aarch64) else {
        return;
    };
    let as_ = tc
        .assembler()
        .expect("aarch64-linux-gnu-as next to the compiler");
    let objcopy = as_.with_file_name(
        as_.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace("-as", "-objcopy"),
    );
    let dir = cache().join("flush-routine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("flush.S"), FLUSH_ROUTINE_ASM).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new(&as_).args(["-o", "flush.o", "flush.S"]));
    run(Command::new(&objcopy).args(["-O", "binary", "-j", ".text", "flush.o", "flush.bin"]));
    let assembled = std::fs::read(dir.join("flush.bin")).unwrap();
    assert_eq!(assembled, flush_routine_bytes());
}

#[test]
fn the_flush_routine_is_the_documented_sequence() {
    let code = flush_routine_bytes();
    let insns = disassemble(Arch::Aarch64, &code, 0).unwrap();
    assert_eq!(insns.len() * 4, code.len(), "every word decodes");
    let maintenance: Vec<String> = insns
        .iter()
        .filter(|i| {
            matches!(
                i.mnemonic.as_str(),
                "dc" | "ic" | "dsb" | "isb" | "mrs" | "ret"
            )
        })
        .map(|i| format!("{} {}", i.mnemonic, i.op_str).trim().to_string())
        .collect();
    assert_eq!(
        maintenance,
        [
            "mrs x3, ctr_el0",
            "dc cvau, x2",
            "dsb ish",
            "ic ivau, x2",
            "dsb ish",
            "isb",
            "ret"
        ]
    );
}

#[test]
fn publish_call_republish_call_under_qemu() {
    let Some(tc) = toolchain_for_tests(Arch::Aarch64) else {
        return;
    };
    let sig: ThunkSig = "(i32,f32,u8)->f64".parse().unwrap();
    let h = Harness::build(&tc, std::slice::from_ref(&sig), 6, cache()).unwrap();
    const AREA: u64 = 0x0400_0000;
    let placement = Placement {
        lo: AREA,
        hi: AREA + 0x1000,
    };
    let mut compiler = ThunkCompiler::new(Arch::Aarch64, CompilerOptions::default()).unwrap();
    let mut p = Program::new();
    let (publisher, map_page) = Publisher::install(&mut p, Arch::Aarch64, 0x03F0_0000);
    let map = p.map(AREA, 0x1000);
    let entry = publisher.flush_entry().unwrap();
    // The routine alone: empty, unaligned and multi-line ranges.
    let mut flushes = Vec::new();
    for (addr, len) in [(AREA, 0), (AREA + 3, 1), (AREA + 60, 200), (AREA, 0x1000)] {
        let mut int = [0u64; 8];
        int[..2].copy_from_slice(&[addr, len]);
        let l = p
            .layout(&hotcall_emu::abi::RegFile {
                int,
                float: [0; 8],
                stack: vec![],
            })
            .unwrap();
        flushes.push(p.call(entry, l, None));
    }
    let mixes = edge_tuple(sig.params(), 4);
    let (_, regs) = call_layouts(Arch::Aarch64, &sig, &mixes, &mut SplitMix64(1));
    let l = p.layout(&regs).unwrap();
    // Thunk A promotes targets 0 and 1; thunk B, written over it at the
    // same address, promotes 2, 3 and 4.
    let mut rounds = Vec::new();
    for promoted in [vec![0usize, 1], vec![2, 3, 4], vec![1]] {
        let targets: Vec<u64> = promoted.iter().map(|&k| h.target(0, k)).collect();
        let thunk = compiler.compile(&sig, &targets, placement).unwrap();
        let bytes = thunk.link(AREA).unwrap();
        let published = publisher.publish(&mut p, AREA, &bytes).unwrap();
        let calls: Vec<_> = (0..6)
            .map(|k| (k, p.call(AREA, l, Some(h.target(0, k)))))
            .collect();
        rounds.push((promoted, bytes, published, calls));
    }
    // Traced, so each call shows which code ran: every thunk gives the
    // right answer on every path (a miss calls the target too), but only
    // the code just published takes exactly its own path lengths.
    let thunk_area = AREA..AREA + 0x1000;
    let outcome = h.run_traced(&p, std::slice::from_ref(&thunk_area)).unwrap();
    assert_eq!(outcome.status(map_page), Ok(()));
    assert_eq!(outcome.status(map), Ok(()));
    for f in flushes {
        let r = outcome.call(f);
        assert!(
            r.clean(),
            "the maintenance routine faulted or broke the ABI: {r:?}"
        );
    }
    for (promoted, bytes, published, calls) in rounds {
        assert_eq!(outcome.status(published.write), Ok(()));
        assert!(outcome.call(published.flush.unwrap()).clean());
        for (k, op) in calls {
            let path = match promoted.iter().position(|&s| s == k) {
                Some(slot) => ThunkPath::Hit(slot),
                None => ThunkPath::Miss,
            };
            let walked = static_count(Arch::Aarch64, &bytes, AREA, path).unwrap();
            assert_eq!(
                outcome.traced(op),
                Some(walked),
                "{promoted:?}, target {k}: {path}"
            );
            let r = outcome.call(op);
            let (hash, ret) = expected(&sig, k as u64, &mixes);
            assert!(r.clean(), "target {k}: {r:?}");
            assert_eq!(r.last_call, Some((k as u64, hash)), "target {k}");
            assert_eq!(returned(&sig, r), ret, "target {k}");
        }
    }
}

#[test]
fn bad_operations_are_reported_and_the_program_goes_on() {
    let Some(tc) = toolchain_for_tests(Arch::Aarch64) else {
        return;
    };
    let sig: ThunkSig = "(i64)->i64".parse().unwrap();
    let h = Harness::build(&tc, std::slice::from_ref(&sig), 2, cache()).unwrap();
    let mut p = Program::new();
    let unmapped_write = p.write(0x7000_0000, &[1, 2, 3]);
    let map = p.map(0x0400_0000, 0x1000);
    let map_again = p.map(0x0400_0000, 0x1000);
    // Zeroed memory is `udf #0` on aarch64.
    let l = p
        .layout(&hotcall_emu::abi::RegFile {
            int: [0; 8],
            float: [0; 8],
            stack: vec![],
        })
        .unwrap();
    let bad_call = p.call(0x0400_0000, l, None);
    let good_call = p.call(h.target(0, 1), l, None);
    let outcome = h.run(&p).unwrap();
    assert_eq!(outcome.status(unmapped_write), Err(11), "SIGSEGV");
    assert_eq!(outcome.status(map), Ok(()));
    assert_eq!(
        outcome.status(map_again),
        Err(17),
        "EEXIST: no silent replacement"
    );
    let f = outcome.call(bad_call).fault.expect("udf faults");
    assert_eq!((f.signal_name(), f.pc), ("SIGILL", 0x0400_0000));
    let r = outcome.call(good_call);
    assert!(
        r.clean() && r.last_call.is_some_and(|(k, _)| k == 1),
        "{r:?}"
    );
}
