//! One route's typed stages and the one place their order is written:
//! [`Route::run`] takes a request through authenticators and policies
//! (interleaved, in order; the first `Authenticated` wins), profiles inbound,
//! the endpoint, profiles outbound in reverse order, and returns the response
//! with its [`AuditRecord`]. Stages hold their concrete FFI box, sorted by
//! kind when the route is built, so nothing is matched on kind per request.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RResult};
use scimgate_abi::ffi::{AuthenticatorBox, ComponentInstance, EndpointBox, PolicyBox, ProfileBox};
use scimgate_abi::{
    AuthOutcome, Caller, ComponentKind, ErrorStyle, PluginError, PolicyDecision, Principal,
    ProviderRecord, Request, Response,
};

use super::StageInstance;
use crate::registry::ProviderRegistry;
use crate::render::error_response;

/// A created stage of one kind, shared by every route that names it.
pub struct Stage<C> {
    pub name: String,
    /// `library/component`.
    pub uses: String,
    pub component: C,
}

pub type AuthenticatorStage = Stage<AuthenticatorBox>;
pub type PolicyStage = Stage<PolicyBox>;
pub type ProfileStage = Stage<ProfileBox>;
pub type EndpointStage = Stage<EndpointBox>;

/// A stage before the profiles: authenticators and policies interleave.
#[derive(Clone)]
pub enum PreStage {
    Authenticator(Arc<AuthenticatorStage>),
    Policy(Arc<PolicyStage>),
}

impl PreStage {
    pub fn name(&self) -> &str {
        match self {
            PreStage::Authenticator(stage) => &stage.name,
            PreStage::Policy(stage) => &stage.name,
        }
    }
}

/// A created stage sorted by kind, once, when the configuration is
/// assembled.
#[derive(Clone)]
pub enum TypedStage {
    Pre(PreStage),
    Profile(Arc<ProfileStage>),
    Endpoint(Arc<EndpointStage>),
}

impl From<StageInstance> for TypedStage {
    fn from(stage: StageInstance) -> Self {
        let StageInstance {
            name,
            uses,
            instance,
        } = stage;
        match instance {
            ComponentInstance::Authenticator(component) => {
                TypedStage::Pre(PreStage::Authenticator(Arc::new(Stage {
                    name,
                    uses,
                    component,
                })))
            }
            ComponentInstance::Policy(component) => {
                TypedStage::Pre(PreStage::Policy(Arc::new(Stage {
                    name,
                    uses,
                    component,
                })))
            }
            ComponentInstance::Profile(component) => TypedStage::Profile(Arc::new(Stage {
                name,
                uses,
                component,
            })),
            ComponentInstance::Endpoint(component) => TypedStage::Endpoint(Arc::new(Stage {
                name,
                uses,
                component,
            })),
        }
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
        }
    }

    /// The host itself refused or failed the request (no stage involved).
    pub fn refuse(&mut self, decision: Decision, reason: impl Into<String>) {
        self.decision = decision;
        self.reason = reason.into();
    }
}

/// Who the request is from, once the pre-stages ran.
#[derive(Default, Clone)]
struct Authn {
    principal: Option<Principal>,
    provider: Option<Arc<ProviderRecord>>,
}

impl Authn {
    fn caller(&self) -> Caller<'_> {
        Caller {
            principal: self
                .principal
                .as_ref()
                .map_or(ROption::RNone, ROption::RSome),
            provider: self
                .provider
                .as_deref()
                .map_or(ROption::RNone, ROption::RSome),
        }
    }
}

/// Why a request was stopped, and by which stage.
#[derive(Debug, Clone)]
struct Rejection {
    error: PluginError,
    stage: String,
    kind: ComponentKind,
    /// `(provider id, client id)` when the caller was already named.
    caller: Option<(String, String)>,
}

impl Rejection {
    fn new(error: PluginError, stage: &str, kind: ComponentKind) -> Self {
        Rejection {
            error,
            stage: stage.to_string(),
            kind,
            caller: None,
        }
    }

    fn by(mut self, authn: &Authn) -> Self {
        self.caller = authn.principal.as_ref().map(caller_ids);
        self
    }

