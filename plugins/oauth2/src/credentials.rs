//! Reading credentials off a request: the `Authorization` header (Basic,
//! Bearer) and token-request parameters from a form or JSON body.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use scimgate_abi::{PluginError, Request};
use serde_json::Value;

use crate::errors::oauth;

/// The `Authorization` header split into scheme and credentials, when it
/// uses `scheme` (compared case-insensitively).
pub fn authorization<'a>(req: &'a Request, scheme: &str) -> Option<&'a str> {
    let value = req.header("authorization")?.trim();
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `Authorization: Bearer <token>`, or `None` for any other header.
pub fn bearer_token(req: &Request) -> Option<&str> {
    authorization(req, "bearer")
}

/// Basic credentials, decoded: `Some(Err(()))` when the header says Basic but
/// is not valid Base64 of `user:password`.
pub fn basic_credentials(req: &Request) -> Option<Result<(String, String), ()>> {
    let encoded = authorization(req, "basic")?;
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Some(
        decoded
            .and_then(|text| {
                let (user, password) = text.split_once(':')?;
                Some((user.to_string(), password.to_string()))
            })
            .ok_or(()),
    )
}

/// Token-request parameters (RFC 6749 §3.2: none may repeat).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the body as JSON when the content type says so (or it starts
    /// with `{`), else as `application/x-www-form-urlencoded`.
    pub fn from_body(req: &Request) -> Result<Params, PluginError> {
        let content_type = req
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = req.body.as_slice();
        let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
        let looks_json = trimmed.is_some_and(|i| body[i] == b'{');
        if content_type.starts_with("application/json") || (content_type.is_empty() && looks_json) {
            return Params::from_json(body);
        }
        let text = String::from_utf8_lossy(body);
        Ok(Params(scimgate_abi::sdk::form_decode(&text)))
    }

    fn from_json(body: &[u8]) -> Result<Params, PluginError> {
        let bad = |m: &str| oauth(400, "invalid_request", m.to_string());
        let value: Value =
            serde_json::from_slice(body).map_err(|_| bad("the request body is not valid JSON"))?;
        let Value::Object(map) = value else {
            return Err(bad("the JSON request body must be an object"));
        };
        let mut pairs = Vec::with_capacity(map.len());
        for (key, value) in map {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Array(items) if key == "scope" => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("`scope` must be a string or an array of strings"))?
                    .join(" "),
                Value::Null => continue,
                _ => return Err(bad(&format!("`{key}` must be a string"))),
            };
            pairs.push((key, text));
        }
        Ok(Params(pairs))
    }

    /// The single value of `name`; a repeated parameter is `invalid_request`.
    pub fn get(&self, name: &str) -> Result<Option<&str>, PluginError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(oauth(
                400,
                "invalid_request",
                format!("the parameter `{name}` is repeated"),
            ));
        }
        Ok(first.map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::request;

    #[test]
    fn authorization_scheme_is_case_insensitive() {
        let req = request("GET", &[("authorization", "bEaReR abc.def")], "", 0);
        assert_eq!(bearer_token(&req), Some("abc.def"));
        let req = request("GET", &[("authorization", "Basic Zm9vOmJhcg==")], "", 0);
        assert_eq!(bearer_token(&req), None);
        assert_eq!(
            basic_credentials(&req),
            Some(Ok(("foo".into(), "bar".into())))
        );
        let req = request("GET", &[("authorization", "Basic !!!")], "", 0);
        assert_eq!(basic_credentials(&req), Some(Err(())));
    }

    #[test]
    fn params_from_form_and_json() {
        let req = request(
            "POST",
            &[("content-type", "application/x-www-form-urlencoded")],
            "grant_type=client_credentials&scope=a+b",
            0,
        );
        let p = Params::from_body(&req).unwrap();
        assert_eq!(p.get("scope").unwrap(), Some("a b"));
        let req = request(
            "POST",
            &[("content-type", "application/json")],
            r#"{"grant_type":"client_credentials","scope":["a","b"]}"#,
            0,
        );
        let p = Params::from_body(&req).unwrap();
        assert_eq!(p.get("grant_type").unwrap(), Some("client_credentials"));
        assert_eq!(p.get("scope").unwrap(), Some("a b"));
        let req = request("POST", &[("content-type", "application/json")], "{nope", 0);
        assert_eq!(
            Params::from_body(&req).unwrap_err().code(),
            Some("invalid_request")
        );
        let req = request("POST", &[], "a=1&a=2", 0);
        assert_eq!(
            Params::from_body(&req)
                .unwrap()
                .get("a")
                .unwrap_err()
                .code(),
            Some("invalid_request")
        );
    }

    fn params(content_type: Option<&str>, body: &str) -> Result<Params, PluginError> {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("content-type", c)])
            .unwrap_or_default();
        Params::from_body(&request("POST", &headers, body, 0))
    }

    #[test]
    fn a_body_without_content_type_is_json_when_it_starts_with_a_brace() {
        let p = params(None, " \n\t{\"client_id\": \"a\"}").unwrap();
        assert_eq!(p.get("client_id").unwrap(), Some("a"));
        let p = params(None, "client_id=a&x={").unwrap();
        assert_eq!(p.get("client_id").unwrap(), Some("a"));
        assert!(params(None, "")
            .unwrap()
            .get("client_id")
            .unwrap()
            .is_none());
        // A declared form stays a form whatever it starts with.
        let p = params(Some("application/x-www-form-urlencoded"), "{=1&client_id=c").unwrap();
        assert_eq!(p.get("client_id").unwrap(), Some("c"));
        assert_eq!(p.get("{").unwrap(), Some("1"));
        let p = params(
            Some("Application/JSON; charset=utf-8"),
            r#"{"client_id":"d"}"#,
        )
        .unwrap();
        assert_eq!(p.get("client_id").unwrap(), Some("d"));
    }

    #[test]
    fn json_members_are_strings_numbers_null_or_a_scope_list() {
        let p = params(
            Some("application/json"),
            r#"{"client_id": 123, "client_secret": null, "scope": ["a", "b"], "grant_type": "x"}"#,
        )
        .unwrap();
        assert_eq!(p.get("client_id").unwrap(), Some("123"));
        assert_eq!(p.get("client_secret").unwrap(), None);
        assert_eq!(p.get("scope").unwrap(), Some("a b"));
        assert_eq!(p.get("grant_type").unwrap(), Some("x"));
        for (body, message) in [
            (r#"{"client_id": ["a"]}"#, "`client_id` must be a string"),
            (r#"{"client_id": true}"#, "`client_id` must be a string"),
            (
                r#"{"scope": ["a", 1]}"#,
                "`scope` must be a string or an array of strings",
            ),
            ("[1]", "the JSON request body must be an object"),
            ("{", "the request body is not valid JSON"),
        ] {
            let e = params(Some("application/json"), body).unwrap_err();
            assert_eq!(
                (e.status, e.code()),
                (400, Some("invalid_request")),
                "{body}"
            );
            assert_eq!(e.message.as_str(), message, "{body}");
        }
    }

    #[test]
    fn authorization_needs_a_scheme_and_a_space() {
        let with = |value: &str| request("GET", &[("authorization", value)], "", 0);
        assert_eq!(bearer_token(&with("Bearer  tok ")), Some("tok"));
        assert_eq!(bearer_token(&with("Bearertok")), None);
        assert_eq!(bearer_token(&with("Bearer")), None);
        assert_eq!(authorization(&with("Basic abc"), "basic"), Some("abc"));
        assert_eq!(authorization(&with("Basic abc"), "bearer"), None);
        assert_eq!(bearer_token(&request("GET", &[], "", 0)), None);
        // Unpadded Base64 is accepted; no colon means no user:password.
        let b64 = |t: &str| format!("Basic {}", STANDARD_NO_PAD.encode(t));
        assert_eq!(
            basic_credentials(&with(&b64("u:p:q"))),
            Some(Ok(("u".into(), "p:q".into())))
        );
        assert_eq!(
            basic_credentials(&with(&b64(":"))),
            Some(Ok((String::new(), String::new())))
        );
        assert_eq!(basic_credentials(&with(&b64("nocolon"))), Some(Err(())));
        assert_eq!(basic_credentials(&with("Bearer x")), None);
    }
}
