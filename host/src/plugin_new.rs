//! `scimgate plugin new NAME --kind KIND`: writes a ready plugin crate (a
//! `cdylib` against `scimgate-abi` by path, its own `[workspace]`, the
//! release profile plugins need), one working component of the kind with a
//! typed config, unit tests on `scimgate_abi::testing`, a `scimgate.toml`
//! that runs it on a route, and a README. The templates live in
//! `host/templates/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

/// `scimgate plugin …`.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin crate with one working component of a kind, its
    /// unit tests and a configuration that runs it.
    New {
        /// The library's name: lower-case letters, digits and `-`, starting
        /// with a letter (stages then say `use = "NAME/…"`).
        name: String,
        /// The kind of component to start from.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Folder to create (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The `core/abi` folder of a scimgate source tree (default: the one
        /// this scimgate was built from).
        #[arg(long)]
        abi_path: Option<PathBuf>,
    },
}

/// The component kinds a crate can start from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Kind {
    Policy,
    Authenticator,
    Profile,
    Endpoint,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::Authenticator => "authenticator",
            Kind::Profile => "profile",
            Kind::Endpoint => "endpoint",
        }
    }
}

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.tmpl");
const README: &str = include_str!("../templates/README.md.tmpl");
const ECHO: &str = include_str!("../templates/echo.rs.tmpl");
const POLICY_RS: &str = include_str!("../templates/policy.rs.tmpl");
const POLICY_TOML: &str = include_str!("../templates/policy.toml.tmpl");
const AUTHENTICATOR_RS: &str = include_str!("../templates/authenticator.rs.tmpl");
const AUTHENTICATOR_TOML: &str = include_str!("../templates/authenticator.toml.tmpl");
const PROFILE_RS: &str = include_str!("../templates/profile.rs.tmpl");
const PROFILE_TOML: &str = include_str!("../templates/profile.toml.tmpl");
const ENDPOINT_RS: &str = include_str!("../templates/endpoint.rs.tmpl");
const ENDPOINT_TOML: &str = include_str!("../templates/endpoint.toml.tmpl");

/// The `core/abi` of the source tree this binary was built from.
const DEFAULT_ABI_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/abi");

/// Runs a `scimgate plugin` command.
pub fn run(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::New {
            name,
            kind,
            dir,
            abi_path,
        } => match new_plugin(&name, kind, dir, abi_path) {
            Ok(created) => {
                print!("{}", created.summary());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// What `new_plugin` wrote.
pub struct Created {
    pub dir: PathBuf,
    pub name: String,
    pub kind: Kind,
    pub files: Vec<&'static str>,
    /// The authenticator template's API key (only its hash is written).
    pub api_key: Option<String>,
}

impl Created {
    fn summary(&self) -> String {
        let mut out = format!(
            "Created plugin `{}` ({} template) in {}:\n",
            self.name,
            self.kind.as_str(),
            self.dir.display()
        );
        for file in &self.files {
            out.push_str(&format!("  {file}\n"));
        }
        if let Some(key) = &self.api_key {
            out.push_str(&format!(
                "API key of provider `example-iga` (shown only now; scimgate.toml keeps its hash): {key}\n"
            ));
        }
        out.push_str(&format!(
            "Next: cd {} && cargo test && cargo build --release && scimgate serve --config scimgate.toml\n",
            self.dir.display()
        ));
        out
    }
}

/// Checks a library name: lower-case ASCII letters, digits and single `-`
/// between them, starting with a letter, at most 64 characters, and not a
/// name Rust or Cargo keeps for itself. `-` becomes `_` in the file name
/// (`libmy_policy.so`), which scimgate maps back, so `_` is not allowed.
pub fn check_name(name: &str) -> Result<(), String> {
    let rules = "a plugin name is lower-case ASCII letters, digits and `-` (between them), \
                 starting with a letter, at most 64 characters, e.g. `acme-policy`";
    if name.is_empty() || name.len() > 64 {
        return Err(format!("`{name}` is not a valid plugin name: {rules}"));
    }
    let first_ok = name.starts_with(|c: char| c.is_ascii_lowercase());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !chars_ok || name.ends_with('-') || name.contains("--") {
        return Err(format!("`{name}` is not a valid plugin name: {rules}"));
    }
    const RESERVED: &[&str] = &[
        "as",
        "async",
        "await",
        "break",
        "const",
        "continue",
        "crate",
        "dyn",
        "else",
        "enum",
        "extern",
        "false",
        "fn",
        "for",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "match",
        "mod",
        "move",
        "mut",
        "pub",
        "ref",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "trait",
        "true",
        "type",
        "unsafe",
        "use",
        "where",
        "while",
        "abstract",
        "become",
        "box",
        "do",
        "final",
        "macro",
        "override",
        "priv",
        "typeof",
        "unsized",
        "virtual",
        "yield",
        "try",
        "gen",
        "std",
        "core",
        "alloc",
        "proc-macro",
        "test",
        "build",
        "deps",
        "examples",
        "incremental",
        "scimgate",
        "scimgate-abi",
    ];
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is not a valid plugin name: Rust or Cargo keeps it for itself; pick another"
        ));
    }
    Ok(())
}

