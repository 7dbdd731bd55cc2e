//! One route: its typed stages and what only the host does around them.
//! [`Route::run`] takes a request through the stage order, which lives in
//! the contract crate ([`scimgate_abi::run`], the code the testing harness
//! runs too), then renders a refusal in the route's error style and returns
//! the response with its [`AuditRecord`]. Stages hold their concrete FFI
//! box, sorted by kind when the route is built, so nothing is matched on
//! kind per request.

use std::sync::Arc;

use scimgate_abi::run::{self, Stages, Stop};
use scimgate_abi::{ComponentKind, ErrorStyle, Request, Response};

pub use scimgate_abi::run::{
    AuthenticatorStage, EndpointStage, PolicyStage, PreStage, ProfileStage, Stage, TypedStage,
};

use super::StageInstance;
use crate::registry::ProviderRegistry;
use crate::render::error_response;

impl From<StageInstance> for TypedStage {
    fn from(stage: StageInstance) -> Self {
        TypedStage::new(stage.name, stage.uses, stage.instance)
    }
}

/// One route: the mount path and its stages by kind.
pub struct Route {
    pub mount: String,
    /// Authenticators and policies, in pipeline order.
    pub pre: Vec<PreStage>,
    /// Index in `pre` of the last authenticator; once past it without a
    /// principal the request is refused (401).
    pub last_authenticator: Option<usize>,
    /// Profiles in pipeline order (inbound order; outbound runs them reversed).
    pub profiles: Vec<Arc<ProfileStage>>,
    pub endpoint: Arc<EndpointStage>,
    pub error_style: ErrorStyle,
    /// `WWW-Authenticate` challenges of the route's authenticators.
    pub challenges: Vec<String>,
    /// `providers = [...]`: the only providers this route serves (`None`:
    /// every registered provider).
    pub providers: Option<Vec<String>>,
    /// The route's store series (kept across reloads by mount): store
    /// operations plugins report while it runs a request count here.
    pub store_metrics: Arc<crate::metrics::RouteStoreMetrics>,
    /// `Some` when the route runs inline, on the async worker that read the
    /// request ([`Route::run_inline`]): no stage may block unless it knows
    /// inline calls. The indexes in `pre` of the stages that may block but
    /// know inline calls (called marked as inline).
    pub inline: Option<Vec<usize>>,
}

/// Where a request's pipeline ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// No pipeline: the host answered (no route, bad path, busy, timeout).
    Host,
    /// Whole, on the async worker that read the request.
    Inline,
    /// Begun inline, finished on the blocking pool from the stage that
    /// would have blocked.
    Resumed,
    /// Whole, on the blocking pool.
    Blocking,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Host => "host",
            RunMode::Inline => "inline",
            RunMode::Resumed => "resumed",
            RunMode::Blocking => "blocking",
        }
    }
}

/// How a request ended, as the audit event says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every stage let it through (the endpoint may still answer an error).
    Allow,
    /// An authenticator or policy refused it, or the host did (bad path,
    /// no route, body too large).
    Deny,
    /// Something failed (5xx): a stage, a timeout, a full server.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// What the audit event of one request says, besides what only the HTTP
/// side knows (request id, method, path, client address, latency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The route's mount (empty when no route served the request).
    pub route: String,
    /// The caller's provider and client id, once authenticated (or once an
    /// authenticator named them, e.g. a provider the route is not bound to).
    pub provider: String,
    pub client_id: String,
    pub decision: Decision,
    /// The stage that stopped the request; empty when none did.
    pub stage: String,
    /// Why it was stopped; empty when it was not.
    pub reason: String,
    /// The response's status.
    pub status: u16,
    /// Where the pipeline ran.
    pub run: RunMode,
}

impl AuditRecord {
    /// An allowed request on `route`, nobody authenticated yet.
    pub fn new(route: &str) -> Self {
        AuditRecord {
            route: route.to_string(),
            provider: String::new(),
            client_id: String::new(),
            decision: Decision::Allow,
            stage: String::new(),
            reason: String::new(),
            status: 0,
            run: RunMode::Host,
        }
    }

    /// The host itself refused or failed the request (no stage involved).
    pub fn refuse(&mut self, decision: Decision, reason: impl Into<String>) {
        self.decision = decision;
        self.reason = reason.into();
    }
}

