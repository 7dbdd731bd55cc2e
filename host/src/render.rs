//! Renders rejections and errors in the route's style: a SCIM error body
//! (RFC 7644 §3.12) on SCIM routes, an RFC 6749 §5.2 body on token routes.
//! Internal errors (5xx) never show plugin internals to the client; the
//! full message goes to the log with the request id.

use scimgate_abi::{ErrorStyle, Header, PluginError, Response};
use serde_json::json;

pub const SCIM_ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// The response for an error, in the given style.
pub fn error_response(style: ErrorStyle, error: &PluginError, request_id: &str) -> Response {
    let detail = if error.status >= 500 {
        format!("internal error (request id {request_id}); the server log has the details")
    } else {
        error.message.to_string()
    };
    let mut resp = match style {
        ErrorStyle::Scim => {
            let mut body = json!({
                "schemas": [SCIM_ERROR_URN],
                "status": error.status.to_string(),
                "detail": detail,
            });
            if let Some(code) = error.code() {
                if error.status < 500 {
                    body["scimType"] = json!(code);
                }
            }
            Response::json(error.status, SCIM_CONTENT_TYPE, &body)
        }
        ErrorStyle::OAuth => {
            let code = match error.code() {
                Some(code) if error.status < 500 => code.to_string(),
                _ => default_oauth_code(error.status).to_string(),
            };
            let body = json!({ "error": code, "error_description": detail });
            Response::json(error.status, "application/json", &body)
                .with_header("cache-control", "no-store")
                .with_header("pragma", "no-cache")
        }
    };
    for h in error.headers.iter() {
        resp.headers
            .push(Header::new(h.name.as_str(), h.value.as_str()));
    }
    resp
}

fn default_oauth_code(status: u16) -> &'static str {
    match status {
        401 => "invalid_client",
        403 => "access_denied",
        429 | 503 => "temporarily_unavailable",
        s if s >= 500 => "server_error",
        _ => "invalid_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response) -> serde_json::Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    #[test]
    fn scim_errors_follow_rfc7644() {
        let e = PluginError::new(409, "userName taken").with_code("uniqueness");
        let resp = error_response(ErrorStyle::Scim, &e, "r1");
        assert_eq!(resp.status, 409);
        assert_eq!(resp.header("content-type"), Some(SCIM_CONTENT_TYPE));
        let b = body(&resp);
        assert_eq!(b["schemas"][0], SCIM_ERROR_URN);
        assert_eq!(b["status"], "409");
        assert_eq!(b["scimType"], "uniqueness");
        assert_eq!(b["detail"], "userName taken");
    }

    #[test]
    fn internal_errors_hide_plugin_messages() {
        let e =
            PluginError::internal("component `x` panicked: secret path /etc/x").with_code("panic");
        let b = body(&error_response(ErrorStyle::Scim, &e, "req-9"));
        assert_eq!(b["status"], "500");
        assert!(b.get("scimType").is_none());
        assert!(b["detail"].as_str().unwrap().contains("req-9"));
        assert!(!b["detail"].as_str().unwrap().contains("/etc/x"));
    }

    #[test]
    fn oauth_errors_follow_rfc6749() {
        let e = PluginError::new(401, "no such client")
            .with_header("www-authenticate", "Basic realm=\"scimgate\"");
        let resp = error_response(ErrorStyle::OAuth, &e, "r");
        assert_eq!(body(&resp)["error"], "invalid_client");
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"scimgate\"")
        );
    }
}
