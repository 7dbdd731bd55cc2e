//! The host's Prometheus metrics (text exposition format 0.0.4), served at
//! `GET /metrics` (see docs/deployment.md, "Metrics"). No metrics library:
//! counters, gauges and fixed-bucket histograms are atomics, and a request
//! costs one short map look-up of its route plus a few atomic adds. Series
//! whose labels are not known in advance (denying stage, panicking stage)
//! live in small lists behind a mutex, touched only when such an event
//! happens. Store operations that plugins report through the host services
//! (`scimgate_store_*`) go to [`StoreMetrics`], one per process, reached
//! per request through the route's handle ([`store_metrics`]). So do the
//! change-feed subscriber gauges (`scimgate_change_subscriber_*`,
//! [`ChangeMetrics`]), kept per route and subscriber name, at most
//! [`MAX_CHANGE_SUBSCRIBERS`] of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::pipeline::{AuditRecord, Decision, RunMode};

/// The `le` bounds of `scimgate_request_duration_seconds`, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of a request no route served (a mount starts with `/`).
pub const NO_ROUTE: &str = "(none)";
/// The `stage` label of a denial by the host itself (bad path, no route,
/// body too large): stage names are `[A-Za-z0-9_-]+`, so this is no stage's.
pub const HOST_STAGE: &str = "(host)";

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const DECISIONS: [Decision; 3] = [Decision::Allow, Decision::Deny, Decision::Error];
/// Statuses 100..=599 are counted exactly; anything outside (a plugin's odd
/// status) is clamped into that range.
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500;

/// A monotonic counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (e.g. connections open).
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Never below zero.
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A histogram over [`DURATION_BUCKETS`]: one counter per bucket (rendered
/// cumulatively), the sum in nanoseconds and the count.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last slot is `+Inf` only.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `_bucket` (cumulative, ending with `le="+Inf"`), `_sum`, `_count`.
    fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0u64;
        for (slot, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match DURATION_BUCKETS.get(slot) {
                Some(le) => format!("{le}"),
                None => "+Inf".to_string(),
            };
            let mut all = labels.to_vec();
            all.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &all, cumulative);
        }
        // The count is at least the buckets' total read above, so that a
        // scrape racing an observation never shows `_count` < `+Inf`.
        let count = self.count.load(Ordering::Relaxed).max(cumulative);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, count);
    }
}

/// The series of one route (by mount), created on its first request and
/// kept across reloads so that counters stay monotonic.
#[derive(Debug)]
pub struct RouteMetrics {
    /// `[decision][status - 100]`.
    requests: Vec<[Counter; STATUS_SLOTS]>,
    duration: Histogram,
    tokens_issued: Counter,
    tokens_refused: Counter,
    /// Denials by stage name (few, known after the first of each).
    denials: Mutex<Vec<(String, u64)>>,
    /// Ever saw a token-route request (to export the token series).
    mints_tokens: std::sync::atomic::AtomicBool,
    /// Pipelines run, by [`RUN_MODES`].
    runs: [Counter; 3],
}

/// Where a route's pipelines ran (`scimgate_pipeline_runs_total{mode}`).
const RUN_MODES: [RunMode; 3] = [RunMode::Inline, RunMode::Resumed, RunMode::Blocking];

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            requests: DECISIONS
                .iter()
                .map(|_| std::array::from_fn(|_| Counter::default()))
                .collect(),
            duration: Histogram::default(),
            tokens_issued: Counter::default(),
            tokens_refused: Counter::default(),
            denials: Mutex::new(Vec::new()),
            mints_tokens: std::sync::atomic::AtomicBool::new(false),
            runs: std::array::from_fn(|_| Counter::default()),
        }
    }
}

fn decision_index(decision: Decision) -> usize {
    match decision {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::Error => 2,
    }
}

fn status_slot(status: u16) -> usize {
    usize::from(status.clamp(STATUS_MIN, STATUS_MIN + STATUS_SLOTS as u16 - 1) - STATUS_MIN)
}

/// The outcome of a configuration reload, for `scimgate_config_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Failure,
}

/// Values the registry does not own, read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub pipelines_in_flight: usize,
    pub pipeline_capacity: usize,
}

/// The `operation` label values of the store series. A plugin's report of
/// another name counts as `other`, so a plugin cannot grow the label set.
pub const STORE_OPERATIONS: [&str; 13] = [
    "get",
    "search",
    "count",
    "members",
    "generation",
    "create",
    "replace",
    "patch",
    "delete",
    "bulk",
    "write",
    "migrate",
    "other",
];

