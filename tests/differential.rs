//! Differential tests: a call through a site's thunk returns exactly what a
//! plain call of the same function pointer returns.
//!
//! * Every case is a site signature. For it, twelve targets of that
//!   signature are stamped out from one generic `extern "C" fn` with a const
//!   parameter `K`; each folds its arguments into a 64-bit hash that depends
//!   on `K`, on every argument's full value and on its position
//!   ([`hash_args`]), records `(K, hash)` in a thread-local, and derives its
//!   return value from the hash. A swapped, truncated or mis-extended
//!   argument, a call to the wrong target or a mangled return value is
//!   therefore caught, even for `()` returns (through the record).
//! * For 0 to 8 promoted slots, on an engine placed near the host text
//!   (direct calls) and on one placed anywhere (absolute calls), every
//!   promoted slot is hit and at least four targets miss, with edge values
//!   (`i8::MIN`, `u64::MAX`, `-0.0`, NaN payloads, null pointers, ...) in
//!   every position plus splitmix64-generated tuples. Results are compared
//!   bitwise with the plain call and with the model.
//! * Debug-built Rust callees re-extend narrow arguments themselves, so they
//!   cannot see whether the thunk extended `i8`/`u16`/`bool` arguments as
//!   clang and LLVM expect on x86-64 (optimized LLVM callees rely on it). A
//!   naked probe that records the raw argument registers and stack slots
//!   checks that directly.
//! * At the jit level, every value type compiles for x86-64 and aarch64 with
//!   0 to 8 slots, with direct calls for targets in reach of the placement
//!   and absolute calls for targets out of it.

use std::cell::Cell;
use std::fmt::Debug;
use std::ptr;
use std::sync::OnceLock;

#[macro_use]
mod common;

use hotcall::{
    Arch, CallForm, Engine, EngineConfig, Param, PromoteReport, Return, SiteFn, SiteMode,
    SiteStats, ThunkSig, ValType,
};
use hotcall_jit::{self as jit, CompilerOptions, MAX_SLOTS, ThunkCompiler};

// ------------------------------------------------------------ model

// The target model (`hash_args`), the generator and the edge values are
// shared with the emulated aarch64 suite: `hotcall_emu::model`.
use hotcall_emu::model::{self, SplitMix64, hash_args, seed_of};

