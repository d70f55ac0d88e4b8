//! Building the C harness for an ISA and running programs on it under
//! qemu-user.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotcall_jit::{Arch, ThunkSig};

use crate::error::EmuError;
use crate::program::{OP_CALL, OpId, OpResult, Outcome, Program, decode};
use crate::targets;
use crate::toolchain::Toolchain;
use crate::trace;

const HARNESS_C: &str = include_str!("../harness/harness.c");
const MODEL_H: &str = include_str!("../harness/model.h");
const CALL_AARCH64: &str = include_str!("../harness/call_aarch64.S");
const CALL_X86_64: &str = include_str!("../harness/call_x86_64.S");

/// How long one program may run before the harness is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Addresses reported by the harness itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HarnessInfo {
    /// `hc_mark`, called before every call operation.
    pub mark: u64,
    /// The harness's text: where the generated targets live.
    pub text: Range<u64>,
    /// Target addresses, `sig * per_sig + k`.
    pub targets: Vec<u64>,
}

/// A built harness: a static executable for one ISA with `per_sig`
/// generated targets for each signature.
#[derive(Clone, Debug)]
pub struct Harness {
    toolchain: Toolchain,
    exe: PathBuf,
    sigs: Vec<ThunkSig>,
    per_sig: usize,
    info: HarnessInfo,
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xFF]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h
}

