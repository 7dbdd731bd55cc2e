//! The order the host runs a route's stages in, part of the contract plugin
//! authors rely on, written once: the host's routes and the
//! [`testing`](crate::testing) harness both call [`Stages::run`].
//!
//! Authenticators and policies run interleaved, in pipeline order; the first
//! `Authenticated` wins and later authenticators are skipped. A principal
//! whose provider is not registered is refused (401), and so is one whose
//! provider the route is not bound to (403, or 401 `invalid_client` on an
//! OAuth route). Once past the last authenticator with nobody recognised,
//! the request is refused with every authenticator's challenge (401). Then
//! the profiles run inbound in order (they may not change the method or
//! path), the endpoint, and the profiles outbound in reverse order. The
//! first stage that refuses or fails stops the request; nothing after it
//! runs.

use std::sync::Arc;

use abi_stable::std_types::{ROption, RResult};

use crate::error::PluginError;
use crate::ffi::{AuthenticatorBox, ComponentInstance, EndpointBox, PolicyBox, ProfileBox};
use crate::types::{
    AuthOutcome, Caller, ComponentKind, ErrorStyle, PolicyDecision, Principal, ProviderRecord,
    Request, Response,
};

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

/// A created stage sorted by kind, once, when a route is assembled.
#[derive(Clone)]
pub enum TypedStage {
    Pre(PreStage),
    Profile(Arc<ProfileStage>),
    Endpoint(Arc<EndpointStage>),
}

impl TypedStage {
    /// Sorts a component a library created for stage `name`.
    pub fn new(name: String, uses: String, instance: ComponentInstance) -> TypedStage {
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

/// The index in `pre` of the last authenticator: once past it without a
/// principal, the request is refused.
pub fn last_authenticator(pre: &[PreStage]) -> Option<usize> {
    pre.iter()
        .rposition(|stage| matches!(stage, PreStage::Authenticator(_)))
}

/// The `WWW-Authenticate` challenges of the authenticators in `pre`, each
/// once, in order; `Bearer realm="scimgate"` when there are authenticators
/// but none names a challenge.
pub fn challenges(pre: &[PreStage]) -> Vec<String> {
    let mut challenges: Vec<String> = Vec::new();
    let mut any = false;
    for stage in pre {
        if let PreStage::Authenticator(auth) = stage {
            any = true;
            let challenge = auth.component.challenge();
            if !challenge.is_empty() && !challenges.iter().any(|c| c == challenge.as_str()) {
                challenges.push(challenge.to_string());
            }
        }
    }
    if challenges.is_empty() && any {
        challenges.push("Bearer realm=\"scimgate\"".to_string());
    }
    challenges
}

/// One route's stages and rules, borrowed for one request (building it
/// allocates nothing).
#[derive(Clone, Copy)]
pub struct Stages<'s> {
    /// The route's mount, named in the refusal of an unbound provider.
    pub mount: &'s str,
    /// Authenticators and policies, in pipeline order.
    pub pre: &'s [PreStage],
    /// See [`last_authenticator`].
    pub last_authenticator: Option<usize>,
    /// Profiles in pipeline order (outbound runs them reversed).
    pub profiles: &'s [Arc<ProfileStage>],
    /// `None` only in the testing harness: the request is then allowed
    /// with an empty 204 and the outbound profiles do not run.
    pub endpoint: Option<&'s EndpointStage>,
    /// The endpoint's error style: how the host's own refusals are worded.
    pub error_style: ErrorStyle,
    /// See [`challenges`].
    pub challenges: &'s [String],
    /// The route's `providers = [...]` (`None`: every registered provider).
    pub providers: Option<&'s [String]>,
}

/// Why a request was stopped: by which stage, of which kind, with what.
#[derive(Debug, Clone)]
pub struct Stop<'s> {
    pub stage: &'s str,
    pub kind: ComponentKind,
    pub error: PluginError,
}

/// What one request came to.
#[derive(Debug)]
pub struct Outcome<'s, 'p> {
    /// The response after the outbound profiles, or the stop.
    pub result: Result<Response, Stop<'s>>,
    /// Who was calling, once an authenticator said so (also when the route
    /// then refused that provider; not when the provider is unregistered).
    pub principal: Option<Principal>,
    /// The caller's provider record, as attached for the stages.
    pub provider: Option<&'p ProviderRecord>,
    /// Whether the endpoint was called (whatever it answered).
    pub endpoint_ran: bool,
}

impl<'p> Outcome<'_, 'p> {
    fn caller(&self) -> Caller<'_> {
        Caller {
            principal: self
                .principal
                .as_ref()
                .map_or(ROption::RNone, ROption::RSome),
            provider: self.provider.map_or(ROption::RNone, ROption::RSome),
        }
    }
}

fn stop(stage: &str, kind: ComponentKind, error: PluginError) -> Stop<'_> {
    Stop { stage, kind, error }
}