thread_local! {
    /// The last call of a stamped target on this thread: `(K, hash)`.
    static LAST_CALL: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

fn record(k: u64, h: u64) {
    LAST_CALL.set(Some((k, h)));
}

fn take_last_call() -> Option<(u64, u64)> {
    LAST_CALL.take()
}

// ------------------------------------------------------------ value types

/// A parameter type the tests can generate and fold into a hash.
trait Val: Param + Debug {
    /// The full value as a `u64`: signed integers sign-extended, unsigned
    /// ones zero-extended, floats by their bits, pointers by address (the
    /// model's *mix*).
    fn mix(self) -> u64;
    /// The value whose mix is `m` (`m` canonical for the type).
    fn from_mix(m: u64) -> Self;
    /// The values that catch ABI extension and register-class bugs: the
    /// model's edges of this type.
    fn edges() -> Vec<Self> {
        model::edges(Self::TYPE)
            .into_iter()
            .map(Self::from_mix)
            .collect()
    }
    fn random(rng: &mut SplitMix64) -> Self {
        Self::from_mix(model::random(Self::TYPE, rng))
    }
}

/// A return type the tests can predict and compare bitwise.
trait Out: Return + Copy + Debug {
    fn from_hash(h: u64) -> Self;
    fn bits(self) -> u64;
}

macro_rules! int_vals {
    ($($t:ty),* $(,)?) => {$(
        impl Val for $t {
            #[allow(clippy::unnecessary_cast)]
            fn mix(self) -> u64 {
                self as i64 as u64
            }
            fn from_mix(m: u64) -> Self {
                m as $t
            }
        }
        impl Out for $t {
            fn from_hash(h: u64) -> Self {
                h as $t
            }
            #[allow(clippy::unnecessary_cast)]
            fn bits(self) -> u64 {
                self as i64 as u64
            }
        }
    )*};
}

int_vals!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl Val for bool {
    fn mix(self) -> u64 {
        u64::from(self)
    }
    fn from_mix(m: u64) -> Self {
        m != 0
    }
}

impl Out for bool {
    fn from_hash(h: u64) -> Self {
        h & 1 == 1
    }
    fn bits(self) -> u64 {
        u64::from(self)
    }
}

impl Val for f32 {
    fn mix(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn from_mix(m: u64) -> Self {
        f32::from_bits(m as u32)
    }
}

impl Out for f32 {
    fn from_hash(h: u64) -> Self {
        f32::from_bits(model::from_hash(ValType::F32, h) as u32)
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
}

impl Val for f64 {
    fn mix(self) -> u64 {
        self.to_bits()
    }
    fn from_mix(m: u64) -> Self {
        f64::from_bits(m)
    }
}

impl Out for f64 {
    fn from_hash(h: u64) -> Self {
        f64::from_bits(model::from_hash(ValType::F64, h))
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

/// A real object for non-null pointer arguments, next to the model's
/// pointer edges (null, odd and high addresses).
static ANCHOR: u8 = 0;

impl Val for *const u8 {
    fn mix(self) -> u64 {
        self.addr() as u64
    }
    fn from_mix(m: u64) -> Self {
        ptr::without_provenance(m as usize)
    }
    fn edges() -> Vec<Self> {
        let mut v: Vec<Self> = model::edges(ValType::Ptr)
            .into_iter()
            .map(Self::from_mix)
            .collect();
        v.push(ptr::addr_of!(ANCHOR));
        v
    }
}

impl Out for *const u8 {
    fn from_hash(h: u64) -> Self {
        ptr::without_provenance(h as usize)
    }
    fn bits(self) -> u64 {
        self.addr() as u64
    }
}

impl Val for *mut u8 {
    fn mix(self) -> u64 {
        self.addr() as u64
    }
    fn from_mix(m: u64) -> Self {
        ptr::without_provenance_mut(m as usize)
    }
    fn edges() -> Vec<Self> {
        let mut v: Vec<Self> = model::edges(ValType::Ptr)
            .into_iter()
            .map(Self::from_mix)
            .collect();
        v.push(ptr::addr_of!(ANCHOR).cast_mut());
        v
    }
}

impl Out for *mut u8 {
    fn from_hash(h: u64) -> Self {
        ptr::without_provenance_mut(h as usize)
    }
    fn bits(self) -> u64 {
        self.addr() as u64
    }
}

impl Out for () {
    fn from_hash(_: u64) -> Self {}
    fn bits(self) -> u64 {
        0
    }
}

/// A random value, an edge value one time in four.
fn pick<T: Val>(rng: &mut SplitMix64) -> T {
    if rng.below(4) == 0 {
        let edges = T::edges();
        edges[rng.below(edges.len())]
    } else {
        T::random(rng)
    }
}

fn edge_at<T: Val>(i: usize) -> T {
    let edges = T::edges();
    edges[i % edges.len()]
}

// ------------------------------------------------------------ argument tuples

/// A site's argument tuple.
trait ArgTuple: Copy + Debug {
    fn mixes(&self) -> Vec<u64>;
    fn random(rng: &mut SplitMix64) -> Self;
    /// Tuple `i` of the edge series: position `j` holds edge `i + 5j` of its
    /// type, so `EDGE_TUPLES` consecutive tuples put every edge value in
    /// every position, next to varying neighbours.
    fn edge(i: usize) -> Self;
}

impl ArgTuple for () {
    fn mixes(&self) -> Vec<u64> {
        Vec::new()
    }
    fn random(_: &mut SplitMix64) -> Self {}
    fn edge(_: usize) -> Self {}
}

macro_rules! impl_arg_tuple {
    ($($A:ident $i:tt),+) => {
        impl<$($A: Val),+> ArgTuple for ($($A,)+) {
            fn mixes(&self) -> Vec<u64> {
                vec![$(self.$i.mix()),+]
            }
            fn random(rng: &mut SplitMix64) -> Self {
                ($(pick::<$A>(rng),)+)
            }
            fn edge(i: usize) -> Self {
                ($(edge_at::<$A>(i + 5 * $i),)+)
            }
        }
    };
}

impl_arg_tuple!(A0 0);
impl_arg_tuple!(A0 0, A1 1);
impl_arg_tuple!(A0 0, A1 1, A2 2);
impl_arg_tuple!(A0 0, A1 1, A2 2, A3 3);
impl_arg_tuple!(A0 0, A1 1, A2 2, A3 3, A4 4);
impl_arg_tuple!(A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);
impl_arg_tuple!(A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6);
impl_arg_tuple!(A0 0, A1 1, A2 2, A3 3, A4 4, A5 5, A6 6, A7 7);

/// A site type the tests can drive, with a plain call as the reference.
trait Case: SiteFn<Args: ArgTuple, Ret: Out> {
    /// The plain call, written out in Rust (not through the library).
    fn plain(self, args: Self::Args) -> Self::Ret;
}

macro_rules! impl_case {
    ($($a:ident: $A:ident),*) => {
        impl<R: Out, $($A: Val),*> Case for extern "C" fn($($A),*) -> R {
            fn plain(self, args: Self::Args) -> R {
                let ($($a,)*) = args;
                self($($a),*)
            }
        }
    };
}

impl_case!();
impl_case!(a0: A0);
impl_case!(a0: A0, a1: A1);
impl_case!(a0: A0, a1: A1, a2: A2);
impl_case!(a0: A0, a1: A1, a2: A2, a3: A3);
impl_case!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4);
impl_case!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5);
impl_case!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5, a6: A6);
impl_case!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5, a6: A6, a7: A7);

// ------------------------------------------------------------ engines

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// The default engine: code memory near the host text.
    NearHost,
    /// `Placement::Anywhere`: code memory where the kernel puts it.
    Anywhere,
    /// Near the host text, hardened: the thunk's miss path, the site's
    /// entry into the thunk and its plain calls go through the retpoline.
    Hardened,
}

