//! `hotcall-emu`: runs hotcall's generated code for an ISA the host cannot
//! execute (aarch64 on this project's x86-64 machines) under qemu-user.
//!
//! * [`toolchain`]: finding qemu and the cross compiler; the tests' policy
//!   when they are missing ([`toolchain_for_tests`]);
//! * [`harness`]: a small static C program built for the ISA, with real
//!   target functions of every signature under test ([`targets`]), that
//!   runs [`program`]s: map memory at fixed addresses, write bytes, call
//!   addresses with full argument register files, and report what each
//!   call returned, which target ran with which arguments, callee-saved
//!   registers and faults;
//! * [`model`]: what the targets compute, in Rust;
//! * [`abi`]: where a C caller puts each argument;
//! * [`thunks`]: publication (write + the ISA's cache maintenance) and the
//!   expected results of thunk calls;
//! * [`trace`] and [`paths`]: instructions executed per thunk path, from
//!   qemu's execution trace and from a static walk of the code;
//! * [`report`]: the side-by-side ISA table of `hotcall isa-report`.
//!
//! It is a crate of its own so the integration tests and the `hotcall`
//! CLI (`hotcall isa-report`) share it, and so code that does not need it
//! (the engine) does not depend on it. See docs/isa/.

pub mod abi;
pub mod error;
pub mod harness;
pub mod model;
pub mod paths;
pub mod program;
pub mod report;
pub mod targets;
pub mod thunks;
pub mod toolchain;
pub mod trace;

pub use error::EmuError;
pub use harness::{Harness, HarnessInfo};
pub use program::{CallResult, Fault, LayoutId, OpId, OpResult, Outcome, Program};
pub use thunks::Publisher;
pub use toolchain::{SKIP_ENV, Toolchain, toolchain_for_tests};
