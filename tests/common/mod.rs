//! Code shared by the integration tests (each test file that uses it
//! declares `#[macro_use] mod common;`).

#[macro_use]
pub mod cases;