/// One engine of each kind for the whole test binary (each promote compiles
/// with Cranelift; engines are not worth re-creating).
fn engine(w: Where) -> &'static Engine {
    static NEAR: OnceLock<Engine> = OnceLock::new();
    static FAR: OnceLock<Engine> = OnceLock::new();
    static HARD: OnceLock<Engine> = OnceLock::new();
    let e = match w {
        // Manual schedules: nothing but these tests changes the sites.
        Where::NearHost => NEAR.get_or_init(|| Engine::with_config(EngineConfig::manual())),
        Where::Hardened => HARD.get_or_init(|| {
            Engine::with_config(EngineConfig {
                hardened: true,
                ..EngineConfig::manual()
            })
        }),
        Where::Anywhere => FAR.get_or_init(|| {
            Engine::with_config(EngineConfig {
                placement: hotcall::Placement::Anywhere,
                ..EngineConfig::manual()
            })
        }),
    };
    assert!(e.is_enabled(), "code generation is disabled: {}", e.stats());
    e
}

fn host_reach() -> u64 {
    Arch::host()
        .expect("hotcall runs on x86_64 and aarch64")
        .backend()
        .direct_call_reach()
}

fn distance(a: usize, b: usize) -> u64 {
    a.abs_diff(b) as u64
}

/// Checks what a promote installed: the slots in order, and call forms that
/// agree with the distance between the thunk and each target.
fn check_installed(
    ctx: &str,
    w: Where,
    report: &PromoteReport,
    stats: &SiteStats,
    promoted: &[usize],
    all_in_host: bool,
) {
    assert_eq!(stats.mode, SiteMode::Thunk, "{ctx}: {stats}");
    assert_eq!(stats.entry, Some(report.entry), "{ctx}: {stats}");
    assert_eq!(stats.slots, report.slots, "{ctx}: {stats}");
    assert_eq!(stats.last_error, None, "{ctx}: {stats}");
    assert_eq!(stats.failures, 0, "{ctx}: {stats}");
    let installed: Vec<usize> = stats.slots.iter().map(|s| s.target).collect();
    assert_eq!(installed, promoted, "{ctx}: slots out of order: {stats}");
    let reach = host_reach();
    let near_host_text = engine(w).stats().code.near_host_text;
    for (i, s) in stats.slots.iter().enumerate() {
        let d = distance(s.target, report.entry);
        match s.form {
            CallForm::Direct => assert!(
                d < reach,
                "{ctx}: slot {i} is direct but {d:#x} bytes away: {stats}"
            ),
            CallForm::Absolute => {}
        }
        if d >= reach {
            assert_eq!(s.form, CallForm::Absolute, "{ctx}: slot {i}: {stats}");
        }
        // Functions of this test binary (the host) are in reach of code
        // memory placed near the host text.
        if w != Where::Anywhere && near_host_text && all_in_host {
            assert_eq!(s.form, CallForm::Direct, "{ctx}: slot {i}: {stats}");
        }
    }
}

// ------------------------------------------------------------ the differential run

use common::cases::{EDGE_TUPLES, POOL, RANDOM_TUPLES};

/// Every target on every tuple through `site` agrees with the plain call
/// and the model (whatever the site currently runs).
fn check_calls<F: Case>(
    site: &hotcall::Site<F>,
    targets: &[F; POOL],
    tuples: &[F::Args],
    ctx: &str,
) {
    let pinned = hotcall::Pinned::new();
    for args in tuples {
        let mixes = args.mixes();
        for (k, &f) in targets.iter().enumerate() {
            let plain = f.plain(*args);
            take_last_call();
            let got = site.call(&pinned, f, *args);
            let called = take_last_call();
            assert!(
                called == Some((k as u64, hash_args(k as u64, &mixes)))
                    && got.bits() == plain.bits(),
                "{ctx}: target {k}, args {args:?}: got {got:?}, plain {plain:?}, target saw {called:x?}"
            );
        }
    }
}

