//! Attribute mapping for IGA connector profiles: rename or move attributes (into and
//! out of extensions), set constant defaults, drop attributes, transform values — all
//! from configuration, so an integrator adapts a new IGA client without code.
//!
//! A [`Mapping`] is parsed from the `mapping` array of a profile stage
//! ([`Mapping::parse`], with located [`MappingIssue`]s) and applied to request bodies,
//! PATCH operations, filters and `attributes` lists on the way in
//! ([`Mapping::rewrite_request`]) and to resources in responses on the way out
//! ([`Mapping::rewrite_response`]). The [`query`] helpers edit raw query strings.
//!
//! ```
//! use scimgate_scim::mapping::Mapping;
//! use serde_json::json;
//!
//! let mapping = Mapping::parse("mapping", &json!([
//!     {"resource": "User", "from": "title",
//!      "to": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
//!     {"attribute": "userName", "transform": ["trim", "lower-case"]}
//! ])).expect("valid mapping");
//! let mut user = json!({
//!     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
//!     "userName": " BJensen ", "title": "Tour Guide"
//! });
//! mapping.inbound_resource("User", &mut user, true);
//! assert_eq!(user["userName"], "bjensen");
//! assert_eq!(user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"], "Tour Guide");
//! assert!(user.get("title").is_none());
//! // Responses go the other way.
//! mapping.outbound_resource("User", &mut user);
//! assert_eq!(user["title"], "Tour Guide");
//! ```

use crate::target::Target;
use serde_json::{Map, Value};

use crate::filter::{parse_filter, AttrPath, CompValue, Filter, PatchPath};
use crate::object_keys;
use crate::urn;

/// A configuration problem, located by key path (`mapping[2].from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingIssue {
    /// Dotted key path inside the stage table.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl MappingIssue {
    fn new(path: String, message: impl Into<String>) -> Self {
        MappingIssue {
            path,
            message: message.into(),
        }
    }
}

/// Which way a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Requests (client → server).
    Inbound,
    /// Responses (server → client).
    Outbound,
    /// Both.
    Both,
}

impl Direction {
    fn inbound(self) -> bool {
        matches!(self, Direction::Inbound | Direction::Both)
    }
    fn outbound(self) -> bool {
        matches!(self, Direction::Outbound | Direction::Both)
    }
}

/// A string transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `lower-case`
    LowerCase,
    /// `upper-case`
    UpperCase,
    /// `trim` (leading and trailing white space)
    Trim,
}

impl Transform {
    const NAMES: &'static [&'static str] = &["lower-case", "upper-case", "trim"];

    fn parse(name: &str) -> Option<Transform> {
        match name {
            "lower-case" | "lowercase" => Some(Transform::LowerCase),
            "upper-case" | "uppercase" => Some(Transform::UpperCase),
            "trim" => Some(Transform::Trim),
            _ => None,
        }
    }

    fn apply(self, text: &str) -> String {
        match self {
            Transform::LowerCase => text.to_lowercase(),
            Transform::UpperCase => text.to_uppercase(),
            Transform::Trim => text.trim().to_string(),
        }
    }
}

/// Where an attribute lives in a resource: top level (`urn` is `None`, also for
/// core-schema-qualified paths) or inside an extension object; optionally one
/// sub-attribute deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrLoc {
    /// Extension URN, `None` for core/common attributes.
    pub urn: Option<String>,
    /// Attribute name.
    pub attr: String,
    /// Sub-attribute name.
    pub sub: Option<String>,
}

impl AttrLoc {
    /// Parses `name`, `name.sub`, `urn:…:name` or `urn:…:name.sub`. Paths qualified by
    /// a core schema URN (`urn:ietf:params:scim:schemas:core:…`) are top-level.
    pub fn parse(text: &str) -> Option<AttrLoc> {
        if text.contains('[') || text.trim() != text || text.is_empty() {
            return None;
        }
        let path = AttrPath::parse(text).ok()?;
        Some(AttrLoc::from_path(&path))
    }

    fn from_path(path: &AttrPath) -> AttrLoc {
        AttrLoc {
            urn: path.urn.clone().filter(|urn| !is_core_urn(urn)),
            attr: path.attr.clone(),
            sub: path.sub_attr.clone(),
        }
    }

    fn to_path(&self) -> AttrPath {
        AttrPath {
            urn: self.urn.clone(),
            attr: self.attr.clone(),
            sub_attr: self.sub.clone(),
        }
    }

    fn same(&self, other: &AttrLoc) -> bool {
        eq_opt(&self.urn, &other.urn)
            && self.attr.eq_ignore_ascii_case(&other.attr)
            && eq_opt(&self.sub, &other.sub)
    }

    /// Whether a client path names this location: same attribute and sub-attribute,
    /// and the same URN (an unqualified client path matches a qualified rule).
    fn matched_by(&self, path: &AttrLoc) -> bool {
        (path.urn.is_none() || eq_opt(&self.urn, &path.urn))
            && self.attr.eq_ignore_ascii_case(&path.attr)
            && eq_opt(&self.sub, &path.sub)
    }

    /// The location one level up (`name` for `name.givenName`).
    fn parent(&self) -> Option<AttrLoc> {
        self.sub.as_ref().map(|_| AttrLoc {
            sub: None,
            ..self.clone()
        })
    }
}

impl std::fmt::Display for AttrLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_path())
    }
}

fn eq_opt(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn is_core_urn(urn: &str) -> bool {
    urn.len() >= CORE_PREFIX.len() && urn[..CORE_PREFIX.len()].eq_ignore_ascii_case(CORE_PREFIX)
}

const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// What one rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Inbound `from` → `to`; outbound `to` → `from`.
    Rename {
        /// The client's name.
        from: AttrLoc,
        /// The server's name.
        to: AttrLoc,
    },
    /// Sets `attribute` to `value` when it is absent (inbound: on create/replace only).
    SetDefault {
        /// Target.
        attribute: AttrLoc,
        /// Constant.
        value: Value,
    },
    /// Removes `attribute`.
    Drop(AttrLoc),
    /// Rewrites the string value(s) of `attribute`.
    Transform {
        /// Target.
        attribute: AttrLoc,
        /// Applied in order.
        transforms: Vec<Transform>,
    },
}

/// One mapping rule: an action, the resource types it applies to and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Resource type name (`User`) or `None` for all (`"*"`).
    pub resource: Option<String>,
    /// Which way the rule applies.
    pub direction: Direction,
    /// What it does.
    pub action: Action,
}

impl Rule {
    fn applies_to(&self, resource: &str) -> bool {
        match &self.resource {
            None => true,
            Some(name) => resource_matches(name, resource),
        }
    }
}

