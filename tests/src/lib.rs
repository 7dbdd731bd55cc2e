//! Test support for the end-to-end suite: start the real `scimgate` binary
//! (built by `cargo build --workspace`) with a config written to a temporary
//! folder, find the port it bound, talk HTTP to it, read its logs, stop it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub mod certs;

/// `target/<profile>`: where cargo put the binary and the plugin `.so`s.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SCIMGATE_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn scimgate_bin() -> PathBuf {
    let bin = target_dir().join("scimgate");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests (the README's test command does)",
        bin.display()
    );
    assert_fresh_build();
    bin
}

/// Panics when the binary or a plugin `.so` in [`target_dir`] is older than
/// one of its own sources (as listed in cargo's `.d` dep-info file next to
/// it): the tests would otherwise judge yesterday's code. Checked once per
/// process; `SCIMGATE_ALLOW_STALE=1` turns the panic into a warning.
pub fn assert_fresh_build() {
    static CHECK: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = CHECK.get_or_init(|| {
        let stale = stale_artifacts(&target_dir());
        if stale.is_empty() {
            return Ok(());
        }
        let message = format!(
            "stale build: {}; run `cargo build --workspace` first (or set SCIMGATE_ALLOW_STALE=1)",
            stale.join("; ")
        );
        if std::env::var_os("SCIMGATE_ALLOW_STALE").is_some() {
            eprintln!("WARNING: {message}");
            return Ok(());
        }
        Err(message)
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// `scimgate` and every `lib*.so` in `dir` that is older than a workspace
/// source file its dep-info lists: one "ARTIFACT is older than SOURCE" each.
pub fn stale_artifacts(dir: &Path) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target = root.join("target");
    let mut stale = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return stale;
    };
    let mut artifacts: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "scimgate" || (name.starts_with("lib") && name.ends_with(".so"))
        })
        .collect();
    artifacts.sort();
    for artifact in artifacts {
        let Ok(built) = std::fs::metadata(&artifact).and_then(|m| m.modified()) else {
            continue;
        };
        let Ok(dep_info) = std::fs::read_to_string(artifact.with_extension("d")) else {
            continue;
        };
        let newer = dep_info_sources(&dep_info)
            .into_iter()
            .filter(|src| src.starts_with(root) && !src.starts_with(&target))
            .find(|src| {
                std::fs::metadata(src)
                    .and_then(|m| m.modified())
                    // A deleted source shows as a change to the file
                    // that named it; on its own it may be an old artifact's.
                    .is_ok_and(|changed| changed > built)
            });
        if let Some(src) = newer {
            stale.push(format!(
                "{} is older than {}",
                artifact.display(),
                src.strip_prefix(root).unwrap_or(&src).display()
            ));
        }
    }
    stale
}

/// The prerequisites of the first rule of a Makefile-style dep-info file
/// (`target: src src…`, spaces in names escaped as `\ `).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let line = text.lines().next().unwrap_or("");
    let Some((_, deps)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(PathBuf::from(current));
    }
    out
}

/// Polls `done` every 10 ms until it holds; panics after `timeout` naming
/// `what` (and whatever `context` says then, e.g. the server's log).
pub fn wait_until_or(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `done` every 10 ms until it holds; panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, done: impl FnMut() -> bool) {
    wait_until_or(timeout, what, done, String::new);
}

/// Waits until the server's log contains `needle`; panics with the log
/// after `timeout`. Returns the log.
pub fn wait_for_log(server: &Server, needle: &str, timeout: Duration) -> String {
    wait_until_or(
        timeout,
        &format!("`{needle}` in the log"),
        || server.logs().contains(needle),
        || format!("log:\n{}", server.logs()),
    );
    server.logs()
}

/// The time the server under test believes it is: in a debug build,
/// started with [`TestClock::env`], the host reads each request's "now"
/// (`received_at_unix_ms`, which policies, token lifetimes and cursors
/// judge by) from this clock's file instead of the wall clock, so tests move
/// time forward instead of sleeping. Release builds do not have the hook
/// (docs/security.md).
pub struct TestClock {
    dir: TempDir,
    path: PathBuf,
}

