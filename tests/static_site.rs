//! Static sites: the stub is reached by a direct call, retargeted in place,
//! and dispatches correctly in every mode; the whole hit path (caller,
//! stub, thunk) decodes without a single indirect branch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hotcall::{Engine, StaticMode, static_site};
use hotcall_jit::disasm::{disassemble_reachable, render};
use hotcall_jit::{Arch, Branch};

type Callback = extern "C" fn(u64, f64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: u64, y: f64) -> u64 {
            x.wrapping_mul($k) ^ y.to_bits().rotate_left($k)
        })*
        const TARGETS: [Callback; 4] = [$($name),*];
    };
}
targets!(t0 = 3, t1 = 5, t2 = 7, t3 = 11);

fn engine() -> &'static Engine {
    static E: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    E.get_or_init(Engine::new)
}

fn check_all<S: Fn(Callback, u64, f64) -> u64>(call: S, ctx: &str) {
    for (k, f) in TARGETS.iter().enumerate() {
        for (x, y) in [
            (0u64, 0.0f64),
            (1, -1.5),
            (u64::MAX, f64::NAN),
            (12345, 1e300),
        ] {
            assert_eq!(call(*f, x, y), f(x, y), "{ctx}: target {k}, ({x}, {y})");
        }
    }
}

static_site! {
    static MODES: extern "C" fn(u64, f64) -> u64;
}

#[test]
fn every_mode_dispatches_correctly() {
    // Pins per call: `wait` below needs this thread unpinned.
    let call = |f, x, y| MODES.call(&engine().pin(), f, (x, y));
    assert_eq!(MODES.stats().mode, StaticMode::Unbound);
    check_all(call, "unbound");

    let report = MODES.promote(engine(), &TARGETS[..2]).unwrap();
    assert_eq!(MODES.jumps_to().unwrap(), report.entry);
    check_all(call, "JIT, 2 slots");
    MODES.promote(engine(), &[t3, t2, t1]).unwrap();
    check_all(call, "JIT, 3 slots");

    MODES.demote().unwrap();
    assert_eq!(MODES.stats().mode, StaticMode::Indirect);
    assert_eq!(
        MODES.jumps_to().unwrap(),
        hotcall::static_entry::miss_plain as *const () as usize
    );
    check_all(call, "demoted");

    MODES.use_patch(engine(), 2).unwrap();
    check_all(call, "Patch, all slots disabled");
    MODES.retarget(&[t1, t0]).unwrap();
    check_all(call, "Patch, pending");
    assert!(MODES.wait(Duration::from_secs(10)));
    check_all(call, "Patch, enabled");
    let StaticMode::Patch(p) = MODES.stats().mode else {
        panic!("{}", MODES.stats())
    };
    assert_eq!(MODES.jumps_to().unwrap(), p.entry);
    assert_eq!(p.slots[0].enabled, Some(t1 as *const () as usize));
    assert_eq!(p.slots[1].enabled, Some(t0 as *const () as usize));
    eprintln!("{}", MODES.stats());

    // Back to JIT: the Patch thunk is retired.
    MODES.promote(engine(), &[t0]).unwrap();
    check_all(call, "JIT again");
    // Another engine cannot take the site over.
    let other = Engine::new();
    let e = MODES.promote(&other, &[t0]).unwrap_err().to_string();
    assert!(e.contains("already bound"), "{e}");
    check_all(call, "after a refused rebind");
}

static_site! {
    static DECODED: extern "C" fn(u64, f64) -> u64;
}

/// The caller of a static site, kept out of line so its bytes can be
/// decoded.
#[inline(never)]
fn call_decoded(pinned: &hotcall::Pinned, f: Callback, x: u64) -> u64 {
    DECODED.call(pinned, f, (x, 2.0))
}

fn code_of(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: reading code of this binary or of the engine's code memory
    // (mapped readable); nothing writes it during the test.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len).to_vec() }
}

