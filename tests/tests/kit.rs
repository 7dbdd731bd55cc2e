//! The plugin author kit, end to end: `scimgate plugin new` for each kind
//! writes a crate that builds out of tree (`cargo build --offline`, one
//! shared target dir so reruns are incremental), passes its own tests, and
//! runs in the real host with its generated `scimgate.toml`, behaving as
//! its template says over HTTP. Also: a reload warns when a loaded library
//! was replaced on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scimgate_e2e::*;

/// The target dir out-of-tree builds share (with host.rs's ABI variants):
/// dependencies are compiled once, and reruns are incremental.
fn shared_target() -> PathBuf {
    target_dir().parent().unwrap().join("abi-variant")
}

fn cargo(dir: &Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{text}",
        dir.display()
    );
    text
}

/// `scimgate plugin new NAME --kind KIND` into `work/NAME`, then its own
/// `cargo test` (which must run tests and pass) and `cargo build` in a copy
/// at `build/NAME` (the same path every run, so reruns are incremental);
/// returns that folder and what `plugin new` printed.
fn generate_and_build(work: &Path, build: &BuildDir, name: &str, kind: &str) -> (PathBuf, String) {
    let dir = work.join(name);
    let (code, out, err) = run_cli(
        &[
            "plugin",
            "new",
            name,
            "--kind",
            kind,
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Created plugin `{name}` ({kind} template)")),
        "{out}"
    );
    for file in ["Cargo.toml", "src/lib.rs", "scimgate.toml", "README.md"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // The workspace's lock file: the same dependency versions, already
    // downloaded (offline) and already built in the shared target dir.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let generated = dir;
    let dir = build.path().join(name);
    sync_tree(&generated, &dir);
    let tests = cargo(&dir, &["test", "--offline"]);
    let passed: usize = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 2,
        "the template's own tests did not run:\n{tests}"
    );
    cargo(&dir, &["build", "--offline"]);
    let lib = shared_target()
        .join("debug")
        .join(format!("lib{}.so", name.replace('-', "_")));
    assert!(lib.is_file(), "{} was not built", lib.display());
    (dir, out)
}

/// Starts the host on the crate's own `scimgate.toml`, its `plugin_dir`
/// pointed at the built library and any free port.
fn serve_generated(dir: &Path) -> Server {
    let config_path = dir.join("scimgate.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    assert!(text.contains("plugin_dir = \"target/release\""), "{text}");
    let plugin_dir = shared_target().join("debug");
    let text = text
        .replace(
            "plugin_dir = \"target/release\"",
            &format!("plugin_dir = \"{}\"", plugin_dir.display()),
        )
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(&config_path, text).unwrap();
    let home = TempDir::new("kit-serve");
    Server::start_at(home, config_path, &[])
}

#[test]
fn plugin_new_crates_build_out_of_tree_pass_their_tests_and_run_in_the_host() {
    let work = TempDir::new("kit");
    let build = BuildDir::new("kit");

    // Policy: denies requests without `x-request-reason`.
    let (dir, _) = generate_and_build(work.path(), &build, "kit-policy", "policy");
    let server = serve_generated(&dir);
    let denied = get(&server.url("/try/Users"), &[]);
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("x-request-reason"), "{}", denied.body);
    let allowed = get(&server.url("/try/Users"), &[("x-request-reason", "audit")]);
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.json()["path"], "/Users");
    drop(server);

    // Profile: the endpoint sees the header, and so does the client.
    let (dir, _) = generate_and_build(work.path(), &build, "kit-profile", "profile");
    let server = serve_generated(&dir);
    let reply = get(&server.url("/try/Users"), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-tag"], "kit-profile");
    assert_eq!(reply.header("x-tag"), Some("kit-profile"));
    drop(server);

    // Endpoint: greets GET, refuses other methods with 405 and `Allow`.
    let (dir, _) = generate_and_build(work.path(), &build, "kit-endpoint", "endpoint");
    let server = serve_generated(&dir);
    let reply = get(&server.url("/hello/world"), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["message"], "Hello, anonymous!");
    assert_eq!(reply.json()["path"], "/world");
    let post = send("POST", &server.url("/hello/world"), &[], Some("{}"));
    assert_eq!(post.status, 405, "{}", post.body);
    assert_eq!(post.header("allow"), Some("GET"));
    drop(server);

    // Authenticator: its own provider method; the key printed once.
    let (dir, out) = generate_and_build(work.path(), &build, "kit-auth", "authenticator");
    let key = out
        .lines()
        .find_map(|l| l.split("keeps its hash): ").nth(1))
        .unwrap_or_else(|| panic!("no API key printed: {out}"))
        .trim()
        .to_string();
    let toml = std::fs::read_to_string(dir.join("scimgate.toml")).unwrap();
    assert!(!toml.contains(&key), "the key itself must not be written");
    let server = serve_generated(&dir);
    let reply = get(&server.url("/try/Users"), &[("x-api-key", &key)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["provider"], "example-iga");
    let wrong = get(&server.url("/try/Users"), &[("x-api-key", "guess")]);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let missing = get(&server.url("/try/Users"), &[]);
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("ApiKey header=\"x-api-key\"")
    );
    assert!(!server.logs().contains(&key), "the key reached the log");
}

