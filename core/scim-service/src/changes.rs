//! The change log, engine side: which entries a write records (one per
//! resource written, plus one derived entry per user whose `groups` a
//! membership change altered), the names of the changed attributes (never a
//! secret's), and the pull feed `GET /Changes?since=SEQ&count=N&wait=D`
//! with its long poll, woken in-process by the writers and re-checking the
//! store every second for writes of other nodes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use scimgate_abi::{Caller, PluginError, Response};
use scimgate_changes::{Change, Op};
use scimgate_scim::schema::Returned;
use scimgate_scim::SchemaCtx;
use serde_json::{json, Map, Value};

use crate::backend::BackendTx;
use crate::errors::{invalid_value, not_found};
use crate::password::PASSWORD;
use crate::service::{method_not_allowed, Call, ScimService, SCIM_JSON};

/// The `schemas` of a `/Changes` response.
pub const CHANGE_LIST: &str = "urn:scimgate:api:messages:2.0:ChangeList";
/// `count` when the client sends none, and its ceiling.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 1000;
/// How often a waiting long poll re-reads the store (writes by other nodes
/// do not wake it).
const RECHECK: Duration = Duration::from_secs(1);
/// Retention runs at most this often (per engine).
const PRUNE_EVERY_MS: i64 = 60_000;

/// Push delivery of the log (webhooks), implemented by the plugin that
/// runs the delivery workers. The engine pokes it after each committed
/// write and hands it the operations under `/Changes/Subscribers`.
pub trait ChangePush: Send + Sync {
    /// A write committed: wake the workers. Must return at once.
    fn committed(&self);
    /// `GET /Changes/Subscribers`: the body (`{"subscribers": […]}`).
    fn list(&self) -> Result<Value, PluginError>;
    /// `POST /Changes/Subscribers/NAME` with `body`: the subscriber's
    /// status after the operation; 404 for an unknown name, 400 for a bad
    /// body.
    fn act(&self, name: &str, body: &Value) -> Result<Value, PluginError>;
}

/// Who made a write and when: what every entry of one request carries.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    /// RFC 3339 ms (the resources' `lastModified`).
    pub now: String,
    pub now_ms: i64,
    pub provider: String,
    pub client: Option<String>,
}

impl Stamp {
    pub(crate) fn new(now: String, now_ms: i64, caller: Caller<'_>) -> Stamp {
        let principal = caller.principal();
        Stamp {
            now,
            now_ms,
            provider: principal.map_or(String::new(), |p| p.provider_id.to_string()),
            client: principal.map(|p| p.client_id.to_string()),
        }
    }
}

/// Wakes long polls after a commit; paces retention.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    generation: Mutex<u64>,
    committed: Condvar,
    waiters: AtomicUsize,
    last_prune_ms: AtomicI64,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Top-level attribute names whose values differ between `old` and `new`
/// (`None`: a creation, every attribute present), extension attributes as
/// `urn:…:name`. Never `password`, nor an attribute the schema marks
/// `returned: never`; `id`, `meta`, `schemas` and the derived `groups` are
/// not attributes a client changes. Sorted.
pub(crate) fn changed_attributes(
    ctx: &SchemaCtx<'_>,
    old: Option<&Value>,
    new: &Value,
) -> Vec<String> {
    let empty = Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut out = BTreeSet::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        if ["id", "meta", "schemas", "groups"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
        {
            continue;
        }
        let (before, after) = (old.get(key.as_str()), new.get(key.as_str()));
        if before == after {
            continue;
        }
        if let Some(extension) = ctx.extension(key) {
            let sub_old = before.and_then(Value::as_object).unwrap_or(&empty);
            let sub_new = after.and_then(Value::as_object).unwrap_or(&empty);
            let names: BTreeSet<&String> = sub_old.keys().chain(sub_new.keys()).collect();
            for name in names {
                if sub_old.get(name.as_str()) == sub_new.get(name.as_str()) {
                    continue;
                }
                let secret = name.eq_ignore_ascii_case(PASSWORD)
                    || extension
                        .attribute(name)
                        .is_some_and(|a| a.returned == Returned::Never);
                if !secret {
                    out.insert(format!("{}:{name}", extension.id));
                }
            }
            continue;
        }
        let secret = key.eq_ignore_ascii_case(PASSWORD)
            || ctx
                .core
                .and_then(|c| c.attribute(key))
                .is_some_and(|a| a.returned == Returned::Never);
        if !secret {
            out.insert(key.clone());
        }
    }
    out.into_iter().collect()
}