/// Decodes the caller, the stub and the thunk and checks that the path of
/// a slot-0 hit is: direct call to the stub, direct jump to the thunk,
/// compare, direct jump to the target. No indirect branch anywhere on it.
#[test]
fn hit_path_has_no_indirect_branch() {
    let arch = Arch::host().unwrap();
    let report = DECODED.promote(engine(), &[t0, t1]).unwrap();
    let pinned = engine().pin();
    assert_eq!(call_decoded(&pinned, t0, 9), t0(9, 2.0));

    // 1. The caller: one direct call to the stub, no indirect branch.
    let caller = call_decoded as *const () as usize;
    let insns = disassemble_reachable(arch, &code_of(caller, 4096), caller as u64).unwrap();
    let listing = render(&insns);
    let stub = DECODED.stub_address() as u64;
    assert!(
        insns.iter().any(|i| i.branch == Branch::DirectCall(stub)),
        "no direct call to the stub {stub:#x}:\n{listing}"
    );
    // Unoptimized builds call core's panic functions (bounds and overflow
    // checks, off the hit path) through the GOT, so the caller is checked
    // whole only when optimized (`cargo test --release --test static_site`).
    if !cfg!(debug_assertions) {
        assert!(
            !insns
                .iter()
                .any(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump)),
            "indirect branch in the caller:\n{listing}"
        );
    }

    // 2. The stub: (nops and) one direct jump to the thunk.
    let insns = disassemble_reachable(arch, &code_of(stub as usize, 16), stub).unwrap();
    let listing = render(&insns);
    let last = insns.last().unwrap();
    assert_eq!(
        last.branch,
        Branch::Jump {
            target: report.entry as u64,
            conditional: false
        },
        "{listing}"
    );
    assert!(
        insns[..insns.len() - 1]
            .iter()
            .all(|i| i.branch == Branch::Other)
    );

    // 3. The thunk: slot 0 is a straight line ending in a direct jump to t0;
    //    the only indirect branch is the miss path's.
    let entry = report.entry as u64;
    let end = entry + report.code_bytes as u64;
    let thunk =
        disassemble_reachable(arch, &code_of(report.entry, report.code_bytes), entry).unwrap();
    let listing = render(&thunk);
    let first_exit = thunk
        .iter()
        .position(|i| i.direct_exit(entry, end).is_some())
        .unwrap();
    assert_eq!(
        thunk[first_exit].direct_exit(entry, end),
        Some(t0 as *const () as u64),
        "{listing}"
    );
    assert!(
        thunk[..first_exit].iter().all(|i| matches!(
            i.branch,
            Branch::Other
                | Branch::Jump {
                    conditional: true,
                    ..
                }
        )),
        "slot 0 is a straight line:\n{listing}"
    );
    let indirect = thunk
        .iter()
        .filter(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump))
        .count();
    assert_eq!(indirect, 1, "only the miss path:\n{listing}");
}

static_site! {
    static UNDER_LOAD: extern "C" fn(u64, f64) -> u64;
}

