/* The target model, in C: the same functions as `hotcall_emu::model` in
 * Rust. A target K folds every argument (widened by its C type: signed
 * integers sign-extended, unsigned ones zero-extended, floats by their bits)
 * into a 64-bit hash, records (K, hash) and returns a value derived from the
 * hash. A swapped, truncated or mis-extended argument, a call to the wrong
 * target or a mangled return value therefore shows. */
#ifndef HOTCALL_EMU_MODEL_H
#define HOTCALL_EMU_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The last target call: written by every target, reset by the harness. */
extern volatile uint64_t hc_target_calls, hc_last_k, hc_last_h;

static inline uint64_t hc_avalanche(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Out of line: one copy of the loop, however many targets there are. */
__attribute__((noinline)) uint64_t hc_hash_and_record(uint64_t k, const uint64_t *mixes, int n);

static inline uint64_t hc_f32_bits(float x) { uint32_t b; memcpy(&b, &x, 4); return b; }
static inline uint64_t hc_f64_bits(double x) { uint64_t b; memcpy(&b, &x, 8); return b; }

#define HC_MIX_i8(x) ((uint64_t)(int64_t)(x))
#define HC_MIX_i16(x) ((uint64_t)(int64_t)(x))
#define HC_MIX_i32(x) ((uint64_t)(int64_t)(x))
#define HC_MIX_i64(x) ((uint64_t)(x))
#define HC_MIX_u8(x) ((uint64_t)(x))
#define HC_MIX_u16(x) ((uint64_t)(x))
#define HC_MIX_u32(x) ((uint64_t)(x))
#define HC_MIX_u64(x) ((uint64_t)(x))
#define HC_MIX_bool(x) ((uint64_t)(x))
#define HC_MIX_f32(x) hc_f32_bits(x)
#define HC_MIX_f64(x) hc_f64_bits(x)
#define HC_MIX_ptr(x) ((uint64_t)(uintptr_t)(x))

#define HC_FROM_i8(h) ((int8_t)(h))
#define HC_FROM_i16(h) ((int16_t)(h))
#define HC_FROM_i32(h) ((int32_t)(h))
#define HC_FROM_i64(h) ((int64_t)(h))
#define HC_FROM_u8(h) ((uint8_t)(h))
#define HC_FROM_u16(h) ((uint16_t)(h))
#define HC_FROM_u32(h) ((uint32_t)(h))
#define HC_FROM_u64(h) ((uint64_t)(h))
#define HC_FROM_bool(h) ((bool)((h) & 1))
#define HC_FROM_f32(h) (((float)((h) % 200003u) - 100001.0f) / 7.0f)
#define HC_FROM_f64(h) (((double)((h) % 2000003u) - 1000001.0) / 7.0)
#define HC_FROM_ptr(h) ((void *)(uintptr_t)(h))

typedef int8_t hc_i8;
typedef int16_t hc_i16;
typedef int32_t hc_i32;
typedef int64_t hc_i64;
typedef uint8_t hc_u8;
typedef uint16_t hc_u16;
typedef uint32_t hc_u32;
typedef uint64_t hc_u64;
typedef bool hc_bool;
typedef float hc_f32;
typedef double hc_f64;
typedef void *hc_ptr;

/* One generated target: signature index, K and its address. */
struct hc_target {
    uint64_t sig, k;
    void *fn;
};
extern const struct hc_target hc_targets[];
extern const uint64_t hc_target_count;

#endif
