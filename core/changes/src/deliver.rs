//! The push-delivery engine: per webhook subscriber, POST each change as a
//! signed SET, in sequence order, at least once.
//!
//! - Storage comes through two traits, so the SQL stores (and [`crate::memory`])
//!   plug in: [`ChangeSource`] reads the log, [`PositionStore`] keeps each
//!   subscriber's [`Position`] and a lease so that one node at a time
//!   delivers to a subscriber.
//! - [`Deliverer::step`] takes the lease, delivers the head events (one
//!   POST per SET, `Content-Type: application/secevent+jwt`, success = any
//!   2xx; RFC 8935 answers 202) and saves the position after each
//!   acknowledgement. A crash between POST and save redelivers that event:
//!   at least once, never out of order.
//! - A failure schedules a retry of the same head event (exponential
//!   backoff with full jitter); nothing behind it is sent meanwhile
//!   (head-of-line blocking keeps the order per resource). After
//!   `max_attempts` failures the subscriber is dead-lettered until an
//!   operator replays or skips.
//! - Redirects are never followed (a 3xx is a failure saying so); a
//!   receiver's error body is kept only as a short, sanitised cut.
//! - [`Deliverer::run`] is the background loop; writers wake it with
//!   [`Notifier::notify`], which never blocks on delivery.
//!
//! Saves are compare-and-swap on [`Position::rev`]: an operator's replay or
//! skip, or another node, changing the position in the meantime makes the
//! step stop ([`StepOutcome::Superseded`]) rather than overwrite it.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, OsRandom, RandomSource};
use crate::event::{set_claims, Issuer};
use crate::record::Change;
use crate::sign;

/// Reads the change log.
pub trait ChangeSource: Send + Sync {
    /// Up to `limit` changes with `seq > after`, in increasing `seq` order.
    /// A store must never make a change with a smaller `seq` visible after
    /// a larger one (assign `seq` at commit, or under a lock), or a
    /// subscriber that has passed it would never see it.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, String>;
    /// The largest `seq` in the log (0 when it was always empty).
    fn newest_seq(&self) -> Result<u64, String>;
}

/// Keeps each subscriber's position, and the delivery lease.
pub trait PositionStore: Send + Sync {
    /// The subscriber's position; [`Position::default`] (rev 0) when none
    /// was saved yet.
    fn load(&self, subscriber: &str) -> Result<Position, String>;
    /// Stores `pos` with `rev = pos.rev + 1` if the stored rev is still
    /// `pos.rev` (0 = not stored yet); `Ok(false)` (nothing written) if
    /// not. SQL: `UPDATE … SET …, rev = rev + 1 WHERE subscriber = $1 AND rev = $2`.
    fn save(&self, subscriber: &str, pos: &Position) -> Result<bool, String>;
    /// Takes or renews the delivery lease of `subscriber` for `node` until
    /// `now_ms + ttl`; `Ok(false)` while another node holds an unexpired
    /// lease. (SQL: a lease row with an expiry, or a row lock taken with
    /// `FOR UPDATE SKIP LOCKED`; a store may use its own clock.)
    fn try_lease(
        &self,
        subscriber: &str,
        node: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, String>;
    /// Gives the lease up if `node` holds it.
    fn release(&self, subscriber: &str, node: &str) -> Result<(), String>;
}

/// Delivery state of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum State {
    #[default]
    Active,
    /// Delivery stopped at `seq` after `max_attempts` failures.
    DeadLettered {
        #[serde(rename = "deadLetteredSeq")]
        seq: u64,
        #[serde(rename = "deadLetterError")]
        last_error: String,
    },
}

/// Where a subscriber stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The last acknowledged `seq` (0: none).
    pub acked: u64,
    /// Failed attempts at the head event (`acked`'s successor).
    pub attempts: u32,
    /// Unix ms before which the head is not retried.
    pub next_attempt_ms: i64,
    /// The last failure, short and sanitised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub state: State,
    /// Optimistic-concurrency revision, see [`PositionStore::save`].
    pub rev: u64,
}

/// How the SETs of a subscriber are signed.
#[derive(Clone, PartialEq, Eq)]
pub enum SignatureKind {
    /// EdDSA with the instance's signing key (public keys at the JWKS route).
    EdDsa,
    /// HS256 with this shared secret.
    Hmac { secret: Vec<u8> },
}