/// The audit decision of a stopped request: a 5xx is an error, an
/// authenticator's or policy's refusal a denial; a profile's or the
/// endpoint's client error does not make the request denied.
fn decision(stop: &Stop<'_>) -> Decision {
    match stop.kind {
        _ if stop.error.status >= 500 => Decision::Error,
        ComponentKind::Authenticator | ComponentKind::Policy => Decision::Deny,
        ComponentKind::Profile | ComponentKind::Endpoint => Decision::Allow,
    }
}

impl Route {
    /// A route of already sorted stages; the challenges and the last
    /// authenticator are derived from them.
    pub fn new(
        mount: String,
        pre: Vec<PreStage>,
        profiles: Vec<Arc<ProfileStage>>,
        endpoint: Arc<EndpointStage>,
        error_style: ErrorStyle,
        providers: Option<Vec<String>>,
    ) -> Route {
        Route {
            store_metrics: crate::metrics::store_metrics().route(&mount),
            inline: None,
            mount,
            last_authenticator: run::last_authenticator(&pre),
            challenges: run::challenges(&pre),
            pre,
            profiles,
            endpoint,
            error_style,
            providers,
        }
    }

    /// Lets the route run inline ([`Route::run_inline`]), calling the
    /// pre-stages at `marked` (indexes in `pre`) marked as inline.
    pub fn with_inline(mut self, marked: Vec<usize>) -> Route {
        self.inline = Some(marked);
        self
    }

    /// The route's stages and rules as the contract's runner takes them.
    fn stages(&self) -> Stages<'_> {
        Stages {
            mount: &self.mount,
            pre: &self.pre,
            last_authenticator: self.last_authenticator,
            profiles: &self.profiles,
            endpoint: Some(&self.endpoint),
            error_style: self.error_style,
            challenges: &self.challenges,
            providers: self.providers.as_deref(),
            inline_marked: self.inline.as_deref().unwrap_or_default(),
        }
    }

    /// The whole pipeline for one request, on the calling thread: the
    /// server calls it on its blocking pool (the endpoint may block), tests
    /// and benchmarks inline. A stage's refusal or error is rendered in the
    /// route's error style; nothing after that stage runs.
    pub fn run(&self, mut req: Request, providers: &ProviderRegistry) -> (Response, AuditRecord) {
        // Store operations the endpoint reports count under this route.
        let _store = crate::host_services::RouteScope::enter(&self.store_metrics);
        let outcome = self
            .stages()
            .run(&mut req, |id| providers.get(id).map(|record| &**record));
        self.finish(outcome, &req, RunMode::Blocking)
    }

    /// The pipeline for one request on the calling thread, which must not
    /// block (an async worker): every stage that may block is called
    /// marked as inline and may suspend the request instead
    /// ([`scimgate_abi::run::Stages::run_inline`]). A suspended request
    /// comes back as `Err`, to go on with [`Route::resume`] where blocking
    /// is fine.
    pub fn run_inline(
        &self,
        mut req: Request,
        providers: &ProviderRegistry,
    ) -> Result<(Response, AuditRecord), (Request, run::Suspended)> {
        let _store = crate::host_services::RouteScope::enter(&self.store_metrics);
        match self
            .stages()
            .run_inline(&mut req, |id| providers.get(id).map(|record| &**record))
        {
            run::Step::Done(outcome) => Ok(self.finish(outcome, &req, RunMode::Inline)),
            run::Step::Suspended(suspended) => Err((req, suspended)),
        }
    }

    /// Goes on with a request [`Route::run_inline`] suspended, on the
    /// calling thread (the blocking pool).
    pub fn resume(
        &self,
        mut req: Request,
        suspended: run::Suspended,
        providers: &ProviderRegistry,
    ) -> (Response, AuditRecord) {
        let _store = crate::host_services::RouteScope::enter(&self.store_metrics);
        let outcome = self.stages().resume(
            &mut req,
            |id| providers.get(id).map(|record| &**record),
            suspended,
        );
        self.finish(outcome, &req, RunMode::Resumed)
    }

    /// The response and audit record of a run.
    fn finish(
        &self,
        outcome: run::Outcome<'_, '_>,
        req: &Request,
        mode: RunMode,
    ) -> (Response, AuditRecord) {
        let mut audit = AuditRecord::new(&self.mount);
        audit.run = mode;
        if let Some(principal) = &outcome.principal {
            audit.provider = principal.provider_id.to_string();
            audit.client_id = principal.client_id.to_string();
        }
        let response = match outcome.result {
            Ok(response) => response,
            Err(stop) => {
                audit.decision = decision(&stop);
                audit.reason = stop.error.to_string();
                audit.stage = stop.stage.to_string();
                error_response(self.error_style, &stop.error, &req.request_id)
            }
        };
        audit.status = response.status;
        (response, audit)
    }
}