fn run_case<F: Case>(name: &str, targets: &[F; POOL]) {
    let addrs: Vec<usize> = targets.iter().map(|f| f.addr()).collect();
    for (i, a) in addrs.iter().enumerate() {
        assert!(
            !addrs[..i].contains(a),
            "{name}: targets {i} and {} share an address",
            addrs.iter().position(|b| b == a).unwrap()
        );
    }
    assert!(EDGE_TUPLES >= model::longest_edge_list());
    let mut rng = SplitMix64(seed_of(name));
    let mut tuples: Vec<F::Args> = (0..EDGE_TUPLES).map(F::Args::edge).collect();
    tuples.extend((0..RANDOM_TUPLES).map(|_| F::Args::random(&mut rng)));

    for w in [Where::NearHost, Where::Anywhere, Where::Hardened] {
        let engine = engine(w);
        let site = engine.named_site::<F>(name);
        // A learning site starts as a probe: a thunk with no slots that
        // counts every call. It must already call correctly.
        let probe = site.stats();
        assert_eq!(
            (probe.mode, probe.slots.len(), probe.counting),
            (SiteMode::Thunk, 0, hotcall::Counting::All),
            "{name}: {probe}"
        );
        check_calls(&site, targets, &tuples, &format!("{name} probe ({w:?})"));
        for slots in 0..=MAX_SLOTS {
            // A different window of the pool for each slot count, so the
            // promoted targets and their order vary.
            let order: Vec<usize> = (0..slots).map(|j| (slots * 5 + j) % POOL).collect();
            let promoted: Vec<F> = order.iter().map(|&k| targets[k]).collect();
            let ctx = format!("{name} {} ({w:?}, {slots} slots)", site.signature());
            let report = site
                .promote(&promoted)
                .unwrap_or_else(|e| panic!("{ctx}: promote failed: {e}\n{}", site.stats()));
            let promoted_addrs: Vec<usize> = order.iter().map(|&k| addrs[k]).collect();
            check_installed(&ctx, w, &report, &site.stats(), &promoted_addrs, true);

            let pinned = engine.pin();
            let mut hits = [0usize; MAX_SLOTS];
            let mut misses = 0usize;
            for args in &tuples {
                let mixes = args.mixes();
                for (k, &f) in targets.iter().enumerate() {
                    let h = hash_args(k as u64, &mixes);
                    let want = <F::Ret as Out>::from_hash(h);
                    let slot = order.iter().position(|&o| o == k);
                    let what = match slot {
                        Some(s) => format!("hit on slot {s}"),
                        None => "miss".to_string(),
                    };

                    take_last_call();
                    let plain = f.plain(*args);
                    assert_eq!(
                        (take_last_call(), plain.bits()),
                        (Some((k as u64, h)), want.bits()),
                        "{ctx}: the plain call of target {k} disagrees with the model, args {args:?}"
                    );

                    let got = site.call(&pinned, f, *args);
                    let called = take_last_call();
                    assert!(
                        called == Some((k as u64, h)) && got.bits() == plain.bits(),
                        "{ctx}: {what}, target {k}, args {args:?}:\n  \
                         through the thunk: returned {got:?} (bits {:#x}), target saw {called:x?}\n  \
                         plain call:        returned {plain:?} (bits {:#x}), target saw {:x?}",
                        got.bits(),
                        plain.bits(),
                        Some((k as u64, h)),
                    );
                    match slot {
                        Some(s) => hits[s] += 1,
                        None => misses += 1,
                    }
                }
            }
            assert!(
                hits[..slots].iter().all(|&n| n == tuples.len()),
                "{ctx}: {hits:?}"
            );
            assert_eq!(misses, (POOL - slots) * tuples.len(), "{ctx}");
        }

        // Demoted, the site is a plain indirect call and still agrees.
        site.demote();
        assert_eq!(site.stats().mode, SiteMode::PlainIndirect);
        let pinned = engine.pin();
        for (k, &f) in targets.iter().enumerate() {
            let args = tuples[k % tuples.len()];
            assert_eq!(
                site.call(&pinned, f, args).bits(),
                f.plain(args).bits(),
                "{name} ({w:?}) demoted, target {k}"
            );
        }
    }
    for w in [Where::NearHost, Where::Hardened] {
        run_patch_case(name, targets, &addrs, &tuples, w);
    }
    hotcall::collect_garbage();
}

/// The same comparison through a Patch site of each slot count, after its
/// retarget completed (every promoted slot enabled, so hits take the
/// patched branches) and, for the first slot count, while it is pending.
fn run_patch_case<F: Case>(
    name: &str,
    targets: &[F; POOL],
    addrs: &[usize],
    tuples: &[F::Args],
    w: Where,
) {
    let engine = engine(w);
    for slots in 1..=MAX_SLOTS {
        let ctx = format!("{name} Patch ({w:?}, {slots} slots)");
        let site = engine
            .named_patch_site::<F>(name, slots)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let order: Vec<usize> = (0..slots).map(|j| (slots * 3 + j) % POOL).collect();
        let promoted: Vec<F> = order.iter().map(|&k| targets[k]).collect();
        site.retarget(&promoted)
            .unwrap_or_else(|e| panic!("{ctx}: retarget failed: {e}"));
        let check = |phase: &str| {
            let pinned = engine.pin();
            for args in tuples {
                let mixes = args.mixes();
                for (k, &f) in targets.iter().enumerate() {
                    let h = hash_args(k as u64, &mixes);
                    let got = site.call(&pinned, f, *args);
                    let called = take_last_call();
                    let want = <F::Ret as Out>::from_hash(h);
                    assert!(
                        called == Some((k as u64, h)) && got.bits() == want.bits(),
                        "{ctx} ({phase}): target {k}, args {args:?}: returned {got:?}, target saw {called:x?}, want {want:?}"
                    );
                }
            }
        };
        if slots == 1 {
            check("pending");
        }
        assert!(
            site.wait(std::time::Duration::from_secs(30)),
            "{ctx}: retarget never completed"
        );
        let stats = site.stats();
        let enabled: Vec<Option<usize>> = stats.slots.iter().map(|s| s.enabled).collect();
        let want: Vec<Option<usize>> = order.iter().map(|&k| Some(addrs[k])).collect();
        assert_eq!(enabled, want, "{ctx}: {stats}");
        check("enabled");
    }
}