impl std::fmt::Debug for SignatureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureKind::EdDsa => f.write_str("EdDsa"),
            SignatureKind::Hmac { .. } => f.write_str("Hmac { secret: <redacted> }"),
        }
    }
}

/// One webhook subscription (from configuration only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Unique name: the key of its position.
    pub name: String,
    /// Where SETs are POSTed: `https://…`, or `http://` to a loopback host
    /// (or anywhere if `allow_http`).
    pub url: String,
    /// `aud` of its SETs.
    pub audience: String,
    pub signature: SignatureKind,
    /// Failures of one event before the subscriber is dead-lettered (≥ 1).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Whole-request timeout of one POST.
    pub request_timeout: Duration,
    /// Events read (and delivered) per step (≥ 1).
    pub batch_size: usize,
    /// Allow plain `http://` to non-loopback hosts.
    pub allow_http: bool,
}

impl Subscriber {
    /// A subscriber with the defaults: EdDSA, 10 attempts, backoff 1 s
    /// doubling up to 5 min, 10 s request timeout, batches of 100.
    pub fn new(name: &str, url: &str, audience: &str) -> Subscriber {
        Subscriber {
            name: name.to_owned(),
            url: url.to_owned(),
            audience: audience.to_owned(),
            signature: SignatureKind::EdDsa,
            max_attempts: 10,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            request_timeout: Duration::from_secs(10),
            batch_size: 100,
            allow_http: false,
        }
    }

    /// Checks the settings; the message names the subscriber.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |m: String| Err(format!("change subscriber {:?}: {m}", self.name));
        if self.name.is_empty() {
            return fail("name is empty".into());
        }
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1".into());
        }
        if self.batch_size == 0 {
            return fail("batch_size must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return fail("request_timeout must be positive".into());
        }
        if self.backoff.base.is_zero() || self.backoff.cap < self.backoff.base {
            return fail("backoff needs 0 < base <= cap".into());
        }
        if let SignatureKind::Hmac { secret } = &self.signature {
            if secret.len() < 32 {
                return fail("the HMAC secret must be at least 32 bytes".into());
            }
        }
        let (scheme, rest) = match self.url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => return fail(format!("url {:?} is not absolute", self.url)),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return fail("url must not carry credentials".into());
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        if host.is_empty() {
            return fail(format!("url {:?} has no host", self.url));
        }
        match scheme.as_str() {
            "https" => Ok(()),
            "http" if self.allow_http || is_loopback(host) => Ok(()),
            "http" => fail(format!(
                "url {:?}: plain http only to a loopback host (or set allow_http)",
                self.url
            )),
            _ => fail(format!("url {:?}: only http and https", self.url)),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Wall-clock time in Unix milliseconds; injectable for tests.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Wakes a [`Deliverer::run`] loop. Cheap to clone; [`Notifier::notify`]
/// sets a flag and signals a condvar: it never waits for delivery.
#[derive(Clone, Default)]
pub struct Notifier(Arc<(Mutex<bool>, Condvar)>);

impl Notifier {
    pub fn notify(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// Waits until notified or `timeout` passed; consumes the notification.
    /// `true` if notified.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (flag, cv) = &*self.0;
        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |notified| !*notified)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *guard)
    }
}

/// What one [`Deliverer::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing to deliver.
    Idle,
    /// `count` events delivered, up to `acked`; `more` when the batch was
    /// full (step again).
    Delivered {
        count: usize,
        acked: u64,
        more: bool,
    },
    /// The head event `seq` failed (after `delivered` successes in this
    /// step); retried at `retry_at_ms`.
    Retry {
        delivered: usize,
        seq: u64,
        attempts: u32,
        retry_at_ms: i64,
        error: String,
    },
    /// A retry is pending until `until_ms`.
    Waiting { until_ms: i64 },
    /// The subscriber is dead-lettered at `seq`.
    DeadLettered { seq: u64, error: String },
    /// Another node holds the lease.
    Busy,
    /// The position changed under us (an operator, or another node): the
    /// step stopped without overwriting it.
    Superseded,
    /// The store failed.
    StoreError(String),
}

