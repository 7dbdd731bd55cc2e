//! SCIM 2.0 protocol library (placeholder; being written).