/// `User` matches the resource type `User` and the endpoint `Users`.
fn resource_matches(rule: &str, resource: &str) -> bool {
    rule.eq_ignore_ascii_case(resource)
        || resource
            .strip_suffix(['s', 'S'])
            .is_some_and(|singular| rule.eq_ignore_ascii_case(singular))
        || rule
            .strip_suffix(['s', 'S'])
            .is_some_and(|singular| singular.eq_ignore_ascii_case(resource))
}

/// A parsed list of rules, applied in order inbound and in reverse order outbound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    rules: Vec<Rule>,
}

const RULE_KEYS: &[&str] = &[
    "resource",
    "direction",
    "from",
    "to",
    "set_default",
    "drop",
    "attribute",
    "transform",
];

impl Mapping {
    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Parses the `mapping` array of a stage (`key` is its name, used in issue paths:
    /// `mapping[2].from`). `null` is an empty mapping. Every problem is reported.
    ///
    /// A rule is a table with exactly one action — `from` + `to` (rename, default
    /// direction `both`), `set_default = { attribute, value }` (default `inbound`),
    /// `drop = "path"` (default `both`) or `attribute` + `transform = [...]` (default
    /// `inbound`) — plus optional `resource` (`"User"`, `"Group"`, `"*"`; default `"*"`)
    /// and `direction` (`"inbound"`, `"outbound"`, `"both"`).
    pub fn parse(key: &str, value: &Value) -> Result<Mapping, Vec<MappingIssue>> {
        let items = match value {
            Value::Null => return Ok(Mapping::default()),
            Value::Array(items) => items,
            _ => {
                return Err(vec![MappingIssue::new(
                    key.to_string(),
                    "expected an array of tables ([[stage.NAME.mapping]])",
                )])
            }
        };
        let mut issues = Vec::new();
        let mut rules = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let at = format!("{key}[{index}]");
            match parse_rule(&at, item) {
                Ok(rule) => rules.push(rule),
                Err(mut found) => issues.append(&mut found),
            }
        }
        if issues.is_empty() {
            Ok(Mapping { rules })
        } else {
            Err(issues)
        }
    }