/// Callers keep calling while the stub is retargeted thousands of times
/// (JIT republishes and switches to and from a Patch thunk).
#[test]
fn stub_retargeting_under_load() {
    const REPUBLISHES: usize = 3_000;
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    UNDER_LOAD.promote(engine(), &TARGETS[..1]).unwrap();
    std::thread::scope(|s| {
        for id in 0..2u64 {
            let (stop, calls, wrong) = (&stop, &calls, &wrong);
            s.spawn(move || {
                let mut pinned = engine().pin();
                let mut x = id + 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let f = TARGETS[(x % 4) as usize];
                    let got = UNDER_LOAD.call(&pinned, f, (x, 0.5));
                    if got != f(x, 0.5) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(got | 1);
                    n += 1;
                    if n.is_multiple_of(32) {
                        pinned.quiesce();
                    }
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
        for i in 0..REPUBLISHES {
            if i % 500 == 250 {
                UNDER_LOAD.use_patch(engine(), 2).unwrap();
                UNDER_LOAD
                    .retarget(&[TARGETS[i % 4], TARGETS[(i + 1) % 4]])
                    .unwrap();
            } else if i % 97 == 0 {
                UNDER_LOAD.demote().unwrap();
            } else {
                let n = i % 4 + 1;
                let set: Vec<Callback> = (0..n).map(|k| TARGETS[(i + k) % 4]).collect();
                UNDER_LOAD.promote(engine(), &set).unwrap();
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (calls, wrong) = (calls.into_inner(), wrong.into_inner());
    eprintln!("{REPUBLISHES} stub retargets, {calls} calls, {wrong} wrong");
    assert_eq!(wrong, 0);
    assert!(calls > 10_000, "{calls}");
    assert!(UNDER_LOAD.stats().stub_writes >= REPUBLISHES as u64);
}

// Every signature shape the asm call supports for static entries: integer
// counts 0 to 5 (the thunk ABI then fills all six integer registers), and
// floats up to eight, narrow types, pointers and every return kind.
macro_rules! shape_sites {
    ($($site:ident: fn($($a:ident: $t:ty),*) -> $r:ty = $body:expr;)*) => {
        $(
            static_site! {
                static $site: extern "C" fn($($t),*) -> $r;
            }
        )*

        #[test]
        fn signature_shapes() {
            let pinned = engine().pin();
            $({
                extern "C" fn one($($a: $t),*) -> $r { $body }
                extern "C" fn two($($a: $t),*) -> $r { let v = $body; std::hint::black_box(v) }
                type F = extern "C" fn($($t),*) -> $r;
                let (one, two): (F, F) = (one, two);
                let args = ($(std::hint::black_box(<$t as Arg>::sample(stringify!($a))),)*);
                let ($($a,)*) = args;
                for mode in 0..3 {
                    match mode {
                        0 => {}
                        1 => { $site.promote(engine(), &[one]).unwrap(); }
                        _ => { $site.promote(engine(), &[two]).unwrap(); }
                    }
                    for f in [one, two] {
                        let got = $site.call(&pinned, f, args);
                        let want = f($($a),*);
                        assert!(Arg::same(got, want), "{} mode {mode}: {got:?} != {want:?}", stringify!($site));
                    }
                }
            })*
        }
    };
}

trait Arg: Copy + std::fmt::Debug {
    fn sample(name: &str) -> Self;
    fn same(a: Self, b: Self) -> bool;
}
macro_rules! arg_ints {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn sample(name: &str) -> Self {
                (name.len() as i64 * -0x1234_5678_9abc) as $t
            }
            fn same(a: Self, b: Self) -> bool { a == b }
        }
    )*};
}
arg_ints!(i8, i16, i32, i64, u8, u16, u32, u64);
impl Arg for bool {
    fn sample(name: &str) -> Self {
        name.len() % 2 == 1
    }
    fn same(a: Self, b: Self) -> bool {
        a == b
    }
}
impl Arg for f32 {
    fn sample(name: &str) -> Self {
        -(name.len() as f32) * 1.25
    }
    fn same(a: Self, b: Self) -> bool {
        a.to_bits() == b.to_bits()
    }
}
impl Arg for f64 {
    fn sample(name: &str) -> Self {
        name.len() as f64 / 3.0
    }
    fn same(a: Self, b: Self) -> bool {
        a.to_bits() == b.to_bits()
    }
}
impl Arg for *const u8 {
    fn sample(name: &str) -> Self {
        name.as_ptr()
    }
    fn same(a: Self, b: Self) -> bool {
        a == b
    }
}
impl Arg for () {
    fn sample(_: &str) -> Self {}
    fn same(_: Self, _: Self) -> bool {
        true
    }
}

shape_sites! {
    S_NONE: fn() -> u64 = 42;
    S_UNIT: fn(a: u64) -> () = { std::hint::black_box(a); };
    S_I8: fn(a: i8) -> i8 = a.wrapping_mul(3);
    S_U16_BOOL: fn(a: u16, b: bool) -> u16 = if b { a ^ 0xff } else { a };
    S_FLOATS: fn(a: f32, b: f64) -> f64 = a as f64 * b;
    S_F32_RET: fn(a: f64) -> f32 = a as f32 + 1.0;
    S_PTR: fn(a: *const u8, b: u64) -> *const u8 = a.wrapping_add(b as usize % 7);
    S_FIVE_INTS: fn(a: i64, b: u32, c: i16, d: u8, e: u64) -> i64 =
        a ^ (b as i64) << 1 ^ (c as i64) << 2 ^ (d as i64) << 3 ^ (e as i64) << 4;
    S_EIGHT_FLOATS: fn(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64) -> f64 =
        a + 2.0 * b + 3.0 * c + 4.0 * d + 5.0 * e + 6.0 * f + 7.0 * g + 8.0 * h;
    S_MIXED: fn(a: f32, b: i8, c: f64, d: u64, e: bool, f: f32, g: i32) -> u64 =
        (a as f64 + c + f as f64) as i64 as u64 ^ b as u64 ^ d ^ e as u64 ^ g as u64;
}
