//! The `scim-server/scim` endpoint: routes a request below the mount to
//! discovery, resources, `/.search`, `/Bulk` or `/Me`, and turns results
//! into `application/scim+json` responses with `Location` and `ETag`.

use std::sync::{Arc, Mutex};

use scimgate_abi::sdk::{CreateContext, Endpoint};
use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_scim::discovery::{resource_types_json, schemas_json};
use scimgate_scim::{
    list_response, parse_body, project, strip_never, AttributeSelection, Registry, ResourceType,
    Target,
};
use serde_json::Value;

use crate::config::{PatchResponse, ScimConfig, StoreLocation};
use crate::errors::{from_scim, invalid_syntax, not_found};
use crate::list::{ListParams, PageMemory};
use crate::resources::{etag, etag_matches, timestamp, Kind};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Cond, Scan, Store, Visit};

pub const SCIM_JSON: &str = "application/scim+json";

/// Runtime settings derived from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_results: u64,
    pub default_page_size: u64,
    pub bulk_enabled: bool,
    pub bulk_max_operations: u64,
    pub bulk_max_payload_size: u64,
    pub patch_no_content: bool,
    pub unique_group_names: bool,
    pub me: bool,
    pub cursor_timeout_ms: i64,
    /// What a write does with a `password` (`hash`, `drop`, `refuse`).
    pub password_storage: crate::password::PasswordStorage,
}

/// The SCIM service provider.
pub struct ScimEndpoint {
    pub(crate) registry: Registry,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) settings: Settings,
    spc: Value,
    pub(crate) pages: Mutex<PageMemory>,
}

impl ScimEndpoint {
    /// Builds the endpoint from its config (the SDK has already type-checked it).
    pub fn from_config(
        config: ScimConfig,
        ctx: &CreateContext,
    ) -> Result<ScimEndpoint, PluginError> {
        let issues = config.check(&ctx.data_dir);
        if !issues.is_empty() {
            let text: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect();
            return Err(PluginError::internal(format!(
                "config: {}",
                text.join("; ")
            )));
        }
        let registry = config
            .registry(&ctx.data_dir)
            .map_err(|_| PluginError::internal("config: invalid schemas"))?;
        let store: Arc<dyn Store> = match config.store_location(&ctx.data_dir) {
            Ok(StoreLocation::Sqlite(path)) => SqliteStore::open(&path).map_err(|e| {
                PluginError::internal(format!(
                    "cannot open the SQLite store {}: {e}",
                    path.display()
                ))
            })?,
            Ok(StoreLocation::Postgres(settings)) => {
                let store = PostgresStore::open(&settings).map_err(|e| {
                    PluginError::internal(format!(
                        "cannot open the PostgreSQL store {}: {e}",
                        settings.label()
                    ))
                })?;
                tracing::info!(
                    stage = %ctx.stage,
                    store = %store.label(),
                    schema_version = store.schema_version(),
                    pool_size = settings.pool_size,
                    "SCIM store: PostgreSQL, migrated"
                );
                store
            }
            Err(issue) => return Err(PluginError::internal(issue.message.to_string())),
        };
        Ok(ScimEndpoint::new(config, registry, store))
    }

    /// The resource type served at `endpoint` (`Users` or `users`): names
    /// match ignoring ASCII case, as in [`Target::resolve`].
    pub(crate) fn resource_type_at(&self, endpoint: &str) -> Option<&ResourceType> {
        self.registry.resource_types().iter().find(|rt| {
            rt.endpoint
                .trim_start_matches('/')
                .eq_ignore_ascii_case(endpoint)
        })
    }

