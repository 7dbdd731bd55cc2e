//! `scimgate token`: mints an access token for a provider by calling the
//! configuration's own token stage in-process, through the ABI — the same
//! key, issuer, audience and TTL as the running server. The stage is found
//! by what its component declares (`Capability::MintsTokens`), not by name.
//! For tests and first steps; production clients use the token route.

use abi_stable::std_types::{ROption, RResult, RVec};
use scimgate_abi::ffi::ComponentInstance;
use scimgate_abi::{Caller, ErrorStyle, Principal, Request};

use scimgate_abi::declare::Capability;

use crate::config::methods::{registry, stage_declares};
use crate::config::Config;
use crate::loader::{LibraryCache, PluginPath};
use crate::pipeline::StageFactory;

/// The token response (`access_token`, `expires_in`, …) or a printable error.
pub fn mint_token(
    config: &Config,
    plugin_dir: &PluginPath,
    provider_id: &str,
    scope: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut cache = LibraryCache::default();
    // Stages whose component declares that it mints tokens.
    let minting: Vec<&crate::config::StageConfig> = config
        .stages
        .iter()
        .filter(|stage| stage_declares(&mut cache, plugin_dir, stage, Capability::MintsTokens))
        .collect();
    // The token stage of a route the provider is bound to (its audience is
    // that route's), else the first token stage.
    let bound = config.routes.iter().find_map(|route| {
        let admits = match &route.providers {
            Some(ids) => ids.iter().any(|(id, _)| id == provider_id),
            None => true,
        };
        let (last, _) = route.pipeline.last()?;
        admits
            .then(|| minting.iter().find(|s| s.name == *last))
            .flatten()
    });
    let stage = *bound.or_else(|| minting.first()).ok_or(
        "the configuration has no stage that mints tokens (a component declaring \
         `mints-tokens`, such as `oauth2/token`)",
    )?;
    let (providers, problems) = registry(config, plugin_dir, &mut cache);
    if let Some(problem) = problems.first() {
        return Err(format!("the providers are not usable: {}", problem.message));
    }
    let record = providers.get(provider_id).ok_or_else(|| {
        let known: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
        format!(
            "no provider `{provider_id}` in the configuration (it has: {})",
            known.join(", ")
        )
    })?;
    let lib = cache.load(plugin_dir, &stage.library)?;
    let factory = StageFactory::new(config, &providers);
    let instance = factory
        .create(lib, stage)
        .map_err(|e| format!("stage `{}` could not be created: {e}", stage.name))?;
    let ComponentInstance::Endpoint(endpoint) = &instance.instance else {
        return Err(format!("stage `{}` is not an endpoint", stage.name));
    };
    let client_id = if record.client_id.is_empty() {
        record.id.clone()
    } else {
        record.client_id.clone()
    };
    let principal = Principal {
        provider_id: record.id.clone(),
        client_id: client_id.clone(),
        subject: client_id,
        scopes: record.scopes.clone(),
        auth_method: record.auth_method.clone(),
        attributes: RVec::new(),
    };
    let mut body = String::from("grant_type=client_credentials");
    if let Some(scope) = scope {
        body.push_str("&scope=");
        body.push_str(&scope.replace(' ', "+"));
    }
    let now = time::OffsetDateTime::now_utc();
    let req = Request::new("POST", "")
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(body)
        .with_time((now.unix_timestamp_nanos() / 1_000_000) as i64)
        .with_error_style(ErrorStyle::OAuth);
    let caller = Caller {
        principal: ROption::RSome(&principal),
        provider: ROption::RSome(&**record),
    };
    match endpoint.handle(&req, caller) {
        RResult::ROk(resp) => {
            let value: serde_json::Value = serde_json::from_slice(&resp.body)
                .map_err(|e| format!("the token stage answered with non-JSON ({e})"))?;
            if resp.status == 200 {
                Ok(value)
            } else {
                Err(format!(
                    "the token stage refused ({}): {value}",
                    resp.status
                ))
            }
        }
        RResult::RErr(e) => Err(format!("the token stage refused: {e}")),
    }
}
