//! Test modules of the integration binary.

mod dialects;
mod discovery;
mod filter_edges;
mod filter_evaluation;
mod fixtures;
mod patch_edges;
mod profile_engine;
mod profile_entra;
mod profile_okta;
mod profile_one_identity;
mod projection_sort;
mod properties;
mod regression;
mod request_properties;
mod rfc_filters;
mod rfc_patch;
mod sensitive;
mod validation;