#[cfg(test)]
mod tests {
    //! `Route::run` inline, with in-process components boxed by the SDK's
    //! own wrappers (the same FFI boxes a loaded library hands over). Each
    //! component writes what it was called with to a shared log.

    use std::path::PathBuf;
    use std::sync::Mutex;

    use abi_stable::std_types::ROption;
    use scimgate_abi::sdk::{self, Component, CreateContext};
    use scimgate_abi::{AuthOutcome, Caller, PluginError, PolicyDecision, Principal};

    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    fn note(log: &Log, entry: String) {
        log.lock().expect("log").push(entry);
    }

    #[derive(Clone, Copy)]
    enum Auth {
        NotMine,
        Accept(&'static str),
        Reject,
    }

    struct TestAuthenticator(&'static str, Auth, Log);

    impl sdk::Authenticator for TestAuthenticator {
        fn authenticate(&self, _req: &Request) -> AuthOutcome {
            note(&self.2, format!("authenticate:{}", self.0));
            match self.1 {
                Auth::NotMine => AuthOutcome::NotMine,
                Auth::Accept(provider) => {
                    AuthOutcome::Authenticated(Principal::new(provider, "client-1", "test"))
                }
                Auth::Reject => AuthOutcome::Rejected(PluginError::new(401, "bad credentials")),
            }
        }
    }

    struct TestPolicy(&'static str, bool, Log);

    impl sdk::Policy for TestPolicy {
        fn check(&self, _req: &Request, caller: Caller<'_>) -> PolicyDecision {
            let who = match caller.principal {
                ROption::RSome(p) => p.provider_id.to_string(),
                ROption::RNone => "anonymous".to_string(),
            };
            note(&self.2, format!("policy:{}:{who}", self.0));
            if self.1 {
                PolicyDecision::Deny(PluginError::new(403, format!("denied by {}", self.0)))
            } else {
                PolicyDecision::Allow
            }
        }
    }

    /// A profile; `fail` makes one direction refuse with 422.
    struct TestProfile(&'static str, Option<&'static str>, Log);

    impl sdk::Profile for TestProfile {
        fn inbound(&self, _req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
            note(&self.2, format!("in:{}", self.0));
            match self.1 {
                Some("in") => Err(PluginError::new(422, format!("{} refuses", self.0))),
                _ => Ok(()),
            }
        }

        fn outbound(
            &self,
            _req: &Request,
            _caller: Caller<'_>,
            resp: &mut Response,
        ) -> Result<(), PluginError> {
            note(&self.2, format!("out:{}", self.0));
            resp.headers
                .push(scimgate_abi::Header::new("x-trace", self.0));
            match self.1 {
                Some("out") => Err(PluginError::new(502, format!("{} broke", self.0))),
                _ => Ok(()),
            }
        }
    }

    struct TestEndpoint(Log);

    impl sdk::Endpoint for TestEndpoint {
        fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
            note(&self.0, "endpoint".to_string());
            Ok(Response::new(200))
        }
    }

    /// Creates a component through the SDK and sorts it like assembly does.
    fn create(name: &str, component: Component) -> TypedStage {
        let ctx = CreateContext {
            stage: name.to_string(),
            config: serde_json::Value::Null,
            providers: Vec::new(),
            data_dir: PathBuf::new(),
            server: serde_json::Value::Null,
            host: None,
        };
        let instance = component.create(&ctx).expect("component created");
        TypedStage::from(StageInstance {
            name: name.to_string(),
            uses: format!("test/{name}"),
            instance,
        })
    }

    fn authenticator(name: &'static str, mode: Auth, log: &Log) -> PreStage {
        let log = log.clone();
        let component = Component::authenticator(name, "test", move |_| {
            Ok(TestAuthenticator(name, mode, log.clone()))
        });
        match create(name, component) {
            TypedStage::Pre(stage @ PreStage::Authenticator(_)) => stage,
            _ => panic!("`{name}` was not sorted as an authenticator"),
        }
    }

    fn policy(name: &'static str, deny: bool, log: &Log) -> PreStage {
        let log = log.clone();
        let component = Component::policy(name, "test", move |_| {
            Ok(TestPolicy(name, deny, log.clone()))
        });
        match create(name, component) {
            TypedStage::Pre(stage @ PreStage::Policy(_)) => stage,
            _ => panic!("`{name}` was not sorted as a policy"),
        }
    }

    fn profile(name: &'static str, fail: Option<&'static str>, log: &Log) -> Arc<ProfileStage> {
        let log = log.clone();
        let component = Component::profile(name, "test", move |_| {
            Ok(TestProfile(name, fail, log.clone()))
        });
        match create(name, component) {
            TypedStage::Profile(stage) => stage,
            _ => panic!("`{name}` was not sorted as a profile"),
        }
    }

    fn endpoint(log: &Log) -> Arc<EndpointStage> {
        let log = log.clone();
        let component = Component::endpoint("scim", "test", move |_| Ok(TestEndpoint(log.clone())));
        match create("scim", component) {
            TypedStage::Endpoint(stage) => stage,
            _ => panic!("`scim` was not sorted as an endpoint"),
        }
    }

    /// Providers `p1` and `p2`, read from TOML like the server does.
    fn providers() -> ProviderRegistry {
        let provider = |id: &str| {
            format!(
                "[[provider]]\nid = \"{id}\"\nname = \"{id}\"\n[provider.auth]\nmethod = \"static-bearer\"\n\
                 token_hash = \"sha256:{}\"\n",
                "0".repeat(64)
            )
        };
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[stage.scim]\nuse = \"test/scim\"\n\
             [[route]]\npath = \"/t\"\nanonymous = true\npipeline = [\"scim\"]\n{}{}",
            provider("p1"),
            provider("p2")
        );
        let source = crate::config::SourceFile {
            path: PathBuf::from("test.toml"),
            text,
        };
        let config = crate::config::parse_str(source, &|_: &str| None)
            .unwrap_or_else(|(s, d)| panic!("{}", crate::config::render_diagnostics(&s, &d)));
        ProviderRegistry::from_config(&config.providers)
    }