    fn inbound_rules<'m>(&'m self, resource: &'m str) -> impl Iterator<Item = &'m Rule> + 'm {
        self.rules
            .iter()
            .filter(move |rule| rule.direction.inbound() && rule.applies_to(resource))
    }

    fn outbound_rules<'m>(&'m self, resource: &'m str) -> impl Iterator<Item = &'m Rule> + 'm {
        self.rules
            .iter()
            .rev()
            .filter(move |rule| rule.direction.outbound() && rule.applies_to(resource))
    }

    /// Applies the inbound rules to a resource body (POST/PUT, or the object of a
    /// pathless PATCH operation when `full` is false: no defaults then). Returns
    /// whether anything changed.
    pub fn inbound_resource(&self, resource: &str, body: &mut Value, full: bool) -> bool {
        let mut changed = false;
        for rule in self.inbound_rules(resource) {
            changed |= match &rule.action {
                Action::Rename { from, to } => move_value(body, from, to),
                Action::SetDefault { attribute, value } if full => {
                    set_if_absent(body, attribute, value)
                }
                Action::SetDefault { .. } => false,
                Action::Drop(attribute) => take(body, attribute).is_some(),
                Action::Transform {
                    attribute,
                    transforms,
                } => transform_at(body, attribute, transforms),
            };
        }
        changed
    }

    /// Applies the outbound rules (renames reversed) to one resource of a response.
    pub fn outbound_resource(&self, resource: &str, body: &mut Value) -> bool {
        let mut changed = false;
        for rule in self.outbound_rules(resource) {
            changed |= match &rule.action {
                Action::Rename { from, to } => move_value(body, to, from),
                Action::SetDefault { attribute, value } => set_if_absent(body, attribute, value),
                Action::Drop(attribute) => take(body, attribute).is_some(),
                Action::Transform {
                    attribute,
                    transforms,
                } => transform_at(body, attribute, transforms),
            };
        }
        changed
    }

    /// Applies the inbound rules to a PatchOp body (after the dialect rewrites of
    /// [`crate::dialect`]): pathless objects like resources (without defaults),
    /// paths renamed, dropped targets removed, values transformed.
    pub fn inbound_patch(&self, resource: &str, body: &mut Value) -> bool {
        let Some(operations) = body
            .as_object_mut()
            .and_then(|object| object_keys::get_mut(object, "Operations"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let mut changed = false;
        let mut kept = Vec::with_capacity(operations.len());
        for mut operation in operations.drain(..) {
            match self.map_operation(resource, &mut operation) {
                OperationFate::Keep(did) => {
                    changed |= did;
                    kept.push(operation);
                }
                OperationFate::Drop => changed = true,
            }
        }
        *operations = kept;
        changed
    }

    fn map_operation(&self, resource: &str, operation: &mut Value) -> OperationFate {
        let Some(object) = operation.as_object_mut() else {
            return OperationFate::Keep(false);
        };
        let path = object_keys::get(object, "path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(path_text) = path else {
            return match object_keys::get_mut(object, "value") {
                Some(value @ Value::Object(_)) => {
                    OperationFate::Keep(self.inbound_resource(resource, value, false))
                }
                _ => OperationFate::Keep(false),
            };
        };
        let Ok(mut path) = PatchPath::parse(&path_text) else {
            return OperationFate::Keep(false);
        };
        let mut loc = AttrLoc::from_path(&path.attr);
        let mut changed = false;
        for rule in self.inbound_rules(resource) {
            match &rule.action {
                Action::Rename { from, to } => {
                    if let Some(renamed) = rename_loc(&loc, from, to, path.filter.is_some()) {
                        loc = renamed;
                        changed = true;
                    }
                }
                Action::Drop(attribute) => {
                    if attribute.matched_by(&loc)
                        || (attribute.sub.is_none()
                            && loc.parent().is_some_and(|p| attribute.matched_by(&p)))
                    {
                        return OperationFate::Drop;
                    }
                }
                Action::Transform {
                    attribute,
                    transforms,
                } => {
                    let target = match (&path.filter, &path.sub_attr) {
                        (Some(_), Some(sub)) => AttrLoc {
                            sub: Some(sub.clone()),
                            ..loc.clone()
                        },
                        _ => loc.clone(),
                    };
                    if attribute.matched_by(&target) {
                        if let Some(value) = object_keys::get_mut(object, "value") {
                            changed |= transform_value(value, transforms);
                        }
                    }
                }
                Action::SetDefault { .. } => {}
            }
        }
        if changed {
            path.attr = loc.to_path();
            object_keys::set(object, "path", Value::String(path.to_string()));
        }
        OperationFate::Keep(changed)
    }

    /// Rewrites attribute names of a filter for renamed attributes (inbound) and
    /// applies transforms to the compared strings; `None` when nothing changed or the
    /// filter does not parse (the server reports that).
    pub fn inbound_filter(&self, resource: &str, filter: &str) -> Option<String> {
        let mut parsed = parse_filter(filter).ok()?;
        let changed = self.map_filter(resource, &mut parsed, false);
        changed.then(|| parsed.to_string())
    }

    fn map_filter(&self, resource: &str, filter: &mut Filter, in_value_path: bool) -> bool {
        match filter {
            Filter::Compare { path, value, .. } => {
                let mut changed = false;
                if !in_value_path {
                    changed |= self.map_attr_path(resource, path);
                }
                if let CompValue::String(text) = value {
                    let loc = AttrLoc::from_path(path);
                    for rule in self.inbound_rules(resource) {
                        if let Action::Transform {
                            attribute,
                            transforms,
                        } = &rule.action
                        {
                            if attribute.matched_by(&loc) {
                                let mapped =
                                    transforms.iter().fold(text.clone(), |acc, t| t.apply(&acc));
                                if &mapped != text {
                                    *text = mapped;
                                    changed = true;
                                }
                            }
                        }
                    }
                }
                changed
            }
            Filter::Present(path) if !in_value_path => self.map_attr_path(resource, path),
            Filter::Present(_) => false,
            Filter::And(left, right) | Filter::Or(left, right) => {
                let a = self.map_filter(resource, left, in_value_path);
                let b = self.map_filter(resource, right, in_value_path);
                a || b
            }
            Filter::Not(inner) => self.map_filter(resource, inner, in_value_path),
            Filter::ValuePath { attr, filter } => {
                let a = self.map_attr_path(resource, attr);
                let b = self.map_filter(resource, filter, true);
                a || b
            }
        }
    }

    /// Renames one attribute path (filters, `attributes`, `sortBy`) per the inbound
    /// renames; returns whether it changed.
    fn map_attr_path(&self, resource: &str, path: &mut AttrPath) -> bool {
        let mut loc = AttrLoc::from_path(path);
        let mut changed = false;
        for rule in self.inbound_rules(resource) {
            if let Action::Rename { from, to } = &rule.action {
                if let Some(renamed) = rename_loc(&loc, from, to, false) {
                    loc = renamed;
                    changed = true;
                }
            }
        }
        if changed {
            *path = loc.to_path();
        }
        changed
    }

    /// Rewrites a comma-separated attribute list (`attributes`, `excludedAttributes`,
    /// `sortBy`) for inbound renames.
    pub fn inbound_attribute_list(&self, resource: &str, list: &str) -> Option<String> {
        let mut changed = false;
        let items: Vec<String> = list
            .split(',')
            .map(|item| {
                let Ok(mut path) = AttrPath::parse(item.trim()) else {
                    return item.to_string();
                };
                if self.map_attr_path(resource, &mut path) {
                    changed = true;
                    path.to_string()
                } else {
                    item.to_string()
                }
            })
            .collect();
        changed.then(|| items.join(","))
    }

    /// Inbound rewrite of a whole request: `method`, `path` below the mount, raw
    /// `query` and `body`. Returns the new query and/or body when they changed.
    /// Discovery endpoints and Bulk are left alone.
    pub fn rewrite_request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> RequestRewrite {
        let mut out = RequestRewrite::default();
        if self.rules.is_empty() {
            return out;
        }
        let resource = resource_for_path(path);
        let Some(resource) = resource else {
            return out;
        };
        if !query.is_empty() {
            out.query = query::rewrite_values(query, |name, value| {
                if name.eq_ignore_ascii_case("filter") {
                    self.inbound_filter(resource, value)
                } else if name.eq_ignore_ascii_case("attributes")
                    || name.eq_ignore_ascii_case("excludedAttributes")
                    || name.eq_ignore_ascii_case("sortBy")
                {
                    self.inbound_attribute_list(resource, value)
                } else {
                    None
                }
            });
        }
        if body.is_empty() {
            return out;
        }
        let is_search = path_is_search(path);
        // A body the strict reader refuses is left as it is: the endpoint
        // refuses it with the same error.
        let Ok(mut value) = crate::body::parse_body(body) else {
            return out;
        };
        let changed = match method {
            "POST" if is_search => self.inbound_search(resource, &mut value),
            "POST" | "PUT" => self.inbound_resource(resource, &mut value, true),
            "PATCH" => self.inbound_patch(resource, &mut value),
            _ => false,
        };
        if changed {
            out.body = serde_json::to_vec(&value).ok();
        }
        out
    }

    fn inbound_search(&self, resource: &str, body: &mut Value) -> bool {
        let Some(object) = body.as_object_mut() else {
            return false;
        };
        let mut changed = false;
        if let Some(Value::String(filter)) = object_keys::get_mut(object, "filter") {
            if let Some(mapped) = self.inbound_filter(resource, filter) {
                *filter = mapped;
                changed = true;
            }
        }
        for key in ["attributes", "excludedAttributes"] {
            if let Some(Value::Array(items)) = object_keys::get_mut(object, key) {
                for item in items.iter_mut() {
                    if let Value::String(text) = item {
                        if let Some(mapped) = self.inbound_attribute_list(resource, text) {
                            *text = mapped;
                            changed = true;
                        }
                    }
                }
            }
        }
        if let Some(Value::String(sort)) = object_keys::get_mut(object, "sortBy") {
            if let Some(mapped) = self.inbound_attribute_list(resource, sort) {
                *sort = mapped;
                changed = true;
            }
        }
        changed
    }

    /// Outbound rewrite of a response body for a request to `path`: a single
    /// resource or the `Resources` of a ListResponse (each by its
    /// `meta.resourceType`, else the endpoint's). `None` when nothing changed.
    pub fn rewrite_response(&self, path: &str, body: &[u8]) -> Option<Vec<u8>> {
        if self.rules.is_empty() || body.is_empty() {
            return None;
        }
        let endpoint = resource_for_path(path);
        if endpoint.is_none() && !path_is_search(path) {
            return None;
        }
        let mut value: Value = serde_json::from_slice(body).ok()?;
        self.outbound_body(endpoint, &mut value)
            .then(|| serde_json::to_vec(&value).ok())
            .flatten()
    }

    /// Outbound rewrite of a parsed response body (see [`Mapping::rewrite_response`]).
    pub fn outbound_body(&self, endpoint: Option<&str>, body: &mut Value) -> bool {
        if is_list_response(body) {
            let Some(resources) = body
                .as_object_mut()
                .and_then(|object| object_keys::get_mut(object, "Resources"))
                .and_then(Value::as_array_mut)
            else {
                return false;
            };
            let mut changed = false;
            for item in resources.iter_mut() {
                if let Some(resource) = resource_type_of(item).or(endpoint.map(str::to_string)) {
                    changed |= self.outbound_resource(&resource, item);
                }
            }
            return changed;
        }
        if is_error(body) {
            return false;
        }
        match resource_type_of(body).or(endpoint.map(str::to_string)) {
            Some(resource) => self.outbound_resource(&resource, body),
            None => false,
        }
    }
}

/// What [`Mapping::rewrite_request`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestRewrite {
    /// The new raw query string.
    pub query: Option<String>,
    /// The new body.
    pub body: Option<Vec<u8>>,
}