impl<'s> Stages<'s> {
    /// Runs `req` through every stage; `providers` looks a provider's
    /// record up by id (`None`: not registered).
    pub fn run<'p, F>(&self, req: &mut Request, providers: F) -> Outcome<'s, 'p>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        self.run_as(req, providers, None)
    }

    /// As [`Stages::run`], with a caller already known before the first
    /// stage (the harness's stand-in for an authenticator).
    pub fn run_as<'p, F>(
        &self,
        req: &mut Request,
        providers: F,
        caller: Option<(Principal, &'p ProviderRecord)>,
    ) -> Outcome<'s, 'p>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        let (principal, provider) = caller.map_or((None, None), |(p, r)| (Some(p), Some(r)));
        let mut outcome = Outcome {
            result: Ok(Response::new(204)),
            principal,
            provider,
            endpoint_ran: false,
        };
        if let Err(stopped) = self.stages(req, &providers, &mut outcome) {
            outcome.result = Err(stopped);
        }
        outcome
    }

    /// The stage order, written once.
    fn stages<'p, F>(
        &self,
        req: &mut Request,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
    ) -> Result<(), Stop<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        self.authorize(req, providers, outcome)?;
        self.inbound(req, outcome)?;
        let Some(endpoint) = self.endpoint else {
            return Ok(());
        };
        outcome.endpoint_ran = true;
        let mut response = match endpoint.component.handle(req, outcome.caller()) {
            RResult::ROk(response) => response,
            RResult::RErr(error) => {
                return Err(stop(&endpoint.name, ComponentKind::Endpoint, error))
            }
        };
        // Profiles outbound, in reverse order.
        for profile in self.profiles.iter().rev() {
            if let RResult::RErr(error) =
                profile
                    .component
                    .outbound(req, outcome.caller(), &mut response)
            {
                return Err(stop(&profile.name, ComponentKind::Profile, error));
            }
        }
        outcome.result = Ok(response);
        Ok(())
    }

    /// Authenticators and policies, in order.
    fn authorize<'p, F>(
        &self,
        req: &Request,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
    ) -> Result<(), Stop<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        for (index, stage) in self.pre.iter().enumerate() {
            match stage {
                PreStage::Authenticator(auth) if outcome.principal.is_none() => {
                    self.authenticate(auth, req, providers, outcome)?;
                }
                PreStage::Authenticator(_) => {}
                PreStage::Policy(policy) => {
                    if let PolicyDecision::Deny(error) =
                        policy.component.check(req, outcome.caller())
                    {
                        return Err(stop(&policy.name, ComponentKind::Policy, error));
                    }
                }
            }
            if Some(index) == self.last_authenticator && outcome.principal.is_none() {
                return Err(stop(
                    stage.name(),
                    ComponentKind::Authenticator,
                    self.unauthenticated(),
                ));
            }
        }
        Ok(())
    }

    fn authenticate<'p, F>(
        &self,
        auth: &'s AuthenticatorStage,
        req: &Request,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
    ) -> Result<(), Stop<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        let refuse = |error| Err(stop(&auth.name, ComponentKind::Authenticator, error));
        match auth.component.authenticate(req) {
            AuthOutcome::NotMine => Ok(()),
            AuthOutcome::Rejected(mut error) => {
                if error.status == 401 && !has_header(&error, "www-authenticate") {
                    error = self.with_challenges(error);
                }
                refuse(error)
            }
            AuthOutcome::Authenticated(principal) => {
                let Some(provider) = providers(principal.provider_id.as_str()) else {
                    return refuse(PluginError::new(
                        401,
                        format!(
                            "the credentials belong to provider `{}`, which is not registered",
                            principal.provider_id
                        ),
                    ));
                };
                let unbound = self
                    .providers
                    .is_some_and(|ids| !ids.iter().any(|id| id == principal.provider_id.as_str()));
                if unbound {
                    let error = self.not_bound(principal.provider_id.as_str());
                    // The caller is named even though it is refused.
                    outcome.principal = Some(principal);
                    return refuse(error);
                }
                outcome.provider = Some(provider);
                outcome.principal = Some(principal);
                Ok(())
            }
        }
    }

    /// Profiles, inbound, in pipeline order.
    fn inbound(&self, req: &mut Request, outcome: &Outcome<'s, '_>) -> Result<(), Stop<'s>> {
        // Policies decided on this method and path: a profile that changed
        // them would make the endpoint run something else.
        let judged = (!self.profiles.is_empty()).then(|| (req.method.clone(), req.path.clone()));
        for profile in self.profiles {
            if let RResult::RErr(error) = profile.component.inbound(req, outcome.caller()) {
                return Err(stop(&profile.name, ComponentKind::Profile, error));
            }
            if judged
                .as_ref()
                .is_some_and(|(method, path)| (&req.method, &req.path) != (method, path))
            {
                let error = PluginError::internal(format!(
                    "profile `{}` changed the request's method or path, which profiles may not do",
                    profile.name
                ));
                return Err(stop(&profile.name, ComponentKind::Profile, error));
            }
        }
        Ok(())
    }

    fn with_challenges(&self, mut error: PluginError) -> PluginError {
        for c in self.challenges {
            error = error.with_header("www-authenticate", c);
        }
        error
    }

    /// The answer to a provider this route is not bound to: a token route
    /// says `invalid_client` (RFC 6749 §5.2), a SCIM route 403.
    fn not_bound(&self, provider: &str) -> PluginError {
        let message = format!(
            "provider `{provider}` is not allowed on route `{}`",
            self.mount
        );
        // (`if`, not `match`: the contract may gain styles.)
        if self.error_style == ErrorStyle::OAuth {
            self.with_challenges(PluginError::new(401, message).with_code("invalid_client"))
        } else {
            PluginError::new(403, message)
        }
    }

    /// The answer once past the last authenticator with nobody recognised.
    fn unauthenticated(&self) -> PluginError {
        self.with_challenges(if self.error_style == ErrorStyle::OAuth {
            PluginError::new(401, "client authentication is required").with_code("invalid_client")
        } else {
            PluginError::new(401, "authentication is required")
        })
    }
}

fn has_header(error: &PluginError, name: &str) -> bool {
    error
        .headers
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case(name))
}
