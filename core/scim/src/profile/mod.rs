//! One profile engine for every IGA client. A client's quirks (query name case,
//! PATCH dialects, group member completion, extra schema URNs, 204 for group
//! PATCH, attribute mapping, log redaction) are settings of [`Settings`]; a
//! client is a preset of values for them (`core/scim/presets/*.toml`), so a new
//! IGA client is a TOML file, not code. [`ProfileEngine`] implements the
//! plugin `Profile` trait: it parses a request body once, runs the dialect
//! steps and the mapping, and serialises once. PATCH normalisation has this one
//! owner: the SCIM service parses RFC 7644 PatchOp only. See docs/profiles.md.

mod component;
mod engine;
mod members;
mod presets;
mod settings;

pub use component::{engine_for, generic_component, preset_component, settings_for};
pub use engine::ProfileEngine;
pub use presets::{preset, preset_names, resolve, resolve_with_preset_key};
pub use settings::Settings;