impl RequestRewrite {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.query.is_none() && self.body.is_none()
    }
}

/// What [`Mapping::apply_to_request`] changed in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub query: bool,
    pub body: bool,
}

impl Applied {
    pub fn any(self) -> bool {
        self.query || self.body
    }
}

impl Mapping {
    /// [`Mapping::rewrite_request`] in place, for any owned string and byte
    /// buffer types (a profile's FFI request fields, `String`/`Vec<u8>`).
    pub fn apply_to_request<Q, B>(
        &self,
        method: &str,
        path: &str,
        query: &mut Q,
        body: &mut B,
    ) -> Applied
    where
        Q: AsRef<str> + From<String>,
        B: AsRef<[u8]> + From<Vec<u8>>,
    {
        if self.rules.is_empty() {
            return Applied::default();
        }
        let rewrite = self.rewrite_request(method, path, query.as_ref(), body.as_ref());
        let mut applied = Applied::default();
        if let Some(new_query) = rewrite.query {
            *query = Q::from(new_query);
            applied.query = true;
        }
        if let Some(new_body) = rewrite.body {
            *body = B::from(new_body);
            applied.body = true;
        }
        applied
    }

    /// [`Mapping::rewrite_response`] in place for a successful (2xx)
    /// response; whether the body changed.
    pub fn apply_to_response<B>(&self, path: &str, status: u16, body: &mut B) -> bool
    where
        B: AsRef<[u8]> + From<Vec<u8>>,
    {
        if self.rules.is_empty() || !(200..300).contains(&status) {
            return false;
        }
        match self.rewrite_response(path, body.as_ref()) {
            Some(new_body) => {
                *body = B::from(new_body);
                true
            }
            None => false,
        }
    }
}

enum OperationFate {
    Keep(bool),
    Drop,
}

/// The resource type a request path addresses, by [`Target::resolve`]:
/// `User` for `/Users…`, `Group` for `/Groups…`, the endpoint name for other
/// resource endpoints; `None` for the root, discovery, `/Bulk`, `/Me`, the
/// root `/.search` and paths that address nothing.
pub fn resource_for_path(path: &str) -> Option<&str> {
    let endpoint = Target::resolve(path).endpoint()?;
    if endpoint.eq_ignore_ascii_case("Users") {
        Some("User")
    } else if endpoint.eq_ignore_ascii_case("Groups") {
        Some("Group")
    } else {
        Some(endpoint)
    }
}

/// Whether a path addresses a `.search` endpoint ([`Target::is_search`]).
pub fn path_is_search(path: &str) -> bool {
    Target::resolve(path).is_search()
}

fn has_schema(body: &Value, wanted: &str) -> bool {
    body.as_object()
        .and_then(|object| object_keys::get(object, "schemas"))
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(wanted)))
        })
}

/// Whether `body` is a ListResponse message.
pub fn is_list_response(body: &Value) -> bool {
    has_schema(body, urn::LIST_RESPONSE)
}

fn is_error(body: &Value) -> bool {
    has_schema(body, urn::ERROR)
}

fn resource_type_of(resource: &Value) -> Option<String> {
    let meta = object_keys::get(resource.as_object()?, "meta")?.as_object()?;
    object_keys::get(meta, "resourceType")?
        .as_str()
        .map(str::to_string)
}

/// `loc` renamed by `from → to`, if the rule names it (exactly, or as the parent of
/// `loc`'s sub-attribute). With a value filter only whole-attribute renames apply.
fn rename_loc(loc: &AttrLoc, from: &AttrLoc, to: &AttrLoc, filtered: bool) -> Option<AttrLoc> {
    if !filtered && from.matched_by(loc) {
        return Some(to.clone());
    }
    if from.sub.is_none() && to.sub.is_none() {
        let whole = AttrLoc {
            sub: None,
            ..loc.clone()
        };
        if from.matched_by(&whole) {
            return Some(AttrLoc {
                sub: loc.sub.clone(),
                ..to.clone()
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Values inside a resource

/// The object that holds `loc`'s attribute (the resource or its extension object).
fn container<'v>(body: &'v Value, loc: &AttrLoc) -> Option<&'v Map<String, Value>> {
    let object = body.as_object()?;
    match &loc.urn {
        None => Some(object),
        Some(urn) => object_keys::get(object, urn)?.as_object(),
    }
}

fn container_mut<'v>(
    body: &'v mut Value,
    loc: &AttrLoc,
    create: bool,
) -> Option<&'v mut Map<String, Value>> {
    let object = body.as_object_mut()?;
    match &loc.urn {
        None => Some(object),
        Some(urn) => {
            if object_keys::get(object, urn).is_none() {
                if !create {
                    return None;
                }
                object.insert(urn.clone(), Value::Object(Map::new()));
                add_schema(object, urn);
            }
            object_keys::get_mut(object, urn)?.as_object_mut()
        }
    }
}

fn get<'v>(body: &'v Value, loc: &AttrLoc) -> Option<&'v Value> {
    let value = object_keys::get(container(body, loc)?, &loc.attr)?;
    match &loc.sub {
        None => Some(value),
        Some(sub) => object_keys::get(value.as_object()?, sub),
    }
}

/// Removes the value at `loc` (pruning an emptied parent and extension object).
fn take(body: &mut Value, loc: &AttrLoc) -> Option<Value> {
    let taken = {
        let holder = container_mut(body, loc, false)?;
        match &loc.sub {
            None => object_keys::remove(holder, &loc.attr)?,
            Some(sub) => {
                let parent = object_keys::get_mut(holder, &loc.attr)?;
                let taken = match parent {
                    Value::Object(members) => object_keys::remove(members, sub)?,
                    Value::Array(items) => {
                        // Multi-valued: only drops apply; take the sub from every element.
                        let mut any = None;
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            if let Some(removed) = object_keys::remove(item, sub) {
                                any = Some(removed);
                            }
                        }
                        any?
                    }
                    _ => return None,
                };
                if parent.as_object().is_some_and(Map::is_empty) {
                    object_keys::remove(holder, &loc.attr);
                }
                taken
            }
        }
    };
    if let (Some(urn), Some(object)) = (&loc.urn, body.as_object_mut()) {
        let emptied = object_keys::get(object, urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if emptied {
            object_keys::remove(object, urn);
            remove_schema(object, urn);
        }
    }
    Some(taken)
}

