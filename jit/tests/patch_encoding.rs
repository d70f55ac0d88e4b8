//! Table-driven tests of every byte sequence hotcall patches or emits for
//! the Patch strategy, static entries and hardened mode, on both ISAs.
//! Each encoded word is checked two ways: against the expected bytes where
//! the table gives them, and by decoding the instruction with capstone (an
//! independent decoder) and comparing its branch target.

use hotcall_jit::disasm::{Insn, disassemble, disassemble_reachable, render};
use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::isa::aarch64::encode as a64;
use hotcall_jit::isa::x86_64::encode as x64;
use hotcall_jit::patch::{DISABLED, MissExit, PatchCompiler, PatchOptions, TABLE_ALIGN, TRAP_GAP};
use hotcall_jit::{Arch, Branch, BranchKind, JitError, ThunkSig};

/// The instruction bytes around a patched word: on x86-64 the opcode byte
/// precedes the rel32 field; on aarch64 the word is the instruction.
fn instruction(arch: Arch, kind: BranchKind, word: u32) -> Vec<u8> {
    match arch {
        Arch::X86_64 => {
            let op = match kind {
                BranchKind::Jump => x64::JMP_REL32,
                BranchKind::Call => x64::CALL_REL32,
            };
            let mut v = vec![op];
            v.extend_from_slice(&word.to_le_bytes());
            v
        }
        Arch::Aarch64 => word.to_le_bytes().to_vec(),
    }
}

/// The address of the instruction whose patched word is at `field`.
fn insn_addr(arch: Arch, field: u64) -> u64 {
    match arch {
        Arch::X86_64 => field - 1,
        Arch::Aarch64 => field,
    }
}

fn decode_one(arch: Arch, bytes: &[u8], addr: u64) -> Insn {
    let insns = disassemble(arch, bytes, addr).unwrap();
    assert_eq!(insns.len(), 1, "{insns:?}");
    insns.into_iter().next().unwrap()
}

#[test]
fn branch_words_encode_decode_and_match_capstone() {
    const F: u64 = 0x7f00_1234_5670;
    // (arch, kind, field, target, expected word or None for "out of range")
    let cases: &[(Arch, BranchKind, u64, u64, Option<u32>)] = &[
        // x86-64: rel32 = target - (field + 4), for jmp and call alike.
        (Arch::X86_64, BranchKind::Jump, F, F + 4, Some(0)),
        (Arch::X86_64, BranchKind::Jump, F, F + 0x104, Some(0x100)),
        (Arch::X86_64, BranchKind::Call, F, F, Some(0xffff_fffc)),
        (
            Arch::X86_64,
            BranchKind::Call,
            F,
            F - 0x1000,
            Some(0xffff_effc),
        ),
        (
            Arch::X86_64,
            BranchKind::Jump,
            F,
            F + 4 + 0x7fff_ffff,
            Some(0x7fff_ffff),
        ),
        (
            Arch::X86_64,
            BranchKind::Jump,
            F,
            F + 4 - 0x8000_0000,
            Some(0x8000_0000),
        ),
        (Arch::X86_64, BranchKind::Jump, F, F + 4 + 0x8000_0000, None),
        (Arch::X86_64, BranchKind::Call, F, F + 3 - 0x8000_0000, None),
        // aarch64: the whole B/BL word, imm26 = (target - insn) / 4.
        (Arch::Aarch64, BranchKind::Jump, F, F + 4, Some(0x1400_0001)),
        (Arch::Aarch64, BranchKind::Jump, F, F, Some(0x1400_0000)),
        (Arch::Aarch64, BranchKind::Call, F, F - 8, Some(0x97ff_fffe)),
        (
            Arch::Aarch64,
            BranchKind::Call,
            F,
            F + 0x1000,
            Some(0x9400_0400),
        ),
        (
            Arch::Aarch64,
            BranchKind::Jump,
            F,
            F + (128 << 20) - 4,
            Some(0x15ff_ffff),
        ),
        (
            Arch::Aarch64,
            BranchKind::Jump,
            F,
            F - (128 << 20),
            Some(0x1600_0000),
        ),
        (Arch::Aarch64, BranchKind::Jump, F, F + (128 << 20), None),
        (
            Arch::Aarch64,
            BranchKind::Call,
            F,
            F - (128 << 20) - 4,
            None,
        ),
        (Arch::Aarch64, BranchKind::Jump, F, F + 2, None), // misaligned
    ];
    for &(arch, kind, field, target, want) in cases {
        let backend = arch.backend();
        let got = backend.encode_branch(kind, field, target);
        match want {
            None => assert!(
                matches!(got, Err(JitError::OutOfRange { .. })),
                "{arch} {kind:?} {field:#x} -> {target:#x}: {got:?}"
            ),
            Some(word) => {
                let got = got.unwrap();
                assert_eq!(got, word, "{arch} {kind:?} {field:#x} -> {target:#x}");
                assert_eq!(backend.decode_branch(field, got), target);
                let at = insn_addr(arch, field);
                let insn = decode_one(arch, &instruction(arch, kind, got), at);
                let expect = match kind {
                    BranchKind::Jump => Branch::Jump {
                        target,
                        conditional: false,
                    },
                    BranchKind::Call => Branch::DirectCall(target),
                };
                assert_eq!(insn.branch, expect, "{arch} {kind:?}: {insn:?}");
            }
        }
    }
}

