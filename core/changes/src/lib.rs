//! scimgate's change feed, the self-contained part: the change record
//! ([`record`]), its Security Event Token form ([`event`]), JWS signatures
//! and the JWKS document ([`sign`]), retry timing ([`backoff`]) and the
//! push-delivery engine ([`deliver`]) that POSTs signed events to webhook
//! subscribers in order, at least once, independent of the storage behind
//! it ([`memory`] is the in-memory storage used by tests and examples).
//!
//! Nothing here uses an async runtime or the host: the engine runs on a
//! plain thread with blocking I/O, so it can live inside a plugin.
//!
//! Everything but [`record`] is the cargo feature `push` (default): a store
//! or engine that only writes and reads the log depends on this crate with
//! `default-features = false` and pulls no HTTP client or crypto.

#[cfg(feature = "push")]
pub mod backoff;
#[cfg(feature = "push")]
pub mod deliver;
#[cfg(feature = "push")]
pub mod event;
#[cfg(feature = "push")]
pub mod memory;
pub mod record;
#[cfg(feature = "push")]
pub mod sign;

#[cfg(feature = "push")]
pub use deliver::{
    ChangeSource, Clock, Deliverer, Notifier, Position, PositionStore, SignatureKind, State,
    Status, StepOutcome, Subscriber, SystemClock,
};
#[cfg(feature = "push")]
pub use event::Issuer;
pub use record::{Change, Op};
