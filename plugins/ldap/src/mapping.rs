//! SCIM resources ↔ LDAP entries: the attribute table of one resource type
//! ([`TypeMap`]), the entry a SCIM body becomes, the body an entry reads
//! back as, DNs (RFC 4514 escaping) and timestamps.
//!
//! Users are `inetOrgPerson` entries named by `uid`, Groups `groupOfNames`
//! entries named by `cn`. Multi-valued SCIM attributes with a `value`
//! (`emails`, `phoneNumbers`) map onto multi-valued LDAP attributes and
//! read back with `type: "work"`; booleans are LDAP `TRUE`/`FALSE`.

use std::collections::{BTreeMap, HashMap};

use scimgate_scim::registry::Location;
use scimgate_scim::{AttrPath, AttrType, Registry};
use serde_json::{json, Map, Value};

use crate::config::LdapConfig;

pub const USER: &str = "User";
pub const GROUP: &str = "Group";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// How a SCIM attribute sits in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A single string (top level or a sub-attribute of a single complex).
    Text,
    /// A boolean, stored as `TRUE` / `FALSE`.
    Bool,
    /// A multi-valued complex attribute: its `value`s.
    Values,
}

/// One mapped attribute.
#[derive(Debug, Clone)]
pub struct Field {
    /// The extension URN (`None` for the core schema).
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
    pub ldap: String,
    pub shape: Shape,
    /// Whether SCIM compares this attribute case-sensitively.
    pub case_exact: bool,
}

/// The mapping of one resource type.
#[derive(Debug, Clone)]
pub struct TypeMap {
    pub resource_type: &'static str,
    pub core_urn: &'static str,
    pub base: String,
    pub rdn: String,
    pub object_classes: Vec<String>,
    pub id_attr: String,
    pub fields: Vec<Field>,
    /// `sn` placeholder (Users).
    pub missing_surname: String,
}

