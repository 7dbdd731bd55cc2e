//! `scimgate changes status|replay|skip`: the operator's side of the change
//! feed's webhook delivery (docs/changes.md, "Operating"). It calls the SCIM
//! route's operations API — `GET <base>/Changes/Subscribers` and
//! `POST <base>/Changes/Subscribers/NAME` — with a bearer token read from a
//! file or fetched by client credentials, prints the subscribers' state as a
//! table, and exits 0 (done), 1 (the service refused or could not be
//! reached; its SCIM `detail` is printed) or 2 (a usage error). Tokens and
//! secrets are never printed. The HTTP client, TLS trust and the causes in
//! words are `check-connection`'s.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::check_connection::{
    build_agent, derive_token_url, judge_scim, judge_token, mask, read_secret_file, request_token,
    tls_trusting, Exchange,
};

/// Where the operations API is and how to authenticate to it.
#[derive(clap::Args, Debug, Clone)]
#[command(group(
    clap::ArgGroup::new("credentials")
        .required(true)
        .args(["token_file", "client_id"])
))]
pub struct ServiceArgs {
    /// The SCIM base URL, e.g. https://gateway.example.com/iso/scim/v2.
    pub url: String,
    /// A file holding a bearer token carrying the scope
    /// `scim:changes:admin` (one trailing newline is ignored).
    #[arg(long, conflicts_with_all = ["client_id", "client_secret_file", "token_url", "scope"])]
    pub token_file: Option<PathBuf>,
    /// Get a token by client credentials as this OAuth2 client instead.
    #[arg(long, requires = "client_secret_file")]
    pub client_id: Option<String>,
    /// A file holding the client secret (with --client-id).
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// The token endpoint (default: URL with its trailing `/scim/v2`
    /// replaced by `/oauth2/token`).
    #[arg(long, requires = "client_id")]
    pub token_url: Option<String>,
    /// Space-separated scopes to ask for (default: none, the client's own).
    #[arg(long, requires = "client_id")]
    pub scope: Option<String>,
    /// Time allowed for each request, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = scimgate_abi::units::parse_duration)]
    pub timeout: Duration,
    /// A PEM file of CA certificates to trust for https instead of the
    /// public roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// `scimgate changes …`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ChangesCommand {
    /// Print each webhook subscriber's delivery state: acknowledged and
    /// newest seq, lag, attempts, next attempt, last error.
    Status {
        #[command(flatten)]
        service: ServiceArgs,
        /// Print this subscriber only (exit 1 when there is none by that name).
        #[arg(long)]
        subscriber: Option<String>,
    },
    /// Deliver again every change from seq SEQ on to subscriber NAME;
    /// clears a dead letter and a pending retry.
    Replay {
        #[command(flatten)]
        service: ServiceArgs,
        /// The subscriber's name.
        name: String,
        /// The first seq delivered again.
        #[arg(long, value_name = "SEQ")]
        from: u64,
    },
    /// Pass over subscriber NAME's head change (dead-lettered or being
    /// retried) and resume with the next.
    Skip {
        #[command(flatten)]
        service: ServiceArgs,
        /// The subscriber's name.
        name: String,
    },
}

/// Why the command did not succeed: the exit status and the message.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn refused(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// The command: call the service, print, exit 0 / 1 / 2.
pub fn run(command: ChangesCommand) -> ExitCode {
    let mut secrets = Vec::new();
    let result = execute(&command, &mut secrets);
    // Belt and braces: nothing echoed by the service may show a secret.
    let hide = |text: &str| {
        secrets
            .iter()
            .fold(text.to_string(), |text, secret| mask(&text, secret))
    };
    match result {
        Ok(text) => {
            print!("{}", hide(&text));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {}", hide(&failure.message));
            ExitCode::from(failure.code)
        }
    }
}