    pub fn new(config: ScimConfig, registry: Registry, store: Arc<dyn Store>) -> ScimEndpoint {
        let settings = Settings {
            max_results: config.max_results,
            default_page_size: config.default_page_size,
            bulk_enabled: config.bulk.enabled,
            bulk_max_operations: config.bulk.max_operations,
            bulk_max_payload_size: config.bulk.max_payload_size.0,
            patch_no_content: config.patch_response == PatchResponse::NoContent,
            unique_group_names: config.unique_group_names,
            me: config.me,
            cursor_timeout_ms: (config.cursor_timeout.0.min(i64::MAX as u64 / 1000) as i64) * 1000,
            password_storage: config.password_storage,
        };
        ScimEndpoint {
            spc: config.service_provider_config(),
            registry,
            store,
            settings,
            pages: Mutex::new(PageMemory::default()),
        }
    }
}

impl Endpoint for ScimEndpoint {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        self.route(req, caller)
    }

    fn ready(&self) -> Result<(), String> {
        self.store.ready()
    }
}

/// What a request is about, with what it needs from the request.
pub(crate) struct Call<'a> {
    pub req: &'a Request,
    pub base: &'a str,
    pub now: String,
    pub now_ms: i64,
}

fn method_not_allowed(method: &str, allowed: &str) -> PluginError {
    PluginError::new(
        405,
        format!("{method} is not allowed here; allowed: {allowed}"),
    )
    .with_header("allow", allowed)
}

impl ScimEndpoint {
    fn route(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        let call = Call {
            req,
            base: req.base_url.as_str(),
            now: timestamp(req.received_at_unix_ms),
            now_ms: req.received_at_unix_ms,
        };
        let method = req.method.as_str();
        // The host hands over a canonical path; the policies resolved it
        // with this same function.
        match Target::resolve(req.path.as_str()) {
            Target::Root => Err(not_found(
                "this is a SCIM base URL; see /ServiceProviderConfig",
            )),
            Target::ServiceProviderConfig => self.discovery(&call, Discovery::Spc),
            Target::ResourceTypes(name) => self.discovery(&call, Discovery::ResourceTypes(name)),
            Target::Schemas(urn) => self.discovery(&call, Discovery::Schemas(urn)),
            Target::Search => match method {
                "POST" => self.search(&call, None),
                _ => Err(method_not_allowed(method, "POST")),
            },
            Target::Bulk => match method {
                "POST" => self.bulk(&call),
                _ => Err(method_not_allowed(method, "POST")),
            },
            Target::Me => self.me(&call, caller),
            Target::Nothing(_) => Err(not_found(format!("no such path: {}", req.path.as_str()))),
            target @ (Target::Collection(endpoint)
            | Target::CollectionSearch(endpoint)
            | Target::Resource(endpoint, _)) => {
                let rt = self
                    .resource_type_at(endpoint)
                    .ok_or_else(|| not_found(format!("no SCIM endpoint /{endpoint}")))?;
                let kind = self.kind(rt)?;
                match target {
                    Target::Collection(_) => match method {
                        "GET" => self.list(&call, &kind),
                        "POST" => self.create(&call, &kind),
                        _ => Err(method_not_allowed(method, "GET, POST")),
                    },
                    Target::CollectionSearch(_) => match method {
                        "POST" => self.search(&call, Some(&kind)),
                        _ => Err(method_not_allowed(method, "POST")),
                    },
                    _ => {
                        let Target::Resource(_, id) = target else {
                            unreachable!("resource targets only")
                        };
                        self.one(&call, &kind, id)
                    }
                }
            }
        }
    }