    fn decision(&self) -> Decision {
        match self.kind {
            _ if self.error.status >= 500 => Decision::Error,
            ComponentKind::Authenticator | ComponentKind::Policy => Decision::Deny,
            ComponentKind::Profile | ComponentKind::Endpoint => Decision::Allow,
        }
    }
}

fn caller_ids(principal: &Principal) -> (String, String) {
    (
        principal.provider_id.to_string(),
        principal.client_id.to_string(),
    )
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
        let mut last_authenticator = None;
        let mut challenges: Vec<String> = Vec::new();
        for (index, stage) in pre.iter().enumerate() {
            if let PreStage::Authenticator(auth) = stage {
                last_authenticator = Some(index);
                let challenge = auth.component.challenge();
                if !challenge.is_empty() && !challenges.iter().any(|c| c == challenge.as_str()) {
                    challenges.push(challenge.to_string());
                }
            }
        }
        if challenges.is_empty() && last_authenticator.is_some() {
            challenges.push("Bearer realm=\"scimgate\"".to_string());
        }
        Route {
            mount,
            pre,
            last_authenticator,
            profiles,
            endpoint,
            error_style,
            challenges,
            providers,
        }
    }

    /// The whole pipeline for one request, on the calling thread: the
    /// server calls it on its blocking pool (the endpoint may block), tests
    /// and benchmarks inline. A stage's refusal or error is rendered in the
    /// route's error style; nothing after that stage runs.
    pub fn run(&self, mut req: Request, providers: &ProviderRegistry) -> (Response, AuditRecord) {
        let mut audit = AuditRecord::new(&self.mount);
        let response = match self.stages(&mut req, providers) {
            Ok((response, authn)) => {
                if let Some((provider, client_id)) = authn.principal.as_ref().map(caller_ids) {
                    audit.provider = provider;
                    audit.client_id = client_id;
                }
                response
            }
            Err(rejection) => {
                audit.decision = rejection.decision();
                audit.reason = rejection.error.to_string();
                if let Some((provider, client_id)) = rejection.caller {
                    audit.provider = provider;
                    audit.client_id = client_id;
                }
                audit.stage = rejection.stage;
                error_response(self.error_style, &rejection.error, &req.request_id)
            }
        };
        audit.status = response.status;
        (response, audit)
    }

    /// The stage order, written once.
    fn stages(
        &self,
        req: &mut Request,
        providers: &ProviderRegistry,
    ) -> Result<(Response, Authn), Rejection> {
        let authn = self.authorize(req, providers)?;
        self.inbound(req, &authn)?;
        let mut response = self.call_endpoint(req, &authn)?;
        self.outbound(req, &authn, &mut response)?;
        Ok((response, authn))
    }

    /// Authenticators and policies, in order.
    fn authorize(&self, req: &Request, providers: &ProviderRegistry) -> Result<Authn, Rejection> {
        let mut authn = Authn::default();
        for (index, stage) in self.pre.iter().enumerate() {
            match stage {
                PreStage::Authenticator(auth) if authn.principal.is_none() => {
                    self.authenticate(auth, req, providers, &mut authn)?;
                }
                PreStage::Authenticator(_) => {}
                PreStage::Policy(policy) => {
                    if let PolicyDecision::Deny(error) = policy.component.check(req, authn.caller())
                    {
                        return Err(
                            Rejection::new(error, &policy.name, ComponentKind::Policy).by(&authn)
                        );
                    }
                }
            }
            if Some(index) == self.last_authenticator && authn.principal.is_none() {
                return Err(self.unauthenticated(stage.name()));
            }
        }
        Ok(authn)
    }

    fn authenticate(
        &self,
        auth: &AuthenticatorStage,
        req: &Request,
        providers: &ProviderRegistry,
        authn: &mut Authn,
    ) -> Result<(), Rejection> {
        match auth.component.authenticate(req) {
            AuthOutcome::NotMine => Ok(()),
            AuthOutcome::Rejected(mut error) => {
                if error.status == 401 && !has_header(&error, "www-authenticate") {
                    for c in &self.challenges {
                        error = error.with_header("www-authenticate", c);
                    }
                }
                Err(Rejection::new(
                    error,
                    &auth.name,
                    ComponentKind::Authenticator,
                ))
            }
            AuthOutcome::Authenticated(principal) => {
                let Some(provider) = providers.get(principal.provider_id.as_str()) else {
                    let error = PluginError::new(
                        401,
                        format!(
                            "the credentials belong to provider `{}`, which is not registered",
                            principal.provider_id
                        ),
                    );
                    return Err(Rejection::new(
                        error,
                        &auth.name,
                        ComponentKind::Authenticator,
                    ));
                };
                if let Some(allowed) = &self.providers {
                    if !allowed
                        .iter()
                        .any(|id| id == principal.provider_id.as_str())
                    {
                        let mut rejection = Rejection::new(
                            self.not_bound(principal.provider_id.as_str()),
                            &auth.name,
                            ComponentKind::Authenticator,
                        );
                        rejection.caller = Some(caller_ids(&principal));
                        return Err(rejection);
                    }
                }
                authn.provider = Some(provider.clone());
                authn.principal = Some(principal);
                Ok(())
            }
        }
    }

    /// The answer to a provider this route is not bound to: a token route
    /// says `invalid_client` (RFC 6749 §5.2), a SCIM route 403.
    fn not_bound(&self, provider: &str) -> PluginError {
        let message = format!(
            "provider `{provider}` is not allowed on route `{}`",
            self.mount
        );
        match self.error_style {
            ErrorStyle::OAuth => {
                let mut error = PluginError::new(401, message).with_code("invalid_client");
                for c in &self.challenges {
                    error = error.with_header("www-authenticate", c);
                }
                error
            }
            ErrorStyle::Scim => PluginError::new(403, message),
        }
    }

    fn unauthenticated(&self, stage: &str) -> Rejection {
        let mut error = match self.error_style {
            ErrorStyle::OAuth => PluginError::new(401, "client authentication is required")
                .with_code("invalid_client"),
            ErrorStyle::Scim => PluginError::new(401, "authentication is required"),
        };
        for c in &self.challenges {
            error = error.with_header("www-authenticate", c);
        }
        Rejection::new(error, stage, ComponentKind::Authenticator)
    }

    /// Profiles, inbound, in pipeline order.
    fn inbound(&self, req: &mut Request, authn: &Authn) -> Result<(), Rejection> {
        // Policies decided on this method and path: a profile that changed
        // them would make the endpoint run something else.
        let judged = (!self.profiles.is_empty()).then(|| (req.method.clone(), req.path.clone()));
        for profile in &self.profiles {
            if let RResult::RErr(error) = profile.component.inbound(req, authn.caller()) {
                return Err(Rejection::new(error, &profile.name, ComponentKind::Profile).by(authn));
            }
            if judged
                .as_ref()
                .is_some_and(|(method, path)| (&req.method, &req.path) != (method, path))
            {
                let error = PluginError::internal(format!(
                    "profile `{}` changed the request's method or path, which profiles may not do",
                    profile.name
                ));
                return Err(Rejection::new(error, &profile.name, ComponentKind::Profile).by(authn));
            }
        }
        Ok(())
    }

    fn call_endpoint(&self, req: &Request, authn: &Authn) -> Result<Response, Rejection> {
        match self.endpoint.component.handle(req, authn.caller()) {
            RResult::ROk(response) => Ok(response),
            RResult::RErr(error) => {
                Err(Rejection::new(error, &self.endpoint.name, ComponentKind::Endpoint).by(authn))
            }
        }
    }

    /// Profiles, outbound, in reverse order.
    fn outbound(
        &self,
        req: &Request,
        authn: &Authn,
        response: &mut Response,
    ) -> Result<(), Rejection> {
        for profile in self.profiles.iter().rev() {
            if let RResult::RErr(error) = profile.component.outbound(req, authn.caller(), response)
            {
                return Err(Rejection::new(error, &profile.name, ComponentKind::Profile).by(authn));
            }
        }
        Ok(())
    }
}

fn has_header(error: &PluginError, name: &str) -> bool {
    error
        .headers
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    //! `Route::run` inline, with in-process components boxed by the SDK's
    //! own wrappers (the same FFI boxes a loaded library hands over). Each
    //! component writes what it was called with to a shared log.

    use std::path::PathBuf;
    use std::sync::Mutex;

    use scimgate_abi::sdk::{self, Component, CreateContext};

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
}
