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
    /// Indexes in `pre` of the stages that may block but know inline calls
    /// (`inline-calls`): [`Stages::run_inline`] calls them marked as inline
    /// ([`Request::is_inline`]), so that they can answer
    /// [`PluginError::would_block`]. Empty outside inline runs.
    pub inline_marked: &'s [usize],
}

/// Where a suspended request goes on ([`Stages::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// At the pre-stage with this index in `pre`.
    Pre(usize),
    /// At the endpoint (the inbound profiles have run).
    Endpoint,
}

/// A request an inline run left at a stage that would have blocked: resume
/// it with [`Stages::resume`] where blocking is fine. Nothing of that stage
/// ran; the request carries what the stages before it did.
#[derive(Debug, Clone)]
pub struct Suspended {
    pub at: Resume,
    /// Who was calling, when an authenticator before it said so.
    pub principal: Option<Principal>,
}

/// What an inline run came to.
#[derive(Debug)]
pub enum Step<'s, 'p> {
    Done(Outcome<'s, 'p>),
    Suspended(Suspended),
}

/// Why the runner left a request: a stop, or an inline call that a stage
/// could not serve.
enum Halt<'s> {
    Stop(Stop<'s>),
    Suspend(Resume),
}

impl<'s> From<Stop<'s>> for Halt<'s> {
    fn from(stop: Stop<'s>) -> Halt<'s> {
        Halt::Stop(stop)
    }
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
        match self.run_from(req, &providers, principal, provider, Resume::Pre(0), false) {
            Step::Done(outcome) => outcome,
            // Not inline: nothing suspends.
            Step::Suspended(suspended) => self.refused_suspension(suspended),
        }
    }

    /// Runs `req` on a thread that must not block (an async worker): the
    /// stages in `inline_marked` and the endpoint are called marked as
    /// inline, and the first of them that answers
    /// [`PluginError::would_block`] suspends the request there, to be
    /// resumed with [`Stages::resume`].
    pub fn run_inline<'p, F>(&self, req: &mut Request, providers: F) -> Step<'s, 'p>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        self.run_from(req, &providers, None, None, Resume::Pre(0), true)
    }

    /// Goes on with a request [`Stages::run_inline`] suspended, from the
    /// stage that would have blocked, not inline.
    pub fn resume<'p, F>(
        &self,
        req: &mut Request,
        providers: F,
        suspended: Suspended,
    ) -> Outcome<'s, 'p>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        let provider = suspended
            .principal
            .as_ref()
            .and_then(|p| providers(p.provider_id.as_str()));
        match self.run_from(
            req,
            &providers,
            suspended.principal,
            provider,
            suspended.at,
            false,
        ) {
            Step::Done(outcome) => outcome,
            Step::Suspended(suspended) => self.refused_suspension(suspended),
        }
    }

    /// Only an inline run suspends; this is never reached, and would be a
    /// 500 rather than a lost request.
    fn refused_suspension<'p>(&self, suspended: Suspended) -> Outcome<'s, 'p> {
        Outcome {
            result: Err(stop(
                "",
                ComponentKind::Endpoint,
                PluginError::internal("a request was suspended outside an inline run"),
            )),
            principal: suspended.principal,
            provider: None,
            endpoint_ran: false,
        }
    }

    fn run_from<'p, F>(
        &self,
        req: &mut Request,
        providers: &F,
        principal: Option<Principal>,
        provider: Option<&'p ProviderRecord>,
        from: Resume,
        inline: bool,
    ) -> Step<'s, 'p>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        let mut outcome = Outcome {
            result: Ok(Response::new(204)),
            principal,
            provider,
            endpoint_ran: false,
        };
        match self.stages(req, providers, &mut outcome, from, inline) {
            Ok(()) => Step::Done(outcome),
            Err(Halt::Stop(stopped)) => {
                outcome.result = Err(stopped);
                Step::Done(outcome)
            }
            Err(Halt::Suspend(at)) => Step::Suspended(Suspended {
                at,
                principal: outcome.principal,
            }),
        }
    }

    /// The stage order, written once.
    fn stages<'p, F>(
        &self,
        req: &mut Request,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
        from: Resume,
        inline: bool,
    ) -> Result<(), Halt<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        if let Resume::Pre(first) = from {
            self.authorize(req, providers, outcome, first, inline)?;
            self.inbound(req, outcome)?;
        }
        let Some(endpoint) = self.endpoint else {
            return Ok(());
        };
        let answer = called(req, inline, |req| {
            endpoint.component.handle(req, outcome.caller())
        });
        let mut response = match answer {
            RResult::ROk(response) => response,
            RResult::RErr(error) if error.is_would_block() => {
                return Err(self.would_block(
                    &endpoint.name,
                    ComponentKind::Endpoint,
                    inline,
                    Resume::Endpoint,
                ));
            }
            RResult::RErr(error) => {
                outcome.endpoint_ran = true;
                return Err(stop(&endpoint.name, ComponentKind::Endpoint, error).into());
            }
        };
        outcome.endpoint_ran = true;
        // Profiles outbound, in reverse order.
        for profile in self.profiles.iter().rev() {
            if let RResult::RErr(error) =
                profile
                    .component
                    .outbound(req, outcome.caller(), &mut response)
            {
                return Err(stop(&profile.name, ComponentKind::Profile, error).into());
            }
        }
        outcome.result = Ok(response);
        Ok(())
    }

    /// A stage's would-block answer: a suspension in an inline run, else
    /// the stage's fault (it may only say so to an inline call).
    fn would_block(
        &self,
        stage: &'s str,
        kind: ComponentKind,
        inline: bool,
        at: Resume,
    ) -> Halt<'s> {
        if inline {
            Halt::Suspend(at)
        } else {
            Halt::Stop(stop(
                stage,
                kind,
                PluginError::internal(format!(
                    "stage `{stage}` answered would-block to a call that was not inline"
                )),
            ))
        }
    }

    /// Authenticators and policies, in order, from index `first`.
    fn authorize<'p, F>(
        &self,
        req: &mut Request,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
        first: usize,
        inline: bool,
    ) -> Result<(), Halt<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        for (index, stage) in self.pre.iter().enumerate().skip(first) {
            match stage {
                PreStage::Authenticator(auth) if outcome.principal.is_none() => {
                    let marked = inline && self.inline_marked.contains(&index);
                    let answer = called(req, marked, |req| auth.component.authenticate(req));
                    if let AuthOutcome::Rejected(error) = &answer {
                        if error.is_would_block() {
                            let at = Resume::Pre(index);
                            return Err(self.would_block(
                                &auth.name,
                                ComponentKind::Authenticator,
                                marked,
                                at,
                            ));
                        }
                    }
                    self.authenticated(auth, answer, providers, outcome)?;
                }
                PreStage::Authenticator(_) => {}
                PreStage::Policy(policy) => {
                    if let PolicyDecision::Deny(error) =
                        policy.component.check(req, outcome.caller())
                    {
                        if error.is_would_block() {
                            let at = Resume::Pre(index);
                            return Err(self.would_block(
                                &policy.name,
                                ComponentKind::Policy,
                                false,
                                at,
                            ));
                        }
                        return Err(stop(&policy.name, ComponentKind::Policy, error).into());
                    }
                }
            }
            if Some(index) == self.last_authenticator && outcome.principal.is_none() {
                return Err(stop(
                    stage.name(),
                    ComponentKind::Authenticator,
                    self.unauthenticated(),
                )
                .into());
            }
        }
        Ok(())
    }

    /// What an authenticator answered, applied.
    fn authenticated<'p, F>(
        &self,
        auth: &'s AuthenticatorStage,
        answer: AuthOutcome,
        providers: &F,
        outcome: &mut Outcome<'s, 'p>,
    ) -> Result<(), Stop<'s>>
    where
        F: Fn(&str) -> Option<&'p ProviderRecord>,
    {
        let refuse = |error| Err(stop(&auth.name, ComponentKind::Authenticator, error));
        match answer {
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

/// Calls a stage with `req` marked as an inline call when `marked` (and
/// unmarked again after).
fn called<T>(req: &mut Request, marked: bool, call: impl FnOnce(&Request) -> T) -> T {
    if !marked {
        return call(req);
    }
    req.set_inline(true);
    let answer = call(req);
    req.set_inline(false);
    answer
}
