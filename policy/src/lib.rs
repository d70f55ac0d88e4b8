//! `hotcall-policy`: deciding what a dispatch site should promote.
//!
//! This crate's role: take what sites observed (per-thread counters of
//! promoted-slot hits, first-come-first-served miss candidates and a
//! catch-all miss count), aggregate it off the call path, and decide for
//! each site whether to promote targets (which, in which order), demote it
//! to a plain indirect call, or leave it alone; and schedule those
//! decisions (a background thread or a synchronous `tick`).
//!
//! It deliberately does not depend on Cranelift or on executable memory:
//! decisions are plain data (target addresses in slot order, or "bypass"),
//! and the `hotcall` crate turns them into thunks with `hotcall-jit`. That
//! keeps the policies deterministic and testable without generating code.
//!
//! The counters and the policies themselves (`Seed`, `Adaptive`, `Fixed`,
//! `Off`) are the subject of the learning issue; until it lands, sites are
//! promoted by hand with `hotcall::Site::promote`.