/// A subscriber's status, for the operations endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub subscriber: String,
    pub acked: u64,
    pub newest: u64,
    /// `newest - acked`.
    pub lag: u64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub state: State,
}

/// Longest cut of a receiver's answer or a transport error kept.
const ERROR_CUT: usize = 200;

/// The first [`ERROR_CUT`] characters of `s`, control characters blanked.
fn cut(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(ERROR_CUT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(ERROR_CUT).is_some() {
        out.push('…');
    }
    out
}

/// Delivers the change log to one subscriber.
pub struct Deliverer {
    sub: Subscriber,
    issuer: Issuer,
    key: Arc<SigningKey>,
    node: String,
    source: Arc<dyn ChangeSource>,
    store: Arc<dyn PositionStore>,
    agent: ureq::Agent,
    rng: Mutex<Box<dyn RandomSource>>,
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    poll_interval: Duration,
}

impl Deliverer {
    /// A deliverer for `sub` on node `node` (the lease holder's name).
    /// Fails when the subscriber's settings are invalid.
    pub fn new(
        sub: Subscriber,
        issuer: Issuer,
        key: Arc<SigningKey>,
        node: &str,
        source: Arc<dyn ChangeSource>,
        store: Arc<dyn PositionStore>,
    ) -> Result<Deliverer, String> {
        sub.validate()?;
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(sub.request_timeout)
            .user_agent(concat!("scimgate-changes/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Deliverer {
            sub,
            issuer,
            key,
            node: node.to_owned(),
            source,
            store,
            agent,
            rng: Mutex::new(Box::new(OsRandom)),
            clock: Arc::new(SystemClock),
            notifier: Notifier::default(),
            poll_interval: Duration::from_secs(5),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the jitter source (tests).
    pub fn with_random(mut self, rng: Box<dyn RandomSource>) -> Self {
        self.rng = Mutex::new(rng);
        self
    }

    /// How often [`Deliverer::run`] looks at the log without a notification
    /// (changes written by other nodes; default 5 s).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Shares a notifier (one for all subscribers of a writer).
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    pub fn subscriber(&self) -> &Subscriber {
        &self.sub
    }

    /// The lease outlives one POST comfortably; it is renewed before a POST
    /// when less than `request_timeout` + 1 s of it is left.
    fn lease_ttl(&self) -> Duration {
        self.sub.request_timeout * 2 + Duration::from_secs(5)
    }

    /// The signed SET for `change`, issued at `now_ms`.
    pub fn token(&self, change: &Change, now_ms: i64) -> String {
        let claims = set_claims(
            change,
            &self.issuer,
            &self.sub.audience,
            now_ms.div_euclid(1000),
        );
        match &self.sub.signature {
            SignatureKind::EdDsa => sign::sign_eddsa(&claims, &self.key),
            SignatureKind::Hmac { secret } => sign::sign_hs256(&claims, secret),
        }
    }

    /// One POST; `Err` carries a short description.
    fn post(&self, token: &str) -> Result<(), String> {
        let request = self
            .agent
            .post(&self.sub.url)
            .set("Content-Type", "application/secevent+jwt")
            .set("Accept", "application/json");
        match request.send_string(token) {
            Ok(resp) => {
                let status = resp.status();
                let mut sink = Vec::new();
                let _ = resp.into_reader().take(4096).read_to_end(&mut sink);
                match status {
                    200..=299 => Ok(()),
                    300..=399 => Err(format!(
                        "HTTP {status}: a redirect, not followed (fix the subscriber's url)"
                    )),
                    _ => Err(format!("HTTP {status}")),
                }
            }
            Err(ureq::Error::Status(status, resp)) => {
                let mut body = Vec::new();
                let _ = resp
                    .into_reader()
                    .take(ERROR_CUT as u64 * 4)
                    .read_to_end(&mut body);
                let body = cut(String::from_utf8_lossy(&body).trim());
                if body.is_empty() {
                    Err(format!("HTTP {status}"))
                } else {
                    Err(format!("HTTP {status}: {body}"))
                }
            }
            Err(ureq::Error::Transport(t)) => Err(cut(&t.to_string())),
        }
    }

    /// Takes the lease and delivers what is due at `now_ms`.
    pub fn step(&self, now_ms: i64) -> StepOutcome {
        match self
            .store
            .try_lease(&self.sub.name, &self.node, self.lease_ttl(), now_ms)
        {
            Ok(true) => {}
            Ok(false) => return StepOutcome::Busy,
            Err(e) => return StepOutcome::StoreError(e),
        }
        let outcome = self.step_leased(now_ms);
        if let Err(e) = self.store.release(&self.sub.name, &self.node) {
            if matches!(outcome, StepOutcome::StoreError(_)) {
                return outcome;
            }
            return StepOutcome::StoreError(e);
        }
        outcome
    }

    fn step_leased(&self, now_ms: i64) -> StepOutcome {
        let mut pos = match self.store.load(&self.sub.name) {
            Ok(p) => p,
            Err(e) => return StepOutcome::StoreError(e),
        };
        if let State::DeadLettered { seq, last_error } = &pos.state {
            return StepOutcome::DeadLettered {
                seq: *seq,
                error: last_error.clone(),
            };
        }
        if pos.next_attempt_ms > now_ms {
            return StepOutcome::Waiting {
                until_ms: pos.next_attempt_ms,
            };
        }
        let changes = match self.source.changes_after(pos.acked, self.sub.batch_size) {
            Ok(c) => c,
            Err(e) => return StepOutcome::StoreError(e),
        };
        if changes.is_empty() {
            return StepOutcome::Idle;
        }
        let full = changes.len() >= self.sub.batch_size;
        let mut delivered = 0;
        let ttl = i64::try_from(self.lease_ttl().as_millis()).unwrap_or(i64::MAX);
        // `step` took the lease at `now_ms`.
        let mut leased_until = now_ms.saturating_add(ttl);
        for change in &changes {
            // Before each POST the lease must outlast it (a POST ends
            // within request_timeout): renewed, on the real clock, when
            // less than that and a second are left. (Not on every POST: a
            // renewal is a store write.)
            let renew_at = self.clock.now_ms().max(now_ms);
            let needed =
                i64::try_from((self.sub.request_timeout + Duration::from_secs(1)).as_millis())
                    .unwrap_or(i64::MAX);
            if leased_until.saturating_sub(renew_at) < needed {
                match self
                    .store
                    .try_lease(&self.sub.name, &self.node, self.lease_ttl(), renew_at)
                {
                    Ok(true) => leased_until = renew_at.saturating_add(ttl),
                    Ok(false) => return StepOutcome::Busy,
                    Err(e) => return StepOutcome::StoreError(e),
                }
            }
            let token = self.token(change, now_ms);
            match self.post(&token) {
                Ok(()) => {
                    pos.acked = change.seq;
                    pos.attempts = 0;
                    pos.next_attempt_ms = 0;
                    pos.last_error = None;
                    if let Some(outcome) = self.save(&mut pos) {
                        return outcome;
                    }
                    delivered += 1;
                }
                Err(error) => {
                    pos.attempts = pos.attempts.saturating_add(1);
                    pos.last_error = Some(error.clone());
                    let outcome = if pos.attempts >= self.sub.max_attempts {
                        pos.state = State::DeadLettered {
                            seq: change.seq,
                            last_error: error.clone(),
                        };
                        StepOutcome::DeadLettered {
                            seq: change.seq,
                            error,
                        }
                    } else {
                        let delay = {
                            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                            self.sub.backoff.delay(pos.attempts, rng.as_mut())
                        };
                        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                        pos.next_attempt_ms = now_ms.saturating_add(delay.max(1));
                        StepOutcome::Retry {
                            delivered,
                            seq: change.seq,
                            attempts: pos.attempts,
                            retry_at_ms: pos.next_attempt_ms,
                            error,
                        }
                    };
                    return self.save(&mut pos).unwrap_or(outcome);
                }
            }
        }
        StepOutcome::Delivered {
            count: delivered,
            acked: pos.acked,
            more: full,
        }
    }

    /// Saves with compare-and-swap; `Some(outcome)` when the step must stop.
    fn save(&self, pos: &mut Position) -> Option<StepOutcome> {
        match self.store.save(&self.sub.name, pos) {
            Ok(true) => {
                pos.rev += 1;
                None
            }
            Ok(false) => Some(StepOutcome::Superseded),
            Err(e) => Some(StepOutcome::StoreError(e)),
        }
    }

    /// Position, lag and state.
    pub fn status(&self) -> Result<Status, String> {
        let pos = self.store.load(&self.sub.name)?;
        let newest = self.source.newest_seq()?;
        Ok(Status {
            subscriber: self.sub.name.clone(),
            acked: pos.acked,
            newest,
            lag: newest.saturating_sub(pos.acked),
            attempts: pos.attempts,
            next_attempt_ms: pos.next_attempt_ms,
            last_error: pos.last_error,
            state: pos.state,
        })
    }

    /// Applies `change` to the stored position (compare-and-swap, a few
    /// tries), then wakes the loop.
    fn update(
        &self,
        change: impl Fn(&mut Position) -> Result<(), String>,
    ) -> Result<Position, String> {
        for _ in 0..16 {
            let mut pos = self.store.load(&self.sub.name)?;
            change(&mut pos)?;
            if self.store.save(&self.sub.name, &pos)? {
                self.notifier.notify();
                return Ok(pos);
            }
        }
        Err(format!(
            "change subscriber {:?}: the position keeps changing, try again",
            self.sub.name
        ))
    }

    /// Delivers again from `from_seq` on (everything with `seq >= from_seq`),
    /// clearing a dead letter and any pending retry.
    pub fn replay(&self, from_seq: u64) -> Result<(), String> {
        self.update(|pos| {
            pos.acked = from_seq.saturating_sub(1);
            pos.attempts = 0;
            pos.next_attempt_ms = 0;
            pos.last_error = None;
            pos.state = State::Active;
            Ok(())
        })
        .map(|_| ())
    }

    /// Passes over the head event when it is dead-lettered or failing
    /// (being retried), and resumes with the next. Returns the skipped
    /// `seq`; `None` when the head is not failing (nothing is skipped).
    pub fn skip(&self) -> Result<Option<u64>, String> {
        let pos = self.store.load(&self.sub.name)?;
        let head = match pos.state {
            State::DeadLettered { seq, .. } => seq,
            State::Active if pos.attempts == 0 => return Ok(None),
            State::Active => match self.source.changes_after(pos.acked, 1)?.first() {
                Some(c) => c.seq,
                None => return Ok(None),
            },
        };
        self.update(|pos| {
            if pos.acked >= head {
                return Err(format!(
                    "change subscriber {:?}: already past {head}",
                    self.sub.name
                ));
            }
            pos.acked = head;
            pos.attempts = 0;
            pos.next_attempt_ms = 0;
            pos.last_error = None;
            pos.state = State::Active;
            Ok(())
        })?;
        Ok(Some(head))
    }

    /// The background loop: steps while there is work, sleeps until the
    /// next retry, a [`Notifier::notify`] or the poll interval, and returns
    /// once `stop` is set (call `notify()` after setting it to wake the
    /// loop at once).
    pub fn run(&self, stop: &AtomicBool) {
        self.run_observed(stop, |_| {});
    }

    /// [`Deliverer::run`], handing every step's outcome to `observe` (to
    /// log failures and dead letters, count deliveries).
    pub fn run_observed(&self, stop: &AtomicBool, mut observe: impl FnMut(&StepOutcome)) {
        while !stop.load(Ordering::Acquire) {
            let now = self.clock.now_ms();
            let outcome = self.step(now);
            observe(&outcome);
            let wait = match outcome {
                StepOutcome::Delivered { .. } | StepOutcome::Superseded => continue,
                StepOutcome::Retry { retry_at_ms, .. } => ms_until(now, retry_at_ms),
                StepOutcome::Waiting { until_ms } => ms_until(now, until_ms),
                StepOutcome::Idle
                | StepOutcome::DeadLettered { .. }
                | StepOutcome::Busy
                | StepOutcome::StoreError(_) => self.poll_interval,
            };
            self.notifier.wait(wait.min(self.poll_interval));
        }
    }
}

fn ms_until(now: i64, then: i64) -> Duration {
    Duration::from_millis(u64::try_from(then.saturating_sub(now)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(url: &str) -> Subscriber {
        Subscriber::new("s", url, "aud")
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(sub("https://rx.example.com/events").validate().is_ok());
        assert!(sub("http://127.0.0.1:9/x").validate().is_ok());
        assert!(sub("http://localhost/x").validate().is_ok());
        assert!(sub("http://[::1]:8080/x").validate().is_ok());
        let e = sub("http://rx.example.com/x").validate().unwrap_err();
        assert!(e.contains("loopback") && e.contains("\"s\""), "{e}");
        let mut s = sub("http://rx.example.com/x");
        s.allow_http = true;
        assert!(s.validate().is_ok());
        assert!(sub("ftp://rx.example.com/x")
            .validate()
            .unwrap_err()
            .contains("only http"));
        assert!(sub("rx.example.com")
            .validate()
            .unwrap_err()
            .contains("absolute"));
        assert!(sub("https://user:pw@rx.example.com/")
            .validate()
            .unwrap_err()
            .contains("credentials"));
        assert!(sub("https:///x")
            .validate()
            .unwrap_err()
            .contains("no host"));
        // 127.0.0.1.example.com is not loopback.
        assert!(sub("http://127.0.0.1.example.com/").validate().is_err());
    }

    #[test]
    fn settings_are_checked() {
        let mut s = sub("https://a.example/");
        s.max_attempts = 0;
        assert!(s.validate().unwrap_err().contains("max_attempts"));
        let mut s = sub("https://a.example/");
        s.batch_size = 0;
        assert!(s.validate().unwrap_err().contains("batch_size"));
        let mut s = sub("https://a.example/");
        s.signature = SignatureKind::Hmac {
            secret: b"short".to_vec(),
        };
        assert!(s.validate().unwrap_err().contains("32 bytes"));
        let mut s = sub("https://a.example/");
        s.backoff.cap = Duration::from_millis(1);
        assert!(s.validate().unwrap_err().contains("backoff"));
    }

    #[test]
    fn the_hmac_secret_is_not_in_debug_output() {
        let mut s = sub("https://a.example/");
        s.signature = SignatureKind::Hmac {
            secret: b"0123456789abcdef0123456789abcdef-TOPSECRET".to_vec(),
        };
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("TOPSECRET") && !dbg.contains("48, 49"),
            "{dbg}"
        );
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn error_cut_is_short_and_single_line() {
        let long = format!("line1\nline2\r{}", "x".repeat(1000));
        let c = cut(&long);
        assert!(c.chars().count() <= ERROR_CUT + 1);
        assert!(!c.contains('\n') && !c.contains('\r'));
        assert!(c.ends_with('…'));
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let n = Notifier::default();
        n.notify();
        assert!(n.wait(Duration::from_secs(30)));
        // Consumed: the next wait times out.
        assert!(!n.wait(Duration::from_millis(1)));
    }

    #[test]
    fn status_serialises_state_inline() {
        let st = Status {
            subscriber: "s".into(),
            acked: 3,
            newest: 5,
            lag: 2,
            attempts: 1,
            next_attempt_ms: 0,
            last_error: Some("HTTP 500".into()),
            state: State::DeadLettered {
                seq: 4,
                last_error: "HTTP 500".into(),
            },
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["state"], "deadLettered");
        assert_eq!(v["deadLetteredSeq"], 4);
        assert_eq!(v["deadLetterError"], "HTTP 500");
        assert_eq!(v["lastError"], "HTTP 500");
        assert_eq!(v["lag"], 2);
    }

    #[test]
    fn positions_round_trip_through_json() {
        for state in [
            State::Active,
            State::DeadLettered {
                seq: 9,
                last_error: "HTTP 500".into(),
            },
        ] {
            let pos = Position {
                acked: 8,
                attempts: 3,
                next_attempt_ms: 1234,
                last_error: Some("x".into()),
                state,
                rev: 5,
            };
            let json = serde_json::to_string(&pos).unwrap();
            assert_eq!(
                serde_json::from_str::<Position>(&json).unwrap(),
                pos,
                "{json}"
            );
        }
        let active = serde_json::to_value(Position::default()).unwrap();
        assert_eq!(active["state"], "active");
    }
}