/// The command's output, or why it failed. `secrets` collects what must not
/// be printed (the token, the client secret).
fn execute(command: &ChangesCommand, secrets: &mut Vec<String>) -> Result<String, Failure> {
    let service = match command {
        ChangesCommand::Status { service, .. }
        | ChangesCommand::Replay { service, .. }
        | ChangesCommand::Skip { service, .. } => service,
    };
    let base = service.url.trim_end_matches('/').to_string();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(usage(format!(
            "the SCIM base URL `{base}` is not an http:// or https:// URL"
        )));
    }
    let tls = service
        .ca_file
        .as_deref()
        .map(tls_trusting)
        .transpose()
        .map_err(usage)?;
    let timeout_text = scimgate_abi::units::format_duration(service.timeout);
    let agent = build_agent(
        service.timeout,
        tls,
        concat!("scimgate-changes/", env!("CARGO_PKG_VERSION")),
    );
    let token = match (&service.token_file, &service.client_id) {
        (Some(file), _) => {
            let token = read_secret_file(file, "token").map_err(usage)?;
            let token = token.trim().to_string();
            secrets.push(token.clone());
            token
        }
        (None, Some(client_id)) => {
            // clap requires the secret file with --client-id.
            let file = service
                .client_secret_file
                .as_deref()
                .ok_or_else(|| usage("--client-id needs --client-secret-file"))?;
            let secret = read_secret_file(file, "client secret").map_err(usage)?;
            secrets.push(secret.clone());
            let token_url = match &service.token_url {
                Some(url) => url.clone(),
                None => derive_token_url(&base).ok_or_else(|| {
                    usage(format!(
                        "cannot derive the token URL from {base} (it does not end in /scim/v2); pass --token-url"
                    ))
                })?,
            };
            let exchange = request_token(
                &agent,
                &token_url,
                (client_id, &secret),
                service.scope.as_deref(),
                &timeout_text,
            );
            let (_, verdict, token) = judge_token(&exchange);
            match (verdict, token) {
                (Ok(_), Some(token)) => {
                    secrets.push(token.clone());
                    token
                }
                (Err(cause), _) => {
                    return Err(refused(format!("no token from {token_url}: {cause}")))
                }
                (Ok(_), None) => return Err(refused(format!("no token from {token_url}"))),
            }
        }
        (None, None) => return Err(usage("pass --token-file or --client-id")),
    };
    let list_url = format!("{base}/Changes/Subscribers");
    match command {
        ChangesCommand::Status { subscriber, .. } => {
            let sent = agent
                .get(&list_url)
                .set("authorization", &format!("Bearer {token}"))
                .set("accept", "application/scim+json, application/json")
                .call();
            let json = answered_json(
                &crate::check_connection::answer(sent, &list_url, &timeout_text),
                &list_url,
            )?;
            let Some(list) = json["subscribers"].as_array() else {
                return Err(refused(format!(
                    "GET {list_url}: the answer has no `subscribers` array"
                )));
            };
            match subscriber {
                None if list.is_empty() => Ok(format!("no change-feed subscribers at {base}\n")),
                None => Ok(render_table(list)),
                Some(name) => match list.iter().find(|s| s["name"].as_str() == Some(name)) {
                    Some(one) => Ok(render_table(std::slice::from_ref(one))),
                    None => Err(refused(format!(
                        "no subscriber named `{}` at {base} (configured: {})",
                        clean(name),
                        names(list)
                    ))),
                },
            }
        }
        ChangesCommand::Replay { name, from, .. } => {
            let body = serde_json::json!({"action": "replay", "from": from});
            let json = act(&agent, &list_url, name, &body, &token, &timeout_text)?;
            Ok(format!(
                "replay of `{}` from seq {from} accepted; now:\n{}",
                clean(name),
                render_table(std::slice::from_ref(&json))
            ))
        }
        ChangesCommand::Skip { name, .. } => {
            let body = serde_json::json!({"action": "skip"});
            let json = act(&agent, &list_url, name, &body, &token, &timeout_text)?;
            Ok(format!(
                "skip of `{}` accepted; now:\n{}",
                clean(name),
                render_table(std::slice::from_ref(&json))
            ))
        }
    }
}

/// `POST <list_url>/NAME` with `body`: the subscriber's new status.
fn act(
    agent: &ureq::Agent,
    list_url: &str,
    name: &str,
    body: &Value,
    token: &str,
    timeout_text: &str,
) -> Result<Value, Failure> {
    let url = format!("{list_url}/{}", path_segment(name));
    let sent = agent
        .post(&url)
        .set("authorization", &format!("Bearer {token}"))
        .set("accept", "application/scim+json, application/json")
        .set("content-type", "application/scim+json")
        .send_string(&body.to_string());
    let json = answered_json(
        &crate::check_connection::answer(sent, &url, timeout_text),
        &url,
    )?;
    if !json.is_object() {
        return Err(refused(format!(
            "POST {url}: the answer is not a subscriber's status"
        )));
    }
    Ok(json)
}