impl TypeMap {
    /// The mapping of Users (`group == false`) or Groups from the config.
    pub fn build(config: &LdapConfig, group: bool) -> Result<TypeMap, String> {
        let registry = Registry::core();
        let name = if group { GROUP } else { USER };
        let ctx = registry
            .context_for(name)
            .map_err(|e| format!("no {name} schema: {e}"))?;
        let mut fields: Vec<Field> = Vec::new();
        for (scim, ldap) in config.attributes(group) {
            let path = AttrPath::parse(&scim).map_err(|e| e.to_string())?;
            let lower = path.attr.to_ascii_lowercase();
            if ["id", "meta", "members", "groups", "password", "schemas"].contains(&lower.as_str())
            {
                return Err(format!(
                    "'{scim}' cannot be mapped (the engine or the directory keeps it)"
                ));
            }
            let resolved = ctx
                .resolve(&path)
                .ok_or_else(|| format!("'{scim}' is not a {name} attribute"))?;
            let attribute = resolved.attribute;
            let (shape, case_exact) = match resolved.sub_attribute {
                Some(sub) if !attribute.multi_valued => match sub.attr_type {
                    AttrType::String | AttrType::Reference => (Shape::Text, sub.case_exact),
                    AttrType::Boolean => (Shape::Bool, false),
                    other => return Err(unsupported(&scim, other)),
                },
                Some(_) => {
                    return Err(format!(
                        "'{scim}': map the multi-valued attribute itself (its values), not a sub-attribute"
                    ))
                }
                None if attribute.multi_valued => {
                    let value = attribute.sub_attribute("value").ok_or_else(|| {
                        format!("'{scim}': only multi-valued attributes with a 'value' can be mapped")
                    })?;
                    (Shape::Values, value.case_exact)
                }
                None => match attribute.attr_type {
                    AttrType::String | AttrType::Reference => (Shape::Text, attribute.case_exact),
                    AttrType::Boolean => (Shape::Bool, false),
                    other => return Err(unsupported(&scim, other)),
                },
            };
            let urn = match resolved.location {
                Location::Extension(schema) => Some(schema.id.clone()),
                _ => None,
            };
            if ldap.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ';')) {
                return Err(format!("'{ldap}' is not an LDAP attribute name"));
            }
            fields.push(Field {
                urn,
                attr: attribute.name.clone(),
                sub: resolved.sub_attribute.map(|s| s.name.clone()),
                ldap,
                shape,
                case_exact,
            });
        }
        let (rdn, object_classes, base) = if group {
            (
                &config.group_rdn,
                &config.group_object_classes,
                &config.groups_base,
            )
        } else {
            (
                &config.user_rdn,
                &config.user_object_classes,
                &config.users_base,
            )
        };
        let map = TypeMap {
            resource_type: name,
            core_urn: if group { GROUP_URN } else { USER_URN },
            base: base.clone(),
            rdn: rdn.clone(),
            object_classes: object_classes.clone(),
            id_attr: config.id_attribute.clone(),
            fields,
            missing_surname: config.missing_surname.clone(),
        };
        let naming = if group { "displayName" } else { "userName" };
        match map.field_for_ldap(rdn) {
            Some(field) if field.attr == naming && field.sub.is_none() => Ok(map),
            _ => Err(format!(
                "the RDN attribute '{rdn}' must be the one '{naming}' maps to"
            )),
        }
    }

    pub fn is_group(&self) -> bool {
        self.resource_type == GROUP
    }

    pub fn field_for_ldap(&self, ldap: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.ldap.eq_ignore_ascii_case(ldap))
    }

    /// The field a filter path names (`attr`, `attr.sub`, optionally URN-qualified).
    pub fn field_for_path(&self, path: &AttrPath) -> Option<&Field> {
        self.fields.iter().find(|f| {
            let urn_ok = match (&path.urn, &f.urn) {
                (None, _) => true,
                (Some(given), Some(mine)) => given.eq_ignore_ascii_case(mine),
                (Some(given), None) => given.eq_ignore_ascii_case(self.core_urn),
            };
            let name_ok = f.attr.eq_ignore_ascii_case(&path.attr)
                && match (&f.sub, &path.sub_attr, f.shape) {
                    (None, None, _) => true,
                    (Some(mine), Some(given), _) => mine.eq_ignore_ascii_case(given),
                    (None, Some(given), Shape::Values) => given.eq_ignore_ascii_case("value"),
                    _ => false,
                };
            urn_ok && name_ok
        })
    }

    /// The selector of this type's entries, e.g. `(objectClass=inetOrgPerson)`.
    pub fn selector(&self) -> String {
        let class = self
            .object_classes
            .last()
            .map(String::as_str)
            .unwrap_or("top");
        format!("(objectClass={})", crate::filter::escape(class))
    }

    /// Attributes a read asks for.
    pub fn read_attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.fields.iter().map(|f| f.ldap.clone()).collect();
        out.push(self.id_attr.clone());
        out.push("objectClass".into());
        out.push("createTimestamp".into());
        out.push("modifyTimestamp".into());
        out.sort_by_key(|a| a.to_ascii_lowercase());
        out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        out
    }

    /// The DN of an entry whose RDN value is `value`.
    pub fn dn_for(&self, value: &str) -> String {
        format!("{}={},{}", self.rdn, escape_dn_value(value), self.base)
    }

    /// The LDAP attributes a SCIM body becomes: every mapped attribute, with
    /// an empty list when the body has no value (a replace then removes it).
    pub fn to_entry(&self, body: &Value) -> Result<BTreeMap<String, Vec<String>>, String> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for field in &self.fields {
            let container = match &field.urn {
                Some(urn) => body.get(urn.as_str()).or_else(|| find_key(body, urn)),
                None => Some(body),
            };
            let raw = container.and_then(|c| find_key(c, &field.attr));
            let raw = match (&field.sub, raw) {
                (Some(sub), Some(parent)) => find_key(parent, sub),
                (_, raw) => raw,
            };
            let values: Vec<String> = match (field.shape, raw) {
                (_, None | Some(Value::Null)) => Vec::new(),
                (Shape::Text, Some(Value::String(s))) => vec![s.clone()],
                (Shape::Bool, Some(Value::Bool(b))) => {
                    vec![if *b { "TRUE" } else { "FALSE" }.to_string()]
                }
                (Shape::Values, Some(Value::Array(items))) => {
                    let mut seen: Vec<String> = Vec::new();
                    for item in items {
                        let value = item.get("value").and_then(Value::as_str).or(item.as_str());
                        if let Some(value) = value {
                            if !seen.iter().any(|s| s.eq_ignore_ascii_case(value)) {
                                seen.push(value.to_string());
                            }
                        }
                    }
                    seen
                }
                (_, Some(other)) => {
                    return Err(format!("'{}' has an unexpected value {other}", field.attr))
                }
            };
            let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
            let slot = out.entry(field.ldap.clone()).or_default();
            slot.extend(values);
        }
        if !self.is_group() {
            let has = |out: &BTreeMap<String, Vec<String>>, name: &str| {
                out.iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            };
            if !has(&out, "sn") {
                out.insert("sn".into(), vec![self.missing_surname.clone()]);
            }
            if !has(&out, "cn") {
                out.insert("cn".into(), vec![common_name(body)]);
            }
        }
        Ok(out)
    }

    /// The SCIM body (without `id`, `meta`, `members`, `groups`) of an entry.
    pub fn to_body(&self, attrs: &HashMap<String, Vec<String>>) -> Value {
        let lower: HashMap<String, &Vec<String>> = attrs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let mut body = Map::new();
        let mut schemas = vec![Value::String(self.core_urn.to_string())];
        for field in &self.fields {
            let Some(values) = lower.get(&field.ldap.to_ascii_lowercase()) else {
                continue;
            };
            let values: Vec<&String> = values
                .iter()
                .filter(|v| {
                    !(self.resource_type == USER
                        && field.ldap.eq_ignore_ascii_case("sn")
                        && **v == self.missing_surname)
                })
                .collect();
            let value = match field.shape {
                Shape::Text => match values.first() {
                    Some(v) => Value::String((*v).clone()),
                    None => continue,
                },
                Shape::Bool => match values.first() {
                    Some(v) => Value::Bool(v.eq_ignore_ascii_case("TRUE")),
                    None => continue,
                },
                Shape::Values if values.is_empty() => continue,
                Shape::Values => Value::Array(
                    values
                        .iter()
                        .map(|v| json!({"value": v, "type": "work"}))
                        .collect(),
                ),
            };
            let container = match &field.urn {
                Some(urn) => {
                    if !schemas.iter().any(|s| s == urn.as_str()) {
                        schemas.push(Value::String(urn.clone()));
                    }
                    body.entry(urn.clone())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .expect("an object")
                }
                None => &mut body,
            };
            match &field.sub {
                Some(sub) => {
                    let parent = container
                        .entry(field.attr.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Some(parent) = parent.as_object_mut() {
                        parent.insert(sub.clone(), value);
                    }
                }
                None => {
                    container.insert(field.attr.clone(), value);
                }
            }
        }
        body.insert("schemas".into(), Value::Array(schemas));
        Value::Object(body)
    }
}

