//! [`ScimService`]: the SCIM 2.0 service provider engine. It routes a
//! request below the mount to discovery, resources, `/.search`, `/Bulk` or
//! `/Me` or the change feed `/Changes`, and turns results into `application/scim+json` responses with
//! `Location` and `ETag`; the resources live in a [`Backend`].

use std::sync::{Arc, Mutex};

use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_scim::discovery::{resource_types_json, schemas_json};
use scimgate_scim::{
    list_response, parse_body, project_owned, strip_never_owned, AttrPath, AttributeSelection,
    CompValue, CompareOp, Filter, Registry, ResourceType, Target,
};
use serde_json::Value;

use crate::backend::{Backend, Capabilities, QuickRead, Record, Scan, Visit};
use crate::changes::{Feed, Stamp};
use crate::errors::{from_scim, invalid_syntax, not_found, too_many};
use crate::list::{ListParams, ListQuery, PageMemory};
use crate::resources::{etag, etag_matches, timestamp, Kind};
use crate::settings::{PatchResponse, Settings};

/// The `Content-Type` of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// The SCIM service provider over one [`Backend`]: build it once per
/// configuration, then [`ScimService::handle`] every request routed to it.
pub struct ScimService {
    pub(crate) registry: Registry,
    pub(crate) backend: Arc<dyn Backend>,
    /// The backend's capabilities, read once.
    pub(crate) caps: Capabilities,
    pub(crate) settings: Settings,
    /// Every resource type name (for member type look-ups).
    pub(crate) type_names: Vec<String>,
    spc: Value,
    pub(crate) pages: Mutex<PageMemory>,
    /// Wakes `/Changes` long polls; paces retention.
    pub(crate) feed: Feed,
    /// Push delivery of the change log (webhooks), when configured.
    pub(crate) push: Option<Arc<dyn crate::changes::ChangePush>>,
}

impl ScimService {
    /// The engine for `registry`'s resource types, kept by `backend`.
    pub fn new(settings: Settings, registry: Registry, backend: Arc<dyn Backend>) -> ScimService {
        let caps = backend.capabilities();
        let type_names = registry
            .resource_types()
            .iter()
            .map(|rt| rt.name.clone())
            .collect();
        ScimService {
            spc: settings.service_provider_config(),
            registry,
            backend,
            caps,
            settings,
            type_names,
            pages: Mutex::new(PageMemory::default()),
            feed: Feed::default(),
            push: None,
        }
    }

    /// Wires push delivery: poked after each committed write (it only
    /// signals its thread), and serving `/Changes/Subscribers…`.
    pub fn with_push(mut self, push: Arc<dyn crate::changes::ChangePush>) -> ScimService {
        self.push = Some(push);
        self
    }

    /// Answers one request below the mount (`req.path` is the canonical
    /// path after the base URL). Client mistakes are 4xx [`PluginError`]s.
    /// An inline call (`req.is_inline()`) marks the backend calls it makes
    /// ([`crate::backend::in_inline_call`]): a read that would wait answers
    /// [`BackendError::WouldBlock`](crate::BackendError::WouldBlock), which
    /// reaches the host as `would-block`.
    pub fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        crate::backend::inline_call(req.is_inline(), || self.route(req, caller))
    }

    /// Whether `req` is a read the host may run inline, on an async
    /// worker: discovery (no store), or a `GET` of one resource or of a
    /// filtered list that the backend calls quick ([`Backend::quick_read`]:
    /// a local store's indexed lookup). Everything else (writes, full
    /// lists, the change feed's long poll) may block.
    pub fn quick_read(&self, req: &Request) -> bool {
        self.plan_inline(req).is_some()
    }

    /// Answers `req` on the caller's async worker when it is a quick read
    /// ([`ScimService::quick_read`]); `None` when it may block (the host
    /// then calls [`ScimService::handle`] on its blocking pool). The
    /// request is parsed once: the filter that decided it is the filter
    /// that runs.
    pub fn handle_inline(
        &self,
        req: &Request,
        caller: Caller<'_>,
    ) -> Option<Result<Response, PluginError>> {
        let plan = self.plan_inline(req)?;
        Some(crate::backend::inline_call(true, || match plan {
            Inline::Route => self.route(req, caller),
            Inline::Get(kind, id) => self.read_one(&Call::new(req, caller), &kind, id),
            Inline::List(kind, query) => {
                let body =
                    self.run_list(&Call::new(req, caller), std::slice::from_ref(&kind), *query)?;
                Ok(scim_json(200, body))
            }
        }))
    }

    /// How `req` would run inline, read with the same parsers as the
    /// request itself ([`Target::resolve`], [`ListQuery::parse`]); `None`
    /// when it may block. Anything the parsers refuse is left to the
    /// blocking path, which answers the error.
    fn plan_inline<'s, 'r>(&'s self, req: &'r Request) -> Option<Inline<'s, 'r>> {
        let get = match req.method.as_str() {
            "GET" => true,
            "HEAD" => false,
            _ => return None,
        };
        match Target::resolve(req.path.as_str()) {
            Target::ServiceProviderConfig | Target::ResourceTypes(_) | Target::Schemas(_) => {
                Some(Inline::Route)
            }
            Target::Resource(endpoint, id) => {
                let kind = self
                    .resource_type_at(endpoint)
                    .and_then(|rt| self.kind(rt).ok())?;
                if !self.backend.quick_read(QuickRead::Get, &kind.ctx) {
                    return None;
                }
                Some(if get {
                    Inline::Get(kind, id)
                } else {
                    Inline::Route
                })
            }
            Target::Collection(endpoint) => {
                let kind = self
                    .resource_type_at(endpoint)
                    .and_then(|rt| self.kind(rt).ok())?;
                let query = ListParams::from_query(req)
                    .and_then(|params| ListQuery::parse(params, std::slice::from_ref(&kind)))
                    .ok()?;
                let quick = query.is_plain()
                    && query.filter().is_some_and(|filter| {
                        self.backend
                            .quick_read(QuickRead::Filter(filter), &kind.ctx)
                    });
                if !quick {
                    return None;
                }
                Some(if get {
                    Inline::List(kind, Box::new(query))
                } else {
                    Inline::Route
                })
            }
            _ => None,
        }
    }

    /// Whether the backend can serve requests (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        self.backend.ready()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
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

    /// A record as the engine uses it: without `Capabilities::versions`
    /// its version is derived from its content ([`derived_version`]).
    pub(crate) fn adopt(&self, mut rec: Record) -> Record {
        if !self.caps.versions {
            rec.version = derived_version(&rec);
        }
        rec
    }
}

