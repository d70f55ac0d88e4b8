//! Bad input and exhausted resources give clear errors and leave the engine
//! and its sites working (as plain indirect calls where needed).

use std::panic::{AssertUnwindSafe, catch_unwind};

use hotcall::{Engine, EngineConfig, Error, JitError, PolicyConfig, SiteMode, collect_garbage};

type Callback = extern "C" fn(i64) -> i64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: i64) -> i64 { x * $k })*
        const TARGETS: [Callback; 9] = [$($name),*];
    };
}
targets!(
    t0 = 2,
    t1 = 3,
    t2 = 4,
    t3 = 5,
    t4 = 6,
    t5 = 7,
    t6 = 8,
    t7 = 9,
    t8 = 10
);

fn check_calls(engine: &Engine, site: &hotcall::Site<Callback>) {
    let pinned = engine.pin();
    for (k, f) in TARGETS.iter().enumerate() {
        assert_eq!(site.call(&pinned, *f, (10,)), 10 * (k as i64 + 2));
    }
}

#[test]
fn invalid_promotions_are_rejected_and_change_nothing() {
    // Manual ticks: a background tick between the two snapshots would count
    // a decision (the Fixed policy keeping its targets) and the comparison
    // below would fail for a reason that has nothing to do with rejection.
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.site::<Callback>();
    site.promote(&[t0, t1]).unwrap();
    let before = site.stats();

    let e = site.promote(&TARGETS).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Jit(JitError::TooManySlots {
                requested: 9,
                max: 8
            })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("at most 8"), "{e}");

    let e = site.promote(&[t0, t1, t0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Jit(JitError::DuplicateTarget {
                first: 0,
                second: 2,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(
        site.stats(),
        before,
        "a rejected request leaves the site alone"
    );
    check_calls(&engine, &site);
}

#[test]
fn exhausted_code_memory_falls_back_to_plain_calls() {
    let engine = Engine::with_config(EngineConfig {
        code_capacity: 4096,
        ..Default::default()
    });
    // Sites without a learning probe: the arena holds only what they promote.
    let sites: Vec<_> = (0..64)
        .map(|_| {
            engine.site_with::<Callback>(hotcall::SiteOptions::new().policy(PolicyConfig::Off))
        })
        .collect();
    let mut failed = None;
    for (i, site) in sites.iter().enumerate() {
        if let Err(e) = site.promote(&TARGETS[..8]) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("4 KiB cannot hold 64 eight-slot thunks");
    assert!(
        matches!(e, Error::Jit(JitError::CodeMemoryExhausted { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("code memory exhausted"), "{e}");
    let stats = sites[i].stats();
    assert_eq!(stats.mode, SiteMode::PlainIndirect);
    assert_eq!(stats.failures, 1);
    assert_eq!(stats.last_error, Some(e));
    for site in &sites {
        check_calls(&engine, site);
    }

    // Freeing thunks makes room again: the engine recovers.
    for site in &sites[..i] {
        site.demote();
    }
    // Wait by time: reclamation depends on every pinned thread of the
    // process, including other tests'.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine.stats().code.live > 0 && std::time::Instant::now() < deadline {
        collect_garbage();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    sites[i]
        .promote(&TARGETS[..8])
        .expect("room after demotions");
    assert_eq!(sites[i].stats().mode, SiteMode::Thunk);
    assert_eq!(sites[i].stats().last_error, None);
    check_calls(&engine, &sites[i]);
}

#[test]
fn engine_without_code_memory_still_calls() {
    // No machine maps a petabyte: code generation is disabled, not fatal.
    let config = EngineConfig {
        code_capacity: 1 << 50,
        ..Default::default()
    };
    assert!(Engine::try_with_config(config.clone()).is_err());
    let engine = Engine::with_config(config);
    assert!(!engine.is_enabled());
    assert!(
        engine.stats().to_string().contains("disabled"),
        "{}",
        engine.stats()
    );
    let site = engine.site::<Callback>();
    let e = site.promote(&[t0]).unwrap_err();
    assert!(matches!(e, Error::EngineDisabled(_)), "{e}");
    assert_eq!(site.stats().mode, SiteMode::PlainIndirect);
    check_calls(&engine, &site);
}

#[test]
fn null_target_panics_clearly() {
    let engine = Engine::new();
    let site = engine.named_site::<Callback>("plugin.on_event");
    site.promote(&[t0]).unwrap();
    let pinned = engine.pin();
    assert_eq!(site.call_nullable(&pinned, Some(t1), (1,)), 3);
    let panic = catch_unwind(AssertUnwindSafe(|| site.call_nullable(&pinned, None, (1,))))
        .expect_err("a null target must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("null function pointer") && msg.contains("plugin.on_event"),
        "{msg}"
    );
    // Still usable afterwards.
    check_calls(&engine, &site);
}