/// A TOML basic string's contents.
fn toml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The ABI crate to depend on: absolute, and really `scimgate-abi`.
fn resolve_abi_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let (path, from) = match given {
        Some(path) => (path, "--abi-path"),
        None => (
            PathBuf::from(DEFAULT_ABI_PATH),
            "the source tree this scimgate was built from",
        ),
    };
    let manifest = path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "cannot read {} ({e}): the `scimgate-abi` crate of {from} is not there. Pass \
             `--abi-path` with the `core/abi` folder of a scimgate source tree.",
            manifest.display()
        )
    })?;
    let is_abi = text.lines().any(|line| {
        let line = line.trim();
        line.starts_with("name") && line.contains("\"scimgate-abi\"")
    });
    if !is_abi {
        return Err(format!(
            "{} is not the manifest of `scimgate-abi`. Pass `--abi-path` with the `core/abi` folder \
             of a scimgate source tree.",
            manifest.display()
        ));
    }
    path.canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// Refuses a folder that exists and is not empty (or is a file).
fn check_target(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty; scimgate overwrites nothing. Pick another `--dir` \
                     or remove it.",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => Err(format!(
            "{} exists and is not a folder; scimgate overwrites nothing.",
            dir.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", dir.display())),
    }
}

/// The files of a crate, by relative path (nothing written yet).
pub fn render(
    name: &str,
    kind: Kind,
    abi_path: &str,
    api_key_hash: &str,
) -> Vec<(&'static str, String)> {
    let lib = name.replace('-', "_");
    let (rs, toml, component, summary, try_it) = match kind {
        Kind::Policy => (
            POLICY_RS,
            POLICY_TOML,
            "require-header",
            "It denies requests that lack a configured header.",
            "\n      curl -i http://127.0.0.1:8080/try/Users                                  # 403\n      \
             curl -i -H 'x-request-reason: audit' http://127.0.0.1:8080/try/Users  # 200\n",
        ),
        Kind::Authenticator => (
            AUTHENTICATOR_RS,
            AUTHENTICATOR_TOML,
            "api-key",
            "It recognises an API key in a header and owns the provider\n\
             authentication method of the same name as the library.",
            "\n      curl -i http://127.0.0.1:8080/try/Users                         # 401\n      \
             curl -i -H \"x-api-key: $KEY\" http://127.0.0.1:8080/try/Users   # 200\n\n  \
             with the key `scimgate plugin new` printed as `$KEY`.\n",
        ),
        Kind::Profile => (
            PROFILE_RS,
            PROFILE_TOML,
            "tag",
            "It adds a header to each request and to each response.",
            "\n      curl -i http://127.0.0.1:8080/try/Users   # x-tag in the echoed headers and the response\n",
        ),
        Kind::Endpoint => (
            ENDPOINT_RS,
            ENDPOINT_TOML,
            "hello",
            "It greets its caller.",
            "\n      curl -i http://127.0.0.1:8080/hello/world\n",
        ),
    };
    let fill = |template: &str| {
        template
            .replace("{{echo}}", ECHO)
            .replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{kind}}", kind.as_str())
            .replace("{{component}}", component)
            .replace("{{summary}}", summary)
            .replace("{{try}}", try_it.trim_end_matches('\n'))
            .replace("{{abi_path}}", &toml_escape(abi_path))
            .replace("{{key_hash}}", api_key_hash)
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(rs)),
        ("scimgate.toml", fill(toml)),
        ("README.md", fill(README)),
        (".gitignore", "/target\n/scimgate-data\n".to_string()),
    ]
}

