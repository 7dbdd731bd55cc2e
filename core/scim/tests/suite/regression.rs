//! Regression tests, each named after the bug it pins.

use super::fixtures::bjensen;
use scimgate_scim::patch::{apply_patch, PatchRequest};
use scimgate_scim::Registry;
use serde_json::json;

/// A `replace` without a value on a value path that matches nothing used to
/// delete every value of the attribute (the values were taken out before the
/// no-match was noticed, and the no-target error was then swallowed).
#[test]
fn replace_without_value_on_unmatched_value_path_keeps_all_values() {
    let registry = Registry::core();
    let ctx = registry.context_for("User").unwrap();
    let user = bjensen();
    let before = user["emails"].clone();
    assert!(before.as_array().is_some_and(|a| !a.is_empty()));
    for value in [None, Some(serde_json::Value::Null)] {
        let mut op = json!({"op": "replace", "path": "emails[type eq \"nope\"]"});
        if let Some(v) = &value {
            op["value"] = v.clone();
        }
        let request = PatchRequest::parse(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [op]
        }))
        .unwrap();
        let patched = apply_patch(&ctx, &user, &request).unwrap();
        assert_eq!(patched["emails"], before, "value {value:?}");
    }
}
