//! The RFC 7643 §2 and §7 schema model: [`Schema`], [`Attribute`] and their characteristics.
//!
//! Schemas are read from and rendered to the RFC's own JSON representation (the
//! body served at `/Schemas/{id}`). Attribute names compare case-insensitively.

use serde_json::{json, Map, Value};

use crate::error::ScimError;
use crate::urn;

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// A sequence of characters.
    String,
    /// `true` or `false`.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An RFC 3339 `date-time` string (an instant).
    DateTime,
    /// Base64-encoded bytes.
    Binary,
    /// A URI (to a SCIM resource, an external resource or a URI).
    Reference,
    /// A set of sub-attributes.
    Complex,
}

impl AttrType {
    /// The name used in schema JSON (`"dateTime"`, `"complex"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }

    /// Parses a schema type name, case-insensitively.
    pub fn parse(name: &str) -> Option<AttrType> {
        [
            AttrType::String,
            AttrType::Boolean,
            AttrType::Decimal,
            AttrType::Integer,
            AttrType::DateTime,
            AttrType::Binary,
            AttrType::Reference,
            AttrType::Complex,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// Whether and when an attribute may be modified (RFC 7643 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mutability {
    /// Set by the service provider only; ignored on create/replace input, an error in PATCH.
    ReadOnly,
    /// May be updated and read at any time (the default).
    #[default]
    ReadWrite,
    /// May be set once (on creation or when first assigned), never changed after.
    Immutable,
    /// May be set, never returned.
    WriteOnly,
}

impl Mutability {
    /// The name used in schema JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
    fn parse(name: &str) -> Option<Mutability> {
        [
            Mutability::ReadOnly,
            Mutability::ReadWrite,
            Mutability::Immutable,
            Mutability::WriteOnly,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// When an attribute is returned in a response (RFC 7643 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Returned {
    /// Always returned, whatever `attributes`/`excludedAttributes` say.
    Always,
    /// Never returned (e.g. `password`).
    Never,
    /// Returned unless excluded (the default).
    #[default]
    Default,
    /// Returned only when named in `attributes`.
    Request,
}

impl Returned {
    /// The name used in schema JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
    fn parse(name: &str) -> Option<Returned> {
        [
            Returned::Always,
            Returned::Never,
            Returned::Default,
            Returned::Request,
        ]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// How unique a value must be (RFC 7643 §2.2). Enforced by the store, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Uniqueness {
    /// No uniqueness (the default).
    #[default]
    None,
    /// Unique within the service provider's tenant.
    Server,
    /// Globally unique.
    Global,
}

impl Uniqueness {
    /// The name used in schema JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
    fn parse(name: &str) -> Option<Uniqueness> {
        [Uniqueness::None, Uniqueness::Server, Uniqueness::Global]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }
}

/// One attribute definition with its characteristics (RFC 7643 §2.2, §7).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Canonical name, e.g. `userName`.
    pub name: String,
    /// Data type.
    pub attr_type: AttrType,
    /// Whether values are arrays.
    pub multi_valued: bool,
    /// Human-readable description.
    pub description: String,
    /// Whether a value must be present.
    pub required: bool,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Suggested values (informational; not enforced, as RFC 7643 §2.2 allows).
    pub canonical_values: Vec<String>,
    /// Modification rules.
    pub mutability: Mutability,
    /// Return rules.
    pub returned: Returned,
    /// Uniqueness rule (for stores).
    pub uniqueness: Uniqueness,
    /// For `reference`: the resource types it may point to (`User`, `external`, `uri`, …).
    pub reference_types: Vec<String>,
    /// For `complex`: the sub-attributes.
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// A single-valued, optional, readWrite attribute with RFC 7643 §2.2 defaults.
    pub fn new(name: &str, attr_type: AttrType) -> Self {
        Attribute {
            name: name.to_string(),
            attr_type,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            canonical_values: Vec::new(),
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
        }
    }

    /// Looks up a sub-attribute by name, case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|sub| sub.name.eq_ignore_ascii_case(name))
    }

    /// Sets `multiValued: true`.
    pub fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    /// Sets `required: true`.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Sets `caseExact: true`.
    pub fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    /// Sets the description.
    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }
    /// Sets the mutability.
    pub fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }
    /// Sets the returned rule.
    pub fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }
    /// Sets the uniqueness.
    pub fn uniqueness(mut self, uniqueness: Uniqueness) -> Self {
        self.uniqueness = uniqueness;
        self
    }
    /// Sets the canonical values.
    pub fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|value| value.to_string()).collect();
        self
    }
    /// Sets the reference types.
    pub fn references(mut self, types: &[&str]) -> Self {
        self.reference_types = types.iter().map(|value| value.to_string()).collect();
        self
    }
    /// Sets the sub-attributes (and makes the attribute complex).
    pub fn with_sub_attributes(mut self, subs: Vec<Attribute>) -> Self {
        self.attr_type = AttrType::Complex;
        self.sub_attributes = subs;
        self
    }

    /// Renders the attribute in the RFC 7643 §7 representation.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), json!(self.name));
        object.insert("type".into(), json!(self.attr_type.as_str()));
        if self.attr_type == AttrType::Complex {
            let subs: Vec<Value> = self.sub_attributes.iter().map(Attribute::to_json).collect();
            object.insert("subAttributes".into(), Value::Array(subs));
        }
        object.insert("multiValued".into(), json!(self.multi_valued));
        object.insert("description".into(), json!(self.description));
        object.insert("required".into(), json!(self.required));
        if !self.canonical_values.is_empty() {
            object.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if self.attr_type != AttrType::Complex && self.attr_type != AttrType::Boolean {
            object.insert("caseExact".into(), json!(self.case_exact));
        }
        object.insert("mutability".into(), json!(self.mutability.as_str()));
        object.insert("returned".into(), json!(self.returned.as_str()));
        if self.attr_type != AttrType::Complex && self.attr_type != AttrType::Boolean {
            object.insert("uniqueness".into(), json!(self.uniqueness.as_str()));
        }
        if self.attr_type == AttrType::Reference {
            object.insert("referenceTypes".into(), json!(self.reference_types));
        }
        Value::Object(object)
    }

    /// Reads an attribute from the RFC 7643 §7 representation (defaults per §2.2).
    pub fn from_json(value: &Value) -> Result<Attribute, ScimError> {
        Self::from_json_at(value, "", 0)
    }

    fn from_json_at(value: &Value, parent: &str, depth: usize) -> Result<Attribute, ScimError> {
        let object = value.as_object().ok_or_else(|| {
            ScimError::invalid_syntax(format!(
                "attribute definition under '{parent}' must be an object"
            ))
        })?;
        let name = match object.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "attribute definition under '{parent}' needs a 'name'"
                )))
            }
        };
        let where_ = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}.{name}")
        };
        let text = |key: &str| -> Result<Option<&str>, ScimError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.as_str())),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "'{key}' of attribute '{where_}' must be a string"
                ))),
            }
        };
        let flag = |key: &str| -> Result<bool, ScimError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(flag)) => Ok(*flag),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "'{key}' of attribute '{where_}' must be a boolean"
                ))),
            }
        };
        let strings = |key: &str| -> Result<Vec<String>, ScimError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_string).ok_or_else(|| {
                            ScimError::invalid_syntax(format!(
                                "'{key}' of attribute '{where_}' must hold strings"
                            ))
                        })
                    })
                    .collect(),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "'{key}' of attribute '{where_}' must be an array"
                ))),
            }
        };
        let bad = |key: &str, found: &str| {
            ScimError::invalid_value(format!("unknown {key} '{found}' for attribute '{where_}'"))
        };
        let attr_type = match text("type")? {
            None => AttrType::String,
            Some(name) => AttrType::parse(name).ok_or_else(|| bad("type", name))?,
        };
        let mut attribute = Attribute::new(&name, attr_type);
        attribute.multi_valued = flag("multiValued")?;
        attribute.required = flag("required")?;
        attribute.case_exact = flag("caseExact")?;
        attribute.description = text("description")?.unwrap_or_default().to_string();
        attribute.canonical_values = strings("canonicalValues")?;
        attribute.reference_types = strings("referenceTypes")?;
        if let Some(name) = text("mutability")? {
            attribute.mutability =
                Mutability::parse(name).ok_or_else(|| bad("mutability", name))?;
        }
        if let Some(name) = text("returned")? {
            attribute.returned = Returned::parse(name).ok_or_else(|| bad("returned", name))?;
        }
        if let Some(name) = text("uniqueness")? {
            attribute.uniqueness =
                Uniqueness::parse(name).ok_or_else(|| bad("uniqueness", name))?;
        }
        if attr_type == AttrType::Complex {
            if depth >= 1 {
                return Err(ScimError::invalid_value(format!(
                    "complex attribute '{where_}' cannot be nested in another complex attribute (RFC 7643 §2.3.8)"
                )));
            }
            match object.get("subAttributes") {
                Some(Value::Array(subs)) => {
                    for sub in subs {
                        attribute.sub_attributes.push(Attribute::from_json_at(
                            sub,
                            &where_,
                            depth + 1,
                        )?);
                    }
                }
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "'subAttributes' of '{where_}' must be an array"
                    )))
                }
            }
        }
        Ok(attribute)
    }
}

