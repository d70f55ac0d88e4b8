//! The ISA report's measurements: for every slot count and path, the
//! instructions qemu executed inside the thunk equal the static walk of the
//! code, and the calls return what the targets compute (both checked by
//! `report::measure`, which fails otherwise), on both ISAs.

use std::path::Path;

use hotcall_emu::report::{IsaReport, measure};
use hotcall_emu::toolchain_for_tests;
use hotcall_jit::{Arch, MAX_SLOTS, ThunkSig};

fn cache() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn traced_counts_equal_the_static_walk_on_both_isas() {
    for sig in ["(i64)->i64", "(f64,i8)->f32"] {
        let sig: ThunkSig = sig.parse().unwrap();
        let mut isas = Vec::new();
        for arch in Arch::ALL {
            let Some(tc) = toolchain_for_tests(arch) else {
                return;
            };
            for far in [false, true] {
                let rows = measure(&tc, &sig, far, cache())
                    .unwrap_or_else(|e| panic!("{arch} {sig}: {e}"));
                assert_eq!(rows.len(), MAX_SLOTS + 1);
                for r in &rows {
                    assert_eq!(r.hits.len(), r.slots);
                    assert_eq!(r.far_slots, if far { r.slots } else { 0 }, "{arch} {r:?}");
                    // Each later slot costs at least one more instruction
                    // (its compare), and a miss passes every compare.
                    for w in r.hits.windows(2) {
                        assert!(w[1] > w[0], "{arch} {sig} {r:?}");
                    }
                    if let Some(last) = r.hits.last() {
                        assert!(r.miss > *last - 3, "{arch} {sig} {r:?}");
                    }
                }
                if !far {
                    isas.push((arch, rows));
                }
            }
        }
        let report = IsaReport {
            sig: sig.clone(),
            far: false,
            isas,
        };
        println!("{}", report.markdown());
    }
}
