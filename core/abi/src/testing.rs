//! Unit-testing plugins without the host: build providers and requests in a
//! line each, create components from their typed configs, and run a request
//! through a small pipeline in-process (no `dlopen`, no HTTP) by the code
//! the host runs, [`run::Stages::run`](crate::run::Stages::run):
//! authenticators and policies interleaved in order (the first
//! `Authenticated` wins, its provider's record is attached, a 401 with the
//! route's challenges when nobody recognised the request), profiles inbound,
//! the endpoint, profiles outbound in reverse order.
//!
//! ```
//! use scimgate_abi::sdk::{Component, Policy};
//! use scimgate_abi::testing::{provider, Pipeline};
//! use scimgate_abi::{Caller, PluginError, PolicyDecision, Request};
//!
//! struct ReadOnly;
//! impl Policy for ReadOnly {
//!     fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
//!         match caller.provider() {
//!             Some(p) if p.is_read_only() && req.method.as_str() != "GET" => {
//!                 PolicyDecision::Deny(PluginError::new(403, "read-only provider"))
//!             }
//!             _ => PolicyDecision::Allow,
//!         }
//!     }
//! }
//!
//! let components = vec![Component::policy("read-only", "", |_| Ok(ReadOnly))];
//! let pipeline = Pipeline::builder(components)
//!     .provider(provider("oim").read_only())
//!     .caller("oim") // no authenticator here: act as if one had said `oim`
//!     .stage("read-only", serde_json::json!({}))
//!     .build()
//!     .unwrap();
//! let decision = pipeline.run(Request::new("DELETE", "/Users/1"));
//! assert_eq!(decision.denied_by(), Some("read-only"));
//! assert_eq!(decision.status(), 403);
//! assert!(pipeline.run(Request::new("GET", "/Users")).is_allowed());
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RStr, RString, RVec};
use serde_json::{json, Map, Value};

use crate::error::PluginError;
use crate::ffi::{ComponentInstance, FfiHostServices, FfiHostServices_TO};
use crate::run::{self, EndpointStage, PreStage, ProfileStage, TypedStage};
use crate::sdk::{Component, CreateContext, HostHandle};
use crate::types::{ComponentKind, ErrorStyle, LogLevel, Principal, ProviderRecord, Response};

pub use crate::types::Request;

/// A `[[provider]]` as the host would register it: [`ProviderSpec::json`]
/// is the record handed to `create` (`CreateContext::providers`),
/// [`ProviderSpec::record`] the FFI [`ProviderRecord`] policies see.
/// Defaults: active, protocol `scim2`, method `oauth2-client-credentials`
/// with the id as client ID, read-write, no restrictions.
pub fn provider(id: &str) -> ProviderSpec {
    ProviderSpec {
        id: id.into(),
        name: id.into(),
        active: true,
        protocol: "scim2".into(),
        description: String::new(),
        tags: Vec::new(),
        method: "oauth2-client-credentials".into(),
        client_id: Some(id.into()),
        valid_from: None,
        valid_until: None,
        allowed_ips: Vec::new(),
        allowed_referrers: Vec::new(),
        read_only: false,
        scopes: Vec::new(),
        keys: Map::new(),
    }
}