/// Writes the crate; every problem is one sentence saying what to do.
pub fn new_plugin(
    name: &str,
    kind: Kind,
    dir: Option<PathBuf>,
    abi_path: Option<PathBuf>,
) -> Result<Created, String> {
    check_name(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    check_target(&dir)?;
    let abi = resolve_abi_path(abi_path)?;
    let abi = abi.to_str().ok_or_else(|| {
        format!(
            "{} is not valid UTF-8, which a Cargo.toml cannot name",
            abi.display()
        )
    })?;
    let api_key = match kind {
        Kind::Authenticator => Some(scimgate_host::credentials::new_secret()?),
        _ => None,
    };
    let key_hash = api_key
        .as_deref()
        .map(scimgate_host::credentials::sha256_hash)
        .unwrap_or_default();
    let files = render(name, kind, abi, &key_hash);
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    Ok(Created {
        dir,
        name: name.to_string(),
        kind,
        files: files.iter().map(|(path, _)| *path).collect(),
        api_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_crate_rules_with_a_clear_error() {
        for good in ["acme", "acme-policy", "a1", "iga-2-scim"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "1acme",
            "-acme",
            "acme-",
            "a--b",
            "a_b",
            "a b",
            "a/b",
            "ä",
            "self",
            "test",
            "scimgate-abi",
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains("not a valid plugin name"), "{bad}: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn templates_are_fully_filled_in() {
        for kind in [
            Kind::Policy,
            Kind::Authenticator,
            Kind::Profile,
            Kind::Endpoint,
        ] {
            let files = render("acme-thing", kind, "/src/core/abi", "sha256:00");
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{kind:?} {path}: {text}");
            }
            let cargo = &files[0].1;
            assert!(cargo.contains("name = \"acme_thing\""), "{cargo}");
            assert!(cargo.contains("scimgate-abi = { path = \"/src/core/abi\" }"));
            assert!(cargo.contains("[workspace]") && cargo.contains("panic = \"unwind\""));
            let lib = &files[1].1;
            assert!(lib.contains("export_plugin!(\"acme-thing\""), "{lib}");
            assert!(lib.contains("deny_unknown_fields") && lib.contains("scimgate_abi::testing"));
            assert!(files[2].1.contains("use = \"acme-thing/"));
        }
        let auth = render("acme", Kind::Authenticator, "/x", "sha256:ab");
        assert!(auth[2].1.contains("key_hash = \"sha256:ab\""));
        assert!(auth[1].1.contains(".unique_secret(\"key_hash\", \"key\")"));
        assert_eq!(toml_escape("C:\\a \"b\""), "C:\\\\a \\\"b\\\"");
    }

    #[test]
    fn an_existing_non_empty_folder_is_never_overwritten() {
        let root = std::env::temp_dir().join(format!("scimgate-plugin-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("full")).unwrap();
        std::fs::write(root.join("full/keep.txt"), "mine").unwrap();
        let err = new_plugin("acme", Kind::Policy, Some(root.join("full")), None)
            .err()
            .unwrap();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(root.join("full/keep.txt")).unwrap(),
            "mine"
        );
        // An empty folder is fine; a wrong --abi-path is explained.
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let err = new_plugin(
            "acme",
            Kind::Policy,
            Some(root.join("empty")),
            Some(root.join("nowhere")),
        )
        .err()
        .unwrap();
        assert!(err.contains("--abi-path"), "{err}");
        let made = new_plugin("acme", Kind::Endpoint, Some(root.join("empty")), None).unwrap();
        assert!(root.join("empty/src/lib.rs").is_file());
        assert!(made.api_key.is_none());
        let _ = std::fs::remove_dir_all(&root);
    }
}