    fn route(pre: Vec<PreStage>, profiles: Vec<Arc<ProfileStage>>, log: &Log) -> Route {
        Route::new(
            "/t".to_string(),
            pre,
            profiles,
            endpoint(log),
            ErrorStyle::Scim,
            None,
        )
    }

    fn request() -> Request {
        let mut req = Request::new("GET", "/Users");
        req.request_id = "req-1".into();
        req
    }

    fn calls(log: &Log) -> Vec<String> {
        log.lock().expect("log").clone()
    }

    #[test]
    fn stages_run_in_order_and_profiles_unwind_in_reverse() {
        let log = Log::default();
        let route = route(
            vec![
                policy("gate", false, &log),
                authenticator("other", Auth::NotMine, &log),
                authenticator("bearer", Auth::Accept("p1"), &log),
                authenticator("never", Auth::Accept("p2"), &log),
                policy("after", false, &log),
            ],
            vec![profile("a", None, &log), profile("b", None, &log)],
            &log,
        );
        let (response, audit) = route.run(request(), &providers());
        assert_eq!(
            calls(&log),
            [
                // The policy before the authenticators sees no caller yet.
                "policy:gate:anonymous",
                "authenticate:other",
                // The first authenticator that recognises the caller wins.
                "authenticate:bearer",
                "policy:after:p1",
                "in:a",
                "in:b",
                "endpoint",
                "out:b",
                "out:a",
            ]
        );
        assert_eq!(response.status, 200);
        let trace: Vec<&str> = response
            .headers
            .iter()
            .filter(|h| h.name.as_str() == "x-trace")
            .map(|h| h.value.as_str())
            .collect();
        assert_eq!(trace, ["b", "a"]);
        assert_eq!(
            audit,
            AuditRecord {
                route: "/t".into(),
                provider: "p1".into(),
                client_id: "client-1".into(),
                decision: Decision::Allow,
                stage: String::new(),
                reason: String::new(),
                status: 200,
                run: RunMode::Blocking,
            }
        );
    }

