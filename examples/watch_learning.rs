//! Watch a site learn: replay a benchmark workload's stream through one
//! learning site, take a learning round every 4,096 calls, and print what
//! the site runs after each round.
//!
//! ```sh
//! cargo run --release --example watch_learning -- zipf-8 12
//! ```

use hotcall::workload::{STREAM_LEN, Workload, WorkloadKind};
use hotcall::{Engine, EngineConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "zipf-8".into());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(12);
    let Some(kind) = WorkloadKind::from_name(&name) else {
        eprintln!("unknown workload `{name}`");
        std::process::exit(2);
    };
    let w = Workload::new(kind, 0x5eed);
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.named_site(name.clone());
    let stream = w.stream(0);
    const CHUNK: usize = 4096;
    let mut x = 1u64;
    for round in 0..rounds {
        let pinned = engine.pin();
        let start = (round * CHUNK) % STREAM_LEN;
        for call in &stream[start..start + CHUNK] {
            x = site.call(&pinned, call.target, (x,));
        }
        drop(pinned);
        let t = engine.tick();
        println!(
            "after round {round} ({} installs):\n{}\n",
            t.installs,
            site.stats()
        );
    }
    std::hint::black_box(x);
}