#[test]
fn plugin_new_refuses_bad_names_and_existing_folders() {
    let work = TempDir::new("kit-refuse");
    let (code, _, err) = run_cli(&["plugin", "new", "My_Plugin", "--kind", "policy"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`My_Plugin` is not a valid plugin name"),
        "{err}"
    );
    std::fs::write(work.path().join("keep.txt"), "mine").unwrap();
    let dir = work.path().to_str().unwrap();
    let (code, _, err) = run_cli(
        &["plugin", "new", "fine", "--kind", "endpoint", "--dir", dir],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("exists and is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(!work.path().join("Cargo.toml").exists());
}

/// Polls the server's log until `pred` holds (or fails after 10 s).
fn wait_for_log(server: &Server, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = server.logs();
        if pred(&logs) {
            return logs;
        }
        assert!(Instant::now() < deadline, "no {what} within 10 s:\n{logs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_warns_once_when_a_loaded_library_changed_on_disk() {
    let plugins = TempDir::new("kit-reload-plugins");
    let lib = plugins.path().join("libdemo.so");
    std::fs::copy(target_dir().join("libdemo.so"), &lib).unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{}"
data_dir = "{{data_dir}}"

[stage.echo]
use = "demo/echo"

[[route]]
path = "/echo"
pipeline = ["echo"]
anonymous = true
"#,
        plugins.path().display()
    );
    let server = Server::start(&config);
    assert_eq!(get(&server.url("/echo/x"), &[]).status, 200);
    let reloads = |logs: &str| logs.matches("configuration reloaded").count();

    // An unchanged file: a reload says nothing about it.
    server.signal("HUP");
    let logs = wait_for_log(&server, "first reload", |l| reloads(l) >= 1);
    assert!(!logs.contains("changed on disk"), "{logs}");

    // Another build lands (written aside, renamed over: the running
    // process keeps its mapping of the old file).
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.extend_from_slice(b"another build");
    let aside = plugins.path().join(".libdemo.so.new");
    std::fs::write(&aside, &bytes).unwrap();
    std::fs::rename(&aside, &lib).unwrap();
    server.signal("HUP");
    let logs = wait_for_log(&server, "warning", |l| l.contains("changed on disk"));
    let line = logs
        .lines()
        .find(|l| l.contains("changed on disk"))
        .unwrap()
        .to_string();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&lib.display().to_string()), "{line}");
    assert!(
        line.contains("restart scimgate to use the new build"),
        "{line}"
    );
    // The old code keeps serving.
    wait_for_log(&server, "second reload", |l| reloads(l) >= 2);
    assert_eq!(get(&server.url("/echo/x"), &[]).status, 200);

    // Once per change: the next reload of the same file is quiet.
    server.signal("HUP");
    let logs = wait_for_log(&server, "third reload", |l| reloads(l) >= 3);
    assert_eq!(logs.matches("changed on disk").count(), 1, "{logs}");
}
