//! The examples of the plugin guide, compiled: docs/plugins.md is this
//! crate's documentation, so every Rust block in it is a doctest and
//! `cargo test --workspace` (or `cargo test -p scimgate-guide-plugin --doc`)
//! fails when one stops compiling or asserting. Blocks that are not Rust
//! are marked with their language (`toml`, `text`).
#![doc = include_str!("../../../docs/plugins.md")]
