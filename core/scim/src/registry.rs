//! Resource types and the [`Registry`] of schemas they use, plus [`SchemaCtx`], the
//! schema view of one resource type that validation, filters, PATCH and projection share.
//!
//! Attribute paths resolve here: names and URNs are case-insensitive and may be
//! fully qualified (`urn:…:enterprise:2.0:User:employeeNumber`).

use serde_json::{json, Value};

use crate::core_schemas;
use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::schema::{Attribute, Schema};
use crate::urn;

/// A schema extension of a resource type (RFC 7643 §6 `schemaExtensions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaExtension {
    /// The extension schema URN.
    pub schema: String,
    /// Whether every resource of the type must carry the extension.
    pub required: bool,
}

/// A resource type (RFC 7643 §6): name, endpoint, core schema and extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// Name and id, e.g. `User`.
    pub name: String,
    /// Endpoint relative to the base URL, e.g. `/Users`.
    pub endpoint: String,
    /// Human-readable description.
    pub description: String,
    /// The core schema URN.
    pub schema: String,
    /// Extension schemas.
    pub extensions: Vec<SchemaExtension>,
}

impl ResourceType {
    /// A resource type without extensions.
    pub fn new(name: &str, endpoint: &str, schema: &str) -> Self {
        ResourceType {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            description: String::new(),
            schema: schema.to_string(),
            extensions: Vec::new(),
        }
    }

    /// Adds an extension schema.
    pub fn with_extension(mut self, schema: &str, required: bool) -> Self {
        self.extensions.push(SchemaExtension {
            schema: schema.to_string(),
            required,
        });
        self
    }

    /// Sets the description.
    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }

    /// Renders the RFC 7643 §6 representation served at `/ResourceTypes/{name}`.
    pub fn to_json(&self, base_url: Option<&str>) -> Value {
        let extensions: Vec<Value> = self
            .extensions
            .iter()
            .map(|extension| json!({ "schema": extension.schema, "required": extension.required }))
            .collect();
        let mut body = json!({
            "schemas": [urn::RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema,
            "schemaExtensions": extensions,
            "meta": { "resourceType": "ResourceType" },
        });
        if let Some(base) = base_url {
            body["meta"]["location"] = Value::String(format!(
                "{}/ResourceTypes/{}",
                base.trim_end_matches('/'),
                self.name
            ));
        }
        body
    }

    /// Reads the RFC 7643 §6 representation.
    pub fn from_json(value: &Value) -> Result<ResourceType, ScimError> {
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let name = text("name")
            .or_else(|| text("id"))
            .ok_or_else(|| ScimError::invalid_syntax("a resource type needs a 'name'"))?;
        let endpoint = text("endpoint").ok_or_else(|| {
            ScimError::invalid_syntax(format!("resource type '{name}' needs an 'endpoint'"))
        })?;
        let schema = text("schema").ok_or_else(|| {
            ScimError::invalid_syntax(format!("resource type '{name}' needs a 'schema'"))
        })?;
        let mut resource_type = ResourceType::new(name, endpoint, schema)
            .describe(text("description").unwrap_or_default());
        if let Some(items) = value.get("schemaExtensions").and_then(Value::as_array) {
            for item in items {
                let schema = item.get("schema").and_then(Value::as_str).ok_or_else(|| {
                    ScimError::invalid_syntax(format!(
                        "an extension of resource type '{name}' needs a 'schema'"
                    ))
                })?;
                let required = item
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                resource_type = resource_type.with_extension(schema, required);
            }
        }
        Ok(resource_type)
    }
}