    fn one(&self, call: &Call<'_>, kind: &Kind<'_>, id: &str) -> Result<Response, PluginError> {
        let req = call.req;
        let if_match = req.header("if-match");
        match req.method.as_str() {
            "GET" => self.read_one(call, kind, id),
            "PUT" => {
                let body = json_body(req)?;
                let mut out = None;
                self.store.write(&mut |tx| {
                    out = Some(self.replace_in(tx, kind, id, &body, if_match, &call.now)?);
                    Ok(())
                })?;
                let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
                self.resource_response(call, kind, &rec, 200)
            }
            "PATCH" => {
                let body = json_body(req)?;
                let mut out = None;
                self.store.write(&mut |tx| {
                    out = Some(self.patch_in(tx, kind, id, &body, if_match, &call.now)?);
                    Ok(())
                })?;
                let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
                if self.settings.patch_no_content {
                    return Ok(Response::new(204)
                        .with_header("etag", &etag(rec.version))
                        .with_header("location", &self.location(call.base, &kind.rt.name, id)));
                }
                self.resource_response(call, kind, &rec, 200)
            }
            "DELETE" => {
                self.store
                    .write(&mut |tx| self.delete_in(tx, kind, id, if_match, &call.now))?;
                Ok(Response::new(204))
            }
            method => Err(method_not_allowed(method, "GET, PUT, PATCH, DELETE")),
        }
    }

    fn read_one(
        &self,
        call: &Call<'_>,
        kind: &Kind<'_>,
        id: &str,
    ) -> Result<Response, PluginError> {
        let rec = self
            .store
            .get(&kind.rt.name, id)?
            .ok_or_else(|| not_found(format!("{} '{id}' not found", kind.rt.name)))?;
        if let Some(header) = call.req.header("if-none-match") {
            if etag_matches(header, rec.version) {
                return Ok(Response::new(304)
                    .with_header("etag", &etag(rec.version))
                    .with_header("location", &self.location(call.base, &kind.rt.name, id)));
            }
        }
        self.resource_response(call, kind, &rec, 200)
    }

    fn create(&self, call: &Call<'_>, kind: &Kind<'_>) -> Result<Response, PluginError> {
        let body = json_body(call.req)?;
        let mut out = None;
        self.store.write(&mut |tx| {
            out = Some(self.create_in(tx, kind, &body, &call.now)?);
            Ok(())
        })?;
        let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
        self.resource_response(call, kind, &rec, 201)
    }

    /// A resource response: rendered, projected by the query's
    /// `attributes`/`excludedAttributes`, with `Location` and `ETag`.
    pub(crate) fn resource_response(
        &self,
        call: &Call<'_>,
        kind: &Kind<'_>,
        rec: &crate::store::Record,
        status: u16,
    ) -> Result<Response, PluginError> {
        let selection = query_selection(call.req)?;
        let full = self.render(kind, rec, call.base, true)?;
        let shown = project(&kind.ctx, &strip_never(&kind.ctx, &full), &selection);
        let location = self.location(call.base, &kind.rt.name, &rec.id);
        Ok(Response::json(status, SCIM_JSON, &shown)
            .with_header("location", &location)
            .with_header("etag", &etag(rec.version)))
    }

    fn me(&self, call: &Call<'_>, caller: Caller<'_>) -> Result<Response, PluginError> {
        if !self.settings.me {
            return Err(PluginError::new(
                501,
                "/Me is not enabled on this endpoint (set me = true)",
            ));
        }
        let principal = caller
            .principal()
            .ok_or_else(|| PluginError::new(401, "/Me needs an authenticated caller"))?;
        let kind = self
            .kind_named("User")
            .ok_or_else(|| PluginError::new(501, "/Me needs the User resource type"))?;
        let subject = principal.subject.to_string();
        let mut found = None;
        let scan = Scan {
            resource_types: vec![kind.rt.name.clone()],
            cond: Some(Cond::UserName(subject.to_lowercase())),
            limit: Some(1),
            ..Scan::default()
        };
        self.store.scan(&scan, &mut |rec| {
            found = Some(rec.id);
            Ok(Visit::Stop)
        })?;
        let id = found.ok_or_else(|| {
            not_found(format!(
                "no User has userName '{subject}' (the caller's subject)"
            ))
        })?;
        match call.req.method.as_str() {
            "GET" | "PUT" | "PATCH" | "DELETE" => self.one(call, &kind, &id),
            method => Err(method_not_allowed(method, "GET, PUT, PATCH, DELETE")),
        }
    }