fn unsupported(scim: &str, attr_type: AttrType) -> String {
    format!(
        "'{scim}' is of type {}; only strings, references, booleans and multi-valued value lists can be mapped",
        attr_type.as_str()
    )
}

/// A member of an object found ignoring ASCII case.
fn find_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// `cn` of a new person: `displayName`, `name.formatted`, given and family
/// name, or `userName`.
fn common_name(body: &Value) -> String {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let name = find_key(body, "name");
    text(find_key(body, "displayName"))
        .or_else(|| text(name.and_then(|n| find_key(n, "formatted"))))
        .or_else(|| {
            let given = text(name.and_then(|n| find_key(n, "givenName")));
            let family = text(name.and_then(|n| find_key(n, "familyName")));
            match (given, family) {
                (None, None) => None,
                (g, f) => Some([g, f].into_iter().flatten().collect::<Vec<_>>().join(" ")),
            }
        })
        .or_else(|| text(find_key(body, "userName")))
        .unwrap_or_else(|| "-".into())
}

/// An attribute value escaped for a DN (RFC 4514 §2.4).
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// LDAP GeneralizedTime (`20261203094512Z`, optional fraction) as RFC 3339
/// UTC with milliseconds.
pub fn generalized_to_rfc3339(text: &str) -> Option<String> {
    let digits = text.trim_end_matches('Z');
    if digits.len() < 14 || !digits[..14].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = digits
        .get(15..)
        .filter(|frac| digits.as_bytes()[14] == b'.' && !frac.is_empty())
        .map(|frac| format!("{:0<3}", &frac[..frac.len().min(3)]))
        .unwrap_or_else(|| "000".into());
    Some(format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        &digits[12..14],
        ms
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> TypeMap {
        let config = LdapConfig {
            users_base: "ou=people,dc=example,dc=com".into(),
            ..LdapConfig::default()
        };
        TypeMap::build(&config, false).expect("default user map")
    }

    #[test]
    fn a_user_becomes_an_inetorgperson_and_reads_back_the_same() {
        let map = users();
        let body = json!({
            "schemas": [USER_URN, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "displayName": "Babs",
            "emails": [{"value": "b@example.com", "type": "work"}, {"value": "B@example.com"}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
            "title": "Boss",
            "externalId": "E-1",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
        });
        let entry = map.to_entry(&body).expect("maps");
        assert_eq!(entry["uid"], vec!["bjensen"]);
        assert_eq!(entry["sn"], vec!["Jensen"]);
        assert_eq!(entry["cn"], vec!["Babs"]);
        assert_eq!(
            entry["mail"],
            vec!["b@example.com"],
            "duplicates ignoring case are dropped"
        );
        assert_eq!(entry["employeeNumber"], vec!["E-1"]);
        assert_eq!(entry["departmentNumber"], vec!["R&D"]);
        let attrs: HashMap<String, Vec<String>> = entry.into_iter().collect();
        let back = map.to_body(&attrs);
        assert_eq!(back["userName"], "bjensen");
        assert_eq!(
            back["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen"})
        );
        assert_eq!(
            back["emails"],
            json!([{"value": "b@example.com", "type": "work"}])
        );
        assert_eq!(
            back["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            "R&D"
        );
        assert_eq!(back["schemas"].as_array().map(Vec::len), Some(2));
        assert!(back.get("cn").is_none() && back.get("password").is_none());
    }

    #[test]
    fn the_surname_placeholder_is_written_and_hidden() {
        let map = users();
        let entry = map.to_entry(&json!({"userName": "x"})).expect("maps");
        assert_eq!(entry["sn"], vec!["-"]);
        assert_eq!(entry["cn"], vec!["x"]);
        let attrs: HashMap<String, Vec<String>> = entry.into_iter().collect();
        let back = map.to_body(&attrs);
        assert!(back.get("name").is_none(), "{back}");
    }

    #[test]
    fn removed_values_are_empty_lists_so_a_replace_deletes_them() {
        let entry = users().to_entry(&json!({"userName": "x"})).expect("maps");
        assert_eq!(entry["title"], Vec::<String>::new());
        assert_eq!(entry["mail"], Vec::<String>::new());
    }

    #[test]
    fn bad_mappings_are_config_errors() {
        let mut config = LdapConfig::default();
        config
            .user_attributes
            .insert("meta.created".into(), "x".into());
        assert!(TypeMap::build(&config, false).is_err());
        let mut config = LdapConfig::default();
        config.user_attributes.insert("nosuch".into(), "x".into());
        assert!(TypeMap::build(&config, false)
            .unwrap_err()
            .contains("not a User attribute"));
        let mut config = LdapConfig::default();
        config
            .user_attributes
            .insert("userName".into(), "mail".into());
        assert!(TypeMap::build(&config, false).unwrap_err().contains("RDN"));
        let mut config = LdapConfig::default();
        config
            .user_attributes
            .insert("active".into(), "pwdLocked".into());
        let map = TypeMap::build(&config, false).expect("booleans map");
        let entry = map
            .to_entry(&json!({"userName": "x", "active": false}))
            .expect("maps");
        assert_eq!(entry["pwdLocked"], vec!["FALSE"]);
    }

    #[test]
    fn dns_are_escaped_and_times_converted() {
        assert_eq!(escape_dn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
        assert_eq!(escape_dn_value("#x"), "\\#x");
        assert_eq!(
            generalized_to_rfc3339("20261203094512Z").as_deref(),
            Some("2026-12-03T09:45:12.000Z")
        );
        assert_eq!(
            generalized_to_rfc3339("20261203094512.5Z").as_deref(),
            Some("2026-12-03T09:45:12.500Z")
        );
        assert_eq!(generalized_to_rfc3339("bad"), None);
    }
}