/// The JSON body of a 2xx answer; otherwise the failure in words (the SCIM
/// error's `detail`, or why there was no answer).
fn answered_json(exchange: &Exchange, url: &str) -> Result<Value, Failure> {
    let (_, verdict) = judge_scim(exchange, |_| Ok(String::new()));
    if let Err(cause) = verdict {
        return Err(refused(format!("{url}: {cause}")));
    }
    match exchange {
        Exchange::Answered { body, .. } => serde_json::from_str(body)
            .map_err(|_| refused(format!("{url}: the answer is not JSON"))),
        Exchange::Failed(cause) => Err(refused(format!("{url}: {cause}"))),
    }
}

/// A subscriber name as one path segment: RFC 3986 unreserved characters
/// as they are, every other byte percent-encoded.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Text from the service for the terminal: control characters (a
/// receiver's error could hold escape sequences) become spaces; cut to
/// `max` characters.
fn clean_cut(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

fn clean(text: &str) -> String {
    clean_cut(text, 200)
}

/// The configured names, for a "no such subscriber" message.
fn names(list: &[Value]) -> String {
    let names: Vec<String> = list
        .iter()
        .filter_map(|s| s["name"].as_str())
        .map(clean)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A number field, `-` when absent or null.
fn number(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => clean(s),
        _ => "-".to_string(),
    }
}

/// `nextAttemptAt`: Unix milliseconds (shown as UTC RFC 3339, to the
/// second), a text as it is, `-` when there is none.
fn next_attempt(value: &Value) -> String {
    match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| n.to_string()),
        Value::String(s) if !s.is_empty() => clean(s),
        _ => "-".to_string(),
    }
}

/// `active`, or `dead-lettered at SEQ` when the service names the seq.
fn state(subscriber: &Value) -> String {
    let state = subscriber["state"].as_str().map_or("-".to_string(), clean);
    match &subscriber["deadSeq"] {
        Value::Number(seq) if state == "dead-lettered" || state == "deadLettered" => {
            format!("{state} at {seq}")
        }
        _ => state,
    }
}

const HEADINGS: [&str; 8] = [
    "NAME",
    "STATE",
    "ACKED",
    "NEWEST",
    "LAG",
    "ATTEMPTS",
    "NEXT ATTEMPT",
    "LAST ERROR",
];