/// A schema: URN id, name, description and attributes (RFC 7643 §7).
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The schema URN, e.g. `urn:ietf:params:scim:schemas:core:2.0:User`.
    pub id: String,
    /// Human-readable name, e.g. `User`.
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// Top-level attributes (without the common `id`, `externalId`, `meta`).
    pub attributes: Vec<Attribute>,
}

impl Schema {
    /// Looks up a top-level attribute by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
    }

    /// Whether `urn` names this schema (case-insensitive).
    pub fn is(&self, urn: &str) -> bool {
        self.id.eq_ignore_ascii_case(urn)
    }

    /// Renders the schema as served at `/Schemas/{id}`. With `base_url`
    /// (e.g. `https://example.com/v2`), `meta.location` is filled in.
    pub fn to_json(&self, base_url: Option<&str>) -> Value {
        let attributes: Vec<Value> = self.attributes.iter().map(Attribute::to_json).collect();
        let mut meta = json!({ "resourceType": "Schema" });
        if let (Some(base), Some(object)) = (base_url, meta.as_object_mut()) {
            let location = format!("{}/Schemas/{}", base.trim_end_matches('/'), self.id);
            object.insert("location".into(), Value::String(location));
        }
        json!({
            "schemas": [urn::SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": meta,
        })
    }

    /// Reads a schema from its RFC 7643 §7 JSON representation.
    pub fn from_json(value: &Value) -> Result<Schema, ScimError> {
        let object = value.as_object().ok_or_else(|| {
            ScimError::invalid_syntax("a schema definition must be a JSON object")
        })?;
        let id = match object.get("id") {
            Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                return Err(ScimError::invalid_syntax(
                    "a schema definition needs a string 'id' (its URN)",
                ))
            }
        };
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut attributes = Vec::new();
        match object.get("attributes") {
            Some(Value::Array(items)) => {
                for item in items {
                    attributes.push(Attribute::from_json(item)?);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(ScimError::invalid_syntax(format!(
                    "'attributes' of schema '{id}' must be an array"
                )))
            }
        }
        for (index, attribute) in attributes.iter().enumerate() {
            if attributes[..index]
                .iter()
                .any(|other| other.name.eq_ignore_ascii_case(&attribute.name))
            {
                return Err(ScimError::invalid_value(format!(
                    "schema '{id}' defines attribute '{}' twice",
                    attribute.name
                )));
            }
        }
        Ok(Schema {
            name: text("name"),
            description: text("description"),
            id,
            attributes,
        })
    }

    /// Reads a schema from JSON text.
    pub fn from_json_str(text: &str) -> Result<Schema, ScimError> {
        let value: Value = serde_json::from_str(text).map_err(|error| {
            ScimError::invalid_syntax(format!("schema JSON does not parse: {error}"))
        })?;
        Schema::from_json(&value)
    }
}
