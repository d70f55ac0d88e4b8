//! Typed signatures: which Rust function-pointer types a [`Site`] accepts.
//!
//! A site's type parameter is an `extern "C" fn(A0, .., An) -> R` with up to
//! eight parameters. Each parameter type implements [`Param`] and the return
//! type implements [`Return`]; both traits are sealed, so any other type
//! (`i128`, a struct, a reference, a Rust-ABI fn) fails to compile. The
//! mapping to the Cranelift signature is [`SiteFn::signature`].
//!
//! [`Site`]: crate::Site
//!
//! These do not compile: an unsupported type, nine parameters, the Rust ABI.
//!
//! ```compile_fail
//! let site = hotcall::Engine::new().site::<extern "C" fn(i128) -> i64>();
//! ```
//! ```compile_fail
//! let site = hotcall::Engine::new().site::<extern "C" fn(i64) -> [u8; 16]>();
//! ```
//! ```compile_fail
//! type Nine = extern "C" fn(i8, i8, i8, i8, i8, i8, i8, i8, i8);
//! let site = hotcall::Engine::new().site::<Nine>();
//! ```
//! ```compile_fail
//! let site = hotcall::Engine::new().site::<fn(i64) -> i64>();
//! ```
//! ```compile_fail
//! let site = hotcall::Engine::new().site::<extern "C" fn(&i64) -> i64>();
//! ```
//! The same with supported types compiles:
//! ```
//! let site = hotcall::Engine::new().site::<extern "C" fn(i64, *const u8) -> f64>();
//! ```

use hotcall_jit::{ThunkSig, ValType};

mod sealed {
    pub trait Sealed {}
}

/// A type that can be a site parameter. Sealed.
pub trait Param: sealed::Sealed + Copy + 'static {
    /// How the ABI passes it.
    const TYPE: ValType;

    /// The register image of the value as a C caller passes it: integers
    /// sign- or zero-extended to 64 bits (which covers the extension to 32
    /// bits callees rely on), `bool` as 0/1, floats as their bits in the low
    /// end of the vector register. For hotcall's own `asm!` calls.
    #[doc(hidden)]
    fn to_reg(self) -> u64;
}

/// A type that can be a site return value: a [`Param`] type or `()`. Sealed.
pub trait Return: sealed::Sealed + 'static {
    /// How the ABI returns it, `None` for `()`.
    const TYPE: Option<ValType>;

    /// The value from the return registers (`rax`/`x0` and
    /// `xmm0`/`v0`), for hotcall's own `asm!` calls.
    #[doc(hidden)]
    fn from_regs(int: u64, float: u64) -> Self;
}

macro_rules! impl_param {
    ($($t:ty => $v:ident: |$x:ident| $to:expr, |$i:ident, $f:ident| $from:expr;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Param for $t {
            const TYPE: ValType = ValType::$v;
            #[inline(always)]
            fn to_reg(self) -> u64 {
                let $x = self;
                $to
            }
        }
        impl Return for $t {
            const TYPE: Option<ValType> = Some(ValType::$v);
            #[inline(always)]
            fn from_regs($i: u64, $f: u64) -> Self {
                let _ = ($i, $f);
                $from
            }
        }
    )*};
}

impl_param! {
    i8 => I8: |x| x as i64 as u64, |i, f| i as i8;
    i16 => I16: |x| x as i64 as u64, |i, f| i as i16;
    i32 => I32: |x| x as i64 as u64, |i, f| i as i32;
    i64 => I64: |x| x as u64, |i, f| i as i64;
    u8 => U8: |x| x as u64, |i, f| i as u8;
    u16 => U16: |x| x as u64, |i, f| i as u16;
    u32 => U32: |x| x as u64, |i, f| i as u32;
    u64 => U64: |x| x, |i, f| i;
    isize => I64: |x| x as u64, |i, f| i as isize;
    usize => U64: |x| x as u64, |i, f| i as usize;
    // C's _Bool comes back in the low byte; the rest is unspecified.
    bool => Bool: |x| x as u64, |i, f| i as u8 != 0;
    f32 => F32: |x| x.to_bits() as u64, |i, f| f32::from_bits(f as u32);
    f64 => F64: |x| x.to_bits(), |i, f| f64::from_bits(f);
}

impl<T: 'static> sealed::Sealed for *const T {}
impl<T: 'static> Param for *const T {
    const TYPE: ValType = ValType::Ptr;
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as usize as u64
    }
}
impl<T: 'static> Return for *const T {
    const TYPE: Option<ValType> = Some(ValType::Ptr);
    #[inline(always)]
    fn from_regs(int: u64, _: u64) -> Self {
        int as usize as *const T
    }
}
impl<T: 'static> sealed::Sealed for *mut T {}
impl<T: 'static> Param for *mut T {
    const TYPE: ValType = ValType::Ptr;
    #[inline(always)]
    fn to_reg(self) -> u64 {
        self as usize as u64
    }
}
impl<T: 'static> Return for *mut T {
    const TYPE: Option<ValType> = Some(ValType::Ptr);
    #[inline(always)]
    fn from_regs(int: u64, _: u64) -> Self {
        int as usize as *mut T
    }
}