/// All schemas and resource types a service provider knows.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    schemas: Vec<Schema>,
    resource_types: Vec<ResourceType>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The RFC 7643 registry: User (with the optional Enterprise extension) at
    /// `/Users` and Group at `/Groups`.
    pub fn core() -> Self {
        Registry {
            schemas: vec![
                core_schemas::user_schema(),
                core_schemas::group_schema(),
                core_schemas::enterprise_user_schema(),
            ],
            resource_types: vec![
                ResourceType::new("User", "/Users", urn::USER)
                    .describe("User Account")
                    .with_extension(urn::ENTERPRISE_USER, false),
                ResourceType::new("Group", "/Groups", urn::GROUP).describe("Group"),
            ],
        }
    }

    /// Adds a schema; a schema with the same URN is an error.
    pub fn add_schema(&mut self, schema: Schema) -> Result<&Schema, ScimError> {
        if self.schema(&schema.id).is_some() {
            return Err(ScimError::invalid_value(format!(
                "schema '{}' is already registered",
                schema.id
            )));
        }
        self.schemas.push(schema);
        self.schemas
            .last()
            .ok_or_else(|| ScimError::with_status(500, "schema vanished"))
    }

    /// Adds a schema given in the RFC 7643 §7 JSON representation.
    pub fn add_schema_json(&mut self, value: &Value) -> Result<&Schema, ScimError> {
        self.add_schema(Schema::from_json(value)?)
    }

    /// Adds a schema given as RFC 7643 §7 JSON text.
    pub fn add_schema_json_str(&mut self, text: &str) -> Result<&Schema, ScimError> {
        self.add_schema(Schema::from_json_str(text)?)
    }

    /// Adds a resource type; its schema and extensions must be registered and its
    /// name and endpoint unused.
    pub fn add_resource_type(&mut self, resource_type: ResourceType) -> Result<(), ScimError> {
        for urn in std::iter::once(&resource_type.schema)
            .chain(resource_type.extensions.iter().map(|e| &e.schema))
        {
            if self.schema(urn).is_none() {
                return Err(ScimError::invalid_value(format!(
                    "resource type '{}' uses unknown schema '{urn}'",
                    resource_type.name
                )));
            }
        }
        if self.resource_types.iter().any(|known| {
            known.name.eq_ignore_ascii_case(&resource_type.name)
                || known.endpoint.eq_ignore_ascii_case(&resource_type.endpoint)
        }) {
            return Err(ScimError::invalid_value(format!(
                "resource type '{}' or endpoint '{}' is already registered",
                resource_type.name, resource_type.endpoint
            )));
        }
        self.resource_types.push(resource_type);
        Ok(())
    }

    /// Adds an extension schema (already registered) to an existing resource type.
    pub fn add_extension(
        &mut self,
        resource_type: &str,
        schema: &str,
        required: bool,
    ) -> Result<(), ScimError> {
        if self.schema(schema).is_none() {
            return Err(ScimError::invalid_value(format!(
                "unknown schema '{schema}'"
            )));
        }
        let target = self
            .resource_types
            .iter_mut()
            .find(|known| known.name.eq_ignore_ascii_case(resource_type))
            .ok_or_else(|| {
                ScimError::invalid_value(format!("unknown resource type '{resource_type}'"))
            })?;
        if target
            .extensions
            .iter()
            .any(|extension| extension.schema.eq_ignore_ascii_case(schema))
        {
            return Err(ScimError::invalid_value(format!(
                "'{schema}' already extends '{resource_type}'"
            )));
        }
        target.extensions.push(SchemaExtension {
            schema: schema.to_string(),
            required,
        });
        Ok(())
    }

    /// The schema with URN `id` (case-insensitive).
    pub fn schema(&self, id: &str) -> Option<&Schema> {
        self.schemas.iter().find(|schema| schema.is(id))
    }

    /// All schemas, in registration order.
    pub fn schemas(&self) -> &[Schema] {
        &self.schemas
    }

    /// The resource type named `name` (case-insensitive).
    pub fn resource_type(&self, name: &str) -> Option<&ResourceType> {
        self.resource_types
            .iter()
            .find(|known| known.name.eq_ignore_ascii_case(name))
    }

    /// The resource type served at `endpoint` (e.g. `/Users`, case-insensitive).
    pub fn resource_type_by_endpoint(&self, endpoint: &str) -> Option<&ResourceType> {
        let wanted = endpoint.trim_end_matches('/');
        self.resource_types.iter().find(|known| {
            known
                .endpoint
                .trim_end_matches('/')
                .eq_ignore_ascii_case(wanted)
        })
    }

    /// All resource types, in registration order.
    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    /// The schema view of `resource_type`, used by validation, filters, PATCH and projection.
    pub fn context<'r>(
        &'r self,
        resource_type: &'r ResourceType,
    ) -> Result<SchemaCtx<'r>, ScimError> {
        let core = self.schema(&resource_type.schema).ok_or_else(|| {
            ScimError::with_status(
                500,
                format!("schema '{}' is not registered", resource_type.schema),
            )
        })?;
        let mut extensions = Vec::with_capacity(resource_type.extensions.len());
        for extension in &resource_type.extensions {
            let schema = self.schema(&extension.schema).ok_or_else(|| {
                ScimError::with_status(
                    500,
                    format!("schema '{}' is not registered", extension.schema),
                )
            })?;
            extensions.push((schema, extension.required));
        }
        Ok(SchemaCtx {
            resource_type: Some(resource_type),
            core: Some(core),
            extensions,
        })
    }

    /// The schema view of the resource type named `name`.
    pub fn context_for(&self, name: &str) -> Result<SchemaCtx<'_>, ScimError> {
        let resource_type = self
            .resource_type(name)
            .ok_or_else(|| ScimError::not_found(format!("unknown resource type '{name}'")))?;
        self.context(resource_type)
    }
}

/// Where an attribute lives in a resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Location<'a> {
    /// A top-level member (core schema or common attribute).
    Core,
    /// A member of the object under the extension's URN key.
    Extension(&'a Schema),
}

/// An attribute path resolved against a [`SchemaCtx`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedAttr<'a> {
    /// Where the attribute lives.
    pub location: Location<'a>,
    /// The attribute definition.
    pub attribute: &'a Attribute,
    /// The sub-attribute definition, when the path names one.
    pub sub_attribute: Option<&'a Attribute>,
}

