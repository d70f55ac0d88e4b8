//! Value types and thunk signatures, independent of Cranelift.
//!
//! A [`ThunkSig`] is the signature of the *target* functions a site dispatches
//! to. The thunk itself takes one extra leading parameter: the target address.

use std::fmt;
use std::str::FromStr;

use crate::error::JitError;

/// Most parameters a site signature may have (the thunk takes one more).
pub const MAX_PARAMS: usize = 8;

/// The value types a dispatch site can carry, as the C ABI sees them.
///
/// Signedness is kept because the ABI's extension rules differ: on x86-64,
/// Rust and clang callees rely on 8- and 16-bit arguments being sign- or
/// zero-extended to 32 bits by the caller, so the thunk must extend them
/// the same way when it forwards them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    /// C `_Bool` / Rust `bool`: one byte, 0 or 1, zero-extended.
    Bool,
    F32,
    F64,
    /// A raw pointer (or `isize`/`usize`, which the ABI treats the same).
    Ptr,
}

impl ValType {
    /// Every supported type, in a fixed order (tests iterate it).
    pub const ALL: [ValType; 12] = [
        ValType::I8,
        ValType::I16,
        ValType::I32,
        ValType::I64,
        ValType::U8,
        ValType::U16,
        ValType::U32,
        ValType::U64,
        ValType::Bool,
        ValType::F32,
        ValType::F64,
        ValType::Ptr,
    ];

    /// The spelling used by [`ThunkSig`]'s parser and printer.
    pub fn name(self) -> &'static str {
        match self {
            ValType::I8 => "i8",
            ValType::I16 => "i16",
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::U8 => "u8",
            ValType::U16 => "u16",
            ValType::U32 => "u32",
            ValType::U64 => "u64",
            ValType::Bool => "bool",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::Ptr => "ptr",
        }
    }

    /// Whether the type travels in a floating-point register.
    pub const fn is_float(self) -> bool {
        matches!(self, ValType::F32 | ValType::F64)
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ValType {
    type Err = JitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match s.trim() {
            "i8" => ValType::I8,
            "i16" => ValType::I16,
            "i32" => ValType::I32,
            "i64" | "isize" => ValType::I64,
            "u8" => ValType::U8,
            "u16" => ValType::U16,
            "u32" => ValType::U32,
            "u64" | "usize" => ValType::U64,
            "bool" => ValType::Bool,
            "f32" => ValType::F32,
            "f64" => ValType::F64,
            "ptr" | "*const" | "*mut" => ValType::Ptr,
            other => {
                return Err(JitError::UnsupportedSignature(format!(
                    "unknown type `{other}` (supported: i8 i16 i32 i64 u8 u16 u32 u64 isize usize bool f32 f64 ptr)"
                )));
            }
        };
        Ok(t)
    }
}

/// The signature of the functions a site calls: 0 to [`MAX_PARAMS`]
/// parameters and an optional return value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThunkSig {
    params: Vec<ValType>,
    ret: Option<ValType>,
}

impl ThunkSig {
    /// A checked signature: more than [`MAX_PARAMS`] parameters is an error.
    pub fn new(params: &[ValType], ret: Option<ValType>) -> Result<Self, JitError> {
        if params.len() > MAX_PARAMS {
            return Err(JitError::UnsupportedSignature(format!(
                "{} parameters; a site supports at most {MAX_PARAMS}",
                params.len()
            )));
        }
        Ok(ThunkSig {
            params: params.to_vec(),
            ret,
        })
    }

    pub fn params(&self) -> &[ValType] {
        &self.params
    }

    pub fn ret(&self) -> Option<ValType> {
        self.ret
    }
}

impl fmt::Display for ThunkSig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(")->")?;
        match self.ret {
            Some(r) => write!(f, "{r}"),
            None => f.write_str("()"),
        }
    }
}

impl FromStr for ThunkSig {
    type Err = JitError;

    /// Parses `(i64,f64)->i64`, `(ptr)` or `()->()`; whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |why: &str| {
            JitError::UnsupportedSignature(format!(
                "cannot parse signature `{s}`: {why} (expected e.g. `(i64,f64)->i64`)"
            ))
        };
        let rest = compact
            .strip_prefix('(')
            .ok_or_else(|| bad("missing `(`"))?;
        let close = rest.find(')').ok_or_else(|| bad("missing `)`"))?;
        let (inner, after) = (&rest[..close], &rest[close + 1..]);
        let params = if inner.is_empty() {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(ValType::from_str)
                .collect::<Result<Vec<_>, _>>()?
        };
        let ret = match after {
            "" | "->()" => None,
            r => Some(
                r.strip_prefix("->")
                    .ok_or_else(|| bad("expected `->` after the parameters"))?
                    .parse()?,
            ),
        };
        ThunkSig::new(&params, ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in ["(i64,f64)->i64", "()->()", "(ptr,u8,bool)->f32"] {
            let sig: ThunkSig = s.parse().unwrap();
            assert_eq!(sig.to_string(), s);
        }
        let sig: ThunkSig = " ( usize , isize ) ".parse().unwrap();
        assert_eq!(sig.to_string(), "(u64,i64)->()");
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = "(i128)->i64".parse::<ThunkSig>().unwrap_err().to_string();
        assert!(e.contains("unknown type `i128`"), "{e}");
        let e = "(i8,i8,i8,i8,i8,i8,i8,i8,i8)"
            .parse::<ThunkSig>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 8"), "{e}");
        assert!("i64->i64".parse::<ThunkSig>().is_err());
        assert!("(i64)i64".parse::<ThunkSig>().is_err());
    }
}
