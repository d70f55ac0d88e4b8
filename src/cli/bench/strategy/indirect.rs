//! `indirect`: the baseline, a plain indirect call.

use hotcall::workload::{Call, Workload, run_plain};

use super::{BuildError, BuildOptions, Cell};

struct Indirect;

impl Cell for Indirect {
    #[inline(never)]
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        run_plain(calls, x)
    }

    fn detail(&self) -> String {
        "call through the pointer".into()
    }
}

pub fn build(_: &Workload, _: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    Ok(Box::new(Indirect))
}