impl ScimService {
    /// Records one entry (when the change log is on) and returns it, for
    /// derived entries.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_change(
        &self,
        tx: &mut dyn BackendTx,
        stamp: &Stamp,
        resource_type: &str,
        id: &str,
        op: Op,
        version: Option<i64>,
        attributes: Vec<String>,
    ) -> Result<Change, PluginError> {
        let change = Change {
            seq: 0,
            at: stamp.now_ms,
            resource_type: resource_type.to_string(),
            resource_id: id.to_string(),
            op,
            version: version.map(crate::resources::etag),
            provider_id: stamp.provider.clone(),
            client_id: stamp.client.clone(),
            attributes,
            via: None,
        };
        if self.settings.changes.enabled {
            tx.record_change(&change)?;
        }
        Ok(change)
    }

    /// The derived entries of a membership change of `group`: one per
    /// member id in `members` (users whose `groups` changed).
    pub(crate) fn record_members(
        &self,
        tx: &mut dyn BackendTx,
        group: &Change,
        members: &BTreeSet<String>,
    ) -> Result<(), PluginError> {
        if !self.settings.changes.enabled {
            return Ok(());
        }
        for member in members {
            tx.record_change(&group.derived_for_member(member))?;
        }
        Ok(())
    }

    /// A group whose members changed as a side effect (a member was
    /// deleted): a `patch` entry naming `members`, with its version.
    pub(crate) fn record_group_side_effect(
        &self,
        tx: &mut dyn BackendTx,
        stamp: &Stamp,
        group_id: &str,
    ) -> Result<(), PluginError> {
        if !self.settings.changes.enabled {
            return Ok(());
        }
        let Some(type_name) = tx.type_of(&self.type_names, group_id)? else {
            return Ok(());
        };
        let version = tx
            .get(&type_name, group_id)?
            .map(|rec| self.adopt(rec).version);
        self.record_change(
            tx,
            stamp,
            &type_name,
            group_id,
            Op::Patch,
            version,
            vec!["members".into()],
        )?;
        Ok(())
    }

    /// Runs one write unit of a request, then wakes waiting feed readers
    /// and, at most once a minute, prunes the log past the retention.
    pub(crate) fn write_unit(
        &self,
        stamp: &Stamp,
        work: &mut crate::backend::Work<'_>,
    ) -> Result<(), PluginError> {
        self.backend.write(work)?;
        if !self.settings.changes.enabled {
            return Ok(());
        }
        if let Some(push) = &self.push {
            push.committed();
        }
        {
            let mut generation = self.feed.lock();
            *generation = generation.wrapping_add(1);
            self.feed.committed.notify_all();
        }
        let last = self.feed.last_prune_ms.load(Ordering::Relaxed);
        if stamp.now_ms.saturating_sub(last) >= PRUNE_EVERY_MS
            && self
                .feed
                .last_prune_ms
                .compare_exchange(last, stamp.now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let window = i64::try_from(self.settings.changes.retention_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
            match self
                .backend
                .prune_changes(stamp.now_ms.saturating_sub(window))
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(pruned = n, "change log: entries past the retention pruned")
                }
                Err(e) => tracing::warn!(error = %e, "change log: pruning failed"),
            }
        }
        Ok(())
    }

    /// `GET /Changes?since=SEQ&count=N&wait=DURATION`.
    pub(crate) fn changes_feed(&self, call: &Call<'_>) -> Result<Response, PluginError> {
        let method = call.req.method.as_str();
        if method != "GET" {
            return Err(method_not_allowed(method, "GET"));
        }
        if !self.settings.changes.enabled {
            // 404, not 501: the host shows no detail of a 5xx, and the
            // client must learn why there is no feed.
            return Err(not_found(
                "the change log is off on this endpoint (change_log = false): /Changes is not served",
            ));
        }
        let params = FeedParams::parse(call, self.settings.changes.max_wait_secs)?;
        let no_log = || not_found("this store keeps no change log: /Changes is not served");
        let deadline = Instant::now() + params.wait;
        let mut waiting = false;
        let result = loop {
            let seen = *self.feed.lock();
            let newest = match self.backend.newest_change() {
                Ok(Some(newest)) => newest,
                Ok(None) => break Err(no_log()),
                Err(e) => break Err(e.into()),
            };
            if params.since > newest {
                break Err(gone(format!(
                    "since={} is beyond the newest change ({newest}): the log was reset; \
                     resynchronise (list the resources) and continue from since={newest}",
                    params.since
                )));
            }
            let page = match self.backend.changes(params.since, params.count) {
                Ok(Some(page)) => page,
                Ok(None) => break Err(no_log()),
                Err(e) => break Err(e.into()),
            };
            // Seqs have no gaps: a missing successor was pruned.
            let first = page.first().map(|c| c.seq);
            if first.map_or(newest > params.since, |seq| seq != params.since + 1) {
                break Err(gone(format!(
                    "the changes after since={} were pruned (change_retention); \
                     resynchronise (list the resources) and continue from since={newest}",
                    params.since
                )));
            }
            let now = Instant::now();
            if !page.is_empty() || now >= deadline {
                break Ok((page, newest));
            }
            if !waiting {
                let before = self.feed.waiters.fetch_add(1, Ordering::SeqCst);
                waiting = true;
                if before >= self.settings.changes.max_waiters {
                    // Too many feed readers parked on pipeline slots
                    // already: answer now, the client polls again.
                    break Ok((page, newest));
                }
            }
            let guard = self.feed.lock();
            if *guard == seen {
                let pause = RECHECK.min(deadline - now);
                let _ = self
                    .feed
                    .committed
                    .wait_timeout_while(guard, pause, |g| *g == seen);
            }
        };
        if waiting {
            self.feed.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        let (page, newest) = result?;
        let next = page.last().map_or(params.since, |c| c.seq);
        let body = json!({
            "schemas": [CHANGE_LIST],
            "since": params.since,
            "next": next,
            "newest": newest.max(next),
            "Resources": page,
        });
        Ok(Response::json(200, SCIM_JSON, &body).with_header("cache-control", "no-store"))
    }
}