/// Sets `loc` to `value`, creating the extension object (and its `schemas` entry)
/// or the parent complex attribute as needed.
fn put(body: &mut Value, loc: &AttrLoc, value: Value) -> bool {
    let Some(holder) = container_mut(body, loc, true) else {
        return false;
    };
    match &loc.sub {
        None => {
            object_keys::set(holder, &loc.attr, value);
            true
        }
        Some(sub) => {
            if object_keys::get(holder, &loc.attr).is_none() {
                holder.insert(loc.attr.clone(), Value::Object(Map::new()));
            }
            match object_keys::get_mut(holder, &loc.attr) {
                Some(Value::Object(members)) => {
                    object_keys::set(members, sub, value);
                    true
                }
                _ => false,
            }
        }
    }
}

fn move_value(body: &mut Value, from: &AttrLoc, to: &AttrLoc) -> bool {
    // A sub-attribute of a multi-valued attribute is not moved (only dropped or transformed).
    if let Some(parent) = from.parent() {
        if get(body, &parent).is_some_and(Value::is_array) {
            return false;
        }
    }
    match take(body, from) {
        Some(value) => put(body, to, value),
        None => false,
    }
}

fn set_if_absent(body: &mut Value, loc: &AttrLoc, value: &Value) -> bool {
    if get(body, loc).is_some_and(|v| !v.is_null()) {
        return false;
    }
    put(body, loc, value.clone())
}

fn transform_at(body: &mut Value, loc: &AttrLoc, transforms: &[Transform]) -> bool {
    let Some(holder) = container_mut(body, loc, false) else {
        return false;
    };
    let Some(value) = object_keys::get_mut(holder, &loc.attr) else {
        return false;
    };
    match &loc.sub {
        None => transform_value(value, transforms),
        Some(sub) => match value {
            Value::Object(members) => object_keys::get_mut(members, sub)
                .is_some_and(|value| transform_value(value, transforms)),
            Value::Array(items) => {
                let mut changed = false;
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(value) = object_keys::get_mut(item, sub) {
                        changed |= transform_value(value, transforms);
                    }
                }
                changed
            }
            _ => false,
        },
    }
}

/// Applies the transforms to a string or to every string of an array.
fn transform_value(value: &mut Value, transforms: &[Transform]) -> bool {
    match value {
        Value::String(text) => {
            let mapped = transforms.iter().fold(text.clone(), |acc, t| t.apply(&acc));
            if &mapped == text {
                false
            } else {
                *text = mapped;
                true
            }
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= transform_value(item, transforms);
            }
            changed
        }
        _ => false,
    }
}

fn add_schema(object: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(schemas)) = object_keys::get_mut(object, "schemas") {
        if !schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
        {
            schemas.push(Value::String(urn.to_string()));
        }
    }
}

fn remove_schema(object: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(schemas)) = object_keys::get_mut(object, "schemas") {
        schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    }
}

// ---------------------------------------------------------------------------
// Configuration

fn parse_rule(at: &str, item: &Value) -> Result<Rule, Vec<MappingIssue>> {
    let Some(table) = item.as_object() else {
        return Err(vec![MappingIssue::new(
            at.to_string(),
            "a mapping rule must be a table",
        )]);
    };
    let mut issues = Vec::new();
    for key in table.keys() {
        if !RULE_KEYS.contains(&key.as_str()) {
            issues.push(MappingIssue::new(
                format!("{at}.{key}"),
                format!(
                    "unknown key `{key}`, expected one of: {}",
                    RULE_KEYS.join(", ")
                ),
            ));
        }
    }
    let resource = match table.get("resource") {
        None => None,
        Some(Value::String(name)) if name == "*" => None,
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name.clone()),
        Some(_) => {
            issues.push(MappingIssue::new(
                format!("{at}.resource"),
                "expected a resource type name such as \"User\" or \"Group\", or \"*\"",
            ));
            None
        }
    };
    let direction = match table.get("direction") {
        None => None,
        Some(Value::String(text)) => match text.as_str() {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            "both" => Some(Direction::Both),
            other => {
                issues.push(MappingIssue::new(
                    format!("{at}.direction"),
                    format!("unknown direction `{other}`, expected inbound, outbound or both"),
                ));
                None
            }
        },
        Some(_) => {
            issues.push(MappingIssue::new(
                format!("{at}.direction"),
                "expected \"inbound\", \"outbound\" or \"both\"",
            ));
            None
        }
    };
    let actions: Vec<&str> = ["from", "set_default", "drop", "transform"]
        .into_iter()
        .filter(|key| table.contains_key(*key))
        .collect();
    let path = |key: &str, issues: &mut Vec<MappingIssue>| -> Option<AttrLoc> {
        match table.get(key) {
            None => {
                issues.push(MappingIssue::new(
                    format!("{at}.{key}"),
                    "missing attribute path",
                ));
                None
            }
            Some(value) => attr_loc(&format!("{at}.{key}"), value, issues),
        }
    };
    let action = match actions.as_slice() {
        [] => {
            if table.contains_key("to") {
                issues.push(MappingIssue::new(
                    format!("{at}.from"),
                    "`to` needs a `from`",
                ));
            } else if table.contains_key("attribute") {
                issues.push(MappingIssue::new(
                    format!("{at}.transform"),
                    "`attribute` needs a `transform` list",
                ));
            } else {
                issues.push(MappingIssue::new(
                    at.to_string(),
                    "a rule needs one action: `from` + `to`, `set_default`, `drop` or `attribute` + `transform`",
                ));
            }
            None
        }
        ["from"] => {
            if table.contains_key("attribute") {
                issues.push(MappingIssue::new(
                    format!("{at}.attribute"),
                    "`attribute` goes with `transform`, not with a rename",
                ));
            }
            let from = path("from", &mut issues);
            let to = path("to", &mut issues);
            match (from, to) {
                (Some(from), Some(to)) if from.same(&to) => {
                    issues.push(MappingIssue::new(
                        format!("{at}.to"),
                        format!("renames `{from}` to itself"),
                    ));
                    None
                }
                (Some(from), Some(to)) => Some((Action::Rename { from, to }, Direction::Both)),
                _ => None,
            }
        }
        ["set_default"] => {
            for key in ["to", "attribute"] {
                if table.contains_key(key) {
                    issues.push(MappingIssue::new(
                        format!("{at}.{key}"),
                        format!(
                            "`{key}` does not go with `set_default` (use set_default.attribute)"
                        ),
                    ));
                }
            }
            match table.get("set_default") {
                Some(Value::Object(inner)) => {
                    let key = format!("{at}.set_default");
                    for name in inner.keys() {
                        if name != "attribute" && name != "value" {
                            issues.push(MappingIssue::new(
                                format!("{key}.{name}"),
                                format!("unknown key `{name}`, expected attribute, value"),
                            ));
                        }
                    }
                    let attribute = match inner.get("attribute") {
                        Some(value) => attr_loc(&format!("{key}.attribute"), value, &mut issues),
                        None => {
                            issues.push(MappingIssue::new(
                                format!("{key}.attribute"),
                                "missing attribute path",
                            ));
                            None
                        }
                    };
                    let value = match inner.get("value") {
                        Some(value) => Some(value.clone()),
                        None => {
                            issues.push(MappingIssue::new(format!("{key}.value"), "missing value"));
                            None
                        }
                    };
                    match (attribute, value) {
                        (Some(attribute), Some(value)) => {
                            Some((Action::SetDefault { attribute, value }, Direction::Inbound))
                        }
                        _ => None,
                    }
                }
                _ => {
                    issues.push(MappingIssue::new(
                        format!("{at}.set_default"),
                        "expected a table { attribute = \"…\", value = … }",
                    ));
                    None
                }
            }
        }
        ["drop"] => {
            for key in ["to", "attribute"] {
                if table.contains_key(key) {
                    issues.push(MappingIssue::new(
                        format!("{at}.{key}"),
                        format!("`{key}` does not go with `drop`"),
                    ));
                }
            }
            path("drop", &mut issues).map(|loc| (Action::Drop(loc), Direction::Both))
        }
        ["transform"] => {
            if table.contains_key("to") {
                issues.push(MappingIssue::new(
                    format!("{at}.to"),
                    "`to` does not go with `transform`",
                ));
            }
            let attribute = path("attribute", &mut issues);
            let transforms = match table.get("transform") {
                Some(Value::Array(names)) if !names.is_empty() => {
                    let mut parsed = Vec::new();
                    for (index, name) in names.iter().enumerate() {
                        match name.as_str().and_then(Transform::parse) {
                            Some(t) => parsed.push(t),
                            None => issues.push(MappingIssue::new(
                                format!("{at}.transform[{index}]"),
                                format!(
                                    "unknown transform {name}, expected one of: {}",
                                    Transform::NAMES.join(", ")
                                ),
                            )),
                        }
                    }
                    Some(parsed)
                }
                Some(Value::String(name)) => match Transform::parse(name) {
                    Some(t) => Some(vec![t]),
                    None => {
                        issues.push(MappingIssue::new(
                            format!("{at}.transform"),
                            format!(
                                "unknown transform `{name}`, expected one of: {}",
                                Transform::NAMES.join(", ")
                            ),
                        ));
                        None
                    }
                },
                _ => {
                    issues.push(MappingIssue::new(
                        format!("{at}.transform"),
                        "expected a non-empty list such as [\"trim\", \"lower-case\"]",
                    ));
                    None
                }
            };
            match (attribute, transforms) {
                (Some(attribute), Some(transforms)) => Some((
                    Action::Transform {
                        attribute,
                        transforms,
                    },
                    Direction::Inbound,
                )),
                _ => None,
            }
        }
        several => {
            issues.push(MappingIssue::new(
                format!("{at}.{}", several[1]),
                format!(
                    "one rule = one action: this rule has both `{}` and `{}`; split it into two rules",
                    several[0], several[1]
                ),
            ));
            None
        }
    };
    match action {
        Some((action, default_direction)) if issues.is_empty() => Ok(Rule {
            resource,
            direction: direction.unwrap_or(default_direction),
            action,
        }),
        _ => Err(issues),
    }
}

