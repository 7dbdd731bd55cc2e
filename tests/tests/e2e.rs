//! The one end-to-end test binary (one link, many modules): the real
//! `scimgate` binary and real plugin `.so`s over real HTTP.

mod backends;
mod binding;
mod canonical;
mod changes;
mod changes_cli;
mod client_cert;
mod conformance;
mod crash;
mod edge;
mod host;
mod kit;
mod ldap;
mod lockout;
mod methods;
mod metrics;
mod multinode;
mod multiparty;
mod oauth2;
mod operator;
mod packaging;
mod passwords;
mod pgtls;
mod policies;
mod push;
mod scim;
mod sessions;
mod tls;
