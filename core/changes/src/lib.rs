//! scimgate's change feed, the self-contained part: the change record
//! ([`record`]), its Security Event Token form ([`event`]), JWS signatures
//! and the JWKS document ([`sign`]), retry timing ([`backoff`]) and the
//! push-delivery engine ([`deliver`]) that POSTs signed events to webhook
//! subscribers in order, at least once, independent of the storage behind
//! it ([`memory`] is the in-memory storage used by tests and examples).
//!
//! Nothing here uses an async runtime or the host: the engine runs on a
//! plain thread with blocking I/O, so it can live inside a plugin.

pub mod backoff;
pub mod deliver;
pub mod event;
pub mod memory;
pub mod record;
pub mod sign;

pub use deliver::{
    ChangeSource, Clock, Deliverer, Notifier, Position, PositionStore, SignatureKind, State,
    Status, StepOutcome, Subscriber, SystemClock,
};
pub use event::Issuer;
pub use record::{Change, Op};
