//! Test modules of the integration binary.

mod dialects;
mod discovery;
mod fixtures;
mod projection_sort;
mod properties;
mod regression;
mod request_properties;
mod rfc_filters;
mod rfc_patch;
mod sensitive;
mod validation;
