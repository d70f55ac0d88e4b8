//! The call path: what a caller's call through any site runs before it
//! reaches a thunk or a target.
//!
//! * `signature`: [`SiteFn`](crate::SiteFn), the typed handle over
//!   `extern "C" fn` types (sealed, by macro), and how each calls a thunk;
//! * `abi`: the register file the hand-written call sequences use;
//! * `pin`: [`Pinned`](crate::Pinned), the epoch guard a call borrows;
//! * `retpoline`: hardened mode's retpolined calls into thunks and targets;
//! * `static_entry`: static sites' stubs in the host's text and their
//!   miss stubs, reached by a direct call.

pub(crate) mod abi;
pub(crate) mod pin;
pub mod retpolined;
pub(crate) mod signature;
#[doc(hidden)]
pub mod static_entry;