fn attr_loc(at: &str, value: &Value, issues: &mut Vec<MappingIssue>) -> Option<AttrLoc> {
    let Some(text) = value.as_str() else {
        issues.push(MappingIssue::new(
            at.to_string(),
            "expected an attribute path string",
        ));
        return None;
    };
    let loc = AttrLoc::parse(text);
    if loc.is_none() {
        issues.push(MappingIssue::new(
            at.to_string(),
            format!(
                "`{text}` is not an attribute path (name, name.sub, or urn:…:name[.sub]; no filters)"
            ),
        ));
    }
    loc
}

/// Raw query-string helpers: edit parameters without re-encoding the ones left alone.
pub mod query {
    /// Applies `rewrite(name, decoded_value)` to every parameter; a `Some` replaces the
    /// value (percent-encoded again). Returns the new query when anything changed.
    pub fn rewrite_values(
        query: &str,
        mut rewrite: impl FnMut(&str, &str) -> Option<String>,
    ) -> Option<String> {
        let mut changed = false;
        let parts: Vec<String> = query
            .split('&')
            .map(|part| {
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                let decoded_name = decode(name);
                match rewrite(&decoded_name, &decode(value)) {
                    Some(new) => {
                        changed = true;
                        format!("{name}={}", encode(&new))
                    }
                    None => part.to_string(),
                }
            })
            .collect();
        changed.then(|| parts.join("&"))
    }