/// The version of a record from a backend without versions: its body's
/// [`content_version`] mixed with `lastModified`, so that a change the body
/// does not show (a backend's native group members) still changes the ETag.
pub(crate) fn derived_version(rec: &Record) -> i64 {
    let mut hash = content_version(&rec.body) as u64;
    for b in rec.last_modified.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}

/// The engine is an endpoint as it is: a plugin returns its `ScimService`
/// from the component's constructor.
impl scimgate_abi::sdk::Endpoint for ScimService {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        ScimService::handle(self, req, caller)
    }

    fn blocks_on(&self, req: &Request) -> bool {
        !self.quick_read(req)
    }

    fn handle_inline(
        &self,
        req: &Request,
        caller: Caller<'_>,
    ) -> Option<Result<Response, PluginError>> {
        ScimService::handle_inline(self, req, caller)
    }

    fn ready(&self) -> Result<(), String> {
        ScimService::ready(self)
    }
}

/// A stable version of a stored body for backends without versions: the
/// FNV-1a hash of its canonical JSON (object keys sorted), as a positive
/// `i64`. The same body gives the same version on every node and build.
pub fn content_version(body: &Value) -> i64 {
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        fn value(&mut self, value: &Value) {
            match value {
                Value::Null => self.bytes(b"n"),
                Value::Bool(b) => self.bytes(if *b { b"t" } else { b"f" }),
                Value::Number(n) => {
                    self.bytes(b"#");
                    self.bytes(n.to_string().as_bytes());
                }
                Value::String(s) => {
                    self.bytes(b"\"");
                    self.bytes(&(s.len() as u64).to_le_bytes());
                    self.bytes(s.as_bytes());
                }
                Value::Array(items) => {
                    self.bytes(b"[");
                    self.bytes(&(items.len() as u64).to_le_bytes());
                    items.iter().for_each(|v| self.value(v));
                }
                Value::Object(map) => {
                    self.bytes(b"{");
                    self.bytes(&(map.len() as u64).to_le_bytes());
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    for key in keys {
                        self.bytes(&(key.len() as u64).to_le_bytes());
                        self.bytes(key.as_bytes());
                        self.value(&map[key]);
                    }
                }
            }
        }
    }
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    hash.value(body);
    (hash.0 & (i64::MAX as u64)) as i64
}

/// What a request is about, with what it needs from the request.
pub(crate) struct Call<'a> {
    pub req: &'a Request,
    pub base: &'a str,
    pub now_ms: i64,
    caller: Caller<'a>,
    /// Who writes and when, for `meta` and the change log: made on the
    /// first write's demand (a read needs neither the formatted time nor
    /// the caller's ids).
    stamp: std::cell::OnceCell<Stamp>,
}

