//! Durations and sizes in `[server]`: the one grammar every component uses,
//! from `scimgate_abi::units`.

pub use scimgate_abi::units::{parse_duration, parse_size};