    fn discovery(&self, call: &Call<'_>, what: Discovery<'_>) -> Result<Response, PluginError> {
        let req = call.req;
        if req.method.as_str() != "GET" {
            return Err(method_not_allowed(req.method.as_str(), "GET"));
        }
        if req
            .query_pairs()
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("filter"))
        {
            return Err(PluginError::new(
                403,
                "discovery endpoints do not support filtering",
            ));
        }
        let base = Some(call.base);
        let body = match what {
            Discovery::Spc => {
                let mut spc = self.spc.clone();
                spc["meta"]["location"] = Value::String(format!(
                    "{}/ServiceProviderConfig",
                    call.base.trim_end_matches('/')
                ));
                spc
            }
            Discovery::ResourceTypes(None) => {
                let all = resource_types_json(&self.registry, base);
                let n = all.len() as u64;
                list_response(all, n, 1)
            }
            Discovery::ResourceTypes(Some(name)) => self
                .registry
                .resource_types()
                .iter()
                .find(|rt| rt.name == name)
                .map(|rt| rt.to_json(base))
                .ok_or_else(|| not_found(format!("no resource type '{name}'")))?,
            Discovery::Schemas(None) => {
                let all = schemas_json(&self.registry, base);
                let n = all.len() as u64;
                list_response(all, n, 1)
            }
            Discovery::Schemas(Some(urn)) => self
                .registry
                .schemas()
                .iter()
                .find(|s| s.id == urn)
                .map(|s| s.to_json(base))
                .ok_or_else(|| not_found(format!("no schema '{urn}'")))?,
        };
        Ok(Response::json(200, SCIM_JSON, &body))
    }

    fn list(&self, call: &Call<'_>, kind: &Kind<'_>) -> Result<Response, PluginError> {
        let params = ListParams::from_query(call.req)?;
        let body = self.run_list(call, std::slice::from_ref(kind), &params)?;
        Ok(Response::json(200, SCIM_JSON, &body))
    }

    fn search(&self, call: &Call<'_>, kind: Option<&Kind<'_>>) -> Result<Response, PluginError> {
        let body = json_body(call.req)?;
        let params = ListParams::from_search(&body)?;
        let value = match kind {
            Some(kind) => self.run_list(call, std::slice::from_ref(kind), &params)?,
            None => {
                let kinds: Vec<Kind<'_>> = self
                    .registry
                    .resource_types()
                    .iter()
                    .map(|rt| self.kind(rt))
                    .collect::<Result<_, _>>()?;
                self.run_list(call, &kinds, &params)?
            }
        };
        Ok(Response::json(200, SCIM_JSON, &value))
    }
}

enum Discovery<'a> {
    Spc,
    ResourceTypes(Option<&'a str>),
    Schemas(Option<&'a str>),
}

/// The request body as JSON: `application/scim+json`, `application/json` or
/// no content type; anything else is 415, bad JSON 400 `invalidSyntax`.
pub(crate) fn json_body(req: &Request) -> Result<Value, PluginError> {
    if let Some(ct) = req.header("content-type") {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(media.is_empty() || media == "application/scim+json" || media == "application/json") {
            return Err(PluginError::new(
                415,
                format!("content type '{media}' is not supported; send application/scim+json"),
            ));
        }
    }
    if req.body.is_empty() {
        return Err(invalid_syntax("the request needs a JSON body"));
    }
    // The one body reader: names equal ignoring case are refused.
    parse_body(&req.body).map_err(from_scim)
}

/// `attributes` / `excludedAttributes` from the query string.
pub(crate) fn query_selection(req: &Request) -> Result<AttributeSelection, PluginError> {
    let pairs = req.query_pairs();
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    AttributeSelection::parse(find("attributes"), find("excludedAttributes")).map_err(from_scim)
}
