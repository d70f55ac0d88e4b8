//! The errors hotcall reports. None of them takes the host down: a site
//! that cannot get a thunk keeps working as a plain indirect call.

pub use hotcall_jit::JitError;

/// An error from an engine or a site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Compilation, placement or code memory failed (or the request was
    /// invalid: too many slots, a null or repeated target).
    #[error(transparent)]
    Jit(#[from] JitError),
    /// The engine could not set up code generation at all (no code memory,
    /// unsupported host); every site of it is a plain indirect call.
    #[error("the engine has no code generation: {0}")]
    EngineDisabled(JitError),
    /// A static site could not do what was asked (see the message); it
    /// keeps dispatching as before.
    #[error("static site {site}: {why}")]
    StaticSite { site: &'static str, why: String },
}

/// Serializes an optional error as its message (or `null`), for JSON
/// statistics.
#[cfg(feature = "serde")]
pub(crate) fn serialize_opt_display<S: serde::Serializer, E: std::fmt::Display>(
    e: &Option<E>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}