/// Stamps out test cases: `name: (param types) -> return type;`. Each case
/// gets [`POOL`] targets (`target::<0>` to `target::<11>`) and runs
/// [`run_case`].
macro_rules! cases {
    ($($name:ident: ($($T:ty),* $(,)?) -> $R:ty;)*) => {$(
        cases!(@pair $name, $R, [] [$($T),*] [a0 a1 a2 a3 a4 a5 a6 a7]);
    )*};
    // All types paired with parameter names: generate the test.
    (@pair $name:ident, $R:ty, [$(($a:ident: $T:ty))*] [] [$($unused:ident)*]) => {
        #[test]
        fn $name() {
            extern "C" fn target<const K: u64>($($a: $T),*) -> $R {
                let h = hash_args(K, &[$(Val::mix($a)),*]);
                record(K, h);
                <$R as Out>::from_hash(h)
            }
            type F = extern "C" fn($($T),*) -> $R;
            let targets: [F; POOL] = [
                target::<0>, target::<1>, target::<2>, target::<3>,
                target::<4>, target::<5>, target::<6>, target::<7>,
                target::<8>, target::<9>, target::<10>, target::<11>,
            ];
            run_case(stringify!($name), &targets);
        }
    };
    // Pair the next type with the next parameter name.
    (@pair $name:ident, $R:ty, [$($done:tt)*] [$T:ty $(, $rest:ty)*] [$a:ident $($more:ident)*]) => {
        cases!(@pair $name, $R, [$($done)* ($a: $T)] [$($rest),*] [$($more)*]);
    };
}

differential_cases!(cases);

// ------------------------------------------------------------ placement

/// Stamped targets of `extern "C" fn(i64, f64) -> i64` for the placement
/// tests.
extern "C" fn placed<const K: u64>(a: i64, b: f64) -> i64 {
    let h = hash_args(K, &[a.mix(), b.mix()]);
    record(K, h);
    i64::from_hash(h)
}

type Placed = extern "C" fn(i64, f64) -> i64;

const PLACED: [Placed; 10] = [
    placed::<100>,
    placed::<101>,
    placed::<102>,
    placed::<103>,
    placed::<104>,
    placed::<105>,
    placed::<106>,
    placed::<107>,
    placed::<108>,
    placed::<109>,
];

#[test]
fn near_host_engine_makes_direct_calls() {
    let engine = engine(Where::NearHost);
    let code = engine.stats().code;
    assert!(
        code.near_host_text,
        "the default engine's code memory is not near the host text: {}",
        engine.stats()
    );
    let site = engine.site::<Placed>();
    let report = site.promote(&PLACED[..8]).unwrap();
    assert!(
        report.slots.iter().all(|s| s.form == CallForm::Direct),
        "{}",
        site.stats()
    );
}

#[test]
fn anywhere_placement_falls_back_to_absolute_calls() {
    let engine = engine(Where::Anywhere);
    let stats = engine.stats();
    assert!(
        !stats.code.near_host_text,
        "Placement::Anywhere reported code memory near the host text: {stats}"
    );
    let reach = host_reach();
    let site = engine.named_site::<Placed>("anywhere");
    let report = site.promote(&PLACED[..8]).unwrap();
    let far: Vec<bool> = report
        .slots
        .iter()
        .map(|s| distance(s.target, report.entry) >= reach)
        .collect();
    eprintln!(
        "Placement::Anywhere: thunk at {:#x}, {} of 8 targets out of direct reach\n{}",
        report.entry,
        far.iter().filter(|&&f| f).count(),
        site.stats()
    );
    for (s, &far) in report.slots.iter().zip(&far) {
        if far {
            assert_eq!(s.form, CallForm::Absolute, "{}", site.stats());
        }
    }
    if far.iter().any(|&f| f) {
        assert!(
            site.stats()
                .slots
                .iter()
                .any(|s| s.form == CallForm::Absolute)
        );
    }
    // The absolute forms give the same results.
    let pinned = engine.pin();
    let mut rng = SplitMix64(7);
    for _ in 0..200 {
        let args: (i64, f64) = ArgTuple::random(&mut rng);
        for (k, &f) in PLACED.iter().enumerate() {
            let h = hash_args(100 + k as u64, &args.mixes());
            let got = site.call(&pinned, f, args);
            assert_eq!(take_last_call(), Some((100 + k as u64, h)), "{args:?}");
            assert_eq!(got, f.plain(args), "target {k}, {args:?}");
        }
    }
}

