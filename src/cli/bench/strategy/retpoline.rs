//! `retpoline`: what a retpoline-hardened compiler makes of the plain call,
//! the baseline of hosts that harden against Spectre v2. Each call is a
//! direct `call` to hotcall's retpoline with the callee in r11 (aarch64: the
//! return-stack equivalent with the callee in x16), made by
//! [`hotcall::retpoline::call`] with the C ABI placed by hand.

use hotcall::workload::{Call, Callback, Workload};

use super::{BuildError, BuildOptions, Cell};

struct Retpoline;

impl Cell for Retpoline {
    #[inline(never)]
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        calls.iter().fold(x, |x, c| {
            hotcall::retpoline::call::<Callback>(c.target, (x,))
        })
    }

    fn detail(&self) -> String {
        "call through the retpoline (call retpoline_r11; the callee in r11)".into()
    }
}

pub fn build(_: &Workload, _: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    Ok(Box::new(Retpoline))
}