/// The `kind` label values of `scimgate_store_errors_total`: `unavailable`
/// (the store cannot be reached, its pool stayed busy: 503), `internal`
/// (the store failed: 500), `conflict` (a uniqueness or version conflict:
/// 409/412), `client` (another refusal of the client's request decided in
/// the store's unit of work, e.g. 404); anything else counts as `other`.
pub const STORE_ERROR_KINDS: [&str; 5] = ["unavailable", "internal", "conflict", "client", "other"];

fn store_operation_index(operation: &str) -> usize {
    STORE_OPERATIONS
        .iter()
        .position(|o| *o == operation)
        .unwrap_or(STORE_OPERATIONS.len() - 1)
}

fn store_error_index(kind: &str) -> usize {
    STORE_ERROR_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(STORE_ERROR_KINDS.len() - 1)
}

/// One store operation of one route: its duration histogram and its errors
/// by kind.
#[derive(Debug, Default)]
struct StoreOperation {
    duration: Histogram,
    errors: [Counter; STORE_ERROR_KINDS.len()],
}

/// The store series of one route (by mount): fixed arrays of atomics, so a
/// report costs two index look-ups over short constant lists and a few
/// atomic writes.
#[derive(Debug, Default)]
pub struct RouteStoreMetrics {
    /// The route's mount as rendered (`(none)` outside any route).
    mount: String,
    operations: [StoreOperation; STORE_OPERATIONS.len()],
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_size: Gauge,
    /// The pool was ever reported (to export the pool gauges).
    has_pool: std::sync::atomic::AtomicBool,
}

/// A store's connection pool, as a plugin reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: u64,
    pub idle: u64,
    pub size: u64,
}

impl RouteStoreMetrics {
    /// Counts one store operation. `error_kind`: empty when it succeeded.
    pub fn report(
        &self,
        operation: &str,
        elapsed: Duration,
        error_kind: &str,
        pool: Option<PoolState>,
    ) {
        let op = &self.operations[store_operation_index(operation)];
        op.duration.observe(elapsed);
        if !error_kind.is_empty() {
            op.errors[store_error_index(error_kind)].inc();
        }
        if let Some(pool) = pool {
            self.pool_in_use.set(pool.in_use);
            self.pool_idle.set(pool.idle);
            self.pool_size.set(pool.size);
            self.has_pool.store(true, Ordering::Relaxed);
        }
    }

    /// Operations reported under `operation` (as counted: an unknown name
    /// is `other`).
    pub fn operation_count(&self, operation: &str) -> u64 {
        self.operations[store_operation_index(operation)]
            .duration
            .count
            .load(Ordering::Relaxed)
    }

    /// The route's mount as rendered in labels (`(none)` outside any route).
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Failed operations reported under `operation` and `kind`.
    pub fn error_count(&self, operation: &str, kind: &str) -> u64 {
        self.operations[store_operation_index(operation)].errors[store_error_index(kind)].get()
    }
}

/// The store series of every route, kept across reloads (a route's mount
/// finds its entry again).
#[derive(Debug, Default)]
pub struct StoreMetrics {
    routes: Mutex<HashMap<String, Arc<RouteStoreMetrics>>>,
    /// The change-feed subscriber gauges, reported the same way.
    pub changes: ChangeMetrics,
}

/// The most (route, subscriber) pairs the change-feed gauges keep; reports
/// for further pairs are dropped (with one warning), so a plugin cannot
/// grow `/metrics` without bound.
pub const MAX_CHANGE_SUBSCRIBERS: usize = 256;

/// The longest subscriber name kept as a label value, in bytes; longer
/// names are cut (at a character boundary).
pub const MAX_SUBSCRIBER_LABEL: usize = 128;

/// The last state of one change-feed subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberState {
    /// Change-log entries not yet acknowledged.
    pub lag: u64,
    pub dead_lettered: bool,
}

/// The change-feed subscriber gauges (`scimgate_change_subscriber_lag`,
/// `scimgate_change_subscriber_dead_lettered`): the last state each
/// subscriber was reported in, by route mount and subscriber name. Kept
/// across reloads, like the store series.
#[derive(Debug, Default)]
pub struct ChangeMetrics {
    subscribers: Mutex<BTreeMap<(String, String), SubscriberState>>,
    /// A report was dropped because the map was full (warned once).
    overflowed: AtomicBool,
}

