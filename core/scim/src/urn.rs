//! Schema and message URNs defined by RFC 7643 and RFC 7644.

/// Core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// ServiceProviderConfig schema.
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// ResourceType schema.
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// Schema schema (the representation of a schema at `/Schemas`).
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// ListResponse message.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// SearchRequest message (`POST /.search`).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// PatchOp message.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// BulkRequest message.
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// BulkResponse message.
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// Error message.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