/// The static entry stub: on x86-64 `nop; jmp rel32` with the field 4-byte
/// aligned and the `jmp` inside one 8-byte block; on aarch64 one `B`.
#[test]
fn static_stub_words_decode_as_direct_jumps() {
    let block = 0x5555_5555_5000u64; // 8-byte aligned
    let field = block + x64::STUB_FIELD_OFFSET;
    assert_eq!(field % 4, 0);
    for target in [block + 0x10_0000, block - 0x4000_0000, block + 0x7000_0000] {
        let word = Arch::X86_64
            .backend()
            .encode_branch(BranchKind::Jump, field, target)
            .unwrap();
        let mut bytes = x64::STUB_PREFIX.to_vec();
        bytes.extend_from_slice(&word.to_le_bytes());
        let insns = disassemble(Arch::X86_64, &bytes, block).unwrap();
        assert_eq!(insns.len(), 2, "{}", render(&insns));
        assert_eq!(insns[0].mnemonic, "nopl");
        assert_eq!(
            insns[1].branch,
            Branch::Jump {
                target,
                conditional: false
            }
        );
        let jmp_end = insns[1].addr + insns[1].bytes.len() as u64;
        assert_eq!(
            insns[1].addr / 8,
            (jmp_end - 1) / 8,
            "jmp in one 8-byte block"
        );
    }
    let stub = 0x5555_5555_5004u64;
    for target in [stub + 4, stub - 0x10_0000, stub + (64 << 20)] {
        let word = Arch::Aarch64
            .backend()
            .encode_branch(BranchKind::Jump, stub + a64::STUB_FIELD_OFFSET, target)
            .unwrap();
        assert_eq!(a64::branch_opcode(word), Some(a64::B));
        let insn = decode_one(Arch::Aarch64, &word.to_le_bytes(), stub);
        assert_eq!(
            insn.branch,
            Branch::Jump {
                target,
                conditional: false
            }
        );
    }
}

fn mnemonics(insns: &[Insn]) -> Vec<String> {
    insns
        .iter()
        .map(|i| format!("{} {}", i.mnemonic, i.op_str).trim().to_string())
        .collect()
}

#[test]
fn retpolines_decode_as_documented() {
    let base = 0x40_0000u64;
    let x86 = disassemble(Arch::X86_64, &x64::RETPOLINE_R11, base).unwrap();
    assert_eq!(
        mnemonics(&x86),
        [
            "callq 0x40000c",
            "pause",
            "lfence",
            "jmp 0x400005",
            "movq %r11, (%rsp)",
            "retq"
        ],
        "{}",
        render(&x86)
    );
    let arm = disassemble(Arch::Aarch64, &a64::RETPOLINE_X16, base).unwrap();
    assert_eq!(
        mnemonics(&arm),
        [
            "mov x17, x30",
            "bl #0x400014",
            "dsb sy",
            "isb",
            "b #0x400008",
            "mov x30, x17",
            "ret x16"
        ],
        "{}",
        render(&arm)
    );
}

#[test]
fn miss_trampoline_loads_decode_as_documented() {
    let x86_src = [
        "%rdi",
        "%rsi",
        "%rdx",
        "%rcx",
        "%r8",
        "%r9",
        "8(%rsp)",
        "0x10(%rsp)",
        "0x18(%rsp)",
    ];
    for (k, src) in x86_src.iter().enumerate() {
        let insn = decode_one(Arch::X86_64, x64::MISS_TRAMPOLINE_LOADS[k], 0);
        assert_eq!(
            format!("{} {}", insn.mnemonic, insn.op_str),
            format!("movq {src}, %r11"),
            "trampoline {k}"
        );
    }
    for (k, &word) in a64::MISS_TRAMPOLINE_LOADS.iter().enumerate() {
        let insn = decode_one(Arch::Aarch64, &word.to_le_bytes(), 0);
        let want = if k < 8 {
            format!("mov x16, x{k}")
        } else {
            "ldr x16, [sp]".to_string()
        };
        assert_eq!(format!("{} {}", insn.mnemonic, insn.op_str), want);
    }
}