impl TestClock {
    /// The variable the host reads (debug builds only).
    pub const VAR: &'static str = "SCIMGATE_TEST_CLOCK_FILE";

    /// A clock stopped at `unix_ms` until moved.
    pub fn at(unix_ms: i64) -> TestClock {
        let dir = TempDir::new("clock");
        let path = dir.path().join("now");
        let clock = TestClock { dir, path };
        clock.set(unix_ms);
        clock
    }

    /// A clock stopped at an RFC 3339 UTC time (`2030-01-01T00:00:00Z`,
    /// optionally with `.mmm`).
    pub fn at_utc(text: &str) -> TestClock {
        TestClock::at(unix_ms(text))
    }

    pub fn now_ms(&self) -> i64 {
        let text = std::fs::read_to_string(&self.path).expect("read the test clock");
        text.trim().parse().expect("the test clock holds unix ms")
    }

    /// Sets the time (written whole: a request never reads half a number).
    pub fn set(&self, unix_ms: i64) {
        let tmp = self.dir.path().join("now.tmp");
        std::fs::write(&tmp, unix_ms.to_string()).expect("write the test clock");
        std::fs::rename(&tmp, &self.path).expect("set the test clock");
    }

    pub fn set_utc(&self, text: &str) {
        self.set(unix_ms(text));
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now_ms() + by.as_millis() as i64);
    }

    /// The environment variable that points the server at this clock.
    pub fn env(&self) -> (&'static str, &str) {
        (TestClock::VAR, self.path.to_str().expect("UTF-8 temp path"))
    }

    /// Starts a server on this clock and checks it said it honours it (a
    /// release build would silently use the wall clock).
    pub fn start_server(&self, config: &str, envs: &[(&str, &str)]) -> Server {
        let mut all = envs.to_vec();
        all.push(self.env());
        let server = Server::start_with_env(config, &all);
        self.assert_honoured(&server);
        server
    }

    /// Panics unless the server logged that it reads this clock.
    pub fn assert_honoured(&self, server: &Server) {
        wait_until_or(
            Duration::from_secs(10),
            "the server to announce the test clock (is it a debug build?)",
            || {
                server
                    .logs()
                    .contains("test clock: request times come from")
                    && server.logs().contains(self.path.to_str().unwrap_or("?"))
            },
            || format!("log:\n{}", server.logs()),
        );
    }
}

/// Unix milliseconds of an RFC 3339 UTC time: `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
pub fn unix_ms(text: &str) -> i64 {
    let parsed = (|| {
        let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
        let num = |s: &str| s.parse::<i64>().ok();
        let d: Vec<i64> = date.split('-').map(num).collect::<Option<_>>()?;
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let h: Vec<i64> = hms.split(':').map(num).collect::<Option<_>>()?;
        if d.len() != 3 || h.len() != 3 || frac.len() > 3 {
            return None;
        }
        let ms = num(&format!("{frac:0<3}"))?;
        // Days from civil (Howard Hinnant's algorithm).
        let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms)
    })();
    parsed.unwrap_or_else(|| panic!("not a YYYY-MM-DDTHH:MM:SS[.mmm]Z time: {text}"))
}