    /// Renames parameters whose (decoded) name equals one of `canonical` ignoring
    /// case to that canonical spelling; returns the new query and the renames made.
    pub fn canonicalize_names(
        query: &str,
        canonical: &[&str],
    ) -> Option<(String, Vec<(String, String)>)> {
        let mut renamed = Vec::new();
        let parts: Vec<String> = query
            .split('&')
            .map(|part| {
                let (name, rest) = match part.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (part, None),
                };
                let decoded = decode(name);
                let known = canonical
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(&decoded));
                match known {
                    Some(known) if *known != decoded => {
                        renamed.push((decoded.clone(), known.to_string()));
                        match rest {
                            Some(value) => format!("{known}={value}"),
                            None => known.to_string(),
                        }
                    }
                    _ => part.to_string(),
                }
            })
            .collect();
        (!renamed.is_empty()).then(|| (parts.join("&"), renamed))
    }

    /// Removes parameters whose name equals `name` ignoring case; `None` if none.
    pub fn remove(query: &str, name: &str) -> Option<String> {
        let mut removed = false;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|part| {
                let key = part.split_once('=').map_or(*part, |(key, _)| key);
                let hit = decode(key).eq_ignore_ascii_case(name);
                removed |= hit;
                !hit && !part.is_empty()
            })
            .collect();
        removed.then(|| kept.join("&"))
    }

    /// The decoded value of the first parameter named `name` (ignoring case).
    pub fn param(query: &str, name: &str) -> Option<String> {
        query.split('&').find_map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            decode(key)
                .eq_ignore_ascii_case(name)
                .then(|| decode(value))
        })
    }

    /// `application/x-www-form-urlencoded` decoding (`+` is a space; bad escapes kept).
    pub fn decode(input: &str) -> String {
        if !input.contains(['%', '+']) {
            return input.to_string();
        }
        let bytes = input.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                    if let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    out.push(b'%');
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    pub fn encode(input: &str) -> String {
        let mut out = String::with_capacity(input.len() + 8);
        for byte in input.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn mapping(rules: Value) -> Mapping {
        Mapping::parse("mapping", &rules).expect("valid mapping")
    }

    fn issues(rules: Value) -> Vec<(String, String)> {
        Mapping::parse("mapping", &rules)
            .expect_err("invalid mapping")
            .into_iter()
            .map(|issue| (issue.path, issue.message))
            .collect()
    }

    #[test]
    fn rename_moves_into_an_extension_and_back() {
        let m = mapping(
            json!([{"resource": "User", "from": "title", "to": format!("{ENT}:department")}]),
        );
        let mut user = json!({"schemas": [urn::USER], "userName": "a", "title": "Guide"});
        assert!(m.inbound_resource("User", &mut user, true));
        assert_eq!(
            user,
            json!({"schemas": [urn::USER, ENT], "userName": "a", ENT: {"department": "Guide"}})
        );
        assert!(m.outbound_resource("User", &mut user));
        assert_eq!(
            user,
            json!({"schemas": [urn::USER], "userName": "a", "title": "Guide"})
        );
        // Other resource types are untouched.
        let mut group = json!({"displayName": "g", "title": "x"});
        assert!(!m.inbound_resource("Group", &mut group, true));
    }

    #[test]
    fn rename_out_of_an_extension_keeps_other_extension_members() {
        let m = mapping(json!([{"from": format!("{ENT}:employeeNumber"), "to": "externalId"}]));
        let mut user = json!({"schemas": [urn::USER, ENT], ENT: {"employeeNumber": "701984", "department": "Sales"}});
        m.inbound_resource("User", &mut user, true);
        assert_eq!(user["externalId"], "701984");
        assert_eq!(user[ENT], json!({"department": "Sales"}));
        m.outbound_resource("User", &mut user);
        assert_eq!(
            user[ENT],
            json!({"department": "Sales", "employeeNumber": "701984"})
        );
        assert!(user.get("externalId").is_none());
    }

    #[test]
    fn sub_attributes_rename_and_keys_match_ignoring_case() {
        let m = mapping(json!([{"from": "name.familyName", "to": "name.formatted"}]));
        let mut user = json!({"NAME": {"FamilyName": "Jensen", "givenName": "Barbara"}});
        m.inbound_resource("User", &mut user, true);
        assert_eq!(
            user["NAME"],
            json!({"givenName": "Barbara", "formatted": "Jensen"})
        );
    }

    #[test]
    fn defaults_only_fill_absent_values_and_not_in_patch_objects() {
        let m = mapping(
            json!([{"resource": "User", "set_default": {"attribute": "userType", "value": "Employee"}}]),
        );
        let mut user = json!({"userName": "a"});
        assert!(m.inbound_resource("User", &mut user, true));
        assert_eq!(user["userType"], "Employee");
        let mut given = json!({"userType": "Contractor"});
        assert!(!m.inbound_resource("User", &mut given, true));
        assert_eq!(given["userType"], "Contractor");
        let mut partial = json!({"active": false});
        assert!(!m.inbound_resource("User", &mut partial, false));
        // Default direction is inbound only.
        let mut out = json!({"userName": "a"});
        assert!(!m.outbound_resource("User", &mut out));
    }

    #[test]
    fn drop_honours_direction() {
        let m = mapping(json!([
            {"drop": "x-internal", "direction": "inbound"},
            {"drop": "password", "direction": "outbound"},
            {"drop": format!("{ENT}:costCenter")}
        ]));
        let mut body = json!({"schemas": [urn::USER, ENT], "x-internal": 1, "password": "p", ENT: {"costCenter": "4130"}});
        m.inbound_resource("User", &mut body, true);
        assert_eq!(body, json!({"schemas": [urn::USER], "password": "p"}));
        let mut out = json!({"x-internal": 1, "password": "p"});
        m.outbound_resource("User", &mut out);
        assert_eq!(out, json!({"x-internal": 1}));
    }

    #[test]
    fn transforms_apply_to_strings_arrays_and_sub_attributes() {
        let m = mapping(json!([
            {"attribute": "userName", "transform": ["trim", "lower-case"]},
            {"attribute": "emails.value", "transform": ["lower-case"]},
            {"attribute": "displayName", "transform": "upper-case", "direction": "outbound"}
        ]));
        let mut user = json!({"userName": "  BJensen ", "emails": [{"value": "BJ@Example.COM"}, {"value": "x@y"}], "displayName": "b"});
        assert!(m.inbound_resource("User", &mut user, true));
        assert_eq!(user["userName"], "bjensen");
        assert_eq!(user["emails"][0]["value"], "bj@example.com");
        assert_eq!(user["displayName"], "b");
        m.outbound_resource("User", &mut user);
        assert_eq!(user["displayName"], "B");
    }

    #[test]
    fn outbound_applies_rules_in_reverse_order_so_chains_invert() {
        let m = mapping(json!([{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]));
        let mut body = json!({"a": 1});
        m.inbound_resource("User", &mut body, true);
        assert_eq!(body, json!({"c": 1}));
        m.outbound_resource("User", &mut body);
        assert_eq!(body, json!({"a": 1}));
    }

    #[test]
    fn patch_paths_are_renamed_dropped_and_transformed() {
        let m = mapping(json!([
            {"from": "title", "to": format!("{ENT}:department")},
            {"from": "nickName", "to": "name"},
            {"drop": "x-internal"},
            {"attribute": "userName", "transform": ["lower-case"]},
            {"attribute": "emails.value", "transform": ["lower-case"]}
        ]));
        let mut body = json!({"schemas": [urn::PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "Boss"},
            {"op": "replace", "path": "nickName.givenName", "value": "B"},
            {"op": "remove", "path": "x-internal"},
            {"op": "replace", "path": "userName", "value": "BJensen"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "BJ@EXAMPLE.COM"},
            {"op": "replace", "value": {"title": "Chief", "active": false}}
        ]});
        assert!(m.inbound_patch("User", &mut body));
        assert_eq!(
            body["Operations"],
            json!([
                {"op": "replace", "path": format!("{ENT}:department"), "value": "Boss"},
                {"op": "replace", "path": "name.givenName", "value": "B"},
                {"op": "replace", "path": "userName", "value": "bjensen"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "bj@example.com"},
                {"op": "replace", "value": {"active": false, ENT: {"department": "Chief"}}}
            ])
        );
    }

    #[test]
    fn filters_attribute_lists_and_search_bodies_are_renamed() {
        let m = mapping(json!([
            {"from": format!("{ENT}:employeeNumber"), "to": "externalId"},
            {"from": "emails", "to": "x-mails"},
            {"attribute": "userName", "transform": ["lower-case"]}
        ]));
        assert_eq!(
            m.inbound_filter(
                "User",
                &format!("{ENT}:employeeNumber eq \"7\" and userName eq \"BJ\"")
            )
            .as_deref(),
            Some("externalId eq \"7\" and userName eq \"bj\"")
        );
        assert_eq!(
            m.inbound_filter("User", "employeeNumber pr or emails[type eq \"work\"]")
                .as_deref(),
            Some("externalId pr or x-mails[type eq \"work\"]")
        );
        assert_eq!(m.inbound_filter("User", "displayName eq \"x\""), None);
        assert_eq!(m.inbound_filter("User", "not a filter ("), None);
        assert_eq!(
            m.inbound_attribute_list("User", "userName,employeeNumber,emails.value")
                .as_deref(),
            Some("userName,externalId,x-mails.value")
        );
        let rewrite = m.rewrite_request(
            "GET",
            "/Users",
            "filter=employeeNumber%20eq%20%227%22&startIndex=1&attributes=employeeNumber",
            b"",
        );
        assert_eq!(
            rewrite.query.as_deref(),
            Some("filter=externalId%20eq%20%227%22&startIndex=1&attributes=externalId")
        );
        let search = m.rewrite_request(
            "POST",
            "/Users/.search",
            "",
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"employeeNumber eq \"7\""}"#,
        );
        let body: Value = serde_json::from_slice(&search.body.expect("rewritten")).unwrap();
        assert_eq!(body["filter"], "externalId eq \"7\"");
    }

    #[test]
    fn responses_map_single_resources_and_list_items_by_resource_type() {
        let m = mapping(json!([{"resource": "User", "from": "title", "to": "nickName"}]));
        let list = json!({"schemas": [urn::LIST_RESPONSE], "totalResults": 2, "Resources": [
            {"id": "1", "nickName": "x", "meta": {"resourceType": "User"}},
            {"id": "2", "nickName": "y", "meta": {"resourceType": "Group"}}
        ]});
        let out = m
            .rewrite_response("/.search", &serde_json::to_vec(&list).unwrap())
            .expect("changed");
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["Resources"][0]["title"], "x");
        assert_eq!(out["Resources"][1]["nickName"], "y");
        let single = br#"{"id":"1","nickName":"x"}"#;
        let out: Value =
            serde_json::from_slice(&m.rewrite_response("/Users/1", single).unwrap()).unwrap();
        assert_eq!(out["title"], "x");
        assert_eq!(m.rewrite_response("/Schemas", single), None);
        let error =
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"nickName":"x"}"#;
        assert_eq!(m.rewrite_response("/Users/1", error), None);
    }

    #[test]
    fn in_place_helpers_rewrite_owned_buffers_and_say_what_changed() {
        let mapping = Mapping::parse(
            "mapping",
            &json!([{"resource": "User", "from": "title", "to": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
        )
        .unwrap();
        let mut query = String::from("filter=title%20eq%20%22Guide%22");
        let mut body: Vec<u8> = json!({"schemas": [urn::USER], "userName": "a", "title": "Guide"})
            .to_string()
            .into_bytes();
        let applied = mapping.apply_to_request("POST", "/Users", &mut query, &mut body);
        assert!(applied.query && applied.body);
        assert!(query.contains("department"), "{query}");
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert!(sent.get("title").is_none());
        // Back out: only for successful responses.
        let mut reply = body.clone();
        assert!(!mapping.apply_to_response("/Users", 404, &mut reply));
        assert_eq!(reply, body);
        assert!(mapping.apply_to_response("/Users", 201, &mut reply));
        let back: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(back["title"], "Guide");
        // An empty mapping touches nothing.
        let none = Mapping::parse("mapping", &json!([])).unwrap();
        assert!(!none
            .apply_to_request("POST", "/Users", &mut query, &mut body)
            .any());
    }

    #[test]
    fn config_errors_are_located() {
        let found = issues(json!([
            {"from": "title", "to": "title"},
            {"attribute": "userName", "transform": ["trim", "reverse"]},
            {"from": "a", "to": "b", "drop": "c"},
            {"drop": "emails[type eq \"work\"]"},
            {"set_default": {"attribute": "userType"}},
            {"direction": "sideways", "drop": "x"},
            {"frm": "x", "drop": "y"},
            {"to": "x"},
            {"attribute": "x"},
            {}
        ]));
        let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "mapping[0].to",
                "mapping[1].transform[1]",
                "mapping[2].drop",
                "mapping[3].drop",
                "mapping[4].set_default.value",
                "mapping[5].direction",
                "mapping[6].frm",
                "mapping[7].from",
                "mapping[8].transform",
                "mapping[9]",
            ]
        );
        assert!(found[0].1.contains("itself"), "{}", found[0].1);
        assert!(found[1].1.contains("reverse") && found[1].1.contains("lower-case"));
        assert!(found[2].1.contains("one action"));
        assert_eq!(issues(json!({"from": "a"}))[0].0, "mapping");
        assert!(Mapping::parse("mapping", &Value::Null).unwrap().is_empty());
    }

    #[test]
    fn core_qualified_paths_are_top_level_and_resources_match_endpoints() {
        let loc = AttrLoc::parse("urn:ietf:params:scim:schemas:core:2.0:User:userName").unwrap();
        assert_eq!(loc.urn, None);
        assert_eq!(loc.attr, "userName");
        assert!(resource_matches("User", "Users"));
        assert!(resource_matches("Users", "User"));
        assert!(!resource_matches("User", "Group"));
        assert_eq!(resource_for_path("/Users/1"), Some("User"));
        assert_eq!(resource_for_path("/groups"), Some("Group"));
        assert_eq!(resource_for_path("/Schemas/urn:x"), None);
        assert_eq!(resource_for_path(""), None);
        assert!(path_is_search("/Users/.search"));
    }

    #[test]
    fn query_helpers_keep_untouched_parameters_verbatim() {
        assert_eq!(
            query::canonicalize_names(
                "startindex=1&COUNT=2&filter=a%20b&x=y",
                &["startIndex", "count", "filter"]
            ),
            Some((
                "startIndex=1&count=2&filter=a%20b&x=y".to_string(),
                vec![
                    ("startindex".into(), "startIndex".into()),
                    ("COUNT".into(), "count".into())
                ]
            ))
        );
        assert_eq!(query::canonicalize_names("count=1", &["count"]), None);
        assert_eq!(
            query::remove("aadOptscim062020&filter=x", "aadoptscim062020").as_deref(),
            Some("filter=x")
        );
        assert_eq!(query::remove("filter=x", "aadoptscim062020"), None);
        assert_eq!(
            query::param("Filter=a+b%22", "filter").as_deref(),
            Some("a b\"")
        );
        assert_eq!(query::encode("a b:\"é"), "a%20b%3A%22%C3%A9");
        assert_eq!(query::decode("%zz%4"), "%zz%4");
    }
}