// Functions of the C library: in a shared object, usually far from the
// test binary's text, so a thunk near the host text mixes direct calls (to
// this binary) with absolute ones (to libm).
// SAFETY: these are the C library's declarations of these functions, which
// are defined for every `double` (NaN and infinities included).
unsafe extern "C" {
    safe fn cos(x: f64) -> f64;
    safe fn sin(x: f64) -> f64;
    safe fn exp(x: f64) -> f64;
    safe fn atan(x: f64) -> f64;
    safe fn cbrt(x: f64) -> f64;
    safe fn tan(x: f64) -> f64;
}

extern "C" fn unary<const K: u64>(x: f64) -> f64 {
    let h = hash_args(K, &[x.mix()]);
    record(K, h);
    f64::from_hash(h)
}

#[test]
fn direct_and_absolute_slots_in_one_thunk() {
    type U = extern "C" fn(f64) -> f64;
    let engine = engine(Where::NearHost);
    let reach = host_reach();
    let local: [U; 6] = [
        unary::<200>,
        unary::<201>,
        unary::<202>,
        unary::<203>,
        unary::<204>,
        unary::<205>,
    ];
    let libm: [U; 6] = [cos, sin, exp, atan, cbrt, tan];
    // Interleaved, so direct and absolute slots alternate.
    let promoted = [
        local[0], libm[0], local[1], libm[1], local[2], libm[2], local[3], libm[3],
    ];
    let site = engine.named_site::<U>("mixed forms");
    let report = site.promote(&promoted).unwrap();
    let stats = site.stats();
    let addrs: Vec<usize> = promoted.iter().map(|f| f.addr()).collect();
    check_installed(
        "mixed forms",
        Where::NearHost,
        &report,
        &stats,
        &addrs,
        false,
    );
    if engine.stats().code.near_host_text {
        for i in [0, 2, 4, 6] {
            assert_eq!(stats.slots[i].form, CallForm::Direct, "{stats}");
        }
    }
    let far = report
        .slots
        .iter()
        .filter(|s| distance(s.target, report.entry) >= reach)
        .count();
    eprintln!("{far} of 8 slots out of direct reach\n{stats}");
    if far > 0 {
        assert!(stats.slots.iter().any(|s| s.form == CallForm::Absolute));
        assert!(stats.slots.iter().any(|s| s.form == CallForm::Direct));
    }

    let pinned = engine.pin();
    let mut rng = SplitMix64(11);
    let mut args: Vec<f64> = f64::edges();
    args.extend((0..64).map(|_| pick::<f64>(&mut rng)));
    for &x in &args {
        for (k, &f) in local.iter().enumerate() {
            let h = hash_args(200 + k as u64, &[x.mix()]);
            let got = site.call(&pinned, f, (x,));
            assert_eq!(take_last_call(), Some((200 + k as u64, h)), "{x:?}");
            assert_eq!(got.to_bits(), f(x).to_bits(), "local {k}, {x:?}");
        }
        for (k, &f) in libm.iter().enumerate() {
            let got = site.call(&pinned, f, (x,));
            assert_eq!(got.to_bits(), f(x).to_bits(), "libm {k}, {x:?}");
        }
    }
}

// ------------------------------------------------------------ ABI extension probe

/// Raw argument words seen by the probes: six registers, two stack slots.
#[cfg(target_arch = "x86_64")]
static RAW_ARGS: [std::sync::atomic::AtomicU64; 8] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 8];

/// Defines a probe: a target that stores its raw argument registers (rdi,
/// rsi, rdx, rcx, r8, r9) and its two stack arguments, full 64 bits each,
/// in [`RAW_ARGS`] and returns 0.
#[cfg(target_arch = "x86_64")]
macro_rules! probe {
    ($name:ident: ($($T:ty),*)) => {
        // SAFETY: the body only stores the six argument registers and the
        // two stack argument slots of an 8-integer-argument SysV call into
        // `RAW_ARGS` (eight `AtomicU64`s, so racing stores are fine), uses
        // only caller-saved rax and r10, and returns 0 in rax.
        #[unsafe(naked)]
        extern "C" fn $name($(_: $T),*) -> u64 {
            std::arch::naked_asm!(
                "lea rax, [rip + {raw}]",
                "mov [rax], rdi",
                "mov [rax + 8], rsi",
                "mov [rax + 16], rdx",
                "mov [rax + 24], rcx",
                "mov [rax + 32], r8",
                "mov [rax + 40], r9",
                "mov r10, [rsp + 8]",
                "mov [rax + 48], r10",
                "mov r10, [rsp + 16]",
                "mov [rax + 56], r10",
                "xor eax, eax",
                "ret",
                raw = sym RAW_ARGS,
            )
        }
    };
}

