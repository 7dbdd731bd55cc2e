//! The one end-to-end test binary (one link, many modules): the real
//! `scimgate` binary and real plugin `.so`s over real HTTP.

mod host;
mod multinode;
mod oauth2;
mod policies;
mod scim;
mod sessions;