/// The schemas of one resource type: core schema plus extensions.
///
/// [`SchemaCtx::schemaless`] gives a view without schema, in which every attribute
/// is treated as a case-insensitive string (useful for tests and ad-hoc filtering).
#[derive(Debug, Clone)]
pub struct SchemaCtx<'a> {
    /// The resource type, when known.
    pub resource_type: Option<&'a ResourceType>,
    /// The core schema (absent only in the schemaless view).
    pub core: Option<&'a Schema>,
    /// Extension schemas with their `required` flag.
    pub extensions: Vec<(&'a Schema, bool)>,
}

impl<'a> SchemaCtx<'a> {
    /// A view without schemas: attributes are unknown, strings compare case-insensitively.
    pub fn schemaless() -> SchemaCtx<'static> {
        SchemaCtx {
            resource_type: None,
            core: None,
            extensions: Vec::new(),
        }
    }

    /// Whether this view has no schema (anything goes).
    pub fn is_schemaless(&self) -> bool {
        self.core.is_none()
    }

    /// The extension schema with URN `urn` (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&'a Schema> {
        self.extensions
            .iter()
            .map(|(schema, _)| *schema)
            .find(|schema| schema.is(urn))
    }

    /// Whether `urn` is the core schema.
    pub fn is_core(&self, urn: &str) -> bool {
        self.core.is_some_and(|core| core.is(urn))
    }

    /// Resolves a top-level attribute name, optionally qualified by a schema URN.
    /// Unqualified names look in the common attributes, the core schema, then the extensions.
    pub fn resolve_name(
        &self,
        urn: Option<&str>,
        name: &str,
    ) -> Option<(Location<'a>, &'a Attribute)> {
        let common = core_schemas::common_attributes();
        match urn {
            Some(urn) if self.is_core(urn) => common
                .attribute(name)
                .or_else(|| self.core.and_then(|core| core.attribute(name)))
                .map(|attribute| (Location::Core, attribute)),
            Some(urn) => {
                let schema = self.extension(urn)?;
                schema
                    .attribute(name)
                    .map(|attribute| (Location::Extension(schema), attribute))
            }
            None => {
                if let Some(attribute) = common
                    .attribute(name)
                    .or_else(|| self.core.and_then(|core| core.attribute(name)))
                {
                    return Some((Location::Core, attribute));
                }
                self.extensions.iter().find_map(|(schema, _)| {
                    schema
                        .attribute(name)
                        .map(|attribute| (Location::Extension(schema), attribute))
                })
            }
        }
    }

    /// Resolves a full attribute path (`urn`, attribute, sub-attribute). `None` when
    /// the attribute or sub-attribute is not defined.
    pub fn resolve(&self, path: &AttrPath) -> Option<ResolvedAttr<'a>> {
        let (location, attribute) = self.resolve_name(path.urn.as_deref(), &path.attr)?;
        let sub_attribute = match &path.sub_attr {
            Some(sub) => Some(attribute.sub_attribute(sub)?),
            None => None,
        };
        Some(ResolvedAttr {
            location,
            attribute,
            sub_attribute,
        })
    }

    /// The URN every resource of this type must list in `schemas`.
    pub fn core_urn(&self) -> Option<&'a str> {
        self.core.map(|core| core.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_registry_resolves_paths_case_insensitively() {
        let registry = Registry::core();
        let context = registry.context_for("user").expect("User resource type");
        let path = AttrPath::new("NAME").with_sub("GivenName");
        let resolved = context.resolve(&path).expect("name.givenName resolves");
        assert_eq!(resolved.attribute.name, "name");
        assert_eq!(
            resolved.sub_attribute.map(|sub| sub.name.as_str()),
            Some("givenName")
        );

        let qualified =
            AttrPath::new("employeeNumber").with_urn(&urn::ENTERPRISE_USER.to_uppercase());
        let resolved = context
            .resolve(&qualified)
            .expect("qualified extension attribute");
        assert!(
            matches!(resolved.location, Location::Extension(schema) if schema.id == urn::ENTERPRISE_USER)
        );

        let unqualified = context
            .resolve(&AttrPath::new("department"))
            .expect("falls back to extensions");
        assert_eq!(unqualified.attribute.name, "department");
        assert!(context.resolve(&AttrPath::new("nope")).is_none());
        assert!(context.resolve(&AttrPath::new("id")).is_some());
    }

    #[test]
    fn resource_type_json_round_trips() {
        let registry = Registry::core();
        let user = registry.resource_type("User").expect("User");
        let body = user.to_json(Some("https://example.com/v2/"));
        assert_eq!(
            body["meta"]["location"],
            "https://example.com/v2/ResourceTypes/User"
        );
        assert_eq!(body["schemaExtensions"][0]["schema"], urn::ENTERPRISE_USER);
        assert_eq!(ResourceType::from_json(&body).as_ref(), Ok(user));
    }

    #[test]
    fn registering_checks_schemas_and_duplicates() {
        let mut registry = Registry::core();
        let unknown = ResourceType::new("Device", "/Devices", "urn:example:Device");
        assert!(registry.add_resource_type(unknown).is_err());
        assert!(registry.add_schema(core_schemas::group_schema()).is_err());
        let duplicate = ResourceType::new("user", "/Other", urn::USER);
        assert!(registry.add_resource_type(duplicate).is_err());
        assert!(registry.resource_type_by_endpoint("/users/").is_some());
    }
}