impl<'a> Call<'a> {
    pub fn new(req: &'a Request, caller: Caller<'a>) -> Call<'a> {
        Call {
            req,
            base: req.base_url.as_str(),
            now_ms: req.received_at_unix_ms,
            caller,
            stamp: std::cell::OnceCell::new(),
        }
    }

    /// The write stamp: the request's time as `lastModified` and who sent it.
    pub fn stamp(&self) -> &Stamp {
        self.stamp
            .get_or_init(|| Stamp::new(timestamp(self.now_ms), self.now_ms, self.caller))
    }
}

pub(crate) fn method_not_allowed(method: &str, allowed: &str) -> PluginError {
    PluginError::new(
        405,
        format!("{method} is not allowed here; allowed: {allowed}"),
    )
    .with_header("allow", allowed)
}

impl ScimService {
    fn route(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        let call = Call::new(req, caller);
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
            Target::Changes => self.changes_feed(&call),
            Target::ChangeSubscribers(name) => self.change_subscribers(&call, name),
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
                self.write_unit(call.stamp(), &mut |tx| {
                    out = Some(self.replace_in(tx, kind, id, &body, if_match, call.stamp())?);
                    Ok(())
                })?;
                let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
                self.resource_response(call, kind, rec, 200)
            }
            "PATCH" => {
                let body = json_body(req)?;
                let mut out = None;
                self.write_unit(call.stamp(), &mut |tx| {
                    out = Some(self.patch_in(tx, kind, id, &body, if_match, call.stamp())?);
                    Ok(())
                })?;
                let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
                if self.settings.patch_response == PatchResponse::NoContent {
                    return Ok(Response::new(204)
                        .with_header("etag", &etag(rec.version))
                        .with_header("location", &self.location(call.base, &kind.rt.name, id)));
                }
                self.resource_response(call, kind, rec, 200)
            }
            "DELETE" => {
                self.write_unit(call.stamp(), &mut |tx| {
                    self.delete_in(tx, kind, id, if_match, call.stamp())
                })?;
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
        if self.copies_stored_text(kind)
            && query_selection(call.req)? == AttributeSelection::default()
        {
            return self.read_one_text(call, kind, id);
        }
        let rec = self
            .backend
            .get(&kind.rt.name, id)?
            .map(|rec| self.adopt(rec))
            .ok_or_else(|| not_found(format!("{} '{id}' not found", kind.rt.name)))?;
        if let Some(unchanged) = self.not_modified(call, kind, &rec) {
            return Ok(unchanged);
        }
        self.resource_response(call, kind, rec, 200)
    }

    /// Whether a `GET` of a `kind` resource may copy the stored body
    /// ([`ScimService::read_one_text`]): the backend keeps JSON text and
    /// its own versions, and the engine derives no `members` (it would
    /// read them from the body).
    pub(crate) fn copies_stored_text(&self, kind: &Kind<'_>) -> bool {
        self.caps.versions && !kind.has_members && self.backend.keeps_json_text()
    }

    /// [`ScimService::read_one`] without attribute selection, from the
    /// stored JSON text: copied with `id`, `meta` and `groups` spliced in
    /// when nothing in it needs editing ([`crate::ready::splice`]), else
    /// parsed and rendered the long way. The same bytes either way.
    fn read_one_text(
        &self,
        call: &Call<'_>,
        kind: &Kind<'_>,
        id: &str,
    ) -> Result<Response, PluginError> {
        let stored = self
            .backend
            .get_text(&kind.rt.name, id)?
            .ok_or_else(|| not_found(format!("{} '{id}' not found", kind.rt.name)))?;
        let rec = &stored.record;
        if let Some(unchanged) = self.not_modified(call, kind, rec) {
            return Ok(unchanged);
        }
        match self.copy_stored(kind, &stored, call.base, None)? {
            Some(bytes) => Ok(scim_json(200, bytes)
                .with_header(
                    "location",
                    &self.location(call.base, &kind.rt.name, &rec.id),
                )
                .with_header("etag", &etag(rec.version))),
            None => {
                let rec = stored.into_record()?;
                self.resource_response(call, kind, rec, 200)
            }
        }
    }

    /// `304 Not Modified` when the request's `If-None-Match` names `rec`'s
    /// version.
    fn not_modified(&self, call: &Call<'_>, kind: &Kind<'_>, rec: &Record) -> Option<Response> {
        let header = call.req.header("if-none-match")?;
        etag_matches(header, rec.version).then(|| {
            Response::new(304)
                .with_header("etag", &etag(rec.version))
                .with_header(
                    "location",
                    &self.location(call.base, &kind.rt.name, &rec.id),
                )
        })
    }

    fn create(&self, call: &Call<'_>, kind: &Kind<'_>) -> Result<Response, PluginError> {
        let body = json_body(call.req)?;
        let mut out = None;
        self.write_unit(call.stamp(), &mut |tx| {
            out = Some(self.create_in(tx, kind, &body, call.stamp())?);
            Ok(())
        })?;
        let rec = out.ok_or_else(|| PluginError::internal("no record"))?;
        self.resource_response(call, kind, rec, 201)
    }