/// The subscribers as a table, one line each, columns aligned (numbers to
/// the right); the last error is the last column, cut to 160 characters.
fn render_table(subscribers: &[Value]) -> String {
    let rows: Vec<[String; 8]> = subscribers
        .iter()
        .map(|s| {
            [
                s["name"].as_str().map_or("-".to_string(), clean),
                state(s),
                number(&s["ackedSeq"]),
                number(&s["newestSeq"]),
                number(&s["lag"]),
                number(&s["attempts"]),
                next_attempt(&s["nextAttemptAt"]),
                match s["lastError"].as_str() {
                    Some(e) if !e.is_empty() => clean_cut(e, 160),
                    _ => "-".to_string(),
                },
            ]
        })
        .collect();
    let mut widths = HEADINGS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            // Numbers (acked, newest, lag, attempts) to the right.
            if (2..=5).contains(&i) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &HEADINGS);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: ChangesCommand,
    }

    fn parse(args: &[&str]) -> Result<ChangesCommand, clap::error::ErrorKind> {
        Cli::try_parse_from(std::iter::once("changes").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|e| e.kind())
    }

    const URL: &str = "https://gw.example.com/iso/scim/v2";

    #[test]
    fn arguments_name_the_service_the_subscriber_and_one_way_to_authenticate() {
        match parse(&["replay", URL, "iga", "--from", "42", "--token-file", "t"]).unwrap() {
            ChangesCommand::Replay {
                service,
                name,
                from,
            } => {
                assert_eq!(service.url, URL);
                assert_eq!(name, "iga");
                assert_eq!(from, 42);
                assert_eq!(service.token_file, Some(PathBuf::from("t")));
                assert_eq!(service.timeout, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "status",
            URL,
            "--client-id",
            "ops",
            "--client-secret-file",
            "s",
            "--subscriber",
            "iga",
            "--timeout",
            "500ms",
        ])
        .unwrap()
        {
            ChangesCommand::Status {
                service,
                subscriber,
            } => {
                assert_eq!(service.client_id.as_deref(), Some("ops"));
                assert_eq!(subscriber.as_deref(), Some("iga"));
                assert_eq!(service.timeout, Duration::from_millis(500));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["skip", URL, "iga", "--token-file", "t"]),
            Ok(ChangesCommand::Skip { .. })
        ));

        use clap::error::ErrorKind;
        // No credentials, or two kinds at once.
        assert_eq!(
            parse(&["status", URL]).unwrap_err(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["status", URL, "--token-file", "t", "--client-id", "ops"]).unwrap_err(),
            ErrorKind::ArgumentConflict
        );
        // A client id without its secret, a token URL without a client.
        assert_eq!(
            parse(&["status", URL, "--client-id", "ops"]).unwrap_err(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&[
                "status",
                URL,
                "--token-file",
                "t",
                "--token-url",
                "https://x/token"
            ])
            .unwrap_err(),
            ErrorKind::ArgumentConflict
        );
        // replay needs --from, a number; skip needs a name.
        assert_eq!(
            parse(&["replay", URL, "iga", "--token-file", "t"]).unwrap_err(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["replay", URL, "iga", "--from", "ten", "--token-file", "t"]).unwrap_err(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["skip", URL, "--token-file", "t"]).unwrap_err(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["status", URL, "--token-file", "t", "--timeout", "soon"]).unwrap_err(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn local_problems_are_usage_errors_and_name_files_not_secrets() {
        let dir = std::env::temp_dir().join(format!("scimgate-changes-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "hunter2\n").unwrap();
        let run = |args: &[&str]| {
            let command = parse(args).unwrap();
            execute(&command, &mut Vec::new()).unwrap_err()
        };

        let failure = run(&["status", URL, "--token-file", "/nonexistent/token"]);
        assert_eq!(failure.code, 2);
        assert!(
            failure
                .message
                .starts_with("cannot read the token file /nonexistent/token"),
            "{failure:?}"
        );

        let failure = run(&["status", URL, "--token-file", empty.to_str().unwrap()]);
        assert_eq!(failure.code, 2);
        assert!(failure.message.contains("is empty"), "{failure:?}");

        let failure = run(&["status", "gw.example.com/scim/v2", "--token-file", "t"]);
        assert_eq!(failure.code, 2);
        assert!(
            failure.message.contains("not an http:// or https:// URL"),
            "{failure:?}"
        );

        let secret = secret.to_str().unwrap();
        let failure = run(&[
            "status",
            "https://gw.example.com/api",
            "--client-id",
            "ops",
            "--client-secret-file",
            secret,
        ]);
        assert_eq!(failure.code, 2);
        assert!(
            failure.message.contains("cannot derive the token URL"),
            "{failure:?}"
        );
        assert!(!failure.message.contains("hunter2"), "{failure:?}");

        let failure = run(&[
            "status",
            URL,
            "--token-file",
            secret,
            "--ca-file",
            "/nonexistent/ca.pem",
        ]);
        assert_eq!(failure.code, 2);
        assert!(
            failure.message.contains("cannot read the CA file"),
            "{failure:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_status_table_aligns_columns_and_shows_dead_letters() {
        let list = serde_json::json!([
            {"name": "iga", "state": "active", "ackedSeq": 41, "newestSeq": 43, "lag": 2,
             "attempts": 0, "nextAttemptAt": null, "deadSeq": null, "lastError": null},
            {"name": "audit-archive", "state": "dead-lettered", "ackedSeq": 7, "newestSeq": 43,
             "lag": 36, "attempts": 10, "nextAttemptAt": 1764775200000u64, "deadSeq": 8,
             "lastError": "503 from https://audit.example.com/events\u{1b}[31m"}
        ]);
        let text = render_table(list.as_array().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME           STATE               ACKED  NEWEST  LAG  ATTEMPTS  NEXT ATTEMPT          LAST ERROR",
                "iga            active                 41      43    2         0  -                     -",
                "audit-archive  dead-lettered at 8      7      43   36        10  2025-12-03T15:20:00Z  503 from https://audit.example.com/events [31m",
            ],
            "{text}"
        );
    }

    #[test]
    fn cells_are_cut_and_missing_fields_shown_as_dashes() {
        let long = "x".repeat(300);
        let list =
            serde_json::json!([{"name": "n\nm", "lastError": long, "nextAttemptAt": "soon"}]);
        let text = render_table(list.as_array().unwrap());
        let row = text.lines().nth(1).unwrap();
        assert!(row.starts_with("n m   -      "), "{row}");
        assert!(row.contains("soon"), "{row}");
        assert!(row.ends_with(&format!("{}…", "x".repeat(160))), "{row}");
        assert_eq!(path_segment("iga"), "iga");
        assert_eq!(path_segment("a b/c%"), "a%20b%2Fc%25");
    }
}