impl ScimService {
    /// `GET /Changes/Subscribers`, `POST /Changes/Subscribers/NAME`.
    pub(crate) fn change_subscribers(
        &self,
        call: &Call<'_>,
        name: Option<&str>,
    ) -> Result<Response, PluginError> {
        let method = call.req.method.as_str();
        let Some(push) = &self.push else {
            return Err(not_found(
                "no push subscribers are configured on this endpoint",
            ));
        };
        let body = match (name, method) {
            (None, "GET") => push.list()?,
            (None, _) => return Err(method_not_allowed(method, "GET")),
            (Some(name), "POST") => {
                let body = crate::service::json_body(call.req)?;
                push.act(name, &body)?
            }
            (Some(_), _) => return Err(method_not_allowed(method, "POST")),
        };
        Ok(Response::json(200, "application/json", &body).with_header("cache-control", "no-store"))
    }
}

/// 410 Gone: the client's position is no longer in the log.
fn gone(detail: String) -> PluginError {
    PluginError::new(410, detail)
}

struct FeedParams {
    since: u64,
    count: usize,
    wait: Duration,
}

impl FeedParams {
    fn parse(call: &Call<'_>, max_wait_secs: u64) -> Result<FeedParams, PluginError> {
        let mut params = FeedParams {
            since: 0,
            count: DEFAULT_COUNT,
            wait: Duration::ZERO,
        };
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in call.req.query_pairs() {
            let key = name.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(invalid_value(format!("parameter '{name}' is given twice")));
            }
            seen.push(key.clone());
            match key.as_str() {
                "since" => {
                    params.since = value.trim().parse().map_err(|_| {
                        invalid_value(format!(
                            "parameter 'since' must be a change sequence number (0 or more), not '{value}'"
                        ))
                    })?;
                }
                "count" => {
                    params.count = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_COUNT).contains(n))
                        .ok_or_else(|| {
                            invalid_value(format!(
                                "parameter 'count' must be a number from 1 to {MAX_COUNT}, not '{value}'"
                            ))
                        })?;
                }
                "wait" => {
                    let secs = scimgate_abi::units::parse_seconds(&value).map_err(|_| {
                        invalid_value(format!(
                            "parameter 'wait' must be a duration such as \"30s\" or a number of seconds, not '{value}'"
                        ))
                    })?;
                    // Longer waits are clamped to the configured ceiling.
                    params.wait = Duration::from_secs(secs.min(max_wait_secs));
                }
                _ => {
                    return Err(invalid_value(format!(
                        "unknown parameter '{name}' (use since, count, wait)"
                    )))
                }
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_scim::Registry;

    #[test]
    fn changed_attributes_name_differences_never_secrets() {
        let registry = Registry::core();
        let rt = registry.resource_type("User").unwrap();
        let ctx = registry.context(rt).unwrap();
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let old = json!({"userName": "a", "displayName": "A", "password": "x",
            "schemas": ["s"], enterprise: {"department": "d", "manager": {"value": "m"}}});
        let new = json!({"userName": "a", "title": "T", "password": "y", "id": "1",
            "schemas": ["s", "t"], enterprise: {"department": "e", "manager": {"value": "m"}}});
        assert_eq!(
            changed_attributes(&ctx, Some(&old), &new),
            vec![
                "displayName".to_string(),
                "title".into(),
                format!("{enterprise}:department"),
            ]
        );
        let created = changed_attributes(&ctx, None, &new);
        assert_eq!(
            created,
            vec![
                "title".to_string(),
                format!("{enterprise}:department"),
                format!("{enterprise}:manager"),
                "userName".into(),
            ]
        );
        assert!(!created.iter().any(|a| a.contains("password")));
    }
}