    /// A resource response: rendered, projected by the query's
    /// `attributes`/`excludedAttributes`, with `Location` and `ETag`.
    pub(crate) fn resource_response(
        &self,
        call: &Call<'_>,
        kind: &Kind<'_>,
        rec: Record,
        status: u16,
    ) -> Result<Response, PluginError> {
        let selection = query_selection(call.req)?;
        let location = self.location(call.base, &kind.rt.name, &rec.id);
        let etag = etag(rec.version);
        let full = self.render_owned(kind, rec, call.base, true)?;
        let shown = project_owned(&kind.ctx, strip_never_owned(&kind.ctx, full), &selection);
        Ok(Response::json(status, SCIM_JSON, &shown)
            .with_header("location", &location)
            .with_header("etag", &etag))
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
        let filter = Filter::Compare {
            path: AttrPath {
                urn: None,
                attr: "userName".into(),
                sub_attr: None,
            },
            op: CompareOp::Eq,
            value: CompValue::String(subject.clone()),
        };
        let id = self.find_one(&kind, &filter)?.ok_or_else(|| {
            not_found(format!(
                "no User has userName '{subject}' (the caller's subject)"
            ))
        })?;
        match call.req.method.as_str() {
            "GET" | "PUT" | "PATCH" | "DELETE" => self.one(call, &kind, &id),
            method => Err(method_not_allowed(method, "GET, PUT, PATCH, DELETE")),
        }
    }

    /// The id of the first resource of `kind` that `filter` matches: the
    /// backend narrows, the engine checks when the narrowing is not exact.
    pub(crate) fn find_one(
        &self,
        kind: &Kind<'_>,
        filter: &Filter,
    ) -> Result<Option<String>, PluginError> {
        let exact = self.backend.filter_is_exact(filter, &kind.ctx);
        let scan = Scan {
            resource_types: vec![kind.rt.name.clone()],
            filter: Some((filter, &kind.ctx)),
            limit: exact.then_some(1),
            ..Scan::default()
        };
        let mut found = None;
        let mut scanned = 0u64;
        let max_scan = self.settings.max_scan;
        self.backend.scan(&scan, &mut |rec| {
            if !exact {
                scanned += 1;
                if scanned > max_scan {
                    return Err(too_many(max_scan));
                }
                let doc = self.render(kind, &rec, "", false)?;
                if !filter.matches(&doc, &kind.ctx).map_err(from_scim)? {
                    return Ok(Visit::Continue);
                }
            }
            found = Some(rec.id);
            Ok(Visit::Stop)
        })?;
        Ok(found)
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
        let kinds = std::slice::from_ref(kind);
        let query = ListQuery::parse(ListParams::from_query(call.req)?, kinds)?;
        let body = self.run_list(call, kinds, query)?;
        Ok(scim_json(200, body))
    }

    fn search(&self, call: &Call<'_>, kind: Option<&Kind<'_>>) -> Result<Response, PluginError> {
        let body = json_body(call.req)?;
        let params = ListParams::from_search(&body)?;
        let body = match kind {
            Some(kind) => {
                let kinds = std::slice::from_ref(kind);
                self.run_list(call, kinds, ListQuery::parse(params, kinds)?)?
            }
            None => {
                let kinds: Vec<Kind<'_>> = self
                    .registry
                    .resource_types()
                    .iter()
                    .map(|rt| self.kind(rt))
                    .collect::<Result<_, _>>()?;
                self.run_list(call, &kinds, ListQuery::parse(params, &kinds)?)?
            }
        };
        Ok(scim_json(200, body))
    }
}

/// How an inline call runs ([`ScimService::plan_inline`]).
enum Inline<'s, 'r> {
    /// Quick, through the usual routing (discovery, `HEAD`).
    Route,
    /// `GET` of one resource, its type resolved.
    Get(Kind<'s>, &'r str),
    /// `GET` of a list by a point filter, its query parsed.
    List(Kind<'s>, Box<ListQuery>),
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

/// A response with a SCIM JSON body already serialized.
fn scim_json(status: u16, body: Vec<u8>) -> Response {
    let mut response = Response::new(status).with_header("content-type", SCIM_JSON);
    response.body = body.into();
    response
}

/// `attributes` / `excludedAttributes` from the query string.
pub(crate) fn query_selection(req: &Request) -> Result<AttributeSelection, PluginError> {
    if req.query.is_empty() {
        return Ok(AttributeSelection::default());
    }
    let pairs = req.query_pairs();
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    AttributeSelection::parse(find("attributes"), find("excludedAttributes")).map_err(from_scim)
}
