//! Protocol messages other than errors: the ListResponse body (RFC 7644 §3.4.2).

use serde_json::{json, Value};

use crate::urn;

/// Renders a ListResponse: `totalResults` (all matches), `startIndex` (1-based) and
/// `itemsPerPage` (= `resources.len()`), and `Resources`.
pub fn list_response(resources: Vec<Value>, total_results: u64, start_index: u64) -> Value {
    json!({
        "schemas": [urn::LIST_RESPONSE],
        "totalResults": total_results,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_list_response() {
        let body = list_response(vec![json!({"id": "1"})], 7, 3);
        assert_eq!(
            body,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 7, "startIndex": 3, "itemsPerPage": 1,
                "Resources": [{"id": "1"}]
            })
        );
    }
}