impl sealed::Sealed for () {}
impl Return for () {
    const TYPE: Option<ValType> = None;
    #[inline(always)]
    fn from_regs(_: u64, _: u64) -> Self {}
}

/// Counts the integer-class types of `params`.
const fn count_ints(params: &[ValType]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < params.len() {
        if !params[i].is_float() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// A function-pointer type a site can dispatch: `extern "C" fn(A0..An) -> R`
/// with `n <= 8`. Sealed; implemented by macro for every arity.
pub trait SiteFn: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The arguments as a tuple: `()`, `(A0,)`, `(A0, A1)`, ...
    type Args: Copy;
    /// The return type.
    type Ret: Return;
    /// The parameter types, in order.
    const PARAMS: &'static [ValType];
    /// The return type, `None` for `()`.
    const RET: Option<ValType>;
    /// How many parameters travel in integer registers (or, past the
    /// registers, on the stack).
    const INT_PARAMS: usize = count_ints(Self::PARAMS);
    /// How many parameters travel in floating-point registers.
    const FLOAT_PARAMS: usize = Self::PARAMS.len() - Self::INT_PARAMS;

    /// Appends the arguments' register images to `regs`, integers and
    /// floats each in order (how the C ABI assigns registers), for
    /// hotcall's own `asm!` calls.
    #[doc(hidden)]
    fn pack(args: Self::Args, regs: &mut crate::call::abi::RegFile);

    /// The signature the thunk compiler needs.
    fn signature() -> ThunkSig {
        ThunkSig::new(Self::PARAMS, Self::RET).expect("arity is at most 8 by construction")
    }

    /// The function's address.
    fn addr(self) -> usize;

    /// A plain indirect call.
    fn call_indirect(self, args: Self::Args) -> Self::Ret;

    /// Calls `target` through the thunk at `thunk`.
    ///
    /// # Safety
    /// `thunk` must be the entry of executable code compiled for
    /// [`Self::signature`] (an `extern "C" fn(target, args..) -> R`) that
    /// stays executable until this call returns.
    unsafe fn call_thunk(thunk: usize, target: Self, args: Self::Args) -> Self::Ret;
}

macro_rules! impl_site_fn {
    ($($a:ident: $A:ident),*) => {
        impl<R: Return, $($A: Param),*> sealed::Sealed for extern "C" fn($($A),*) -> R {}

        impl<R: Return, $($A: Param),*> SiteFn for extern "C" fn($($A),*) -> R {
            type Args = ($($A,)*);
            type Ret = R;
            const PARAMS: &'static [ValType] = &[$(<$A as Param>::TYPE),*];
            const RET: Option<ValType> = <R as Return>::TYPE;

            #[inline(always)]
            fn pack(($($a,)*): Self::Args, regs: &mut crate::call::abi::RegFile) {
                let _ = &regs;
                $(regs.push(const { <$A as Param>::TYPE.is_float() }, $a.to_reg());)*
            }

            #[inline(always)]
            fn addr(self) -> usize {
                self as usize
            }

            #[inline(always)]
            fn call_indirect(self, ($($a,)*): Self::Args) -> R {
                self($($a),*)
            }

            #[inline(always)]
            unsafe fn call_thunk(thunk: usize, target: Self, ($($a,)*): Self::Args) -> R {
                // SAFETY: the caller guarantees `thunk` is live code with
                // exactly this ABI: the target pointer first, then the
                // target's own parameters and return.
                let thunk: extern "C" fn(Self, $($A),*) -> R = unsafe { std::mem::transmute(thunk) };
                thunk(target, $($a),*)
            }
        }
    };
}

impl_site_fn!();
impl_site_fn!(a0: A0);
impl_site_fn!(a0: A0, a1: A1);
impl_site_fn!(a0: A0, a1: A1, a2: A2);
impl_site_fn!(a0: A0, a1: A1, a2: A2, a3: A3);
impl_site_fn!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4);
impl_site_fn!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5);
impl_site_fn!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5, a6: A6);
impl_site_fn!(a0: A0, a1: A1, a2: A2, a3: A3, a4: A4, a5: A5, a6: A6, a7: A7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_map_from_rust_types() {
        type F = extern "C" fn(i8, f64, *const u8, bool, usize) -> f32;
        assert_eq!(F::signature().to_string(), "(i8,f64,ptr,bool,u64)->f32");
        type G = extern "C" fn();
        assert_eq!(G::signature().to_string(), "()->()");
        assert_eq!((F::INT_PARAMS, F::FLOAT_PARAMS), (4, 1));
        assert_eq!((G::INT_PARAMS, G::FLOAT_PARAMS), (0, 0));
    }
}