    #[test]
    fn a_denying_policy_stops_the_chain_and_is_named_in_the_audit_record() {
        let log = Log::default();
        let route = route(
            vec![
                authenticator("bearer", Auth::Accept("p2"), &log),
                policy("gate", true, &log),
                policy("never", false, &log),
            ],
            vec![profile("a", None, &log)],
            &log,
        );
        let (response, audit) = route.run(request(), &providers());
        assert_eq!(calls(&log), ["authenticate:bearer", "policy:gate:p2"]);
        assert_eq!(response.status, 403);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON body");
        assert_eq!(body["detail"], "denied by gate");
        assert_eq!(audit.decision, Decision::Deny);
        assert_eq!(audit.stage, "gate");
        assert!(audit.reason.contains("denied by gate"), "{}", audit.reason);
        assert_eq!(
            (audit.provider.as_str(), audit.client_id.as_str()),
            ("p2", "client-1")
        );
        assert_eq!(audit.status, 403);
    }

    #[test]
    fn nobody_recognised_is_refused_by_the_last_authenticator_with_the_challenge() {
        let log = Log::default();
        let route = route(
            vec![
                authenticator("first", Auth::NotMine, &log),
                authenticator("last", Auth::NotMine, &log),
                policy("never", false, &log),
            ],
            vec![profile("a", None, &log)],
            &log,
        );
        let (response, audit) = route.run(request(), &providers());
        assert_eq!(calls(&log), ["authenticate:first", "authenticate:last"]);
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"scimgate\"")
        );
        assert_eq!(
            (audit.decision, audit.stage.as_str()),
            (Decision::Deny, "last")
        );
        assert_eq!(audit.provider, "");
    }

    #[test]
    fn a_rejecting_authenticator_and_an_unbound_provider_are_named() {
        let log = Log::default();
        let rejecting = route(
            vec![
                authenticator("strict", Auth::Reject, &log),
                authenticator("never", Auth::Accept("p1"), &log),
            ],
            Vec::new(),
            &log,
        );
        let (response, audit) = rejecting.run(request(), &providers());
        assert_eq!(calls(&log), ["authenticate:strict"]);
        assert_eq!(response.status, 401);
        assert_eq!(
            (audit.decision, audit.stage.as_str()),
            (Decision::Deny, "strict")
        );

        let log = Log::default();
        let mut bound = route(
            vec![authenticator("bearer", Auth::Accept("p1"), &log)],
            Vec::new(),
            &log,
        );
        bound.providers = Some(vec!["p2".to_string()]);
        let (response, audit) = bound.run(request(), &providers());
        assert_eq!(calls(&log), ["authenticate:bearer"]);
        assert_eq!(response.status, 403);
        assert_eq!(
            (audit.decision, audit.stage.as_str()),
            (Decision::Deny, "bearer")
        );
        // The caller is named even though it was refused.
        assert_eq!(audit.provider, "p1");
    }

    #[test]
    fn a_failing_profile_stops_either_direction_and_is_named() {
        let log = Log::default();
        let inbound = route(
            vec![authenticator("bearer", Auth::Accept("p1"), &log)],
            vec![
                profile("a", None, &log),
                profile("b", Some("in"), &log),
                profile("c", None, &log),
            ],
            &log,
        );
        let (response, audit) = inbound.run(request(), &providers());
        assert_eq!(calls(&log), ["authenticate:bearer", "in:a", "in:b"]);
        assert_eq!(response.status, 422);
        // A profile's client error is not a denial: the request was allowed.
        assert_eq!(
            (audit.decision, audit.stage.as_str()),
            (Decision::Allow, "b")
        );

        let log = Log::default();
        let outbound = route(
            vec![authenticator("bearer", Auth::Accept("p1"), &log)],
            vec![
                profile("a", None, &log),
                profile("b", Some("out"), &log),
                profile("c", None, &log),
            ],
            &log,
        );
        let (response, audit) = outbound.run(request(), &providers());
        assert_eq!(
            calls(&log),
            [
                "authenticate:bearer",
                "in:a",
                "in:b",
                "in:c",
                "endpoint",
                "out:c",
                "out:b"
            ]
        );
        assert_eq!(response.status, 502);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON body");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains("req-1")),
            "a 5xx names the request id, not the plugin's message: {body}"
        );
        assert_eq!(
            (audit.decision, audit.stage.as_str()),
            (Decision::Error, "b")
        );
        assert!(audit.reason.contains("b broke"), "{}", audit.reason);
    }

    // Inline runs: the stages that may block are called marked as inline,
    // and the first that would block suspends the request there.

    /// An endpoint that blocks on every method but GET; it notes whether
    /// it was called inline.
    struct ReadsInline(Log);

    impl sdk::Endpoint for ReadsInline {
        fn handle(&self, req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
            let place = if req.is_inline() { "inline" } else { "pool" };
            note(&self.0, format!("endpoint:{}:{place}", req.method));
            Ok(Response::new(200))
        }

        fn blocks_on(&self, req: &Request) -> bool {
            req.method.as_str() != "GET"
        }
    }

    /// An authenticator that may block (argon2) unless its cache has the
    /// caller: `cached` decides.
    struct Hashing(bool, Log);

    impl sdk::Authenticator for Hashing {
        fn authenticate(&self, req: &Request) -> AuthOutcome {
            let place = if req.is_inline() { "inline" } else { "pool" };
            note(&self.1, format!("hash:{place}"));
            AuthOutcome::Authenticated(Principal::new("p1", "client-1", "test"))
        }

        fn blocks_on(&self, _req: &Request) -> bool {
            !self.0
        }
    }

    fn reads_inline(log: &Log) -> Arc<EndpointStage> {
        let log = log.clone();
        let component = Component::endpoint("scim", "test", move |_| Ok(ReadsInline(log.clone())));
        match create("scim", component) {
            TypedStage::Endpoint(stage) => stage,
            _ => panic!("`scim` was not sorted as an endpoint"),
        }
    }

    fn hashing(cached: bool, log: &Log) -> PreStage {
        let log = log.clone();
        let component =
            Component::authenticator("hash", "test", move |_| Ok(Hashing(cached, log.clone())))
                .may_block();
        match create("hash", component) {
            TypedStage::Pre(stage @ PreStage::Authenticator(_)) => stage,
            _ => panic!("`hash` was not sorted as an authenticator"),
        }
    }

    /// `pre`, then a profile, then [`ReadsInline`]; the pre-stages at
    /// `marked` are called marked as inline.
    fn inline_route(pre: Vec<PreStage>, marked: Vec<usize>, log: &Log) -> Route {
        Route::new(
            "/t".to_string(),
            pre,
            vec![profile("oim", None, log)],
            reads_inline(log),
            ErrorStyle::Scim,
            None,
        )
        .with_inline(marked)
    }

    #[test]
    fn a_read_runs_whole_inline_and_is_counted_so() {
        let log = Log::default();
        let route = inline_route(
            vec![authenticator("bearer", Auth::Accept("p1"), &log)],
            vec![],
            &log,
        );
        let Ok((response, audit)) = route.run_inline(request(), &providers()) else {
            panic!("a GET the endpoint does not block on was suspended");
        };
        assert_eq!(response.status, 200);
        assert_eq!(audit.run, RunMode::Inline);
        assert_eq!(audit.provider, "p1");
        assert_eq!(
            calls(&log),
            [
                "authenticate:bearer",
                "in:oim",
                "endpoint:GET:inline",
                "out:oim"
            ]
        );
    }

    #[test]
    fn a_write_is_suspended_at_the_endpoint_and_resumed_without_running_a_stage_twice() {
        let log = Log::default();
        let route = inline_route(
            vec![
                policy("gate", false, &log),
                authenticator("bearer", Auth::Accept("p1"), &log),
            ],
            vec![],
            &log,
        );
        let mut post = request();
        post.method = "POST".into();
        let Err((req, suspended)) = route.run_inline(post, &providers()) else {
            panic!("a POST the endpoint blocks on ran inline");
        };
        assert_eq!(suspended.at, scimgate_abi::run::Resume::Endpoint);
        assert_eq!(
            suspended.principal.as_ref().map(|p| p.provider_id.as_str()),
            Some("p1")
        );
        // Nothing of the endpoint ran; the request is no longer marked.
        assert_eq!(
            calls(&log),
            ["policy:gate:anonymous", "authenticate:bearer", "in:oim"]
        );
        assert!(!req.is_inline());
        let (response, audit) = route.resume(req, suspended, &providers());
        assert_eq!(response.status, 200);
        assert_eq!(audit.run, RunMode::Resumed);
        assert_eq!(audit.provider, "p1");
        assert_eq!(
            calls(&log),
            [
                "policy:gate:anonymous",
                "authenticate:bearer",
                "in:oim",
                "endpoint:POST:pool",
                "out:oim"
            ]
        );
    }

    #[test]
    fn an_authenticator_that_would_hash_suspends_the_request_before_itself() {
        let log = Log::default();
        let route = inline_route(
            vec![
                policy("gate", false, &log),
                hashing(false, &log),
                policy("after", false, &log),
            ],
            vec![1],
            &log,
        );
        let Err((req, suspended)) = route.run_inline(request(), &providers()) else {
            panic!("an authenticator that would hash did not suspend the request");
        };
        assert_eq!(suspended.at, scimgate_abi::run::Resume::Pre(1));
        assert!(suspended.principal.is_none());
        assert_eq!(calls(&log), ["policy:gate:anonymous"]);
        let (response, audit) = route.resume(req, suspended, &providers());
        assert_eq!((response.status, audit.run), (200, RunMode::Resumed));
        assert_eq!(
            calls(&log),
            [
                "policy:gate:anonymous",
                "hash:pool",
                "policy:after:p1",
                "in:oim",
                "endpoint:GET:pool",
                "out:oim"
            ]
        );
    }

    #[test]
    fn an_authenticator_with_the_answer_cached_stays_inline() {
        let log = Log::default();
        let route = inline_route(vec![hashing(true, &log)], vec![0], &log);
        let Ok((response, audit)) = route.run_inline(request(), &providers()) else {
            panic!("a cached authentication was suspended");
        };
        assert_eq!((response.status, audit.run), (200, RunMode::Inline));
        assert_eq!(
            calls(&log),
            ["hash:inline", "in:oim", "endpoint:GET:inline", "out:oim"]
        );
    }

    #[test]
    fn an_unmarked_stage_is_never_told_it_runs_inline() {
        let log = Log::default();
        // `hash` may block but is not in the marked list: it must not learn
        // that the call is inline (its answer is then its normal one).
        let route = inline_route(vec![hashing(false, &log)], vec![], &log);
        let Ok((_, audit)) = route.run_inline(request(), &providers()) else {
            panic!("an unmarked stage suspended the request");
        };
        assert_eq!(audit.run, RunMode::Inline);
        assert_eq!(calls(&log)[0], "hash:pool");
    }

    /// An endpoint that (wrongly) answers would-block to every call.
    struct AlwaysWouldBlock;

    impl sdk::Endpoint for AlwaysWouldBlock {
        fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
            Err(PluginError::would_block())
        }
    }

    #[test]
    fn would_block_to_a_call_that_was_not_inline_is_a_500_not_a_lost_request() {
        let component = Component::endpoint("scim", "test", |_| Ok(AlwaysWouldBlock));
        let TypedStage::Endpoint(endpoint) = create("scim", component) else {
            panic!("`scim` was not sorted as an endpoint");
        };
        let route = Route::new(
            "/t".to_string(),
            vec![],
            vec![],
            endpoint,
            ErrorStyle::Scim,
            None,
        );
        let (response, audit) = route.run(request(), &providers());
        assert_eq!(response.status, 500);
        assert_eq!(audit.decision, Decision::Error);
        assert!(
            audit
                .reason
                .contains("answered would-block to a call that was not inline"),
            "{}",
            audit.reason
        );
    }
}
