//! The JIT strategy's thunk: a compare chain over the promoted targets,
//! recompiled (or stamped from a template) whenever the promoted set
//! changes.
//!
//! * [`ir`]: the thunk as Cranelift IR (the same for every ISA);
//! * [`compiler`]: IR to relocatable code through [`crate::pipeline`], for
//!   the host or the other ISA;
//! * `stamp`: one compiled template per thunk shape, copied and stamped
//!   with the targets per use;
//! * [`code`]: the compiled, unplaced thunk and its linking.

pub mod code;
pub mod compiler;
pub mod ir;
mod stamp;
