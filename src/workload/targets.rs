//! The pool of 64 callback targets every workload draws from.

/// The callback type of every workload: one `u64` in, one out.
pub type Callback = extern "C" fn(u64) -> u64;

/// How many distinct targets the pool holds.
pub const POOL_SIZE: usize = 64;

/// A target: a few cycles of real work (xor, multiply, rotate) with
/// constants derived from `K`, so that every target returns a different
/// result and a call to the wrong one changes every later result of a
/// chain. Each step is a bijection of `u64`, so a chain of calls never
/// collapses to a fixed point that would hide a wrong call.
///
/// `inline(never)`: every target is a real function with its own address,
/// called through a pointer or a promoted direct call, never folded away.
///
/// Public so that code can name a pool function at compile time
/// (`target::<K>` is `POOL[K]`), as the `listed` strategy of `hotcall bench`
/// does to make direct calls.
#[inline(never)]
pub extern "C" fn target<const K: u64>(x: u64) -> u64 {
    let key = K.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    // An odd multiplier keeps the multiply bijective.
    let mul = (0xd6e8_feb8_6659_fd93 ^ (K << 8)) | 1;
    (x ^ key).wrapping_mul(mul).rotate_left((K % 61) as u32 + 1)
}

macro_rules! pool {
    ($($k:literal)*) => {
        /// The 64 targets, in a fixed order (index = `K`).
        pub static POOL: [Callback; POOL_SIZE] = [$(target::<$k>),*];
    };
}

pool!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
    62 63
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_distinct_functions_with_distinct_results() {
        let mut addrs: Vec<usize> = POOL.iter().map(|&f| f as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), POOL_SIZE, "two targets share an address");
        // `target::<K>` names `POOL[K]`.
        assert_eq!(target::<0> as *const () as usize, POOL[0] as usize);
        assert_eq!(target::<63> as *const () as usize, POOL[63] as usize);
        for x in [0u64, 1, 0xdead_beef, u64::MAX] {
            let mut results: Vec<u64> = POOL.iter().map(|f| f(x)).collect();
            results.sort_unstable();
            results.dedup();
            assert_eq!(results.len(), POOL_SIZE, "two targets agree on {x:#x}");
        }
    }
}
