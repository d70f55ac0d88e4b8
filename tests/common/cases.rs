//! The differential case list, shared by the native x86-64 suite
//! (`tests/differential.rs`) and the emulated aarch64 suite
//! (`tests/emulated_aarch64.rs`): one list, so both ISAs run the same
//! signatures.
//!
//! `differential_cases!(m)` expands to `m! { name: (params) -> ret; ... }`
//! with the whole list; each suite supplies its own `m`.

/// Targets per case: up to 8 promoted, the rest (at least 4) miss.
pub const POOL: usize = 12;
/// Edge tuples per case (at least the longest edge list of
/// `hotcall_emu::model::edges`, so every edge value reaches every
/// position).
pub const EDGE_TUPLES: usize = 20;
/// Random tuples per case.
pub const RANDOM_TUPLES: usize = 64;

/// Calls `$m` with every differential case (see the module docs).
macro_rules! differential_cases {
    ($m:ident) => {
        $m! {
            // Every type as the only parameter and as the return.
            one_i8: (i8) -> i8;
            one_i16: (i16) -> i16;
            one_i32: (i32) -> i32;
            one_i64: (i64) -> i64;
            one_u8: (u8) -> u8;
            one_u16: (u16) -> u16;
            one_u32: (u32) -> u32;
            one_u64: (u64) -> u64;
            one_isize: (isize) -> isize;
            one_usize: (usize) -> usize;
            one_bool: (bool) -> bool;
            one_f32: (f32) -> f32;
            one_f64: (f64) -> f64;
            one_const_ptr: (*const u8) -> *const u8;
            one_mut_ptr: (*mut u8) -> *mut u8;

            // No parameters, every return type.
            none_unit: () -> ();
            none_i8: () -> i8;
            none_i16: () -> i16;
            none_i32: () -> i32;
            none_i64: () -> i64;
            none_u8: () -> u8;
            none_u16: () -> u16;
            none_u32: () -> u32;
            none_u64: () -> u64;
            none_isize: () -> isize;
            none_usize: () -> usize;
            none_bool: () -> bool;
            none_f32: () -> f32;
            none_f64: () -> f64;
            none_const_ptr: () -> *const u8;
            none_mut_ptr: () -> *mut u8;

            // Eight of each type: with the target as the thunk's first argument,
            // integer parameters 6 to 8 go on the stack (x86-64 SysV; the 8th on
            // aarch64); eight floats fill the float registers.
            eight_i8: (i8, i8, i8, i8, i8, i8, i8, i8) -> i8;
            eight_i16: (i16, i16, i16, i16, i16, i16, i16, i16) -> i16;
            eight_i32: (i32, i32, i32, i32, i32, i32, i32, i32) -> i32;
            eight_i64: (i64, i64, i64, i64, i64, i64, i64, i64) -> i64;
            eight_u8: (u8, u8, u8, u8, u8, u8, u8, u8) -> u8;
            eight_u16: (u16, u16, u16, u16, u16, u16, u16, u16) -> u16;
            eight_u32: (u32, u32, u32, u32, u32, u32, u32, u32) -> u32;
            eight_u64: (u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
            eight_isize: (isize, isize, isize, isize, isize, isize, isize, isize) -> isize;
            eight_usize: (usize, usize, usize, usize, usize, usize, usize, usize) -> usize;
            eight_bool: (bool, bool, bool, bool, bool, bool, bool, bool) -> bool;
            eight_f32: (f32, f32, f32, f32, f32, f32, f32, f32) -> f32;
            eight_f64: (f64, f64, f64, f64, f64, f64, f64, f64) -> f64;
            eight_const_ptr: (*const u8, *const u8, *const u8, *const u8, *const u8, *const u8, *const u8, *const u8) -> *const u8;
            eight_mut_ptr: (*mut u8, *mut u8, *mut u8, *mut u8, *mut u8, *mut u8, *mut u8, *mut u8) -> *mut u8;

            // Arities 1 to 8 with mixed integer and float parameters.
            mixed_1: (bool) -> f64;
            mixed_1b: (f32) -> i8;
            mixed_2: (i8, f64) -> i64;
            mixed_2b: (f32, u16) -> bool;
            mixed_3: (u8, f32, *const u8) -> u32;
            mixed_3b: (f64, i16, f64) -> *mut u8;
            mixed_4: (i16, f64, u32, f32) -> f32;
            mixed_4b: (*mut u8, bool, i64, f64) -> u16;
            mixed_5: (u64, f32, i8, f64, u16) -> i16;
            mixed_5b: (f64, f64, bool, f32, isize) -> usize;
            mixed_6: (i32, f64, u8, f32, i64, bool) -> u64;
            mixed_7: (f32, i8, f64, u16, f32, *const u8, i32) -> f64;
            mixed_8: (f64, i8, f32, u16, f64, i64, f32, bool) -> isize;
            mixed_8_floats: (f32, f64, f32, f64, f32, f64, f32, f64) -> f32;
            // Six or more integers: the last ones go on the stack while floats
            // still use registers.
            mixed_8_one_int_on_stack: (i8, f64, i16, f32, u8, i32, u16, bool) -> i8;
            mixed_6_ints: (i8, u8, i16, u16, i32, u32) -> i64;
            mixed_7_ints: (u64, i8, bool, u16, i16, u8, isize) -> i8;
            mixed_8_ints: (i8, u8, i16, u16, i32, u32, bool, i64) -> u8;
            mixed_8_ints_narrow_on_stack: (i64, u64, i32, u32, isize, i8, u8, bool) -> u32;
            mixed_8_ints_wide_on_stack: (bool, u8, i8, u16, usize, i16, u32, i32) -> bool;
            mixed_8_pointers: (*const u8, *mut u8, usize, isize, *const u8, *mut u8, usize, isize) -> *const u8;

            // `()` returns: only the record shows what the target saw.
            unit_3: (i8, f64, bool) -> ();
            unit_8_ints: (i64, u8, i16, u16, i32, u32, bool, *const u8) -> ();
            unit_8_floats: (f64, f32, f64, f32, f64, f32, f64, f32) -> ();

            // Arity sweeps of one narrow integer and one float type.
            sweep_i8_2: (i8, i8) -> u16;
            sweep_i8_3: (i8, i8, i8) -> i16;
            sweep_i8_4: (i8, i8, i8, i8) -> f32;
            sweep_i8_5: (i8, i8, i8, i8, i8) -> u8;
            sweep_i8_6: (i8, i8, i8, i8, i8, i8) -> bool;
            sweep_i8_7: (i8, i8, i8, i8, i8, i8, i8) -> f64;
            sweep_f32_2: (f32, f32) -> i8;
            sweep_f32_3: (f32, f32, f32) -> u32;
            sweep_f32_4: (f32, f32, f32, f32) -> i64;
            sweep_f32_5: (f32, f32, f32, f32, f32) -> f64;
            sweep_f32_6: (f32, f32, f32, f32, f32, f32) -> *mut u8;
            sweep_f32_7: (f32, f32, f32, f32, f32, f32, f32) -> f32;
        }
    };
}
