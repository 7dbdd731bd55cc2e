//! The one integration-test binary of `scimgate-scim`: RFC 7644 examples as fixtures,
//! behaviour tests per module and property tests.

mod suite;
