//! `[stage.NAME]` tables and `[[route]]` entries, and how they refer to each other.

use std::collections::HashMap;

use super::check::{did_you_mean, span_or_empty, Checker};
use super::diagnostic::Diagnostic;
use super::tree::Table;
use super::{ProviderConfig, RouteConfig, StageConfig};

/// Every `[stage.NAME]`, in file order. Stage tables are free-form (plugins
/// check them); only `use = "library/component"` is required.
pub(crate) fn stages(ck: &mut Checker, table: &Table) -> Vec<StageConfig> {
    let mut out = Vec::new();
    for entry in &table.entries {
        let name = &entry.key;
        if !is_stage_name(name) {
            ck.push(
                Diagnostic::error(
                    format!("invalid stage name `{name}`"),
                    entry.key_span.clone(),
                )
                .with_label("use letters, digits, `_` and `-`"),
            );
        }
        let path = format!("stage.{name}");
        let Some(stage) = ck.table(&entry.val, &path) else {
            continue;
        };
        let header_span = stage
            .header_span
            .clone()
            .or_else(|| entry.key_span.clone())
            .unwrap_or(0..0);
        let Some((text, val)) = ck.req_str(stage, "use", &path) else {
            continue;
        };
        let Some((library, component)) = text
            .split_once('/')
            .filter(|(l, c)| is_component_part(l) && is_component_part(c))
        else {
            ck.push(
                Diagnostic::error(
                    format!("invalid `use` {} in [{path}]", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected \"library/component\"")
                .with_help("both parts use a-z, 0-9, `_` and `-`, e.g. use = \"oauth2/bearer\""),
            );
            continue;
        };
        let mut config = serde_json::Map::new();
        for e in stage.entries.iter().filter(|e| e.key != "use") {
            config.insert(e.key.clone(), e.val.to_json(&mut ck.diags));
        }
        out.push(StageConfig {
            name: name.clone(),
            library: library.to_string(),
            component: component.to_string(),
            config: serde_json::Value::Object(config),
            span: span_or_empty(&val.span),
            header_span,
        });
    }
    out
}

/// One `[[route]]`.
pub(crate) fn route(ck: &mut Checker, table: &Table) -> Option<RouteConfig> {
    ck.unknown_keys(
        table,
        "route",
        &["path", "pipeline", "anonymous", "providers"],
    );
    let path = ck.req_str(table, "path", "route");
    if let Some((text, val)) = path {
        if let Err(why) = check_route_path(text) {
            ck.push(
                Diagnostic::error(
                    format!("invalid route path {}", val.shown()),
                    val.span.clone(),
                )
                .with_label(why)
                .with_help("e.g. path = \"/iso/scim/v2\""),
            );
        }
    }
    let mut pipeline = Vec::new();
    if let Some(entry) = ck.required(table, "pipeline", "route") {
        if let Some(items) = ck.array(&entry.val, "route.pipeline") {
            if items.is_empty() {
                ck.push(
                    Diagnostic::error("empty pipeline", entry.val.span.clone())
                        .with_label("a route needs at least one stage")
                        .with_help("list stage names, ending with an endpoint, e.g. [\"bearer\", \"scim\"]"),
                );
            }
        }
        for (name, val) in ck.str_array(&entry.val, "route.pipeline") {
            pipeline.push((name.to_string(), span_or_empty(&val.span)));
        }
    }
    let anonymous = match table.get("anonymous") {
        Some(entry) => ck.bool(&entry.val, "route.anonymous").unwrap_or(false),
        None => false,
    };
    let providers = table.get("providers").map(|entry| {
        let ids: Vec<(String, std::ops::Range<usize>)> = ck
            .str_array(&entry.val, "route.providers")
            .into_iter()
            .map(|(id, val)| (id.to_string(), span_or_empty(&val.span)))
            .collect();
        if ids.is_empty() && matches!(entry.val.kind, super::tree::Kind::Array(_)) {
            ck.push(
                Diagnostic::error("empty `providers` list", entry.val.span.clone())
                    .with_label("this route would refuse every provider")
                    .with_help(
                        "list the provider ids this route serves, or remove `providers` to serve every registered provider",
                    ),
            );
        }
        if anonymous {
            ck.push(
                Diagnostic::error(
                    "`providers` on a route with `anonymous = true`",
                    entry.key_span.clone(),
                )
                .with_label("an anonymous route has no provider to check")
                .with_help("remove `providers`, or authenticate the route and drop `anonymous = true`"),
            );
        }
        ids
    });
    let (path, val) = path?;
    Some(RouteConfig {
        path: path.to_string(),
        pipeline,
        anonymous,
        providers,
        span: span_or_empty(&val.span),
    })
}

/// Duplicate paths and pipelines naming stages that do not exist.
pub(crate) fn check_routes(ck: &mut Checker, routes: &[RouteConfig], names: &[&str]) {
    let mut seen: HashMap<&str, &RouteConfig> = HashMap::new();
    for route in routes {
        if let Some(first) = seen.get(route.path.as_str()) {
            ck.push(
                Diagnostic::error(
                    format!("duplicate route path `{}`", route.path),
                    Some(route.span.clone()),
                )
                .with_label("defined again here")
                .with_help(format!(
                    "first defined on line {}; merge the two pipelines or change one path",
                    ck.line_of(first.span.start)
                )),
            );
        } else {
            seen.insert(&route.path, route);
        }
        for (name, span) in &route.pipeline {
            if names.contains(&name.as_str()) {
                continue;
            }
            let defined = if names.is_empty() {
                "no stages are defined; add a [stage.NAME] table with use = \"library/component\""
                    .to_string()
            } else {
                format!("defined stages: {}", names.join(", "))
            };
            let help = match did_you_mean(name, names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? {defined}"),
                None => defined,
            };
            ck.push(
                Diagnostic::error(
                    format!("unknown stage `{name}` in pipeline"),
                    Some(span.clone()),
                )
                .with_label(format!("no [stage.{name}] table"))
                .with_help(help),
            );
        }
    }
}

/// Every id in a route's `providers` names a `[[provider]]`.
pub(crate) fn check_route_providers(
    ck: &mut Checker,
    routes: &[RouteConfig],
    providers: &[ProviderConfig],
) {
    let known: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    for route in routes {
        let mut seen: Vec<&str> = Vec::new();
        for (id, span) in route.providers.iter().flatten() {
            if seen.contains(&id.as_str()) {
                ck.push(
                    Diagnostic::error(
                        format!("provider `{id}` is listed twice in route `{}`", route.path),
                        Some(span.clone()),
                    )
                    .with_label("listed again here"),
                );
                continue;
            }
            seen.push(id);
            if known.contains(&id.as_str()) {
                continue;
            }
            let defined = if known.is_empty() {
                "no providers are registered; add a [[provider]] with this id".to_string()
            } else {
                format!("registered providers: {}", known.join(", "))
            };
            let help = match did_you_mean(id, known.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? {defined}"),
                None => defined,
            };
            ck.push(
                Diagnostic::error(
                    format!("unknown provider `{id}` in route `{}`", route.path),
                    Some(span.clone()),
                )
                .with_label("no [[provider]] has this id")
                .with_help(help),
            );
        }
    }
}

/// Starts with `/`, no trailing `/` unless `/`, no `?`, `#`, `//`, spaces,
/// and already in the one canonical form request paths are brought to
/// (`scimgate_abi::path::canonicalize`): a mount that is not could never
/// match, or would match something else than it reads.
fn check_route_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with `/`");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("must not end with `/`");
    }
    if path.contains(['?', '#']) {
        return Err("must not contain `?` or `#`");
    }
    if path.contains("//") {
        return Err("must not contain an empty segment `//`");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    if path != "/" && scimgate_abi::path::canonicalize(path).as_deref() != Ok(path) {
        return Err("must be in canonical form: no `.`/`..` segments, no percent-escapes, no `\\`");
    }
    Ok(())
}

fn is_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_component_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths() {
        assert!(check_route_path("/").is_ok());
        assert!(check_route_path("/iso/scim/v2").is_ok());
        assert!(check_route_path("iso").is_err());
        assert!(check_route_path("/iso/").is_err());
        assert!(check_route_path("/a?b").is_err());
        assert!(check_route_path("/a#b").is_err());
        assert!(check_route_path("/a//b").is_err());
        assert!(check_route_path("/a b").is_err());
        assert!(check_route_path("/a/./b").is_err());
        assert!(check_route_path("/a/../b").is_err());
        assert!(check_route_path("/scim%2Fv2").is_err());
        assert!(check_route_path("/scim%41").is_err());
        assert!(check_route_path("/a\\b").is_err());
        assert!(check_route_path("/a/b-c_d~e").is_ok());
    }

    #[test]
    fn names() {
        assert!(is_component_part("scim-server"));
        assert!(!is_component_part("Scim"));
        assert!(!is_component_part(""));
        assert!(is_stage_name("client-auth"));
        assert!(!is_stage_name("a.b"));
    }
}