/// A provider under construction; see [`provider`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    id: String,
    name: String,
    active: bool,
    protocol: String,
    description: String,
    tags: Vec<String>,
    method: String,
    client_id: Option<String>,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    allowed_ips: Vec<String>,
    allowed_referrers: Vec<String>,
    read_only: bool,
    scopes: Vec<String>,
    keys: Map<String, Value>,
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl ProviderSpec {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Display name (default: the id).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// `active = false`.
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = protocol.into();
        self
    }

    pub fn description(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// `[provider.auth] method` (a built-in one or one a plugin declares).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// No client ID (the methods that do not need one).
    pub fn without_client_id(mut self) -> Self {
        self.client_id = None;
        self
    }

    /// Start of the validity window, Unix seconds.
    pub fn valid_from(mut self, unix_seconds: i64) -> Self {
        self.valid_from = Some(unix_seconds);
        self
    }

    /// End of the validity window, Unix seconds.
    pub fn valid_until(mut self, unix_seconds: i64) -> Self {
        self.valid_until = Some(unix_seconds);
        self
    }

    /// Allowed client addresses, as written in the file (CIDRs, addresses, `*`).
    pub fn allowed_ips<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ips: I) -> Self {
        self.allowed_ips = strings(ips);
        self
    }

    pub fn allowed_referrers<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        referrers: I,
    ) -> Self {
        self.allowed_referrers = strings(referrers);
        self
    }

    /// `access = "read-only"` (default read-write).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = strings(scopes);
        self
    }

    /// A method-specific key of `[provider.auth]` (a plain value).
    pub fn auth_key(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.keys.insert(key.into(), value.into());
        self
    }

    /// A secret of the method, given in plaintext: stored as the host
    /// stores it, `hash_key = "sha256:<hex>"` (plugins never see plaintext).
    pub fn secret(mut self, hash_key: &str, plaintext: &str) -> Self {
        self.keys.insert(
            hash_key.into(),
            Value::String(crate::secret::sha256_secret(plaintext)),
        );
        self
    }

    fn access(&self) -> &'static str {
        if self.read_only {
            "read-only"
        } else {
            "read-write"
        }
    }

    /// The `[provider.auth]` table: the method's own keys plus the generic
    /// ones the host adds (`method`, `client_id`, `valid_from`, …).
    pub fn auth_json(&self) -> Value {
        let mut auth = self.keys.clone();
        auth.insert("method".into(), json!(self.method));
        auth.insert("client_id".into(), json!(self.client_id));
        auth.insert("valid_from".into(), rfc3339(self.valid_from));
        auth.insert("valid_until".into(), rfc3339(self.valid_until));
        auth.insert("allowed_ips".into(), json!(self.allowed_ips));
        auth.insert("allowed_referrers".into(), json!(self.allowed_referrers));
        auth.insert("access".into(), json!(self.access()));
        auth.insert("scopes".into(), json!(self.scopes));
        Value::Object(auth)
    }

    /// The provider as the JSON record in `CreateContext::providers`.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "active": self.active,
            "protocol": self.protocol,
            "description": self.description,
            "tags": self.tags,
            "auth": self.auth_json(),
        })
    }

    /// The provider as the FFI record a [`Caller`](crate::Caller) carries.
    pub fn record(&self) -> ProviderRecord {
        let rstrings = |items: &[String]| -> RVec<RString> {
            items.iter().map(|s| RString::from(s.as_str())).collect()
        };
        ProviderRecord {
            id: self.id.as_str().into(),
            name: self.name.as_str().into(),
            active: self.active,
            protocol: self.protocol.as_str().into(),
            description: self.description.as_str().into(),
            tags: rstrings(&self.tags),
            auth_method: self.method.as_str().into(),
            client_id: self.client_id.clone().unwrap_or_default().into(),
            valid_from: self.valid_from.into(),
            valid_until: self.valid_until.into(),
            allowed_ips: rstrings(&self.allowed_ips),
            allowed_referrers: rstrings(&self.allowed_referrers),
            access: self.access().into(),
            scopes: rstrings(&self.scopes),
            auth_json: self.auth_json().to_string().into(),
        }
    }
}

