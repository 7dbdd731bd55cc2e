//! Generated-input properties of the config loader: whatever the text,
//! `parse_partial` answers a config or located diagnostics, and rendering
//! them never panics. Inputs are arbitrary text and mutations of a valid
//! configuration (the near-misses an operator writes). `SCIMGATE_PROPTEST_CASES`
//! sets the case count (default 256) for a longer run.

use std::path::PathBuf;

use proptest::prelude::*;
use scimgate_host::config::{parse_partial, render_diagnostics, SourceFile};

const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "data"
trusted_proxies = ["10.0.0.0/8"]
max_body_size = "2MiB"
request_timeout = "30s"

[stage.bearer]
use = "oauth2/bearer"

[stage.scim]
use = "scim-server/scim"
store = "sqlite:${DATA:-scim.db}"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "scim"]

[[provider]]
id = "oim"
name = "One Identity Manager"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim"
client_secret_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
valid_from = 2026-01-01T00:00:00Z
allowed_ips = ["10.1.0.0/16"]
"#;

fn cases() -> u32 {
    std::env::var("SCIMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn load(text: String) {
    let source = SourceFile {
        path: PathBuf::from("generated.toml"),
        text,
    };
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    match parse_partial(source.clone(), &env) {
        Ok((config, diags)) => {
            let _ = render_diagnostics(&config.source, &diags);
        }
        Err((source, diags)) => {
            assert!(!diags.is_empty(), "an error comes with a diagnostic");
            let _ = render_diagnostics(&source, &diags);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        load(text);
    }

    #[test]
    fn mutated_configs_never_panic(
        cuts in prop::collection::vec((0usize..VALID.len(), 0usize..8, "[\\]\\[{}\"=,.$\n a-z0-9:/*-]{0,6}"), 1..4),
    ) {
        let mut text = VALID.to_string();
        for (at, len, insert) in cuts {
            let mut start = at.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(start..end, &insert);
        }
        load(text);
    }
}

#[test]
fn the_unmutated_config_loads_without_errors() {
    let source = SourceFile {
        path: PathBuf::from("valid.toml"),
        text: VALID.to_string(),
    };
    let (_, diags) = parse_partial(source, &|_: &str| None).expect("valid config");
    assert!(
        diags.is_empty(),
        "the base of the mutations must be valid: {diags:?}"
    );
}
