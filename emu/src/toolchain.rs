//! Finding the emulator and the C compiler for an ISA, and the tests'
//! policy when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use hotcall_jit::Arch;

use crate::error::EmuError;

/// Set to `1` to let the emulated tests skip (loudly) when the tools are
/// missing. Refused under `CI=true`.
pub const SKIP_ENV: &str = "HOTCALL_SKIP_EMULATION";

/// What to install on Debian for `arch`.
pub fn install_hint(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => {
            "apt-get install qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
        }
        Arch::X86_64 => "apt-get install qemu-user-static gcc libc6-dev",
    }
}

/// The programs that build and run the harness for one ISA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    pub arch: Arch,
    /// A C compiler producing static executables for `arch`.
    pub cc: PathBuf,
    /// qemu-user for `arch`.
    pub qemu: PathBuf,
}

impl Toolchain {
    /// Finds the tools on `PATH`: `qemu-<isa>-static` (or `qemu-<isa>`)
    /// and `aarch64-linux-gnu-gcc` or, for x86-64, `cc`.
    pub fn find(arch: Arch) -> Result<Self, EmuError> {
        let (qemus, ccs): (&[&str], &[&str]) = match arch {
            Arch::Aarch64 => (
                &["qemu-aarch64-static", "qemu-aarch64"],
                &["aarch64-linux-gnu-gcc"],
            ),
            Arch::X86_64 => (&["qemu-x86_64-static", "qemu-x86_64"], &["cc", "gcc"]),
        };
        let missing = |what: &[&str]| EmuError::ToolMissing {
            arch,
            tool: what.join(" or "),
            hint: install_hint(arch),
        };
        let qemu = qemus
            .iter()
            .find_map(|n| on_path(n))
            .ok_or_else(|| missing(qemus))?;
        let cc = ccs
            .iter()
            .find_map(|n| on_path(n))
            .ok_or_else(|| missing(ccs))?;
        Ok(Toolchain { arch, cc, qemu })
    }

    /// The assembler of the cross toolchain, next to the compiler
    /// (`aarch64-linux-gnu-as`), used to check hand-encoded sequences.
    pub fn assembler(&self) -> Option<PathBuf> {
        let name = self.cc.file_name()?.to_str()?;
        let prefix = name.strip_suffix("gcc")?;
        on_path(&format!("{prefix}as"))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tests' policy: the toolchain for `arch`, or `None` if the tests may
/// skip. Missing tools fail the calling test with instructions, except
/// outside CI with `HOTCALL_SKIP_EMULATION=1`, where this prints a loud
/// notice and returns `None`. Under `CI=true` missing tools always fail.
pub fn toolchain_for_tests(arch: Arch) -> Option<Toolchain> {
    let err = match Toolchain::find(arch) {
        Ok(t) => {
            // The tools exist; make sure they run (a broken install fails
            // here with its own message rather than deep inside a test).
            let ok = Command::new(&t.qemu)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "{} does not run", t.qemu.display());
            return Some(t);
        }
        Err(e) => e,
    };
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    if in_ci {
        panic!("{err}\nCI=true: the emulated tests must run; .ci/run installs the tools.");
    }
    if skip {
        eprintln!(
            "\n{bar}\n!! {SKIP_ENV}=1: EMULATED {arch} TESTS SKIPPED, NOTHING WAS CHECKED\n!! {err}\n{bar}\n",
            bar = "!".repeat(72)
        );
        return None;
    }
    panic!(
        "{err}\nInstall the tools ({}), or set {SKIP_ENV}=1 to skip the emulated tests (they then print that they did not run).",
        install_hint(arch)
    );
}