/// A folder for out-of-tree builds (ABI variants, generated plugin crates)
/// at a path that stays the same from run to run,
/// `target/abi-variant/src/<tag>`, so that cargo's fingerprints in the
/// shared `target/abi-variant` stay valid and reruns are incremental. Held
/// under one exclusive lock for all tags (builds there are serialised by
/// cargo anyway, and same-named outputs such as `libdemo.so` must not be
/// overwritten by another build before they are copied): hold one
/// `BuildDir` at a time.
pub struct BuildDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl BuildDir {
    pub fn new(tag: &str) -> BuildDir {
        let base = out_of_tree_target().join("src");
        std::fs::create_dir_all(&base).expect("create the build folder");
        let lock = std::fs::File::create(base.join(".lock")).expect("lock file");
        lock.lock().expect("lock the build folder");
        let path = base.join(tag);
        std::fs::create_dir_all(&path).expect("create the build folder");
        BuildDir { path, _lock: lock }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The target dir the out-of-tree builds share: `target/abi-variant`.
pub fn out_of_tree_target() -> PathBuf {
    target_dir()
        .parent()
        .expect("target dir")
        .join("abi-variant")
}

/// Makes `to` hold exactly the files of `from`, writing only the files
/// whose bytes differ: an unchanged file keeps its modification time, so
/// cargo does not rebuild what did not change.
pub fn sync_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    let mut wanted = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(from)
        .expect("read folder")
        .map(|e| e.expect("entry"))
    {
        let name = entry.file_name();
        let (src, dst) = (entry.path(), to.join(&name));
        wanted.insert(name);
        if entry.file_type().expect("file type").is_dir() {
            if dst.is_file() {
                std::fs::remove_file(&dst).expect("remove file");
            }
            sync_tree(&src, &dst);
        } else {
            let bytes = std::fs::read(&src).expect("read file");
            if dst.is_dir() {
                std::fs::remove_dir_all(&dst).expect("remove folder");
            }
            if std::fs::read(&dst).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&dst, &bytes).expect("write file");
            }
        }
    }
    for entry in std::fs::read_dir(to)
        .expect("read folder")
        .map(|e| e.expect("entry"))
    {
        if !wanted.contains(&entry.file_name()) {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove folder");
            } else {
                std::fs::remove_file(&path).expect("remove file");
            }
        }
    }
}

