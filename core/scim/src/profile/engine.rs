//! The profile engine: one implementation of `Profile` for every IGA client,
//! driven by [`Settings`]. Inbound it reads the body once (the strict reader,
//! [`crate::body::parse_body`]), runs the configured dialect steps and the
//! mapping on that one value, and writes it back once, only when something
//! changed; outbound likewise for the response.

use scimgate_abi::sdk::Profile;
use scimgate_abi::{Caller, PluginError, Request, Response};
use serde_json::Value;

use crate::dialect;
use crate::mapping::{self, query, Mapping};
use crate::object_keys;
use crate::redact::{body_for_log, Sensitive};
use crate::registry::{Registry, SchemaCtx};

use super::members::{complete_members, member_selection};
use super::settings::Settings;

/// A running profile: its settings, parsed mapping and the core schemas.
pub struct ProfileEngine {
    name: String,
    settings: Settings,
    mapping: Mapping,
    registry: Registry,
}

impl ProfileEngine {
    /// Builds the engine; `name` labels its debug lines (`one-identity`, the
    /// preset, or `profile`). Fails on a mapping that does not parse (the
    /// config validation reports it first, with its location).
    pub fn new(name: &str, settings: Settings) -> Result<ProfileEngine, PluginError> {
        let mapping = Mapping::parse("mapping", &settings.mapping).map_err(|issues| {
            let first = &issues[0];
            PluginError::new(500, format!("config {}: {}", first.path, first.message))
        })?;
        Ok(ProfileEngine {
            name: name.to_string(),
            settings,
            mapping,
            registry: Registry::core(),
        })
    }

    /// The settings in effect.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn context(&self, resource: &str) -> SchemaCtx<'_> {
        self.registry
            .context_for(resource)
            .unwrap_or_else(|_| SchemaCtx::schemaless())
    }

    /// A body for a debug line: operations, paths and shapes, never the values
    /// of `password`, `returned: never` or `sensitive_attributes`.
    fn body_for_log(&self, resource: &str, body: &Value) -> String {
        let sensitive =
            Sensitive::new(&self.context(resource), &self.settings.sensitive_attributes);
        body_for_log(body, &sensitive)
    }

    /// The query string after the query settings and the mapping; `None` when
    /// unchanged.
    fn rewrite_query(&self, query_text: &str, resource: Option<&str>) -> Option<String> {
        let mut current: Option<String> = None;
        for name in &self.settings.removed_query_parameters {
            let text = current.as_deref().unwrap_or(query_text);
            if let Some(rest) = query::remove(text, name) {
                tracing::debug!("{}: removed the {name} parameter from the query", self.name);
                current = Some(rest);
            }
        }
        if !self.settings.query_parameters.is_empty() {
            let names: Vec<&str> = self
                .settings
                .query_parameters
                .iter()
                .map(String::as_str)
                .collect();
            let text = current.as_deref().unwrap_or(query_text);
            if let Some((rest, renamed)) = query::canonicalize_names(text, &names) {
                tracing::debug!(?renamed, "{}: query parameter names rewritten", self.name);
                current = Some(rest);
            }
        }
        if let (false, Some(resource)) = (self.mapping.is_empty(), resource) {
            let text = current.as_deref().unwrap_or(query_text);
            let mapped = query::rewrite_values(text, |name, value| {
                if name.eq_ignore_ascii_case("filter") {
                    self.mapping.inbound_filter(resource, value)
                } else if name.eq_ignore_ascii_case("attributes")
                    || name.eq_ignore_ascii_case("excludedAttributes")
                    || name.eq_ignore_ascii_case("sortBy")
                {
                    self.mapping.inbound_attribute_list(resource, value)
                } else {
                    None
                }
            });
            if mapped.is_some() {
                tracing::debug!("{}: mapping rewrote the query", self.name);
                current = mapped;
            }
        }
        current
    }

    /// Whether a request body must be read at all.
    fn reads_body(&self, method: &str, search: bool) -> bool {
        let mapped = !self.mapping.is_empty();
        match method {
            "PATCH" => self.settings.normalize_patch || mapped,
            "POST" if search => mapped,
            "POST" | "PUT" => mapped || !self.settings.ignored_schemas.is_empty(),
            _ => false,
        }
    }

    /// Rewrites a parsed request body in place: the dialect steps, then the
    /// mapping.
    pub fn rewrite_body(&self, method: &str, search: bool, resource: &str, body: &mut Value) {
        match method {
            "PATCH" => {
                if self.settings.normalize_patch {
                    self.normalize_patch(resource, body);
                }
                self.mapping.inbound_patch(resource, body);
            }
            "POST" if search => self.map_search(resource, body),
            "POST" | "PUT" => {
                if !self.settings.ignored_schemas.is_empty() {
                    self.drop_ignored_schemas(body);
                }
                self.mapping.inbound_resource(resource, body, true);
            }
            _ => {}
        }
    }

    /// The PATCH dialect steps that are on, in their one order (the manager
    /// before value-array removals become filters; booleans last but the id).
    pub fn normalize_patch(&self, resource: &str, body: &mut Value) {
        let s = &self.settings;
        let context = self.context(resource);
        if s.patch_op_case {
            dialect::normalize_op_case(body);
        }
        if s.patch_extension_schemas {
            dialect::drop_extension_schemas(body, &context);
        }
        if s.patch_dotted_paths {
            dialect::expand_pathless_paths(body, &context);
        }
        if s.patch_manager && resource == "User" {
            dialect::normalize_manager(body);
        }
        if s.patch_value_array_removal {
            dialect::value_array_removal_to_filter(body);
        }
        if s.patch_filtered_removal_value {
            dialect::drop_value_of_filtered_removal(body);
        }
        if s.patch_string_booleans {
            dialect::coerce_string_booleans(body, &context);
        }
        if s.patch_pathless_id {
            dialect::drop_pathless_ids(body);
        }
    }

    fn ignored(&self, schema: &str) -> bool {
        self.settings
            .ignored_schemas
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => schema
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
                None => schema.eq_ignore_ascii_case(pattern),
            })
    }

    /// Drops ignored URNs from `schemas` and the objects keyed by them.
    fn drop_ignored_schemas(&self, body: &mut Value) {
        let Some(object) = body.as_object_mut() else {
            return;
        };
        if let Some(Value::Array(schemas)) = object_keys::get_mut(object, "schemas") {
            schemas.retain(|schema| !schema.as_str().is_some_and(|text| self.ignored(text)));
        }
        object.retain(|key, _| !self.ignored(key));
    }

    /// The mapping applied to a `.search` body: `filter`, `attributes`,
    /// `excludedAttributes` and `sortBy`.
    fn map_search(&self, resource: &str, body: &mut Value) {
        let Some(object) = body.as_object_mut() else {
            return;
        };
        if let Some(Value::String(filter)) = object_keys::get_mut(object, "filter") {
            if let Some(mapped) = self.mapping.inbound_filter(resource, filter) {
                *filter = mapped;
            }
        }
        for key in ["attributes", "excludedAttributes"] {
            if let Some(Value::Array(items)) = object_keys::get_mut(object, key) {
                for item in items.iter_mut() {
                    if let Value::String(text) = item {
                        if let Some(mapped) = self.mapping.inbound_attribute_list(resource, text) {
                            *text = mapped;
                        }
                    }
                }
            }
        }
        if let Some(Value::String(sort)) = object_keys::get_mut(object, "sortBy") {
            if let Some(mapped) = self.mapping.inbound_attribute_list(resource, sort) {
                *sort = mapped;
            }
        }
    }
}

