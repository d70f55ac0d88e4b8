//! Finding the emulator and the C compiler for an ISA, and the tests'
//! policy when they are missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

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
    on_path_in(name, &std::env::var_os("PATH")?)
}

fn on_path_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a test does when the tools are missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissingTools {
    /// Fail with this message.
    Fail(String),
    /// Skip, after printing this notice.
    SkipLoudly(String),
}

/// The policy for missing tools (`err`), given whether the run is CI
/// (`CI=true`) and whether `HOTCALL_SKIP_EMULATION=1` is set: CI always
/// fails; elsewhere the test fails with install instructions unless
/// skipping was asked for, and a skip says loudly that nothing was checked.
pub fn missing_tools_policy(arch: Arch, err: &EmuError, in_ci: bool, skip: bool) -> MissingTools {
    if in_ci {
        return MissingTools::Fail(format!(
            "{err}\nCI=true: the emulated tests must run; .ci/run installs the tools."
        ));
    }
    if skip {
        return MissingTools::SkipLoudly(format!(
            "\n{bar}\n!! {SKIP_ENV}=1: EMULATED {arch} TESTS SKIPPED, NOTHING WAS CHECKED\n!! {err}\n{bar}\n",
            bar = "!".repeat(72)
        ));
    }
    MissingTools::Fail(format!(
        "{err}\nInstall the tools ({}), or set {SKIP_ENV}=1 to skip the emulated tests (they then print that they did not run).",
        install_hint(arch)
    ))
}

/// The tests' policy for one more program (`name`, from the Debian package
/// in `hint`), as for the toolchain: its path, or `None` if the test may
/// skip.
pub fn tool_for_tests(arch: Arch, name: &str, hint: &'static str) -> Option<PathBuf> {
    if let Some(p) = on_path(name) {
        return Some(p);
    }
    let err = EmuError::ToolMissing {
        arch,
        tool: name.to_string(),
        hint,
    };
    apply_policy(arch, err)
}

/// The tests' policy: the toolchain for `arch`, or `None` if the test may
/// skip ([`missing_tools_policy`]: under `CI=true` missing tools always
/// fail; elsewhere they fail with instructions unless
/// `HOTCALL_SKIP_EMULATION=1`, which prints a loud notice and skips).
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
    apply_policy(arch, err)
}

fn apply_policy<T>(arch: Arch, err: EmuError) -> Option<T> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    match missing_tools_policy(arch, &err, in_ci, skip) {
        MissingTools::Fail(msg) => panic!("{msg}"),
        MissingTools::SkipLoudly(notice) => {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!` of passing tests, and this must be seen. Once per
            // process and ISA.
            static TOLD: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
            if !TOLD[arch as usize].swap(true, Ordering::Relaxed) {
                let _ = writeln!(std::io::stderr().lock(), "{notice}");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_never_pass_silently() {
        let err = EmuError::ToolMissing {
            arch: Arch::Aarch64,
            tool: "qemu-aarch64-static".into(),
            hint: install_hint(Arch::Aarch64),
        };
        let a = Arch::Aarch64;
        // CI: fail, even when asked to skip.
        for skip in [false, true] {
            let MissingTools::Fail(m) = missing_tools_policy(a, &err, true, skip) else {
                panic!("CI must fail");
            };
            assert!(
                m.contains("CI=true") && m.contains("qemu-aarch64-static"),
                "{m}"
            );
        }
        // Elsewhere: fail with what to install...
        let MissingTools::Fail(m) = missing_tools_policy(a, &err, false, false) else {
            panic!("must fail without the opt-out");
        };
        assert!(
            m.contains("gcc-aarch64-linux-gnu") && m.contains(SKIP_ENV),
            "{m}"
        );
        // ...or skip only when asked, loudly.
        let MissingTools::SkipLoudly(n) = missing_tools_policy(a, &err, false, true) else {
            panic!("the opt-out skips");
        };
        assert!(n.contains("SKIPPED, NOTHING WAS CHECKED"), "{n}");
    }

    #[test]
    fn tools_are_looked_up_on_the_given_path() {
        assert!(on_path_in("qemu-aarch64-static", "/nonexistent".as_ref()).is_none());
        assert!(on_path_in("sh", "/nonexistent:/bin:/usr/bin".as_ref()).is_some());
    }
}