/// The address a thunk computes for its table: `lea disp(%rip)` on x86-64,
/// `adrp` + `add` on aarch64.
fn table_address(arch: Arch, insns: &[Insn]) -> u64 {
    match arch {
        Arch::X86_64 => {
            let lea = insns
                .iter()
                .find(|i| i.mnemonic.starts_with("lea"))
                .unwrap();
            let disp = i32::from_le_bytes(lea.bytes[lea.bytes.len() - 4..].try_into().unwrap());
            (lea.addr + lea.bytes.len() as u64).wrapping_add(disp as i64 as u64)
        }
        Arch::Aarch64 => {
            let adrp = insns.iter().position(|i| i.mnemonic == "adrp").unwrap();
            let page =
                u64::from_str_radix(insns[adrp].op_str.rsplit("#0x").next().unwrap(), 16).unwrap();
            let add = &insns[adrp + 1];
            assert_eq!(add.mnemonic, "add");
            let lo = add.op_str.rsplit('#').next().unwrap();
            let lo = match lo.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).unwrap(),
                None => lo.parse().unwrap(),
            };
            page + lo
        }
    }
}

/// A Patch thunk placed at several addresses, for both ISAs, plain and
/// hardened: the table address the code computes is the table's, every
/// slot's branch starts at the trap gap, the miss path leaves through the
/// miss exit (jumping to it, or calling it before its own indirect or
/// retpolined call), the miss exit falls through to `jmp *reg` / `ret` and
/// can be aimed elsewhere with one aligned word, the counting entry calls
/// the entry stub and jumps to the thunk, and rewriting a slot's word with
/// `encode_branch` makes exactly that slot's exit go to its new target.
/// No indirect branch anywhere but the miss path's own.
#[test]
fn patch_thunks_link_and_retarget_on_both_isas() {
    let sigs = [
        "(i64)->i64",
        "(u64,f64)->u64",
        "()->()",
        "(i8,u16,f32,f64,ptr)->bool",
        "(i64,i64,i64,i64,i64,i64,i64)->i64",
        "(i64,i64,i64,i64,i64,i64,i64,i64)->i64",
    ];
    let mut shapes = std::collections::HashSet::new();
    for arch in Arch::ALL {
        for hardened in [false, true] {
            let base = 0x7f00_0000_0000u64;
            let tramps = MissTrampolines {
                by_int_args: std::array::from_fn(|k| base - 0x10_0000 + 64 * k as u64),
            };
            let mut c = PatchCompiler::new(
                arch,
                PatchOptions {
                    verify: true,
                    hardened: hardened.then_some(tramps),
                },
            )
            .unwrap();
            for sig in sigs {
                let sig: ThunkSig = sig.parse().unwrap();
                for slots in [1, 2, 4, 8] {
                    let t = c.template(&sig, slots).unwrap();
                    let tail = matches!(t.miss_exit(), MissExit::Tail { .. });
                    shapes.insert((arch, hardened, tail));
                    if hardened {
                        assert!(!tail, "a hardened miss calls its retpoline");
                    }
                    for place in [base, base + 0x30, base + 0x1ff0] {
                        check_placed(arch, &t, place, hardened.then(|| tramps.for_sig(&sig)));
                    }
                }
            }
            assert_eq!(c.template_count(), sigs.len() * 4, "one template per shape");
        }
    }
    for arch in Arch::ALL {
        for shape in [
            (arch, false, true),
            (arch, false, false),
            (arch, true, false),
        ] {
            assert!(shapes.contains(&shape), "{shape:?} not covered");
        }
    }
}