impl ChangeMetrics {
    /// Records the state of `subscriber` under the route mounted at `mount`
    /// (`""` or `(none)`: outside any route).
    pub fn report(&self, mount: &str, subscriber: &str, state: SubscriberState) {
        let mount = if mount.is_empty() { NO_ROUTE } else { mount };
        let subscriber = cut_label(subscriber, MAX_SUBSCRIBER_LABEL);
        let mut subscribers = lock(&self.subscribers);
        // Look up by borrowed parts first: no allocation for a known pair.
        if let Some(entry) = subscribers
            .iter_mut()
            .find(|((m, s), _)| m == mount && s == subscriber)
            .map(|(_, v)| v)
        {
            *entry = state;
            return;
        }
        if subscribers.len() >= MAX_CHANGE_SUBSCRIBERS {
            drop(subscribers);
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    route = mount,
                    subscriber,
                    "more than {MAX_CHANGE_SUBSCRIBERS} change-feed subscribers reported; \
                     the metrics of further ones are dropped"
                );
            }
            return;
        }
        subscribers.insert((mount.to_string(), subscriber.to_string()), state);
    }

    /// The last state reported for `subscriber` under `mount`.
    pub fn get(&self, mount: &str, subscriber: &str) -> Option<SubscriberState> {
        let mount = if mount.is_empty() { NO_ROUTE } else { mount };
        lock(&self.subscribers)
            .get(&(mount.to_string(), subscriber.to_string()))
            .copied()
    }

    fn render(&self, out: &mut String) {
        let subscribers: Vec<((String, String), SubscriberState)> = lock(&self.subscribers)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        header(
            out,
            "scimgate_change_subscriber_lag",
            "gauge",
            "Change-log entries a change-feed subscriber has not yet acknowledged, by route mount and subscriber.",
        );
        for ((mount, subscriber), state) in &subscribers {
            sample(
                out,
                "scimgate_change_subscriber_lag",
                &[("route", mount), ("subscriber", subscriber)],
                state.lag,
            );
        }
        header(
            out,
            "scimgate_change_subscriber_dead_lettered",
            "gauge",
            "1 while a change-feed subscriber's delivery is dead-lettered (stopped until replay or skip), else 0.",
        );
        for ((mount, subscriber), state) in &subscribers {
            sample(
                out,
                "scimgate_change_subscriber_dead_lettered",
                &[("route", mount), ("subscriber", subscriber)],
                u8::from(state.dead_lettered),
            );
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut_label(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl StoreMetrics {
    /// The entry of the route mounted at `mount` (`""`: outside any route,
    /// rendered as `(none)`), created on first use. Called when a route is
    /// built, not per request.
    pub fn route(&self, mount: &str) -> Arc<RouteStoreMetrics> {
        let key = if mount.is_empty() { NO_ROUTE } else { mount };
        let mut routes = lock(&self.routes);
        if let Some(route) = routes.get(key) {
            return route.clone();
        }
        let route = Arc::new(RouteStoreMetrics {
            mount: key.to_string(),
            ..RouteStoreMetrics::default()
        });
        routes.insert(key.to_string(), route.clone());
        route
    }

    fn render(&self, out: &mut String) {
        let mut routes: Vec<(String, Arc<RouteStoreMetrics>)> = lock(&self.routes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));

        header(
            out,
            "scimgate_store_operation_duration_seconds",
            "histogram",
            "Time of the store operations plugins report (SCIM endpoint: SQLite, PostgreSQL), by route mount and operation.",
        );
        for (mount, route) in &routes {
            for (i, op) in route.operations.iter().enumerate() {
                if op.duration.count.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                op.duration.render(
                    out,
                    "scimgate_store_operation_duration_seconds",
                    &[("route", mount), ("operation", STORE_OPERATIONS[i])],
                );
            }
        }
        header(
            out,
            "scimgate_store_errors_total",
            "counter",
            "Store operations that failed, by route mount, operation and kind (unavailable, internal, conflict, client, other).",
        );
        for (mount, route) in &routes {
            for (i, op) in route.operations.iter().enumerate() {
                for (k, counter) in op.errors.iter().enumerate() {
                    let n = counter.get();
                    if n == 0 {
                        continue;
                    }
                    sample(
                        out,
                        "scimgate_store_errors_total",
                        &[
                            ("route", mount),
                            ("operation", STORE_OPERATIONS[i]),
                            ("kind", STORE_ERROR_KINDS[k]),
                        ],
                        n,
                    );
                }
            }
        }
        header(
            out,
            "scimgate_store_pool_connections",
            "gauge",
            "Connections of a store's pool after the route's last store operation, by state (in_use, idle).",
        );
        for (mount, route) in &routes {
            if !route.has_pool.load(Ordering::Relaxed) {
                continue;
            }
            for (state, gauge) in [("in_use", &route.pool_in_use), ("idle", &route.pool_idle)] {
                sample(
                    out,
                    "scimgate_store_pool_connections",
                    &[("route", mount), ("state", state)],
                    gauge.get(),
                );
            }
        }
        header(
            out,
            "scimgate_store_pool_size",
            "gauge",
            "The most connections a store's pool opens (pool_size), by route mount.",
        );
        for (mount, route) in &routes {
            if !route.has_pool.load(Ordering::Relaxed) {
                continue;
            }
            sample(
                out,
                "scimgate_store_pool_size",
                &[("route", mount)],
                route.pool_size.get(),
            );
        }
        self.changes.render(out);
    }
}

/// The process's store series: store operations are reported by plugins
/// through the host services, which have no handle on a server's
/// [`Metrics`]; one process runs one server.
pub fn store_metrics() -> &'static Arc<StoreMetrics> {
    static STORE: std::sync::OnceLock<Arc<StoreMetrics>> = std::sync::OnceLock::new();
    STORE.get_or_init(Default::default)
}

/// Every series of one running server.
#[derive(Debug)]
pub struct Metrics {
    routes: Mutex<HashMap<String, Arc<RouteMetrics>>>,
    /// Contained plugin panics by stage name.
    panics: Mutex<Vec<(String, u64)>>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    /// Connections open on the main listener.
    pub connections_open: Arc<Gauge>,
    /// Store operations reported by plugins ([`store_metrics`]).
    store: Arc<StoreMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_store(store_metrics().clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Adds one to `name`'s entry of a small labelled list.
fn bump(list: &Mutex<Vec<(String, u64)>>, name: &str) {
    let mut list = lock(list);
    match list.iter_mut().find(|(n, _)| n == name) {
        Some((_, count)) => *count += 1,
        None => list.push((name.to_string(), 1)),
    }
}

/// Whether the audit record is of a plugin panic contained by the SDK: a
/// 500 from a stage whose error is the SDK's panic error (code `panic`,
/// message "component `NAME` panicked: …"). The audit record carries the
/// error's message, not its code, so the message is what is matched.
pub fn is_contained_panic(audit: &AuditRecord) -> bool {
    audit.decision == Decision::Error
        && audit.status == 500
        && !audit.stage.is_empty()
        && audit.reason.contains("` panicked: ")
}

impl Metrics {
    /// Metrics that render `store` as their store series (tests use their
    /// own; [`Metrics::default`] the process's).
    pub fn with_store(store: Arc<StoreMetrics>) -> Self {
        Metrics {
            routes: Mutex::default(),
            panics: Mutex::default(),
            reloads_ok: Counter::default(),
            reloads_failed: Counter::default(),
            connections_open: Arc::default(),
            store,
        }
    }

    fn route(&self, mount: &str) -> Arc<RouteMetrics> {
        let key = if mount.is_empty() { NO_ROUTE } else { mount };
        let mut routes = lock(&self.routes);
        if let Some(route) = routes.get(key) {
            return route.clone();
        }
        let route = Arc::new(RouteMetrics::default());
        routes.insert(key.to_string(), route.clone());
        route
    }

    /// Counts one finished request from its audit record. `mints_tokens`:
    /// the route's endpoint declares `MintsTokens`.
    pub fn observe(&self, audit: &AuditRecord, elapsed: Duration, mints_tokens: bool) {
        let route = self.route(&audit.route);
        route.requests[decision_index(audit.decision)][status_slot(audit.status)].inc();
        route.duration.observe(elapsed);
        if let Some(slot) = RUN_MODES.iter().position(|mode| *mode == audit.run) {
            route.runs[slot].inc();
        }
        if audit.decision == Decision::Deny {
            let stage = if audit.stage.is_empty() {
                HOST_STAGE
            } else {
                audit.stage.as_str()
            };
            bump(&route.denials, stage);
        }
        if mints_tokens {
            route.mints_tokens.store(true, Ordering::Relaxed);
            match audit.status {
                200..=299 => route.tokens_issued.inc(),
                400..=499 => route.tokens_refused.inc(),
                _ => {}
            }
        }
        if is_contained_panic(audit) {
            bump(&self.panics, &audit.stage);
        }
    }

    pub fn reloaded(&self, result: ReloadResult) {
        match result {
            ReloadResult::Success => self.reloads_ok.inc(),
            ReloadResult::Failure => self.reloads_failed.inc(),
        }
    }

    /// The whole exposition, series sorted by name and labels.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let mut routes: Vec<(String, Arc<RouteMetrics>)> = lock(&self.routes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));

        header(
            &mut out,
            "scimgate_build_info",
            "gauge",
            "The running build: scimgate version, plugin ABI version and epoch.",
        );
        let abi_version = scimgate_abi::ABI_VERSION.to_string();
        let abi_epoch = scimgate_abi::ABI_EPOCH.to_string();
        sample(
            &mut out,
            "scimgate_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("abi_version", &abi_version),
                ("abi_epoch", &abi_epoch),
            ],
            1,
        );

        header(
            &mut out,
            "scimgate_requests_total",
            "counter",
            "Requests answered, by route mount, HTTP status and decision (allow, deny, error).",
        );
        for (mount, route) in &routes {
            for (d, decision) in DECISIONS.iter().enumerate() {
                for (slot, counter) in route.requests[d].iter().enumerate() {
                    let n = counter.get();
                    if n == 0 {
                        continue;
                    }
                    let status = (STATUS_MIN as usize + slot).to_string();
                    sample(
                        &mut out,
                        "scimgate_requests_total",
                        &[
                            ("route", mount),
                            ("status", &status),
                            ("decision", decision.as_str()),
                        ],
                        n,
                    );
                }
            }
        }

        header(
            &mut out,
            "scimgate_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route mount.",
        );
        for (mount, route) in &routes {
            route.duration.render(
                &mut out,
                "scimgate_request_duration_seconds",
                &[("route", mount)],
            );
        }

        header(
            &mut out,
            "scimgate_denials_total",
            "counter",
            "Requests denied, by route mount and denying stage ((host): refused before any stage).",
        );
        for (mount, route) in &routes {
            let mut denials = lock(&route.denials).clone();
            denials.sort();
            for (stage, n) in denials {
                sample(
                    &mut out,
                    "scimgate_denials_total",
                    &[("route", mount), ("stage", &stage)],
                    n,
                );
            }
        }

        for (name, help, issued) in [
            (
                "scimgate_tokens_issued_total",
                "Token requests answered 2xx on routes whose endpoint mints tokens.",
                true,
            ),
            (
                "scimgate_tokens_refused_total",
                "Token requests answered 4xx on routes whose endpoint mints tokens.",
                false,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (mount, route) in &routes {
                if !route.mints_tokens.load(Ordering::Relaxed) {
                    continue;
                }
                let n = if issued {
                    route.tokens_issued.get()
                } else {
                    route.tokens_refused.get()
                };
                sample(&mut out, name, &[("route", mount)], n);
            }
        }

        header(
            &mut out,
            "scimgate_pipeline_runs_total",
            "counter",
            "Pipelines run, by route mount and mode: inline (on an async worker), resumed (begun inline, finished on the blocking pool from the stage that would have blocked), blocking (on the blocking pool).",
        );
        for (mount, route) in &routes {
            for (slot, mode) in RUN_MODES.iter().enumerate() {
                let n = route.runs[slot].get();
                if n > 0 {
                    sample(
                        &mut out,
                        "scimgate_pipeline_runs_total",
                        &[("route", mount), ("mode", mode.as_str())],
                        n,
                    );
                }
            }
        }

        header(
            &mut out,
            "scimgate_plugin_panics_total",
            "counter",
            "Plugin panics contained by the plugin SDK (each answered 500), by stage.",
        );
        let mut panics = lock(&self.panics).clone();
        panics.sort();
        for (stage, n) in panics {
            sample(
                &mut out,
                "scimgate_plugin_panics_total",
                &[("stage", &stage)],
                n,
            );
        }

        self.store.render(&mut out);

        header(
            &mut out,
            "scimgate_pipelines_in_flight",
            "gauge",
            "Pipelines in flight: running inline, running or queued on the blocking pool.",
        );
        sample(
            &mut out,
            "scimgate_pipelines_in_flight",
            &[],
            snapshot.pipelines_in_flight,
        );
        header(
            &mut out,
            "scimgate_pipeline_capacity",
            "gauge",
            "Pipelines that may be in flight (twice server.blocking_threads); past it requests get 503.",
        );
        sample(
            &mut out,
            "scimgate_pipeline_capacity",
            &[],
            snapshot.pipeline_capacity,
        );
        header(
            &mut out,
            "scimgate_connections_open",
            "gauge",
            "HTTP connections open on the main listener.",
        );
        sample(
            &mut out,
            "scimgate_connections_open",
            &[],
            self.connections_open.get(),
        );

        header(
            &mut out,
            "scimgate_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result (success, failure).",
        );
        sample(
            &mut out,
            "scimgate_config_reloads_total",
            &[("result", "success")],
            self.reloads_ok.get(),
        );
        sample(
            &mut out,
            "scimgate_config_reloads_total",
            &[("result", "failure")],
            self.reloads_failed.get(),
        );
        out
    }
}

/// `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: `\` → `\\`, `"` → `\"`,
/// line feed → `\n`.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `# HELP` text: `\` → `\\`, line feed → `\n`.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(
        route: &str,
        status: u16,
        decision: Decision,
        stage: &str,
        reason: &str,
    ) -> AuditRecord {
        let mut audit = AuditRecord::new(route);
        audit.status = status;
        audit.decision = decision;
        audit.stage = stage.to_string();
        audit.reason = reason.to_string();
        audit
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
            .collect()
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value(r"a\b"), r"a\\b");
        assert_eq!(escape_label_value("say \"hi\""), r#"say \"hi\""#);
        assert_eq!(escape_label_value("two\nlines"), r"two\nlines");
        assert_eq!(escape_label_value("plain/é"), "plain/é");
        let mut out = String::new();
        sample(&mut out, "m", &[("route", "/a\\\"b\nc"), ("x", "y")], 3);
        assert_eq!(out, "m{route=\"/a\\\\\\\"b\\nc\",x=\"y\"} 3\n");
        let mut out = String::new();
        sample(&mut out, "m", &[], 7);
        assert_eq!(out, "m 7\n");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_ending_in_inf_then_sum_and_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300)); // ≤ 0.0005
        histogram.observe(Duration::from_millis(1)); // ≤ 0.001 exactly
        histogram.observe(Duration::from_millis(200)); // ≤ 0.25
        histogram.observe(Duration::from_secs(11)); // +Inf only
        let mut out = String::new();
        histogram.render(&mut out, "d", &[("route", "/r")]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), DURATION_BUCKETS.len() + 3, "{out}");
        assert_eq!(lines[0], "d_bucket{route=\"/r\",le=\"0.0005\"} 1");
        assert_eq!(lines[1], "d_bucket{route=\"/r\",le=\"0.001\"} 2");
        assert_eq!(lines[7], "d_bucket{route=\"/r\",le=\"0.1\"} 2");
        assert_eq!(lines[8], "d_bucket{route=\"/r\",le=\"0.25\"} 3");
        assert_eq!(lines[13], "d_bucket{route=\"/r\",le=\"10\"} 3");
        assert_eq!(lines[14], "d_bucket{route=\"/r\",le=\"+Inf\"} 4");
        assert_eq!(lines[15], "d_sum{route=\"/r\"} 11.2013");
        assert_eq!(lines[16], "d_count{route=\"/r\"} 4");
    }

    #[test]
    fn requests_denials_tokens_panics_and_reloads_are_counted() {
        let metrics = Metrics::default();
        let ms = Duration::from_millis(2);
        metrics.observe(&audit("/scim", 200, Decision::Allow, "", ""), ms, false);
        metrics.observe(&audit("/scim", 200, Decision::Allow, "", ""), ms, false);
        metrics.observe(
            &audit("/scim", 403, Decision::Deny, "ips", "not allowed"),
            ms,
            false,
        );
        metrics.observe(&audit("", 404, Decision::Deny, "", "no route"), ms, false);
        metrics.observe(&audit("/token", 200, Decision::Allow, "", ""), ms, true);
        metrics.observe(
            &audit("/token", 401, Decision::Deny, "client-auth", "bad secret"),
            ms,
            true,
        );
        metrics.observe(
            &audit(
                "/scim",
                500,
                Decision::Error,
                "echo",
                "component `echo` panicked: boom",
            ),
            ms,
            false,
        );
        // A plain 500 is no panic.
        metrics.observe(
            &audit("/scim", 500, Decision::Error, "echo", "store down"),
            ms,
            false,
        );
        metrics.reloaded(ReloadResult::Success);
        metrics.reloaded(ReloadResult::Failure);
        metrics.reloaded(ReloadResult::Success);
        metrics.connections_open.inc();
        metrics.connections_open.inc();
        metrics.connections_open.dec();
        let text = metrics.render(Snapshot {
            pipelines_in_flight: 3,
            pipeline_capacity: 128,
        });
        let requests = lines_of(&text, "scimgate_requests_total");
        for expected in [
            "scimgate_requests_total{route=\"/scim\",status=\"200\",decision=\"allow\"} 2",
            "scimgate_requests_total{route=\"/scim\",status=\"403\",decision=\"deny\"} 1",
            "scimgate_requests_total{route=\"/scim\",status=\"500\",decision=\"error\"} 2",
            "scimgate_requests_total{route=\"(none)\",status=\"404\",decision=\"deny\"} 1",
        ] {
            assert!(requests.contains(&expected), "{expected} in\n{text}");
        }
        assert_eq!(requests.len(), 6, "{text}");
        assert_eq!(
            lines_of(&text, "scimgate_denials_total"),
            [
                "scimgate_denials_total{route=\"(none)\",stage=\"(host)\"} 1",
                "scimgate_denials_total{route=\"/scim\",stage=\"ips\"} 1",
                "scimgate_denials_total{route=\"/token\",stage=\"client-auth\"} 1",
            ]
        );
        assert_eq!(
            lines_of(&text, "scimgate_tokens_issued_total"),
            ["scimgate_tokens_issued_total{route=\"/token\"} 1"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_tokens_refused_total"),
            ["scimgate_tokens_refused_total{route=\"/token\"} 1"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_plugin_panics_total"),
            ["scimgate_plugin_panics_total{stage=\"echo\"} 1"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_config_reloads_total"),
            [
                "scimgate_config_reloads_total{result=\"success\"} 2",
                "scimgate_config_reloads_total{result=\"failure\"} 1",
            ]
        );
        assert_eq!(
            lines_of(&text, "scimgate_pipelines_in_flight"),
            ["scimgate_pipelines_in_flight 3"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_pipeline_capacity"),
            ["scimgate_pipeline_capacity 128"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_connections_open"),
            ["scimgate_connections_open 1"]
        );
        assert_eq!(
            lines_of(&text, "scimgate_request_duration_seconds_count"),
            [
                "scimgate_request_duration_seconds_count{route=\"(none)\"} 1",
                "scimgate_request_duration_seconds_count{route=\"/scim\"} 5",
                "scimgate_request_duration_seconds_count{route=\"/token\"} 2",
            ]
        );
        let build = lines_of(&text, "scimgate_build_info");
        assert_eq!(build.len(), 1);
        assert!(
            build[0].starts_with(&format!(
                "scimgate_build_info{{version=\"{}\",abi_version=\"{}\",abi_epoch=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                scimgate_abi::ABI_VERSION,
                scimgate_abi::ABI_EPOCH
            )),
            "{}",
            build[0]
        );
        // Every family has its HELP and TYPE once, before its samples.
        for family in [
            "scimgate_requests_total counter",
            "scimgate_request_duration_seconds histogram",
            "scimgate_pipelines_in_flight gauge",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family}\n")).count(),
                1,
                "{family}"
            );
        }
    }

    #[test]
    fn store_operations_errors_and_pools_are_rendered_per_route() {
        let store = Arc::new(StoreMetrics::default());
        let metrics = Metrics::with_store(store.clone());
        let scim = store.route("/scim");
        scim.report("get", Duration::from_millis(2), "", None);
        scim.report(
            "get",
            Duration::from_micros(300),
            "unavailable",
            Some(PoolState {
                in_use: 1,
                idle: 2,
                size: 4,
            }),
        );
        // Names outside the fixed lists cannot grow the label set.
        scim.report("frobnicate", Duration::from_millis(1), "weird", None);
        // A route found again (after a reload) is the same entry.
        store
            .route("/scim")
            .report("create", Duration::from_millis(20), "conflict", None);
        // Outside a route: `(none)`.
        store
            .route("")
            .report("migrate", Duration::from_millis(5), "", None);
        // A route whose store never reported has no series.
        let _quiet = store.route("/quiet");
        // A label value is escaped.
        store
            .route("/we\"ird")
            .report("search", Duration::from_millis(1), "", None);
        let text = metrics.render(Snapshot::default());
        assert_eq!(
            lines_of(&text, "scimgate_store_operation_duration_seconds_count"),
            [
                "scimgate_store_operation_duration_seconds_count{route=\"(none)\",operation=\"migrate\"} 1",
                "scimgate_store_operation_duration_seconds_count{route=\"/scim\",operation=\"get\"} 2",
                "scimgate_store_operation_duration_seconds_count{route=\"/scim\",operation=\"create\"} 1",
                "scimgate_store_operation_duration_seconds_count{route=\"/scim\",operation=\"other\"} 1",
                "scimgate_store_operation_duration_seconds_count{route=\"/we\\\"ird\",operation=\"search\"} 1",
            ],
            "{text}"
        );
        assert!(
            text.contains("scimgate_store_operation_duration_seconds_bucket{route=\"/scim\",operation=\"get\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            lines_of(&text, "scimgate_store_errors_total"),
            [
                "scimgate_store_errors_total{route=\"/scim\",operation=\"get\",kind=\"unavailable\"} 1",
                "scimgate_store_errors_total{route=\"/scim\",operation=\"create\",kind=\"conflict\"} 1",
                "scimgate_store_errors_total{route=\"/scim\",operation=\"other\",kind=\"other\"} 1",
            ]
        );
        assert_eq!(
            lines_of(&text, "scimgate_store_pool_connections"),
            [
                "scimgate_store_pool_connections{route=\"/scim\",state=\"in_use\"} 1",
                "scimgate_store_pool_connections{route=\"/scim\",state=\"idle\"} 2",
            ]
        );
        assert_eq!(
            lines_of(&text, "scimgate_store_pool_size"),
            ["scimgate_store_pool_size{route=\"/scim\"} 4"]
        );
        assert!(!text.contains("/quiet"), "{text}");
        assert_eq!(scim.operation_count("get"), 2);
        assert_eq!(scim.error_count("get", "unavailable"), 1);
        for family in [
            "scimgate_store_operation_duration_seconds histogram",
            "scimgate_store_errors_total counter",
            "scimgate_store_pool_connections gauge",
            "scimgate_store_pool_size gauge",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family}\n")).count(),
                1,
                "{family}"
            );
        }
    }

    #[test]
    fn change_subscriber_gauges_are_rendered_per_route_and_subscriber() {
        let store = Arc::new(StoreMetrics::default());
        let metrics = Metrics::with_store(store.clone());
        let changes = &store.changes;
        let state = |lag, dead_lettered| SubscriberState { lag, dead_lettered };
        // Before any report: the families are declared, without samples.
        let text = metrics.render(Snapshot::default());
        assert!(
            text.contains("# TYPE scimgate_change_subscriber_lag gauge\n"),
            "{text}"
        );
        assert!(
            lines_of(&text, "scimgate_change_subscriber_lag").is_empty(),
            "{text}"
        );

        changes.report("/iso/scim/v2", "iga", state(12, false));
        // The last report wins.
        changes.report("/iso/scim/v2", "iga", state(40, true));
        changes.report("/iso/scim/v2", "audit", state(0, false));
        // Outside a route.
        changes.report("", "iga", state(5, false));
        // A label value is escaped.
        changes.report("/iso/scim/v2", "we\"ird", state(1, false));
        let text = metrics.render(Snapshot::default());
        assert_eq!(
            lines_of(&text, "scimgate_change_subscriber_lag"),
            [
                "scimgate_change_subscriber_lag{route=\"(none)\",subscriber=\"iga\"} 5",
                "scimgate_change_subscriber_lag{route=\"/iso/scim/v2\",subscriber=\"audit\"} 0",
                "scimgate_change_subscriber_lag{route=\"/iso/scim/v2\",subscriber=\"iga\"} 40",
                "scimgate_change_subscriber_lag{route=\"/iso/scim/v2\",subscriber=\"we\\\"ird\"} 1",
            ],
            "{text}"
        );
        assert_eq!(
            lines_of(&text, "scimgate_change_subscriber_dead_lettered"),
            [
                "scimgate_change_subscriber_dead_lettered{route=\"(none)\",subscriber=\"iga\"} 0",
                "scimgate_change_subscriber_dead_lettered{route=\"/iso/scim/v2\",subscriber=\"audit\"} 0",
                "scimgate_change_subscriber_dead_lettered{route=\"/iso/scim/v2\",subscriber=\"iga\"} 1",
                "scimgate_change_subscriber_dead_lettered{route=\"/iso/scim/v2\",subscriber=\"we\\\"ird\"} 0",
            ],
            "{text}"
        );
        for family in [
            "scimgate_change_subscriber_lag gauge",
            "scimgate_change_subscriber_dead_lettered gauge",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family}\n")).count(),
                1,
                "{family}"
            );
        }
    }

    #[test]
    fn change_subscribers_are_capped_and_long_names_cut() {
        let changes = ChangeMetrics::default();
        let state = SubscriberState {
            lag: 1,
            dead_lettered: false,
        };
        for i in 0..MAX_CHANGE_SUBSCRIBERS + 10 {
            changes.report("/scim", &format!("sub-{i}"), state);
        }
        assert_eq!(lock(&changes.subscribers).len(), MAX_CHANGE_SUBSCRIBERS);
        assert_eq!(changes.get("/scim", "sub-0"), Some(state));
        assert_eq!(
            changes.get("/scim", &format!("sub-{}", MAX_CHANGE_SUBSCRIBERS)),
            None
        );
        // A subscriber already kept is still updated when the map is full.
        let later = SubscriberState {
            lag: 99,
            dead_lettered: true,
        };
        changes.report("/scim", "sub-3", later);
        assert_eq!(changes.get("/scim", "sub-3"), Some(later));

        let fresh = ChangeMetrics::default();
        let long = "é".repeat(MAX_SUBSCRIBER_LABEL); // 2 bytes each
        fresh.report("/scim", &long, state);
        let kept = lock(&fresh.subscribers).keys().next().unwrap().1.clone();
        assert_eq!(kept.len(), MAX_SUBSCRIBER_LABEL);
        assert_eq!(kept, "é".repeat(MAX_SUBSCRIBER_LABEL / 2));
    }

    #[test]
    fn out_of_range_statuses_are_clamped_and_gauges_never_go_negative() {
        assert_eq!(status_slot(42), 0);
        assert_eq!(status_slot(200), 100);
        assert_eq!(status_slot(999), STATUS_SLOTS - 1);
        let gauge = Gauge::default();
        gauge.dec();
        assert_eq!(gauge.get(), 0);
    }
}