impl Harness {
    /// Builds (or reuses, from `cache_dir`) the harness for the
    /// toolchain's ISA with targets for `sigs`, and asks it for its
    /// addresses.
    pub fn build(
        toolchain: &Toolchain,
        sigs: &[ThunkSig],
        per_sig: usize,
        cache_dir: &Path,
    ) -> Result<Self, EmuError> {
        let arch = toolchain.arch;
        let (call_name, call_src) = match arch {
            Arch::Aarch64 => ("call_aarch64.S", CALL_AARCH64),
            Arch::X86_64 => ("call_x86_64.S", CALL_X86_64),
        };
        let targets_c = targets::source(sigs, per_sig);
        let flags = ["-O1", "-static", "-fno-pie", "-no-pie", "-Wall"];
        let key = fnv(&[
            HARNESS_C.as_bytes(),
            MODEL_H.as_bytes(),
            call_src.as_bytes(),
            targets_c.as_bytes(),
            toolchain.cc.as_os_str().as_encoded_bytes(),
            flags.join(" ").as_bytes(),
        ]);
        let dir = cache_dir.join(format!("{arch}-{key:016x}"));
        let exe = dir.join("harness");
        if !exe.exists() {
            static UNIQUE: AtomicU64 = AtomicU64::new(0);
            let tmp = cache_dir.join(format!(
                "tmp-{}-{}",
                std::process::id(),
                UNIQUE.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&tmp)?;
            for (name, text) in [
                ("harness.c", HARNESS_C),
                ("model.h", MODEL_H),
                (call_name, call_src),
                ("targets.c", targets_c.as_str()),
            ] {
                std::fs::write(tmp.join(name), text)?;
            }
            let out = Command::new(&toolchain.cc)
                .args(flags)
                .args(["-o", "harness", "harness.c", "targets.c", call_name])
                .current_dir(&tmp)
                .output()
                .map_err(|e| {
                    EmuError::Build(format!("cannot run {}: {e}", toolchain.cc.display()), arch)
                })?;
            if !out.status.success() {
                return Err(EmuError::Build(
                    format!(
                        "{} failed ({}):\n{}",
                        toolchain.cc.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    arch,
                ));
            }
            // Another process may have finished the same build meanwhile:
            // either directory is fine, the contents are identical.
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        let mut harness = Harness {
            toolchain: toolchain.clone(),
            exe,
            sigs: sigs.to_vec(),
            per_sig,
            info: HarnessInfo {
                mark: 0,
                text: 0..0,
                targets: Vec::new(),
            },
        };
        let mut p = Program::new();
        let op = p.info();
        let outcome = harness.run(&p)?;
        let Some(OpResult::Info(w)) = outcome.get(op) else {
            return Err(EmuError::Harness("did not answer the info request".into()));
        };
        let count = *w.get(3).unwrap_or(&0) as usize;
        if count != sigs.len() * per_sig || w.len() != 4 + 3 * count {
            return Err(EmuError::Harness(format!(
                "reports {count} targets, expected {}",
                sigs.len() * per_sig
            )));
        }
        for (i, t) in w[4..].chunks(3).enumerate() {
            if (t[0] as usize, t[1] as usize) != (i / per_sig, i % per_sig) {
                return Err(EmuError::Harness(format!(
                    "target table out of order at {i}"
                )));
            }
        }
        harness.info = HarnessInfo {
            mark: w[0],
            text: w[1]..w[2],
            targets: w[4..].chunks(3).map(|t| t[2]).collect(),
        };
        Ok(harness)
    }

    pub fn arch(&self) -> Arch {
        self.toolchain.arch
    }

    /// The harness executable (static, for [`Harness::arch`]); a program's
    /// [`Program::encode`]d bytes go to its stdin. For running it under
    /// another tool (valgrind on an x86-64 host, say).
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    pub fn info(&self) -> &HarnessInfo {
        &self.info
    }

    pub fn signatures(&self) -> &[ThunkSig] {
        &self.sigs
    }

    /// Address of target `k` of signature `sig` (an index into the
    /// signatures given to [`Harness::build`]).
    pub fn target(&self, sig: usize, k: usize) -> u64 {
        assert!(
            sig < self.sigs.len() && k < self.per_sig,
            "no target {sig}/{k}"
        );
        self.info.targets[sig * self.per_sig + k]
    }

    /// Runs `program` in a fresh harness process.
    pub fn run(&self, program: &Program) -> Result<Outcome, EmuError> {
        let (stdout, _) = self.spawn(program, &[])?;
        Ok(Outcome {
            results: self.finish(program, &stdout)?,
            traced: Vec::new(),
        })
    }

    /// Runs `program` with qemu tracing every executed instruction
    /// (`-singlestep -d exec,nochain`) whose address is in `ranges`, and
    /// counts, for every call operation, the instructions executed there.
    pub fn run_traced(
        &self,
        program: &Program,
        ranges: &[Range<u64>],
    ) -> Result<Outcome, EmuError> {
        static UNIQUE: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "hotcall-emu-trace-{}-{}.log",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        let mut filter: Vec<String> = ranges
            .iter()
            .map(|r| format!("{:#x}+{:#x}", r.start, r.end - r.start))
            .collect();
        filter.push(format!("{:#x}+0x1", self.info.mark));
        let args = [
            "-singlestep".to_string(),
            "-d".into(),
            "exec,nochain".into(),
            "-dfilter".into(),
            filter.join(","),
            "-D".into(),
            log.display().to_string(),
        ];
        let result = self.spawn(program, &args);
        let text = std::fs::read_to_string(&log);
        let _ = std::fs::remove_file(&log);
        let (stdout, _) = result?;
        let results = self.finish(program, &stdout)?;
        let text = text.map_err(|e| EmuError::Trace(format!("{}: {e}", log.display())))?;
        let counts = trace::count_per_call(&text, self.info.mark, ranges)?;
        let calls: Vec<OpId> = program
            .ops
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == OP_CALL)
            .map(|(i, _)| OpId(i))
            .collect();
        if counts.len() != calls.len() {
            return Err(EmuError::Trace(format!(
                "{} call markers in the trace, {} calls in the program",
                counts.len(),
                calls.len()
            )));
        }
        Ok(Outcome {
            results,
            traced: calls.into_iter().zip(counts).collect(),
        })
    }

    fn finish(&self, program: &Program, stdout: &[u8]) -> Result<Vec<OpResult>, EmuError> {
        let results = decode(program, stdout)?;
        if results.len() != program.len() {
            return Err(EmuError::Harness(format!(
                "stopped after {} of {} operations",
                results.len(),
                program.len()
            )));
        }
        Ok(results)
    }

    /// Starts qemu on the harness, feeds it `program`, and collects stdout
    /// and stderr; fails if it does not exit normally in time.
    fn spawn(
        &self,
        program: &Program,
        qemu_args: &[String],
    ) -> Result<(Vec<u8>, Vec<u8>), EmuError> {
        let mut child = Command::new(&self.toolchain.qemu)
            .args(qemu_args)
            .arg(&self.exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input = program.encode();
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            stdout.read_to_end(&mut v).map(|_| v)
        });
        let mut stderr = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            v
        });
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(EmuError::Harness(format!(
                    "did not finish within {} s (killed)",
                    RUN_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // A harness that dies early closes stdin: that write error is not
        // the interesting one.
        let _ = writer.join();
        let out = reader
            .join()
            .map_err(|_| EmuError::Harness("stdout reader panicked".into()))??;
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            let done = decode(program, &out).map_or(0, |r| r.len());
            return Err(EmuError::Harness(format!(
                "exited with {status} after {done} of {} operations: {}",
                program.len(),
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok((out, err))
    }
}
