//! The Patch site's behaviour, one thread.

use std::time::Duration;

use hotcall::Engine;

type Callback = extern "C" fn(u64) -> u64;
extern "C" fn t0(x: u64) -> u64 {
    x + 1
}
extern "C" fn t1(x: u64) -> u64 {
    x + 2
}

#[test]
fn retarget_then_complete() {
    let engine = Engine::new();
    let site = engine.patch_site::<Callback>(2).unwrap();
    let r = site.retarget(&[t0, t1]).unwrap();
    eprintln!("{r:?}\n{}", site.stats());
    assert!(site.wait(Duration::from_secs(5)));
    eprintln!("{}", site.stats());
}
