//! A host that embeds hotcall with `default-features = false`: one learning
//! site, promoted by a manual tick, checked against plain calls. `cargo tree
//! -p hotcall-embed` shows what such a host compiles (`scripts/test` checks
//! it stays the engine alone).

use hotcall::{Engine, EngineConfig, PolicyState};

extern "C" fn double(x: i64) -> i64 {
    x.wrapping_mul(2)
}

extern "C" fn negate(x: i64) -> i64 {
    x.wrapping_neg()
}

fn main() {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.site::<extern "C" fn(i64) -> i64>();
    let pinned = engine.pin();
    for i in 0..2000 {
        assert_eq!(site.call(&pinned, double, (i,)), double(i));
    }
    drop(pinned);
    engine.tick();
    let stats = site.stats();
    let pinned = engine.pin();
    for i in 0..1000 {
        let f = if i % 7 == 0 { negate } else { double };
        assert_eq!(site.call(&pinned, f, (i,)), f(i));
    }
    if engine.is_enabled() {
        assert_eq!(stats.state, PolicyState::Promoted, "{stats}");
    }
    println!("{stats}");
}
