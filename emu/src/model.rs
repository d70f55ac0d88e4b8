//! The target model: what a generated target computes from its arguments,
//! in Rust. The C side (`harness/model.h`) implements the same functions;
//! the native differential suite uses these directly.
//!
//! Every argument enters as its *mix*: the full value widened to 64 bits as
//! its type demands (signed integers sign-extended, unsigned ones and
//! `bool` zero-extended, floats by their bit pattern, pointers by address).
//! Target `K` folds the mixes with [`hash_args`], records `(K, hash)` and
//! returns [`from_hash`] of the hash, so a swapped, truncated or
//! mis-extended argument, a call to the wrong target or a mangled return
//! value all change what the caller observes.

use hotcall_jit::ValType;

/// splitmix64: a small deterministic generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        avalanche(self.0)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// splitmix64's output function: a bijection of `u64` with full avalanche.
pub fn avalanche(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a name: each test case gets its own argument stream.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// What target `K` computes from its arguments' mixes.
///
/// Every step is a bijection both of the running hash and of the argument,
/// so changing any single argument always changes the hash; the
/// position-dependent constant makes swapped arguments differ as well.
pub fn hash_args(k: u64, mixes: &[u64]) -> u64 {
    let mut h = avalanche(k ^ 0x0123_4567_89AB_CDEF);
    for (i, &m) in mixes.iter().enumerate() {
        let pos = (i as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h = avalanche(h.rotate_left(17) ^ avalanche(m ^ pos));
    }
    h
}

/// The mix of the value a target of return type `ret` returns for hash
/// `h` (integers truncated, `bool` the low bit, floats a finite value of
/// either sign with a non-trivial mantissa).
pub fn from_hash(ret: ValType, h: u64) -> u64 {
    match ret {
        ValType::F32 => u64::from((((h % 200_003) as f32 - 100_001.0) / 7.0).to_bits()),
        ValType::F64 => (((h % 2_000_003) as f64 - 1_000_001.0) / 7.0).to_bits(),
        ValType::Bool => h & 1,
        t => canonical(t, h),
    }
}

/// `bits` reduced to the value of type `t` and widened as its mix: the low
/// bits of the type's width, sign- or zero-extended (floats: the bit
/// pattern of that width; `bool`: 0 or 1 from the low byte's low bit is
/// *not* assumed, the low byte must be 0 or 1 and is returned as is).
pub fn canonical(t: ValType, bits: u64) -> u64 {
    match t {
        ValType::I8 => bits as i8 as i64 as u64,
        ValType::I16 => bits as i16 as i64 as u64,
        ValType::I32 => bits as i32 as i64 as u64,
        ValType::U8 | ValType::Bool => bits & 0xFF,
        ValType::U16 => bits & 0xFFFF,
        ValType::U32 | ValType::F32 => bits & 0xFFFF_FFFF,
        ValType::I64 | ValType::U64 | ValType::F64 | ValType::Ptr => bits,
    }
}

/// Edge values of each type, as mixes: the values that catch extension and
/// register-class bugs (extremes, sign boundaries, `-0.0`, subnormals,
/// NaNs with payloads, null and odd pointers).
pub fn edges(t: ValType) -> Vec<u64> {
    fn ints<T: Copy>(v: &[T], mix: impl Fn(T) -> u64) -> Vec<u64> {
        v.iter().map(|&x| mix(x)).collect()
    }
    match t {
        ValType::I8 => ints(&[i8::MIN, -1, 0, 1, i8::MAX, -2, 0x55, i8::MIN + 1], |x| {
            x as i64 as u64
        }),
        ValType::I16 => ints(
            &[i16::MIN, -1, 0, 1, i16::MAX, -129, 128, 255, -256, 0x1234],
            |x| x as i64 as u64,
        ),
        ValType::I32 => ints(
            &[
                i32::MIN,
                -1,
                0,
                1,
                i32::MAX,
                -129,
                0x8000,
                -0x8001,
                0x1234_5678,
            ],
            |x| x as i64 as u64,
        ),
        ValType::I64 => ints(
            &[
                i64::MIN,
                -1,
                0,
                1,
                i64::MAX,
                i64::from(i32::MIN),
                i64::from(u32::MAX),
                1 << 32,
                -(1 << 32),
            ],
            |x| x as u64,
        ),
        ValType::U8 => ints(&[0u8, 1, 0x7F, 0x80, u8::MAX, 0xFE, 0xAA], u64::from),
        ValType::U16 => ints(
            &[0u16, 1, 0x80, 0xFF, 0x7FFF, 0x8000, u16::MAX, 0xFF00],
            u64::from,
        ),
        ValType::U32 => ints(
            &[
                0u32,
                1,
                0xFF,
                0xFFFF,
                0x7FFF_FFFF,
                0x8000_0000,
                u32::MAX,
                0xDEAD_BEEF,
            ],
            u64::from,
        ),
        ValType::U64 => vec![
            0,
            1,
            u64::MAX,
            1 << 63,
            u64::from(u32::MAX),
            1 << 32,
            0x8000_0000,
            0xDEAD_BEEF_CAFE_F00D,
        ],
        ValType::Bool => vec![0, 1],
        ValType::F32 => [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.1,
            -123.456,
            0.333_333_34,
            -1.234_567_8e-5,
            -2.5e-3,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::from_bits(1),           // smallest subnormal
            f32::from_bits(0x807F_FFFF), // largest negative subnormal
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7FA0_0001), // signalling NaN with a payload
            f32::from_bits(0xFFC0_1234), // negative quiet NaN with a payload
            16_777_215.0,
        ]
        .iter()
        .map(|x| u64::from(x.to_bits()))
        .collect(),
        ValType::F64 => [
            0.0f64,
            -0.0,
            1.0,
            -1.0,
            0.1,
            -123.456_789_012_345,
            std::f64::consts::PI,
            -2.5e-300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::from_bits(0x800F_FFFF_FFFF_FFFF),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::from_bits(0x7FF4_0000_0000_0001), // signalling NaN with a payload
            f64::from_bits(0xFFF8_DEAD_BEEF_0001), // negative quiet NaN with a payload
            9_007_199_254_740_991.0,
            f64::from(f32::MAX) * 2.0, // not representable as f32
        ]
        .iter()
        .map(|x| x.to_bits())
        .collect(),
        ValType::Ptr => vec![
            0,
            0x0040_1000,
            1,
            u64::MAX,
            1 << 63,
            0xFFFF_FFFF,
            0x8000_0000,
            0x7FFF_DEAD_BEEF,
        ],
    }
}

/// A random value of type `t`, as a mix: half full-width random bits, half
/// small magnitudes of both signs (for floats: small decimals).
pub fn random(t: ValType, rng: &mut SplitMix64) -> u64 {
    let x = rng.next_u64();
    let small = (((x >> 1) % 513) as i64 - 256) as u64;
    match t {
        ValType::Bool => x & 1,
        ValType::F32 if x & 1 == 0 => x >> 32,
        ValType::F32 => u64::from(((x >> 32) as u32 as i32 as f32 / 1000.0).to_bits()),
        ValType::F64 if x & 1 == 0 => x,
        ValType::F64 => ((x as i64 >> 11) as f64 / -1.0e6).to_bits(),
        t if x & 1 == 0 => canonical(t, x >> 1),
        t => canonical(t, small),
    }
}

/// A random value, an edge value one time in four.
pub fn pick(t: ValType, rng: &mut SplitMix64) -> u64 {
    if rng.below(4) == 0 {
        let e = edges(t);
        e[rng.below(e.len())]
    } else {
        random(t, rng)
    }
}

/// Edge tuple `i` for `params`: position `j` holds edge `i + 5j` of its
/// type, so as many consecutive tuples as the longest edge list put every
/// edge value in every position, next to varying neighbours.
pub fn edge_tuple(params: &[ValType], i: usize) -> Vec<u64> {
    params
        .iter()
        .enumerate()
        .map(|(j, &t)| {
            let e = edges(t);
            e[(i + 5 * j) % e.len()]
        })
        .collect()
}

/// A random tuple for `params` (see [`pick`]).
pub fn random_tuple(params: &[ValType], rng: &mut SplitMix64) -> Vec<u64> {
    params.iter().map(|&t| pick(t, rng)).collect()
}

/// Edge values per position needed so that [`edge_tuple`] covers every
/// edge of every type.
pub fn longest_edge_list() -> usize {
    ValType::ALL
        .iter()
        .map(|&t| edges(t).len())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_canonical_mixes() {
        for t in ValType::ALL {
            for e in edges(t) {
                if !matches!(t, ValType::F32 | ValType::F64 | ValType::Ptr) {
                    assert_eq!(canonical(t, e), e, "{t} {e:#x}");
                }
            }
        }
        let mut rng = SplitMix64(1);
        for t in ValType::ALL {
            for _ in 0..100 {
                let r = random(t, &mut rng);
                assert_eq!(canonical(t, r), r, "{t} {r:#x}");
            }
        }
    }

    #[test]
    fn one_changed_argument_changes_the_hash() {
        let base = [1u64, 2, 3];
        let h = hash_args(7, &base);
        assert_ne!(h, hash_args(8, &base));
        assert_ne!(h, hash_args(7, &[2, 1, 3]));
        assert_ne!(h, hash_args(7, &[1, 2, 3 | 1 << 40]));
        assert_ne!(h, hash_args(7, &[1, 2]));
    }
}