/// A fresh temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("scimgate-e2e-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SCIMGATE_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `scimgate ARGS…` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(scimgate_bin());
    cmd.args(args).env_remove("SCIMGATE_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scimgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running scimgate process.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// Starts scimgate with this config. `{plugin_dir}` and `{data_dir}` in
    /// the text are replaced; `listen` should be `127.0.0.1:0` (the port is
    /// read from the banner).
    pub fn start(config: &str) -> Server {
        Server::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, envs: &[(&str, &str)]) -> Server {
        let dir = TempDir::new("server");
        let config_path = dir.path().join("scimgate.toml");
        std::fs::write(&config_path, expand(config, dir.path())).expect("write config");
        Server::start_at(dir, config_path, envs)
    }

    pub fn start_at(dir: TempDir, config_path: PathBuf, envs: &[(&str, &str)]) -> Server {
        let config = config_path.display().to_string();
        Server::spawn(dir, config_path, &["serve", "--config", &config], envs)
    }

    /// Starts `scimgate ARGS…` in a fresh folder (e.g. with no config at all).
    pub fn start_cli(args: &[&str]) -> Server {
        Server::start_cli_in(TempDir::new("cli"), args)
    }

    /// Like [`Server::start_cli`], in a given folder (e.g. to restart on the
    /// same data; take it from a stopped server with [`Server::take_dir`]).
    pub fn start_cli_in(dir: TempDir, args: &[&str]) -> Server {
        let config_path = dir.path().join("none.toml");
        Server::spawn(dir, config_path, args, &[])
    }

    /// The server's folder, for starting another process on it.
    pub fn take_dir(&mut self) -> TempDir {
        std::mem::replace(&mut self.dir, TempDir::new("taken"))
    }

    fn spawn(dir: TempDir, config_path: PathBuf, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let log_path = dir.path().join("scimgate.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(scimgate_bin());
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("SCIMGATE_CONFIG")
            .env(
                "SCIMGATE_LOG",
                std::env::var("SCIMGATE_TEST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            // Tests read the log right after a response: every line at
            // once (a test of the buffering sets its own interval).
            .env("SCIMGATE_LOG_FLUSH", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn scimgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        let mut base = None;
        while base.is_none() && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        base = rest.split_whitespace().next().map(str::to_string);
                    }
                    lines.push(line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "scimgate exited with {status} before listening:\n{}",
                            std::fs::read_to_string(&log_path).unwrap_or_default()
                        );
                    }
                }
                Err(_) => break,
            }
        }
        let Some(base) = base else {
            let _ = child.kill();
            panic!(
                "scimgate did not report a listening address; stdout: {lines:?}\nlog:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server {
            child: Some(child),
            base,
            dir,
            config_path,
            log_path,
            stdout_lines: lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Rewrites the config file and sends SIGHUP; waits for the reload log line.
    pub fn reload_with(&self, config: &str) {
        let before = self.logs().matches("configuration reloaded").count();
        std::fs::write(&self.config_path, expand(config, self.dir.path())).expect("write config");
        self.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let logs = self.logs();
            if logs.matches("configuration reloaded").count() > before {
                return;
            }
            if logs.contains("reload failed") {
                panic!("reload failed:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no reload within 10 s:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit (after a signal); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `kill -9`, no chance to flush anything.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Replaces `{plugin_dir}` and `{data_dir}` placeholders.
pub fn expand(config: &str, dir: &Path) -> String {
    config
        .replace("{plugin_dir}", &target_dir().display().to_string())
        .replace("{data_dir}", &dir.join("data").display().to_string())
}

/// An HTTP response, whatever its status.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends a request; never fails on HTTP error statuses.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    send_from(None, method, url, headers, body)
}

/// POSTs a JSON value with `Content-Type: application/scim+json`.
pub fn send_json(method: &str, url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("content-type", "application/scim+json"));
    send(method, url, &all, Some(&body.to_string()))
}

/// A write with a bearer token that must succeed (status below 300): the
/// reply's JSON body, or `Null` when it has none (a 204).
pub fn write_ok(server: &Server, token: &str, method: &str, path: &str, body: &Value) -> Value {
    let authorization = format!("Bearer {token}");
    let reply = send_json(
        method,
        &server.url(path),
        &[("authorization", &authorization)],
        body,
    );
    assert!(
        reply.status < 300,
        "{method} {path}: {} {}",
        reply.status,
        reply.body
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// Like [`send`], binding the client socket to `local` (e.g. 127.0.0.2).
/// A deliberately small HTTP/1.1 client (`Connection: close`) so that tests
/// can choose their source address anywhere in 127.0.0.0/8.
pub fn send_from(
    local: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    send_bytes_from(local, method, url, headers, body.map(str::as_bytes))
}

pub fn send_bytes_from(
    local: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = authority
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            authority
                .to_socket_addrs()
                .map(|mut a| a.next().expect("address"))
        })
        .unwrap_or_else(|e| panic!("bad address {authority}: {e}"));
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    if let Some(ip) = local {
        socket
            .bind(&std::net::SocketAddr::new(ip, 0).into())
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    }
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {url}: connect: {e}"));
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("write request head");
    if let Some(b) = body {
        // The server may answer (413) and close before reading everything.
        let _ = stream.write_all(b);
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        if raw.is_empty() {
            panic!("{method} {url}: read: {e}");
        }
    }
    parse_reply(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {url}: malformed response: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Percent-encodes a query or form value (unreserved characters kept;
/// a space becomes `%20`).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value (a space is `+`).
pub fn form_encode(text: &str) -> String {
    percent_encode(text).replace("%20", "+")
}

/// Standard Base64 with padding.
pub fn base64_encode(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Plain RFC 7617 `Authorization: Basic` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{password}")))
}

/// `client_secret_basic` (RFC 6749 §2.3.1): id and secret form-encoded,
/// then Base64.
pub fn client_basic(id: &str, secret: &str) -> String {
    basic_auth(&form_encode(id), &form_encode(secret))
}

/// Runs the public SCIM compliance suite (`tests/scim-compliance`) against a
/// base URL; (passed with zero failures, the whole output).
pub fn run_compliance(base_url: &str, token: &str) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim-compliance");
    let out = Command::new(&script)
        .arg(base_url)
        .arg(token)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("scim2-tester:"))
        .unwrap_or_default();
    (out.status.success() && last.contains(" 0 failed"), text)
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send("GET", url, headers, None)
}

/// Benchmark support: a keep-alive client (the harness client above opens a
/// connection per request, which would dominate a latency figure).
/// A keep-alive HTTP/1.1 client: one connection for every request.
pub struct KeepAliveClient {
    host: String,
    authorization: String,
    reader: BufReader<TcpStream>,
}

impl KeepAliveClient {
    /// Connects to the host of `base`; every request carries `authorization`.
    pub fn connect(base: &str, authorization: &str) -> KeepAliveClient {
        let host = base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host")
            .to_string();
        let stream = TcpStream::connect(&host).expect("connect");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
        KeepAliveClient {
            host,
            authorization: authorization.to_string(),
            reader: BufReader::new(stream),
        }
    }

    /// One request on the open connection: (status, body).
    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n",
            self.host, self.authorization
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).expect("write");
        if let Some(b) = body {
            stream.write_all(b.as_bytes()).expect("write body");
        }
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().expect("length");
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.reader.read_exact(&mut body).expect("body");
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// The `i`-th user of a benchmark population (unique userName and email).
pub fn bench_user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i:06}"),
        "displayName": format!("User {i}"),
        "name": {"givenName": "Bench", "familyName": format!("U{i}")},
        "emails": [{"value": format!("user{i:06}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latency figures of a benchmark, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

/// Mean, median and 99th percentile of `micros` (any order; all zero when
/// empty).
pub fn latency(mut micros: Vec<u128>) -> Latency {
    micros.sort_unstable();
    if micros.is_empty() {
        return Latency::default();
    }
    Latency {
        mean: micros.iter().sum::<u128>() as f64 / micros.len() as f64,
        p50: percentile(&micros, 0.5) as f64,
        p99: percentile(&micros, 0.99) as f64,
    }
}

/// `psql` of the newest installed PostgreSQL (as tests/pg-cluster finds it),
/// else from PATH.
pub fn psql_bin() -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .collect();
    bins.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    bins.pop().unwrap_or_else(|| PathBuf::from("psql"))
}

/// Runs `sql` with [`psql_bin`] against `url` (unaligned, tuples only);
/// its output, trimmed. Panics with psql's message when it fails.
pub fn psql(url: &str, password: &str, sql: &str) -> String {
    let out = std::process::Command::new(psql_bin())
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What [`bulk_fill_users`] created and how long it took.
pub struct BulkFill {
    /// The ids of the created users, in creation order.
    pub ids: Vec<String>,
    /// Time to the first 10,000 users, when that many were created.
    pub first_10k: Option<Duration>,
    pub elapsed: Duration,
}

/// Creates up to `users` [`bench_user`]s under `mount` by Bulk, 1,000
/// operations a request, until done or `deadline`; every operation must
/// answer 201.
pub fn bulk_fill_users(
    client: &mut KeepAliveClient,
    mount: &str,
    users: usize,
    deadline: Instant,
) -> BulkFill {
    let batch = 1000;
    let mut ids = Vec::with_capacity(users);
    let mut first_10k = None;
    let fill = Instant::now();
    while ids.len() < users && Instant::now() < deadline {
        let from = ids.len();
        let n = batch.min(users - from);
        let ops: Vec<Value> = (from..from + n)
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": bench_user(i)}))
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}).to_string();
        let (status, reply) = client.request("POST", &format!("{mount}/Bulk"), Some(&body));
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).expect("bulk json");
        for op in reply["Operations"].as_array().expect("ops") {
            assert_eq!(op["status"], "201", "{op}");
            ids.push(
                op["location"]
                    .as_str()
                    .and_then(|l| l.rsplit('/').next())
                    .expect("location")
                    .to_string(),
            );
        }
        if ids.len() >= 10_000 && first_10k.is_none() {
            first_10k = Some(fill.elapsed());
        }
    }
    BulkFill {
        ids,
        first_10k,
        elapsed: fill.elapsed(),
    }
}

/// Like [`send`], but a connection that is refused, reset or closed before
/// a whole response arrived is an `Err` instead of a panic: for clients of
/// a server that is killed under them (a response that arrived in full
/// before the kill is still `Ok`).
pub fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Reply, String> {
    try_send_notify(method, url, headers, body, || {})
}

/// [`try_send`] that calls `sent` once the whole request is written (the
/// server may not have read it yet), before waiting for the response.
pub fn try_send_notify(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    sent: impl FnOnce(),
) -> Result<Reply, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = authority
        .parse()
        .map_err(|e| format!("bad address {authority}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("{method} {url}: connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default().as_bytes());
    stream
        .write_all(&request)
        .map_err(|e| format!("{method} {url}: write: {e}"))?;
    sent();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{method} {url}: read: {e}"))?;
    let reply = parse_reply(&raw)
        .ok_or_else(|| format!("{method} {url}: incomplete response ({} bytes)", raw.len()))?;
    // A response cut short by the kill is no acknowledgement.
    let length = reply
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok());
    if length.is_some_and(|n| n != reply.body.len()) {
        return Err(format!("{method} {url}: truncated response"));
    }
    Ok(reply)
}

/// [`try_send`] of a JSON body with `Content-Type: application/scim+json`.
pub fn try_send_json(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<Reply, String> {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("content-type", "application/scim+json"));
    try_send(method, url, &all, Some(&body.to_string()))
}

/// A configuration with one SCIM route at `/scim/v2`: the demo API-key
/// authenticator (`Authorization: Bearer {token}` is provider `p1`) in
/// front of a `scim-server/scim` stage whose table gets `stage_options`
/// (the store, limits).
pub fn scim_route_config(token: &str, stage_options: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = {{ "Bearer {token}" = "p1" }}

[stage.scim]
use = "scim-server/scim"
{stage_options}

[[route]]
path = "/scim/v2"
pipeline = ["key", "scim"]

[[provider]]
id = "p1"
name = "Test"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_reads_rfc3339_utc() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix_ms("2000-03-01T00:00:00Z"), 951_868_800_000);
        assert_eq!(unix_ms("2030-06-30T23:59:59.999Z"), 1_909_094_399_999);
        assert_eq!(unix_ms("2027-01-01T00:00:00.5Z"), 1_798_761_600_500);
    }

    #[test]
    fn dep_info_lists_the_sources_with_escaped_spaces() {
        let text = "/t/scimgate: /w/a.rs /w/my\\ dir/b.rs /w/c.rs\n\n/w/a.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            vec![
                PathBuf::from("/w/a.rs"),
                PathBuf::from("/w/my dir/b.rs"),
                PathBuf::from("/w/c.rs")
            ]
        );
    }

    #[test]
    fn sync_tree_rewrites_only_what_changed() {
        let (from, to) = (TempDir::new("sync-from"), TempDir::new("sync-to"));
        std::fs::create_dir_all(from.path().join("src")).unwrap();
        std::fs::write(from.path().join("src/lib.rs"), "same").unwrap();
        std::fs::write(from.path().join("Cargo.toml"), "v1").unwrap();
        sync_tree(from.path(), to.path());
        std::fs::write(to.path().join("extra.rs"), "gone soon").unwrap();
        let stamp = |p: &str| {
            std::fs::metadata(to.path().join(p))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = stamp("src/lib.rs");
        std::fs::write(from.path().join("Cargo.toml"), "v2").unwrap();
        sync_tree(from.path(), to.path());
        assert_eq!(
            stamp("src/lib.rs"),
            before,
            "an unchanged file is left alone"
        );
        assert_eq!(
            std::fs::read_to_string(to.path().join("Cargo.toml")).unwrap(),
            "v2"
        );
        assert!(!to.path().join("extra.rs").exists());
    }

    #[test]
    fn a_source_newer_than_its_artifact_makes_it_stale() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = TempDir::new("stale");
        let source = root.join("tests/src/lib.rs");
        let so = dir.path().join("libfake.so");
        std::fs::write(&so, "").unwrap();
        std::fs::write(
            dir.path().join("libfake.d"),
            format!("{}: {}\n", so.display(), source.display()),
        )
        .unwrap();
        let file = std::fs::File::options().write(true).open(&so).unwrap();
        // Older than the source: stale, and the message names both.
        let old = std::fs::metadata(&source).unwrap().modified().unwrap() - Duration::from_secs(60);
        file.set_modified(old).unwrap();
        let stale = stale_artifacts(dir.path());
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(stale[0].contains("libfake.so is older than tests/src/lib.rs"));
        // Newer: fresh.
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
            .unwrap();
        assert!(stale_artifacts(dir.path()).is_empty());
    }
}