#[cfg(target_arch = "x86_64")]
probe!(probe_a: (i8, u8, i16, u16, bool, i8, u8, i16));
#[cfg(target_arch = "x86_64")]
probe!(probe_b: (u16, bool, i8, i16, u8, u16, i8, bool));
#[cfg(target_arch = "x86_64")]
probe!(probe_c: (bool, i16, u8, i8, u16, bool, u16, u8));

/// Filler targets of the probe signatures, so the probe sits in different
/// slots and also misses.
#[cfg(target_arch = "x86_64")]
macro_rules! fillers {
    ($($a:ident: $T:ty),*) => {{
        extern "C" fn filler<const K: u64>($($a: $T),*) -> u64 {
            hash_args(K, &[$($a.mix()),*])
        }
        [
            filler::<1> as extern "C" fn($($T),*) -> u64,
            filler::<2>, filler::<3>, filler::<4>, filler::<5>, filler::<6>, filler::<7>,
        ]
    }};
}

/// Drives one probe through a site on both engines: as a miss (with 0 and
/// 7 slots) and in slots 0, 3 and 7. For every narrow argument, the low 32
/// bits of its register or stack slot must hold the value sign- or
/// zero-extended to 32 bits: what clang and LLVM callers do (the plain call
/// is checked too) and what optimized LLVM callees rely on.
#[cfg(target_arch = "x86_64")]
fn run_probe<F: Case>(name: &str, probe: F, fillers: [F; 7]) {
    // Index 7 is the probe; 0..7 are fillers.
    let all = [
        fillers[0], fillers[1], fillers[2], fillers[3], fillers[4], fillers[5], fillers[6], probe,
    ];
    let layouts: [&[usize]; 5] = [
        &[],
        &[7, 0, 1, 2],
        &[0, 1, 2, 7, 3, 4],
        &[0, 1, 2, 3, 4, 5, 6, 7],
        &[0, 1, 2, 3, 4, 5, 6],
    ];
    let mut rng = SplitMix64(seed_of(name));
    let mut tuples: Vec<F::Args> = (0..EDGE_TUPLES).map(F::Args::edge).collect();
    tuples.extend((0..RANDOM_TUPLES).map(|_| F::Args::random(&mut rng)));
    for w in [Where::NearHost, Where::Anywhere, Where::Hardened] {
        let engine = engine(w);
        let site = engine.named_site::<F>(name);
        for layout in layouts {
            let promoted: Vec<F> = layout.iter().map(|&i| all[i]).collect();
            site.promote(&promoted).unwrap();
            let where_ = match layout.iter().position(|&i| i == 7) {
                Some(s) => format!("{w:?}, slot {s} of {}", layout.len()),
                None => format!("{w:?}, miss with {} slots", layout.len()),
            };
            let pinned = engine.pin();
            for args in &tuples {
                let mixes = args.mixes();
                for (via, raw) in [
                    ("plain call", {
                        probe.plain(*args);
                        read_raw()
                    }),
                    ("thunk", {
                        site.call(&pinned, probe, *args);
                        read_raw()
                    }),
                ] {
                    for (i, (&t, (&m, &r))) in
                        F::PARAMS.iter().zip(mixes.iter().zip(&raw)).enumerate()
                    {
                        assert!(is_narrow(t), "probes take narrow integers, not {t}");
                        // `mix` sign-extends signed and zero-extends
                        // unsigned values: its low 32 bits are the 32-bit
                        // extension.
                        let want = m as u32;
                        let place = if i < 6 { "register" } else { "stack slot" };
                        assert_eq!(
                            r as u32,
                            want,
                            "{name} {}, {where_}, {via}: argument {i} ({t}, {place}) is \
                             {r:#018x}, its low 32 bits should be {want:#010x}; args {args:?}",
                            site.signature()
                        );
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn is_narrow(t: ValType) -> bool {
    matches!(
        t,
        ValType::I8 | ValType::I16 | ValType::U8 | ValType::U16 | ValType::Bool
    )
}

#[cfg(target_arch = "x86_64")]
fn read_raw() -> [u64; 8] {
    RAW_ARGS
        .each_ref()
        .map(|a| a.swap(0x5A5A_5A5A_5A5A_5A5A, std::sync::atomic::Ordering::Relaxed))
}

#[cfg(target_arch = "x86_64")]
#[test]
fn narrow_arguments_are_extended_like_a_c_caller_does() {
    // One test function drives all probes: they share `RAW_ARGS`.
    run_probe(
        "probe_a",
        probe_a as extern "C" fn(i8, u8, i16, u16, bool, i8, u8, i16) -> u64,
        fillers!(a0: i8, a1: u8, a2: i16, a3: u16, a4: bool, a5: i8, a6: u8, a7: i16),
    );
    run_probe(
        "probe_b",
        probe_b as extern "C" fn(u16, bool, i8, i16, u8, u16, i8, bool) -> u64,
        fillers!(a0: u16, a1: bool, a2: i8, a3: i16, a4: u8, a5: u16, a6: i8, a7: bool),
    );
    run_probe(
        "probe_c",
        probe_c as extern "C" fn(bool, i16, u8, i8, u16, bool, u16, u8) -> u64,
        fillers!(a0: bool, a1: i16, a2: u8, a3: i8, a4: u16, a5: bool, a6: u16, a7: u8),
    );
}

// ------------------------------------------------------------ jit level

/// Targets around a placement, with the call form each must get: in reach
/// from the whole range (direct) or not (absolute), including targets just
/// inside and exactly at the reach from either end.
fn placement_candidates(lo: u64, hi: u64, reach: u64) -> [(u64, CallForm); 16] {
    use CallForm::{Absolute, Direct};
    [
        (lo - 0x1000, Direct),
        (lo + reach, Absolute), // exactly `reach` from lo
        (hi + 0x40, Direct),
        (hi - reach, Absolute), // exactly `reach` from hi
        (lo + reach - 4, Direct),
        (lo + 3 * reach + 0x100, Absolute),
        (hi - reach + 4, Direct),
        (0x1000, Absolute),
        (lo + 0x100, Direct),
        (0xFFFF_8000_0000_0000, Absolute),
        (lo - reach / 2, Direct),
        (lo - 2 * reach, Absolute),
        (hi + reach / 2, Direct),
        (hi + reach, Absolute),
        (lo + (hi - lo) / 2 + 0x1_0000, Direct),
        (lo - reach + 4, Absolute), // in reach of lo, not of hi
    ]
}

#[test]
fn jit_compiles_every_type_for_both_isas() {
    let mut sigs: Vec<ThunkSig> = Vec::new();
    for t in ValType::ALL {
        sigs.push(ThunkSig::new(&[t], None).unwrap());
        sigs.push(ThunkSig::new(&[], Some(t)).unwrap());
        sigs.push(ThunkSig::new(&[t; 8], Some(t)).unwrap());
    }
    sigs.push(ThunkSig::new(&[], None).unwrap());
    sigs.push("(i8,f64,u16,f32,bool,ptr,i32,f64)->f32".parse().unwrap());
    sigs.push("(i8,u8,i16,u16,i32,u32,bool,i64)->u8".parse().unwrap());

    for arch in Arch::ALL {
        let backend = arch.backend();
        let reach = backend.direct_call_reach();
        let mut compiler = ThunkCompiler::new(arch, CompilerOptions::default())
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(compiler.arch(), arch);
        let lo: u64 = 0x5555_5400_0000;
        let hi = lo + (16 << 20);
        let placement = jit::Placement { lo, hi };
        let candidates = placement_candidates(lo, hi, reach);
        for (t, form) in candidates {
            assert_eq!(
                placement.reaches(t, reach),
                form == CallForm::Direct,
                "{arch}: {t:#x}"
            );
        }
        for sig in &sigs {
            for slots in 0..=MAX_SLOTS {
                let chosen: Vec<(u64, CallForm)> = (0..slots)
                    .map(|j| candidates[(slots * 3 + j) % candidates.len()])
                    .collect();
                let targets: Vec<u64> = chosen.iter().map(|c| c.0).collect();
                let ctx = format!("{arch} {sig} with {slots} slots {targets:x?}");
                let thunk = compiler
                    .compile(sig, &targets, placement)
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(thunk.arch(), arch, "{ctx}");
                assert_eq!(thunk.sig(), sig, "{ctx}");
                assert!(!thunk.is_empty(), "{ctx}");
                let planned: Vec<(u64, CallForm)> =
                    thunk.slots().iter().map(|s| (s.target, s.form)).collect();
                assert_eq!(planned, chosen, "{ctx}");
                let direct = chosen.iter().filter(|c| c.1 == CallForm::Direct).count();
                assert_eq!(thunk.relocs().len(), direct, "{ctx}");
                for r in thunk.relocs() {
                    let hotcall_jit::RelocTo::Slot(k) = r.to else {
                        panic!("{ctx}: a thunk without hooks calls only slots: {r:?}");
                    };
                    assert_eq!(chosen[k].1, CallForm::Direct, "{ctx}: {r:?}");
                }
                // A direct call reaches its target from anywhere in the
                // placement: link at both ends.
                let last = (hi - thunk.len() as u64) & !15;
                for place in [lo, last] {
                    let code = thunk
                        .link(place)
                        .unwrap_or_else(|e| panic!("{ctx}: link at {place:#x}: {e}"));
                    assert_eq!(code.len(), thunk.len(), "{ctx}");
                }
                // Far outside it, every direct call is out of range.
                if direct > 0 {
                    assert!(thunk.link(lo + 4 * reach).is_err(), "{ctx}");
                }
            }
        }
    }
}