/// `/Groups/{id}` (any case).
fn is_group_item(path: &str) -> bool {
    let mut segments = path.trim_matches('/').split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(endpoint), Some(id), None) if endpoint.eq_ignore_ascii_case("Groups") && !id.is_empty()
    )
}

impl Profile for ProfileEngine {
    fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        let resource = mapping::resource_for_path(&req.path);
        if !req.query.is_empty() {
            if let Some(query) = self.rewrite_query(&req.query, resource) {
                req.query = query.into();
            }
        }
        let Some(resource) = resource else {
            return Ok(());
        };
        let search = mapping::path_is_search(&req.path);
        if req.body.is_empty() || !self.reads_body(req.method.as_str(), search) {
            return Ok(());
        }
        // A body the strict reader refuses is left as it is, byte for byte:
        // the endpoint refuses it with the same error.
        let Ok(mut body) = crate::body::parse_body(&req.body) else {
            return Ok(());
        };
        let before = body.clone();
        self.rewrite_body(req.method.as_str(), search, resource, &mut body);
        if body != before {
            let what = if req.method.as_str() == "PATCH" {
                "PATCH"
            } else {
                "request"
            };
            tracing::debug!(
                before = %self.body_for_log(resource, &before),
                after = %self.body_for_log(resource, &body),
                "{}: {what} body normalised",
                self.name
            );
            req.body = serde_json::to_vec(&body).unwrap_or_default().into();
        }
        Ok(())
    }

    fn outbound(
        &self,
        req: &Request,
        _caller: Caller<'_>,
        resp: &mut Response,
    ) -> Result<(), PluginError> {
        if self.settings.group_patch_status == 204
            && req.method.as_str() == "PATCH"
            && resp.status == 200
            && is_group_item(&req.path)
        {
            tracing::debug!(path = %req.path, "{}: group PATCH answered 204", self.name);
            resp.status = 204;
            resp.body = Vec::new().into();
            resp.headers.retain(|header| {
                !header.name.as_str().eq_ignore_ascii_case("content-type")
                    && !header.name.as_str().eq_ignore_ascii_case("content-length")
            });
            return Ok(());
        }
        let endpoint = mapping::resource_for_path(&req.path);
        let mapped = !self.mapping.is_empty()
            && (200..300).contains(&resp.status)
            && (endpoint.is_some() || mapping::path_is_search(&req.path));
        let selection = match (self.settings.group_members, endpoint, resp.status) {
            (true, Some("Group"), 200) => member_selection(req),
            _ => None,
        };
        if resp.body.is_empty() || (!mapped && selection.is_none()) {
            return Ok(());
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(&resp.body) else {
            return Ok(());
        };
        let mut changed = mapped && self.mapping.outbound_body(endpoint, &mut body);
        if let Some(selection) = selection {
            let base = req.base_url.trim_end_matches('/');
            if mapping::is_list_response(&body) {
                if let Some(Value::Array(groups)) = body
                    .as_object_mut()
                    .and_then(|object| object_keys::get_mut(object, "Resources"))
                {
                    for group in groups.iter_mut() {
                        changed |= complete_members(group, base, selection);
                    }
                }
            } else if body.get("schemas").is_some() || body.get("id").is_some() {
                changed |= complete_members(&mut body, base, selection);
            }
        }
        if changed {
            tracing::debug!("{}: response body rewritten", self.name);
            resp.body = serde_json::to_vec(&body).unwrap_or_default().into();
        }
        Ok(())
    }
}