/// RFC 3339 UTC text of Unix seconds (`null` for none), as the host writes
/// validity times in the providers JSON.
fn rfc3339(unix_seconds: Option<i64>) -> Value {
    let Some(secs) = unix_seconds else {
        return Value::Null;
    };
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Value::String(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

/// One log event a component sent to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub target: String,
    pub message: String,
}

/// Host services that keep what components log (through
/// `CreateContext::host`). `tracing` macros in the plugin are not captured:
/// the bridge that forwards them is installed only by a loaded library.
#[derive(Clone, Default)]
struct CapturingHost {
    lines: Arc<Mutex<Vec<LogLine>>>,
}

impl FfiHostServices for CapturingHost {
    fn max_level(&self) -> LogLevel {
        LogLevel::Trace
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(LogLine {
                level,
                target: target.to_string(),
                message: message.to_string(),
            });
        }
    }

    /// Store metrics are the host's: the harness ignores them.
    fn report_store_op(
        &self,
        _operation: RStr<'_>,
        _duration_nanos: u64,
        _error_kind: RStr<'_>,
        _pool: abi_stable::std_types::ROption<crate::ffi::StorePool>,
    ) {
    }

    /// Change-feed gauges are the host's too.
    fn report_change_lag(&self, _subscriber: RStr<'_>, _lag: u64, _dead_lettered: bool) {}
}

/// A path of its own under the system's temporary folder (not created).
fn fresh_data_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "scimgate-testing-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// Builds the [`CreateContext`] the host would hand `create` for a stage
/// (validation's context: no host services; `data_dir` a fresh path).
pub fn create_context(stage: &str, config: Value, providers: &[ProviderSpec]) -> CreateContext {
    CreateContext {
        stage: stage.into(),
        config,
        providers: providers.iter().map(ProviderSpec::json).collect(),
        data_dir: fresh_data_dir(),
        server: json!({"listen": "127.0.0.1:0", "trusted_proxies": [], "public_url": null}),
        host: None,
    }
}

/// Validates and creates one component as the host does (`validate` first,
/// then `create`); the error lists every issue as `path: message`.
pub fn create(
    component: &Component,
    config: Value,
    providers: &[ProviderSpec],
) -> Result<ComponentInstance, String> {
    let ctx = create_context(&component.name, config, providers);
    let issues = component.validate(&ctx);
    if !issues.is_empty() {
        return Err(issues_text(&component.name, &issues));
    }
    component.create(&ctx).map_err(|e| {
        format!(
            "component `{}` could not be created: {}",
            component.name, e.message
        )
    })
}

/// What `component`'s validation says of `config`, as `(path, message)`
/// pairs (empty: valid). The context is validation's: stage named after
/// the component, no providers, no host services, `data_dir` the system's
/// temporary folder.
pub fn issues(component: &Component, config: Value) -> Vec<(String, String)> {
    let mut ctx = create_context(&component.name, config, &[]);
    ctx.data_dir = std::env::temp_dir();
    component
        .validate(&ctx)
        .into_iter()
        .map(|i| (i.path.to_string(), i.message.to_string()))
        .collect()
}

/// Asserts that `component` publishes the schema derived from its config
/// struct `C` (plus `examples`), that the schema refuses unknown keys, and
/// that its first example validates. Returns the published schema without
/// `examples`, for further checks.
#[track_caller]
pub fn assert_schema_is_derived<C: schemars::JsonSchema>(component: &Component) -> Value {
    let name = &component.name;
    let mut published: Value = serde_json::from_str(&component.config_schema)
        .unwrap_or_else(|e| panic!("`{name}`: the published schema is not JSON: {e}"));
    let example = published
        .as_object_mut()
        .and_then(|m| m.remove("examples"))
        .and_then(|examples| examples.get(0).cloned())
        .unwrap_or_else(|| panic!("`{name}`: the published schema has no example"));
    assert_eq!(
        published,
        crate::schema::schema_of::<C>(),
        "`{name}`: the published schema is not the derived one"
    );
    assert_eq!(
        published["additionalProperties"],
        json!(false),
        "`{name}`: the schema accepts unknown keys"
    );
    let found = issues(component, example);
    assert!(
        found.is_empty(),
        "`{name}`: its example is refused: {found:?}"
    );
    published
}

fn issues_text(stage: &str, issues: &[crate::ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| {
            if i.path.is_empty() {
                format!("stage `{stage}`: {}", i.message)
            } else {
                format!("stage `{stage}`: `{}`: {}", i.path, i.message)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A stage of a [`Pipeline`] under construction.
struct StageSpec {
    name: String,
    component: String,
    config: Value,
}

/// Builds a [`Pipeline`]: the components a library offers, the stages that
/// use them (in pipeline order), the registered providers.
pub struct PipelineBuilder {
    components: Vec<Component>,
    stages: Vec<StageSpec>,
    providers: Vec<ProviderSpec>,
    bound: Option<Vec<String>>,
    caller: Option<String>,
    data_dir: Option<PathBuf>,
    mount: String,
}

impl PipelineBuilder {
    /// A stage named after its component, with this config (the stage
    /// table without `use`, as JSON).
    pub fn stage(self, component: &str, config: Value) -> Self {
        self.named_stage(component, component, config)
    }

    /// A stage with its own name (`[stage.NAME] use = "lib/component"`).
    pub fn named_stage(mut self, name: &str, component: &str, config: Value) -> Self {
        self.stages.push(StageSpec {
            name: name.into(),
            component: component.into(),
            config,
        });
        self
    }

    /// Registers a provider (`[[provider]]`).
    pub fn provider(mut self, provider: ProviderSpec) -> Self {
        self.providers.push(provider);
        self
    }

    /// The route's `providers = [...]`: authenticated callers of any other
    /// provider are refused (403, or 401 `invalid_client` on OAuth routes).
    pub fn bind<I: IntoIterator<Item = S>, S: Into<String>>(mut self, providers: I) -> Self {
        self.bound = Some(strings(providers));
        self
    }

    /// The route's mount (default `/`), as the host names it in refusals.
    pub fn mount(mut self, path: &str) -> Self {
        self.mount = path.into();
        self
    }

    /// For pipelines without an authenticator: every request comes from
    /// this registered provider (its record attached), as if an
    /// authenticator had recognised it. Without it such a pipeline is
    /// anonymous (`anonymous = true`).
    pub fn caller(mut self, provider_id: &str) -> Self {
        self.caller = Some(provider_id.into());
        self
    }

    /// `server.data_dir` handed to `create` (default: a fresh path under the
    /// system's temporary folder, which is not created: a plugin that keeps
    /// files creates its folder, as it must with the host too).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Checks the order of kinds like the host (authenticators and policies,
    /// then profiles, then at most one endpoint, last), validates every
    /// stage's config and creates it. The error lists every problem.
    pub fn build(self) -> Result<Pipeline, String> {
        let mut problems = Vec::new();
        let host = CapturingHost::default();
        let handle = HostHandle::new(FfiHostServices_TO::from_ptr(
            RArc::new(host.clone()),
            TD_Opaque,
        ));
        let data_dir = self.data_dir.unwrap_or_else(fresh_data_dir);
        let providers: Vec<Value> = self.providers.iter().map(ProviderSpec::json).collect();
        let mut stages: Vec<TypedStage> = Vec::new();
        let mut error_style = ErrorStyle::Scim;
        let mut seen_profile = false;
        let mut endpoints = 0;
        for spec in &self.stages {
            let Some(component) = self.components.iter().find(|c| c.name == spec.component) else {
                let known: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
                problems.push(format!(
                    "stage `{}`: no component `{}` (there are: {})",
                    spec.name,
                    spec.component,
                    known.join(", ")
                ));
                continue;
            };
            match component.kind {
                ComponentKind::Authenticator | ComponentKind::Policy if seen_profile => problems
                    .push(format!(
                        "stage `{}`: a {} comes after a profile (order: authenticators and \
                         policies, then profiles, then one endpoint)",
                        spec.name,
                        component.kind.as_str()
                    )),
                ComponentKind::Profile if endpoints > 0 => problems.push(format!(
                    "stage `{}`: a profile comes after the endpoint",
                    spec.name
                )),
                ComponentKind::Profile => seen_profile = true,
                ComponentKind::Endpoint => {
                    endpoints += 1;
                    error_style = component.error_style;
                    if endpoints > 1 {
                        problems.push(format!("stage `{}`: a second endpoint", spec.name));
                    }
                }
                _ => {}
            }
            let mut ctx = CreateContext {
                stage: spec.name.clone(),
                config: spec.config.clone(),
                providers: providers.clone(),
                data_dir: data_dir.clone(),
                server: json!({"listen": "127.0.0.1:0", "trusted_proxies": [], "public_url": null}),
                host: None,
            };
            let issues = component.validate(&ctx);
            if !issues.is_empty() {
                problems.push(issues_text(&spec.name, &issues));
                continue;
            }
            ctx.host = Some(handle.clone());
            match component.create(&ctx) {
                Ok(instance) => stages.push(TypedStage::new(
                    spec.name.clone(),
                    spec.component.clone(),
                    instance,
                )),
                Err(e) => problems.push(format!(
                    "stage `{}` could not be created: {}",
                    spec.name, e.message
                )),
            }
        }
        if let Some(id) = &self.caller {
            if !self.providers.iter().any(|p| &p.id == id) {
                problems.push(format!(
                    "caller `{id}` is not a registered provider: add `.provider(provider(\"{id}\"))`"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        // The order was checked above: sorting by kind keeps it.
        let mut pre = Vec::new();
        let mut profiles = Vec::new();
        let mut endpoint = None;
        for stage in stages {
            match stage {
                TypedStage::Pre(stage) => pre.push(stage),
                TypedStage::Profile(stage) => profiles.push(stage),
                TypedStage::Endpoint(stage) => endpoint = Some(stage),
            }
        }
        Ok(Pipeline {
            last_authenticator: run::last_authenticator(&pre),
            challenges: run::challenges(&pre),
            pre,
            profiles,
            endpoint,
            mount: self.mount,
            records: self
                .providers
                .iter()
                .map(|p| (p.id.clone(), p.record()))
                .collect(),
            error_style,
            bound: self.bound,
            caller: self.caller,
            logs: host.lines,
            data_dir,
        })
    }
}

/// Stages created from components, run in the host's order. See the
/// module documentation.
pub struct Pipeline {
    pre: Vec<PreStage>,
    profiles: Vec<Arc<ProfileStage>>,
    endpoint: Option<Arc<EndpointStage>>,
    mount: String,
    records: HashMap<String, ProviderRecord>,
    last_authenticator: Option<usize>,
    challenges: Vec<String>,
    error_style: ErrorStyle,
    bound: Option<Vec<String>>,
    caller: Option<String>,
    logs: Arc<Mutex<Vec<LogLine>>>,
    data_dir: PathBuf,
}

/// Why a request was stopped: by which stage, of which kind, with what.
#[derive(Debug, Clone)]
pub struct Denial {
    pub stage: String,
    pub kind: ComponentKind,
    pub error: PluginError,
}

/// What a request came to.
#[derive(Debug, Clone)]
pub struct Decision {
    /// `Ok(response)` when every stage let the request through: the
    /// endpoint's answer after the outbound profiles (`None` for a pipeline
    /// without an endpoint). `Err` when a stage (or the host's rules around
    /// it) stopped it.
    pub result: Result<Option<Response>, Denial>,
    /// The request as the last stage saw it (after the inbound profiles).
    pub request: Request,
    /// Who was calling, once an authenticator said so (also when the route
    /// then refused that provider).
    pub principal: Option<Principal>,
    /// The caller's provider record, as attached for the stages.
    pub provider: Option<ProviderRecord>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.result.is_ok()
    }

    /// The stage that stopped the request.
    pub fn denied_by(&self) -> Option<&str> {
        self.denial().map(|d| d.stage.as_str())
    }

    pub fn denial(&self) -> Option<&Denial> {
        self.result.as_ref().err()
    }

    /// The endpoint's response, when allowed.
    pub fn response(&self) -> Option<&Response> {
        self.result.as_ref().ok().and_then(Option::as_ref)
    }

    /// The HTTP status the host would answer with: the response's, the
    /// error's, or 204 for an allowed request without an endpoint.
    pub fn status(&self) -> u16 {
        match &self.result {
            Ok(response) => response.as_ref().map_or(204, |r| r.status),
            Err(denial) => denial.error.status,
        }
    }

    /// A header of the response or of the error (`WWW-Authenticate`).
    pub fn header(&self, name: &str) -> Option<&str> {
        match &self.result {
            Ok(response) => response.as_ref()?.header(name),
            Err(denial) => denial
                .error
                .headers
                .iter()
                .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str()),
        }
    }

    /// The response body as JSON (`Null` when there is none or it is not JSON).
    pub fn json(&self) -> Value {
        self.response()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or(Value::Null)
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

impl Pipeline {
    /// Starts a pipeline over the components of a library (what its
    /// `components()` function returns).
    pub fn builder(components: Vec<Component>) -> PipelineBuilder {
        PipelineBuilder {
            components,
            stages: Vec::new(),
            providers: Vec::new(),
            bound: None,
            caller: None,
            data_dir: None,
            mount: "/".into(),
        }
    }

    /// Everything the components logged through the host so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Runs one request through every stage, in the host's order
    /// ([`run::Stages::run`], the code the host runs).
    pub fn run(&self, mut req: Request) -> Decision {
        req.error_style = self.error_style;
        let stages = run::Stages {
            mount: &self.mount,
            pre: &self.pre,
            last_authenticator: self.last_authenticator,
            profiles: &self.profiles,
            endpoint: self.endpoint.as_deref(),
            error_style: self.error_style,
            challenges: &self.challenges,
            providers: self.bound.as_deref(),
            inline_marked: &[],
        };
        // Without an authenticator, `.caller(id)` stands in for one.
        let caller = match self.last_authenticator {
            None => self
                .caller
                .as_ref()
                .and_then(|id| self.records.get(id))
                .map(|r| {
                    let who = Principal::new(r.id.as_str(), r.client_id.as_str(), "testing");
                    (who, r)
                }),
            Some(_) => None,
        };
        let outcome = stages.run_as(&mut req, |id| self.records.get(id), caller);
        Decision {
            result: match outcome.result {
                Ok(response) => Ok(outcome.endpoint_ran.then_some(response)),
                Err(stop) => Err(Denial {
                    stage: stop.stage.to_string(),
                    kind: stop.kind,
                    error: stop.error,
                }),
            },
            request: req,
            principal: outcome.principal,
            provider: outcome.provider.cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::{Authenticator, Endpoint, Policy, Profile};
    use crate::types::{AuthOutcome, Caller, PolicyDecision};
    use serde::Deserialize;

    #[derive(Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct KeyConfig {
        keys: HashMap<String, String>,
    }

    struct Key(KeyConfig);

    impl Authenticator for Key {
        fn authenticate(&self, req: &Request) -> AuthOutcome {
            match req.header("x-key") {
                None => AuthOutcome::NotMine,
                Some(key) => match self.0.keys.get(key) {
                    Some(p) => AuthOutcome::Authenticated(Principal::new(p, p, "key")),
                    None => AuthOutcome::Rejected(PluginError::new(401, "unknown key")),
                },
            }
        }
        fn challenge(&self) -> Option<String> {
            Some("Key".into())
        }
    }

    struct Second;
    impl Authenticator for Second {
        fn authenticate(&self, _req: &Request) -> AuthOutcome {
            AuthOutcome::Rejected(PluginError::new(401, "the second authenticator ran"))
        }
    }

    struct NoWrites;
    impl Policy for NoWrites {
        fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
            match caller.provider() {
                Some(p) if p.is_read_only() && req.method.as_str() != "GET" => {
                    PolicyDecision::Deny(PluginError::new(403, "read-only"))
                }
                Some(_) => PolicyDecision::Allow,
                None => PolicyDecision::Deny(PluginError::new(500, "no provider attached")),
            }
        }
    }

    struct Tag(&'static str);
    impl Profile for Tag {
        fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
            let seen = req.header("x-tags").unwrap_or("").to_string();
            req.set_header("x-tags", &format!("{seen}{}", self.0));
            if self.0 == "move" {
                req.path = "/elsewhere".into();
            }
            Ok(())
        }
        fn outbound(
            &self,
            _req: &Request,
            _caller: Caller<'_>,
            resp: &mut Response,
        ) -> Result<(), PluginError> {
            let seen = resp.header("x-out").unwrap_or("").to_string();
            resp.set_header("x-out", &format!("{seen}{}", self.0));
            Ok(())
        }
    }

    struct Echo;
    impl Endpoint for Echo {
        fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
            Ok(Response::json(
                200,
                "application/json",
                &json!({
                    "tags": req.header("x-tags"),
                    "provider": caller.provider().map(|p| p.id.to_string()),
                    "client_ip": req.client_ip.as_str(),
                }),
            ))
        }
    }

    fn components() -> Vec<Component> {
        vec![
            Component::authenticator_with_config("key", "", |c: KeyConfig, _| Ok(Key(c))),
            Component::authenticator("second", "", |_| Ok(Second)),
            Component::policy("no-writes", "", |_| Ok(NoWrites)),
            Component::profile("a", "", |_| Ok(Tag("a"))),
            Component::profile("b", "", |_| Ok(Tag("b"))),
            Component::profile("move", "", |_| Ok(Tag("move"))),
            Component::endpoint("echo", "", |_| Ok(Echo)),
        ]
    }

    fn keys() -> Value {
        json!({"keys": {"k1": "oim", "k2": "entra", "k3": "ghost"}})
    }

    fn full() -> Pipeline {
        Pipeline::builder(components())
            .provider(provider("oim").read_only())
            .provider(provider("entra"))
            .stage("key", keys())
            .stage("second", json!({}))
            .stage("no-writes", json!({}))
            .stage("a", json!({}))
            .stage("b", json!({}))
            .stage("echo", json!({}))
            .build()
            .unwrap()
    }

    #[test]
    fn providers_give_the_json_record_and_the_ffi_record() {
        let p = provider("oim")
            .name("One Identity")
            .client_id("c")
            .allowed_ips(["10.0.0.0/8"])
            .valid_until(1_798_761_599)
            .read_only()
            .method("api-key")
            .secret("key_hash", "s3cret");
        let j = p.json();
        assert_eq!(j["id"], "oim");
        assert_eq!(j["name"], "One Identity");
        assert_eq!(j["active"], true);
        assert_eq!(j["auth"]["method"], "api-key");
        assert_eq!(j["auth"]["client_id"], "c");
        assert_eq!(j["auth"]["allowed_ips"], json!(["10.0.0.0/8"]));
        assert_eq!(j["auth"]["access"], "read-only");
        assert_eq!(j["auth"]["valid_until"], "2026-12-31T23:59:59Z");
        assert_eq!(j["auth"]["valid_from"], Value::Null);
        assert_eq!(
            j["auth"]["key_hash"],
            crate::secret::sha256_secret("s3cret")
        );
        assert!(!j.to_string().contains("\"s3cret\""));
        let r = p.record();
        assert!(r.is_read_only());
        assert_eq!(r.client_id.as_str(), "c");
        assert_eq!(r.valid_until.into_option(), Some(1_798_761_599));
        assert_eq!(r.allowed_ips[0].as_str(), "10.0.0.0/8");
        let auth: Value = serde_json::from_str(r.auth_json.as_str()).unwrap();
        assert_eq!(auth, j["auth"]);
        assert_eq!(rfc3339(Some(0)), json!("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(Some(951_825_600)), json!("2000-02-29T12:00:00Z"));
    }

    #[test]
    fn the_first_authenticated_wins_and_its_provider_record_is_attached() {
        let decision = full().run(Request::new("GET", "/Users").with_header("x-key", "k1"));
        assert!(decision.is_allowed(), "{decision:?}");
        // `second` would have rejected: it was skipped.
        assert_eq!(decision.principal().unwrap().provider_id.as_str(), "oim");
        assert_eq!(decision.json()["provider"], "oim");
        // Inbound in order, outbound reversed.
        assert_eq!(decision.json()["tags"], "ab");
        assert_eq!(decision.header("x-out"), Some("ba"));
    }

    #[test]
    fn policies_see_the_caller_and_deny_with_their_status() {
        let decision = full().run(Request::new("POST", "/Users").with_header("x-key", "k1"));
        assert_eq!(decision.denied_by(), Some("no-writes"));
        assert_eq!(decision.status(), 403);
        assert_eq!(decision.denial().unwrap().kind, ComponentKind::Policy);
        let decision = full().run(Request::new("POST", "/Users").with_header("x-key", "k2"));
        assert_eq!(decision.status(), 200);
    }

    #[test]
    fn nobody_recognising_the_request_is_a_401_with_the_challenges() {
        let only_key = Pipeline::builder(components())
            .provider(provider("oim"))
            .stage("key", keys())
            .stage("echo", json!({}))
            .build()
            .unwrap();
        let decision = only_key.run(Request::new("GET", "/Users"));
        assert_eq!(decision.status(), 401);
        assert_eq!(decision.denied_by(), Some("key"));
        assert_eq!(decision.header("www-authenticate"), Some("Key"));
        // A rejection gets the challenge too.
        let decision = only_key.run(Request::new("GET", "/").with_header("x-key", "nope"));
        assert_eq!(decision.status(), 401);
        assert_eq!(decision.header("www-authenticate"), Some("Key"));
        // A principal of an unregistered provider is refused.
        let decision = only_key.run(Request::new("GET", "/").with_header("x-key", "k3"));
        assert_eq!(decision.status(), 401);
        assert!(decision.denial().unwrap().error.message.contains("ghost"));
    }

    #[test]
    fn a_bound_route_refuses_other_providers() {
        let bound = Pipeline::builder(components())
            .provider(provider("oim"))
            .provider(provider("entra"))
            .bind(["oim"])
            .stage("key", keys())
            .stage("echo", json!({}))
            .build()
            .unwrap();
        assert!(bound
            .run(Request::new("GET", "/").with_header("x-key", "k1"))
            .is_allowed());
        let other = bound.run(Request::new("GET", "/").with_header("x-key", "k2"));
        assert_eq!(other.status(), 403);
        assert_eq!(other.principal().unwrap().provider_id.as_str(), "entra");
        // Worded as the host words it, naming the route.
        assert_eq!(
            other.denial().unwrap().error.message.as_str(),
            "provider `entra` is not allowed on route `/`"
        );
    }

    #[test]
    fn issues_and_the_schema_check_see_what_validation_sees() {
        let key = &components()[0];
        assert_eq!(issues(key, keys()), Vec::<(String, String)>::new());
        let found = issues(key, json!({"keys": {}, "extra": 1}));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("extra"), "{found:?}");
        // A component checked against a type its schema was not derived from.
        let mismatched =
            Component::authenticator_with_config("key", "", |c: KeyConfig, _| Ok(Key(c)));
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_schema_is_derived::<HashMap<String, String>>(&mismatched)
        }));
        assert!(wrong.is_err());
    }

    #[test]
    fn a_profile_may_not_move_the_request() {
        let moving = Pipeline::builder(components())
            .provider(provider("oim"))
            .caller("oim")
            .stage("move", json!({}))
            .stage("echo", json!({}))
            .build()
            .unwrap();
        let decision = moving.run(Request::new("GET", "/Users"));
        assert_eq!(decision.status(), 500);
        assert_eq!(decision.denied_by(), Some("move"));
    }

    #[test]
    fn build_reports_config_mistakes_order_and_unknown_components() {
        let err = Pipeline::builder(components())
            .stage("key", json!({"keys": {}, "extra": 1}))
            .stage("echo", json!({}))
            .stage("a", json!({}))
            .stage("nope", json!({}))
            .caller("ghost")
            .build()
            .err()
            .unwrap();
        assert!(
            err.contains("stage `key`: ") && err.contains("extra"),
            "{err}"
        );
        assert!(err.contains("profile comes after the endpoint"), "{err}");
        assert!(err.contains("no component `nope`"), "{err}");
        assert!(err.contains("caller `ghost`"), "{err}");
        let one = create(&components()[0], keys(), &[provider("oim")]);
        assert!(matches!(one, Ok(ComponentInstance::Authenticator(_))));
        let bad = create(&components()[0], json!({}), &[]).err().unwrap();
        assert!(bad.contains("keys"), "{bad}");
    }

    #[test]
    fn a_panicking_component_is_a_500_for_that_request() {
        struct Boom;
        impl Endpoint for Boom {
            fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
                panic!("kaboom")
            }
        }
        let pipeline = Pipeline::builder(vec![Component::endpoint("boom", "", |_| Ok(Boom))])
            .stage("boom", json!({}))
            .build()
            .unwrap();
        let decision = pipeline.run(Request::new("GET", "/"));
        assert_eq!(decision.status(), 500);
        assert!(decision.denial().unwrap().error.message.contains("kaboom"));
    }

    #[test]
    fn components_logs_through_the_host_are_kept() {
        struct Loud;
        impl Policy for Loud {
            fn check(&self, _req: &Request, _caller: Caller<'_>) -> PolicyDecision {
                PolicyDecision::Allow
            }
        }
        let pipeline = Pipeline::builder(vec![Component::policy("loud", "", |ctx| {
            if let Some(host) = &ctx.host {
                host.log(LogLevel::Info, "loud", "created");
            }
            Ok(Loud)
        })])
        .stage("loud", json!({}))
        .build()
        .unwrap();
        assert_eq!(pipeline.run(Request::new("GET", "/")).status(), 204);
        assert_eq!(
            pipeline.logs(),
            vec![LogLine {
                level: LogLevel::Info,
                target: "loud".into(),
                message: "created".into()
            }]
        );
    }
}
