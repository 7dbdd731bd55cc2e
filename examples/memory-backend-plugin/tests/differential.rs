//! The engine's differential test (`conformance::differential`) against the
//! in-memory backend: what it lists, over all pages, with and without
//! `sortBy`, must be exactly what `Filter::matches` and the in-memory sort
//! give. 32 cases (`SCIMGATE_PROPTEST_CASES` overrides).

use std::sync::Arc;

use memory::MemoryBackend;
use scimgate_scim::Registry;
use scimgate_scim_service::conformance::{self, Options};
use scimgate_scim_service::{ScimService, Settings};

#[test]
fn the_memory_backend_agrees_with_the_engine() {
    conformance::differential(
        || {
            ScimService::new(
                Settings::default(),
                Registry::core(),
                Arc::new(MemoryBackend::default()),
            )
        },
        &Options::new(32),
    );
}
