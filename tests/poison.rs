//! Freed thunks are poisoned: their bytes become trap instructions, and a
//! stale entry crashes (SIGTRAP) instead of running whatever comes next.

use std::process::Command;

use hotcall::{Engine, EngineConfig, PolicyConfig, SiteOptions, collect_garbage};
use hotcall_jit::Arch;

type Callback = extern "C" fn(u64) -> u64;

extern "C" fn a(x: u64) -> u64 {
    x + 1
}
extern "C" fn b(x: u64) -> u64 {
    x + 2
}

/// An engine and a site whose only thunks are the ones the test promotes:
/// no learning probe at creation and no background ticks, so that the one
/// release `retire_one` waits for can only be the first thunk's.
fn engine_and_site() -> (Engine, hotcall::Site<Callback>) {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.site_with::<Callback>(SiteOptions::new().policy(PolicyConfig::Off));
    (engine, site)
}

/// Promotes `a`, then `b`, and waits until the first thunk is freed.
/// Returns the first thunk's entry and size.
fn retire_one(engine: &Engine, site: &hotcall::Site<Callback>) -> (usize, usize) {
    let first = site.promote(&[a]).unwrap();
    let released_before = engine.stats().code.released_total;
    site.promote(&[b]).unwrap();
    // Wait by time: reclamation depends on every pinned thread of the
    // process, including other tests'.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        collect_garbage();
        if engine.stats().code.released_total > released_before {
            return (first.entry, first.code_bytes);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the retired thunk was never freed");
}

#[test]
fn freed_thunk_bytes_are_traps() {
    let (engine, site) = engine_and_site();
    let (entry, len) = retire_one(&engine, &site);
    // SAFETY: inside this engine's code memory; this test is the only user
    // of its engine, and nothing installs code while we read.
    let bytes = unsafe { engine.read_code(entry, len) }.expect("in code memory");
    let poison = Arch::host().unwrap().backend().poison_pattern();
    assert!(
        bytes.chunks(poison.len()).all(|c| c == poison),
        "freed thunk not poisoned: {bytes:02x?}"
    );
    // The site still works through its new thunk.
    let pinned = engine.pin();
    assert_eq!(site.call(&pinned, b, (1,)), 3);
    assert_eq!(site.call(&pinned, a, (1,)), 2);
}

const CHILD_ENV: &str = "HOTCALL_POISON_CHILD";

/// Runs only in the child process started by `stale_entry_crashes`: calls a
/// freed thunk through its stale address.
#[test]
fn child_calls_freed_thunk() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (engine, site) = engine_and_site();
    let (entry, _) = retire_one(&engine, &site);
    eprintln!("child: calling freed thunk at {entry:#x}");
    // SAFETY: deliberately unsound — this calls freed code to show that it
    // traps. It runs only in a child process whose death is the expected
    // outcome; `entry` is still mapped (poisoned), so it cannot run
    // unrelated memory.
    let stale: extern "C" fn(Callback, u64) -> u64 = unsafe { std::mem::transmute(entry) };
    let r = stale(a, 1);
    eprintln!("child: freed thunk returned {r}: poisoning is broken");
    std::process::exit(0);
}

#[test]
fn stale_entry_crashes() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_calls_freed_thunk",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("spawn child test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("child: calling freed thunk"),
        "child did not reach the call: {stderr}"
    );
    // x86-64 `int3` and aarch64 `brk` both raise SIGTRAP.
    assert_eq!(
        out.status.signal(),
        Some(5),
        "child should die of SIGTRAP, got {:?}; stderr: {stderr}",
        out.status
    );
}