fn check_placed(
    arch: Arch,
    t: &hotcall_jit::patch::PatchTemplate,
    place: u64,
    trampoline: Option<u64>,
) {
    let backend = arch.backend();
    let entry_stub = place + 0x8_0000;
    let (mut bytes, layout) = t.link_with(place, Some(entry_stub)).unwrap();
    let table = place + layout.table as u64;
    assert_eq!(table % TABLE_ALIGN as u64, 0);
    assert!(layout.count >= layout.trap + TRAP_GAP);
    assert!(layout.exit > layout.count && layout.fallback > layout.exit);
    assert!(layout.table > layout.fallback);
    assert_eq!(layout.len, layout.table + 8 * t.slot_count());
    assert!(layout.len <= t.alloc_len());
    for k in 0..t.slot_count() {
        let at = layout.table + 8 * k;
        assert_eq!(
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()),
            DISABLED
        );
    }
    let code_end = place + layout.trap as u64;
    let exit = place + layout.exit as u64;
    let fallback = place + layout.fallback as u64;
    let insns = disassemble_reachable(arch, &bytes[..layout.trap], place).unwrap();
    let listing = render(&insns);
    assert_eq!(table_address(arch, &insns), table, "{listing}");
    // Every slot exits to the trap gap; the miss path through the miss
    // exit, and where it calls the exit, then through one indirect call
    // (or, hardened, a direct call to its trampoline).
    let exits: Vec<u64> = insns
        .iter()
        .filter_map(|i| i.direct_exit(place, code_end))
        .collect();
    let mut want = vec![code_end; t.slot_count()];
    want.push(exit);
    want.extend(trampoline);
    assert_eq!(exits, want, "{listing}");
    let indirect = insns
        .iter()
        .filter(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump))
        .count();
    let tail = matches!(t.miss_exit(), MissExit::Tail { .. });
    assert_eq!(
        indirect,
        usize::from(trampoline.is_none() && !tail),
        "{listing}"
    );
    let exit_kind = insns
        .iter()
        .find(|i| i.direct_exit(place, code_end) == Some(exit))
        .map(|i| i.branch)
        .unwrap();
    match t.miss_exit() {
        MissExit::Tail { .. } => assert!(
            matches!(
                exit_kind,
                Branch::Jump {
                    conditional: false,
                    ..
                }
            ),
            "{listing}"
        ),
        MissExit::Call => assert_eq!(exit_kind, Branch::DirectCall(exit), "{listing}"),
    }
    // The trap gap really traps.
    let poison = backend.poison_pattern();
    assert!(
        bytes[layout.trap..layout.trap + TRAP_GAP]
            .chunks(poison.len())
            .all(|c| c == poison)
    );
    // The counting entry: a call of the entry stub, then a jump into the
    // thunk (aarch64 saves the frame record around its `bl`).
    let count = place + layout.count as u64;
    let insns = disassemble(arch, &bytes[layout.count..layout.exit], count).unwrap();
    let branches: Vec<Branch> = insns
        .iter()
        .map(|i| i.branch)
        .filter(|b| *b != Branch::Other)
        .collect();
    assert_eq!(
        branches[..2],
        [
            Branch::DirectCall(entry_stub),
            Branch::Jump {
                target: place,
                conditional: false
            }
        ],
        "{}",
        render(&insns)
    );
    // The miss exit: its word aligned, inside one 8-byte block; falls
    // through to the fallback, which jumps to the target register or
    // returns.
    assert_eq!((place + layout.exit_field as u64) % 4, 0);
    assert_eq!(
        (place + layout.exit_field as u64) / 8,
        (place + layout.exit_field as u64 + 3) / 8
    );
    let exit_insns = disassemble(arch, &bytes[layout.exit..layout.fallback + 4], exit).unwrap();
    assert_eq!(
        exit_insns[0].branch,
        Branch::Jump {
            target: fallback,
            conditional: false
        },
        "{}",
        render(&exit_insns)
    );
    let fall = &exit_insns[1];
    assert_eq!(fall.addr, fallback);
    match t.miss_exit() {
        MissExit::Tail { reg } => {
            assert_eq!(fall.branch, Branch::IndirectJump, "{}", render(&exit_insns));
            assert!(
                backend.miss_stub_registers().contains(&reg),
                "a tail exit's register has a miss stub"
            );
        }
        MissExit::Call => assert_eq!(fall.branch, Branch::Return, "{}", render(&exit_insns)),
    }
    // Aimed at a stub: one word.
    let stub = place + 0x9_0000;
    let word = backend
        .encode_branch(BranchKind::Jump, place + layout.exit_field as u64, stub)
        .unwrap();
    bytes[layout.exit_field..layout.exit_field + 4].copy_from_slice(&word.to_le_bytes());
    let aimed = disassemble(arch, &bytes[layout.exit..layout.fallback], exit).unwrap();
    assert_eq!(
        aimed.last().unwrap().branch,
        Branch::Jump {
            target: stub,
            conditional: false
        }
    );
    // Retarget every slot to a distinct target, as the patch protocol does
    // with one word per slot.
    let targets: Vec<u64> = (0..t.slot_count())
        .map(|k| place + 0x40_0000 + 0x1000 * k as u64)
        .collect();
    for (k, b) in t.branches().iter().enumerate() {
        let field = place + u64::from(b.offset);
        let word = backend.encode_branch(b.kind, field, targets[k]).unwrap();
        let at = b.offset as usize;
        bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
    }
    let insns = disassemble_reachable(arch, &bytes[..layout.trap], place).unwrap();
    let exits: Vec<u64> = insns
        .iter()
        .filter_map(|i| i.direct_exit(place, code_end))
        .collect();
    let mut want = targets.clone();
    want.push(exit);
    want.extend(trampoline);
    assert_eq!(exits, want, "{}", render(&insns));
}
