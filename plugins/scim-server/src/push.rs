//! Push delivery of the change log (webhooks): per `scim-server/scim` stage,
//! one background thread runs the `scimgate-changes` [`Deliverer`] of each
//! configured subscriber over the stage's store (the log through
//! [`StoreSource`], positions and leases in `scim_change_subscribers`).
//! The engine pokes it after every committed write ([`ChangePush::committed`]
//! only signals a condvar: a writer never waits for a receiver), and it
//! serves the subscribers' status and operations (`/Changes/Subscribers`).
//! Dropping the stage instance (a reload) stops and joins the thread,
//! bounded; the store's lease keeps two generations or nodes from
//! delivering to one subscriber at once.
//!
//! Also the instance's signing key, loaded or generated exactly as the
//! oauth2 plugin does (`<data_dir>/oauth2-signing-key.pem`, mode 0600).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use scimgate_abi::PluginError;
use scimgate_changes::{
    Change, ChangeSource, Clock, Deliverer, Issuer, Notifier, PositionStore, State, Status,
    StepOutcome, SystemClock,
};
use scimgate_scim_service::errors::{invalid_value, not_found};
use scimgate_scim_service::{Backend, ChangePush};
use serde_json::{json, Value};

/// The instance's signing key file in `data_dir` (shared with the oauth2
/// plugin's token signing).
pub const DEFAULT_KEY_FILE: &str = "oauth2-signing-key.pem";

/// How often the worker looks at the log without a notification (writes of
/// other nodes, leases of dead nodes expiring).
const POLL: Duration = Duration::from_secs(2);
/// How long dropping a stage waits for its worker (a POST in flight ends
/// on its own timeout; the lease covers the overlap).
const JOIN_WAIT: Duration = Duration::from_secs(3);

/// Reads the key at `path`, or generates it there: written to a temporary
/// file with mode 0600, then hard-linked into place, so a concurrent
/// process (or the oauth2 stage) either wins the race or reads the winner's
/// complete key. The same steps as the oauth2 plugin's `keys.rs`.
pub fn load_or_generate_key(path: &Path) -> Result<SigningKey, String> {
    if path.exists() {
        return read_signing_key(path);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the signing key: {e}"))?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| format!("no system randomness: {e}"))?;
    let file_name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        hex(&suffix)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = private_file(&tmp)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    };
    let result = write().and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new signing key");
            Ok(key)
        }
        // Another process (or stage) created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_signing_key(path),
        Err(e) => Err(format!("cannot write signing key {}: {e}", path.display())),
    }
}

fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let pem = fs::read_to_string(path)
        .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!(
            "{} is not a PKCS#8 PEM Ed25519 private key: {e}",
            path.display()
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The change log of a [`Backend`], as the delivery engine reads it.
pub struct StoreSource(pub Arc<dyn Backend>);

impl ChangeSource for StoreSource {
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, String> {
        match self.0.changes(after, limit) {
            Ok(Some(changes)) => Ok(changes),
            Ok(None) => Err("this store keeps no change log".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn newest_seq(&self) -> Result<u64, String> {
        match self.0.newest_change() {
            Ok(newest) => Ok(newest.unwrap_or(0)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// This process's lease holder name: host name, pid and a random part (a
/// restarted process, or a reloaded stage, is another holder).
pub fn node_id() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let mut random = [0u8; 4];
    let _ = getrandom::getrandom(&mut random);
    format!("{host}:{}:{}", std::process::id(), hex(&random))
}

/// The delivery workers of one stage.
pub struct Push {
    deliverers: Arc<Vec<Deliverer>>,
    notifier: Notifier,
    stop: Arc<AtomicBool>,
    worker: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
}

impl Push {
    /// Starts the worker thread for `subscribers` (already validated).
    pub fn start(
        stage: &str,
        subscribers: Vec<scimgate_changes::Subscriber>,
        issuer: Issuer,
        key: SigningKey,
        source: Arc<dyn ChangeSource>,
        positions: Arc<dyn PositionStore>,
    ) -> Result<Push, String> {
        let notifier = Notifier::default();
        let key = Arc::new(key);
        let node = node_id();
        let mut deliverers = Vec::new();
        for sub in subscribers {
            deliverers.push(
                Deliverer::new(
                    sub,
                    issuer.clone(),
                    key.clone(),
                    &node,
                    source.clone(),
                    positions.clone(),
                )?
                .with_notifier(notifier.clone())
                .with_poll_interval(POLL),
            );
        }
        let deliverers = Arc::new(deliverers);
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let handle = {
            let deliverers = deliverers.clone();
            let stop = stop.clone();
            let notifier = notifier.clone();
            std::thread::Builder::new()
                .name(format!("push-{stage}"))
                .spawn(move || {
                    work(&deliverers, &notifier, &stop);
                    let _ = done_tx.send(());
                })
                .map_err(|e| format!("cannot start the delivery thread: {e}"))?
        };
        tracing::info!(stage = %stage, node = %node, subscribers = deliverers.len(), "change push: delivery started");
        Ok(Push {
            deliverers,
            notifier,
            stop,
            worker: Mutex::new(Some((handle, done_rx))),
        })
    }

    fn deliverer(&self, name: &str) -> Result<&Deliverer, PluginError> {
        self.deliverers
            .iter()
            .find(|d| d.subscriber().name == name)
            .ok_or_else(|| not_found(format!("no change subscriber named {name:?}")))
    }
}

/// The loop of one stage's worker: steps every subscriber that has work,
/// then sleeps until the earliest retry, a notification or the poll.
fn work(deliverers: &[Deliverer], notifier: &Notifier, stop: &AtomicBool) {
    let clock = SystemClock;
    // The dead letter last logged per subscriber (logged once, not per poll).
    let mut dead: Vec<Option<u64>> = vec![None; deliverers.len()];
    while !stop.load(Ordering::Acquire) {
        let mut wait = POLL;
        for (d, dead) in deliverers.iter().zip(dead.iter_mut()) {
            if stop.load(Ordering::Acquire) {
                return;
            }
            // Bounded: a batch per step, a few steps per round, so one
            // busy subscriber does not starve the others.
            for _ in 0..16 {
                let now = clock.now_ms();
                let outcome = d.step(now);
                observe(d, &outcome, dead);
                match outcome {
                    StepOutcome::Delivered { more: true, .. } | StepOutcome::Superseded => {
                        wait = Duration::ZERO;
                        continue;
                    }
                    StepOutcome::Retry { retry_at_ms, .. } => {
                        wait = wait.min(until(now, retry_at_ms));
                    }
                    StepOutcome::Waiting { until_ms } => {
                        wait = wait.min(until(now, until_ms));
                    }
                    _ => {}
                }
                break;
            }
        }
        if !wait.is_zero() {
            notifier.wait(wait);
        }
    }
}

fn until(now: i64, then: i64) -> Duration {
    Duration::from_millis(u64::try_from(then.saturating_sub(now)).unwrap_or(0).max(1))
}

/// Logs a step's failure once per attempt (subscriber, seq, short cause:
/// never the body nor a secret) and reports the lag to the host.
fn observe(d: &Deliverer, outcome: &StepOutcome, dead: &mut Option<u64>) {
    let name = d.subscriber().name.as_str();
    match outcome {
        StepOutcome::Retry {
            seq,
            attempts,
            error,
            ..
        } => {
            tracing::warn!(subscriber = %name, seq, attempt = attempts, error = %error, "change push: delivery failed, will retry")
        }
        // Logged when it happens, not on every later look.
        StepOutcome::DeadLettered { seq, error } if *dead != Some(*seq) => {
            *dead = Some(*seq);
            tracing::warn!(subscriber = %name, seq, error = %error, "change push: delivery failed, subscriber dead-lettered");
        }
        StepOutcome::Delivered { .. } | StepOutcome::Idle => *dead = None,
        StepOutcome::StoreError(error) => {
            tracing::warn!(subscriber = %name, error = %error, "change push: store failed")
        }
        _ => {}
    }
    if matches!(outcome, StepOutcome::Busy | StepOutcome::Waiting { .. }) {
        return;
    }
    if let Ok(status) = d.status() {
        scimgate_abi::sdk::report_change_lag(
            name,
            status.lag,
            matches!(status.state, State::DeadLettered { .. }),
        );
    }
}

/// A subscriber's status as `/Changes/Subscribers` shows it.
pub fn status_json(status: &Status) -> Value {
    let (state, dead_seq, last_error) = match &status.state {
        State::Active => ("active", None, status.last_error.clone()),
        State::DeadLettered { seq, last_error } => {
            ("dead-lettered", Some(*seq), Some(last_error.clone()))
        }
    };
    json!({
        "name": status.subscriber,
        "state": state,
        "ackedSeq": status.acked,
        "newestSeq": status.newest,
        "lag": status.lag,
        "attempts": status.attempts,
        // Unix ms of a pending retry.
        "nextAttemptAt": (status.next_attempt_ms > 0).then_some(status.next_attempt_ms),
        "deadSeq": dead_seq,
        "lastError": last_error,
    })
}

fn store_failure(e: String) -> PluginError {
    PluginError::new(503, format!("change subscribers: {e}"))
}

impl ChangePush for Push {
    fn committed(&self) {
        self.notifier.notify();
    }

    fn list(&self) -> Result<Value, PluginError> {
        let mut out = Vec::new();
        for d in self.deliverers.iter() {
            out.push(status_json(&d.status().map_err(store_failure)?));
        }
        Ok(json!({ "subscribers": out }))
    }

    fn act(&self, name: &str, body: &Value) -> Result<Value, PluginError> {
        let d = self.deliverer(name)?;
        let object = body
            .as_object()
            .ok_or_else(|| invalid_value("the body must be a JSON object with \"action\""))?;
        let action = object.get("action").and_then(Value::as_str);
        let allowed: &[&str] = match action {
            Some("replay") => &["action", "from"],
            Some("skip") => &["action"],
            _ => {
                return Err(invalid_value(
                    "\"action\" must be \"replay\" (with \"from\": SEQ) or \"skip\"",
                ))
            }
        };
        if let Some(extra) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid_value(format!(
                "unexpected member {extra:?} for action {:?}",
                action.unwrap_or_default()
            )));
        }
        if action == Some("replay") {
            let from = object
                .get("from")
                .and_then(Value::as_u64)
                .filter(|f| *f >= 1)
                .ok_or_else(|| {
                    invalid_value("replay needs \"from\": the first seq to deliver again (≥ 1)")
                })?;
            let newest = StoreSource::newest(d)?;
            if from > newest.saturating_add(1) {
                return Err(invalid_value(format!(
                    "from={from} is beyond the newest change ({newest})"
                )));
            }
            d.replay(from).map_err(store_failure)?;
            tracing::info!(subscriber = %name, from, "change push: replay requested");
        } else {
            let skipped = d.skip().map_err(store_failure)?;
            tracing::info!(subscriber = %name, skipped = ?skipped, "change push: skip requested");
        }
        Ok(status_json(&d.status().map_err(store_failure)?))
    }
}

impl StoreSource {
    fn newest(d: &Deliverer) -> Result<u64, PluginError> {
        d.status().map(|s| s.newest).map_err(store_failure)
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.notifier.notify();
        let taken = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some((handle, done)) = taken {
            if done.recv_timeout(JOIN_WAIT).is_ok() {
                let _ = handle.join();
                tracing::info!("change push: delivery stopped");
            } else {
                tracing::warn!("change push: the delivery thread is still in a POST; left to finish on its own");
            }
        }
    }
}
