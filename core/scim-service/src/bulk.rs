//! `POST /Bulk` (RFC 7644 §3.7): every operation of a request runs in one
//! backend unit of work ([`Backend::write`]), each in its own savepoint,
//! `bulkId:` references are resolved in any order, and circular references
//! between new groups are resolved by creating the resources first and
//! adding the pending members once their ids are known (§3.7.1).
//!
//! With `Capabilities::transactions` a failed operation leaves no trace and
//! the request is atomic as a unit. Without, Bulk is best-effort: each
//! operation is applied as it runs, a failed operation may leave the part
//! it already wrote (a backend write is usually one step, so this is rare),
//! and an error of the unit itself (the backend failing mid-way) leaves the
//! operations before it applied.
//!
//! [`Backend::write`]: crate::backend::Backend::write

use std::collections::{BTreeSet, HashMap};

use scimgate_abi::{PluginError, Response};
use scimgate_scim::{urn, BulkOperation, BulkRequest, Target};
use serde_json::{json, Value};

use crate::backend::{BackendResult, BackendTx, Member, NewRecord, Record, UniqueColumn, Work};
use crate::errors::{bad, from_scim, invalid_syntax, invalid_value, not_found, to_json};
use crate::resources::etag;
use crate::service::{json_body, Call, ScimService, SCIM_JSON};

/// One parsed operation.
struct Op {
    method: String,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

/// What happened to one operation.
enum Outcome {
    Done {
        location: Option<String>,
        version: Option<i64>,
        status: u16,
        /// (resource type, id) of the resource the version belongs to.
        resource: Option<(String, String)>,
    },
    Failed(PluginError),
}

impl ScimService {
    pub(crate) fn bulk(&self, call: &Call<'_>) -> Result<Response, PluginError> {
        if !self.settings.bulk.enabled {
            return Err(PluginError::new(
                501,
                "Bulk is not enabled on this endpoint",
            ));
        }
        let size = call.req.body.len() as u64;
        if size > self.settings.bulk.max_payload_size {
            return Err(PluginError::new(
                413,
                format!(
                    "the bulk request is {size} bytes; at most {} are accepted (maxPayloadSize)",
                    self.settings.bulk.max_payload_size
                ),
            ));
        }
        // The one Bulk reader, shared with the policies that judged it.
        let request = BulkRequest::parse(&json_body(call.req)?).map_err(from_scim)?;
        if request.operations.len() as u64 > self.settings.bulk.max_operations {
            return Err(PluginError::new(
                413,
                format!(
                    "the bulk request has {} operations; at most {} are accepted (maxOperations)",
                    request.operations.len(),
                    self.settings.bulk.max_operations
                ),
            ));
        }
        let fail_on_errors = request.fail_on_errors;
        let mut ops = Vec::with_capacity(request.operations.len());
        let mut parse_errors: HashMap<usize, PluginError> = HashMap::new();
        let mut bulk_ids: HashMap<String, usize> = HashMap::new();
        for (index, item) in request.operations.into_iter().enumerate() {
            match item.map(Op::from).map_err(from_scim) {
                Ok(op) => {
                    if let Some(id) = &op.bulk_id {
                        if bulk_ids.insert(id.clone(), index).is_some() {
                            parse_errors.insert(
                                index,
                                invalid_value(format!("bulkId '{id}' is used twice")),
                            );
                        }
                    }
                    ops.push(op);
                }
                Err(e) => {
                    parse_errors.insert(index, e);
                    ops.push(Op {
                        method: String::new(),
                        bulk_id: None,
                        version: None,
                        path: String::new(),
                        data: None,
                    });
                }
            }
        }

        let mut outcomes: Vec<Option<Outcome>> = Vec::new();
        self.write_unit(call.stamp(), &mut |tx| {
            let mut tx = Bumps::new(tx);
            outcomes = self.run_ops(
                &mut tx,
                call,
                &ops,
                &bulk_ids,
                &parse_errors,
                fail_on_errors,
            );
            // A later operation (or the pending members added after a cycle
            // was broken) may have bumped a resource an earlier outcome
            // reported: report the version that is stored.
            for outcome in outcomes.iter_mut().flatten() {
                if let Outcome::Done {
                    version: Some(version),
                    resource: Some((type_name, id)),
                    ..
                } = outcome
                {
                    if tx.bumped.contains(id.as_str()) {
                        if let Some(stored) = tx.get(type_name, id)? {
                            *version = self.adopt(stored).version;
                        }
                    }
                }
            }
            Ok(())
        })?;

        let results: Vec<Value> = ops
            .iter()
            .zip(outcomes)
            .filter_map(|(op, outcome)| {
                let outcome = outcome?;
                let mut entry = json!({ "method": op.method });
                if let Some(id) = &op.bulk_id {
                    entry["bulkId"] = json!(id);
                }
                match outcome {
                    Outcome::Done {
                        location,
                        version,
                        status,
                        ..
                    } => {
                        if let Some(l) = location {
                            entry["location"] = json!(l);
                        }
                        if let Some(v) = version {
                            entry["version"] = json!(etag(v));
                        }
                        entry["status"] = json!(status.to_string());
                    }
                    Outcome::Failed(e) => {
                        entry["status"] = json!(e.status.to_string());
                        entry["response"] = to_json(&e);
                    }
                }
                Some(entry)
            })
            .collect();
        let body = json!({ "schemas": [urn::BULK_RESPONSE], "Operations": results });
        Ok(Response::json(200, SCIM_JSON, &body))
    }

    /// Runs the operations inside the bulk transaction; `None` for those
    /// not attempted because `failOnErrors` was reached.
    fn run_ops(
        &self,
        tx: &mut dyn BackendTx,
        call: &Call<'_>,
        ops: &[Op],
        bulk_ids: &HashMap<String, usize>,
        parse_errors: &HashMap<usize, PluginError>,
        fail_on_errors: Option<u64>,
    ) -> Vec<Option<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = (0..ops.len()).map(|_| None).collect();
        // bulkId → (resource type, id) once created; failed bulkIds.
        let mut resolved: HashMap<String, (String, String)> = HashMap::new();
        let mut failed_ids: BTreeSet<String> = BTreeSet::new();
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        // Members removed to break a cycle: (group type, group id, member entries).
        let mut deferred: Vec<(String, String, Vec<Value>)> = Vec::new();
        let mut errors = 0u64;
        let stop = |errors: u64| fail_on_errors.is_some_and(|limit| errors >= limit);

        while !pending.is_empty() && !stop(errors) {
            let mut progressed = false;
            let mut still = Vec::new();
            for &i in &pending {
                if stop(errors) {
                    still.push(i);
                    continue;
                }
                let op = &ops[i];
                if let Some(e) = parse_errors.get(&i) {
                    outcomes[i] = Some(Outcome::Failed(e.clone()));
                    errors += 1;
                    progressed = true;
                    continue;
                }
                let refs = references(op);
                if let Some(unknown) = refs.iter().find(|r| !bulk_ids.contains_key(*r)) {
                    outcomes[i] = Some(Outcome::Failed(invalid_value(format!(
                        "bulkId '{unknown}' is not defined in this request"
                    ))));
                    errors += 1;
                    progressed = true;
                    if let Some(b) = &op.bulk_id {
                        failed_ids.insert(b.clone());
                    }
                    continue;
                }
                if let Some(failed) = refs.iter().find(|r| failed_ids.contains(*r)) {
                    outcomes[i] = Some(Outcome::Failed(PluginError::new(
                        409,
                        format!("bulkId '{failed}' failed, so this operation cannot run"),
                    )));
                    errors += 1;
                    progressed = true;
                    if let Some(b) = &op.bulk_id {
                        failed_ids.insert(b.clone());
                    }
                    continue;
                }
                if refs.iter().all(|r| resolved.contains_key(r)) {
                    let outcome = self.run_op(tx, call, op, &resolved, false, &mut deferred);
                    self.record(
                        op,
                        outcome,
                        &mut outcomes[i],
                        &mut resolved,
                        &mut failed_ids,
                        &mut errors,
                    );
                    progressed = true;
                } else {
                    still.push(i);
                }
            }
            pending = still;
            if !progressed && !pending.is_empty() && !stop(errors) {
                // A cycle: create the first waiting POST without its
                // unresolved member references; they are added afterwards.
                let pick = pending
                    .iter()
                    .position(|&i| ops[i].method == "POST")
                    .unwrap_or(0);
                let i = pending.remove(pick);
                let outcome = self.run_op(tx, call, &ops[i], &resolved, true, &mut deferred);
                self.record(
                    &ops[i],
                    outcome,
                    &mut outcomes[i],
                    &mut resolved,
                    &mut failed_ids,
                    &mut errors,
                );
            }
        }
        for (type_name, group_id, entries) in deferred {
            let added = tx.savepoint(&mut |tx| {
                if !self.caps.native_members {
                    return self.add_deferred_to_body(
                        tx, call, &type_name, &group_id, &entries, &resolved,
                    );
                }
                let mut members = tx.members(&group_id)?;
                let before = members.len();
                for entry in &entries {
                    let Some(value) = entry.get("value").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some(bulk_id) = value.strip_prefix("bulkId:") else {
                        continue;
                    };
                    let Some((member_type, id)) = resolved.get(bulk_id) else {
                        continue;
                    };
                    if !members.iter().any(|m| &m.id == id) {
                        let display = entry
                            .get("display")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        members.push(Member {
                            id: id.clone(),
                            member_type: member_type.clone(),
                            display,
                        });
                    }
                }
                tx.set_members(&group_id, &members)?;
                let mut touched: Vec<String> = members
                    .iter()
                    .filter(|m| {
                        self.kind_named(&m.member_type)
                            .is_some_and(|k| k.has_groups)
                    })
                    .map(|m| m.id.clone())
                    .collect();
                let added: std::collections::BTreeSet<String> = touched[..]
                    .iter()
                    .filter(|id| !members[..before].iter().any(|m| &m.id == *id))
                    .cloned()
                    .collect();
                touched.push(group_id.clone());
                tx.touch(&touched, &call.stamp().now)?;
                // The second pass is a membership change of the group.
                if members.len() > before {
                    let version = tx
                        .get(&type_name, &group_id)?
                        .map(|rec| self.adopt(rec).version);
                    let change = self.record_change(
                        tx,
                        call.stamp(),
                        &type_name,
                        &group_id,
                        scimgate_changes::Op::Patch,
                        version,
                        vec!["members".into()],
                    )?;
                    self.record_members(tx, &change, &added)?;
                }
                Ok(())
            });
            if let Err(e) = added {
                tracing::warn!(group = %group_id, resource_type = %type_name, error = %e, "bulk: pending members could not be added");
            }
        }
        outcomes
    }

    /// Without native membership: adds the members set aside to break a
    /// cycle to the group's body (an ordinary replace of the group).
    fn add_deferred_to_body(
        &self,
        tx: &mut dyn BackendTx,
        call: &Call<'_>,
        type_name: &str,
        group_id: &str,
        entries: &[Value],
        resolved: &HashMap<String, (String, String)>,
    ) -> Result<(), PluginError> {
        let kind = self
            .kind_named(type_name)
            .ok_or_else(|| PluginError::internal(format!("no resource type {type_name}")))?;
        let existing = tx
            .get(type_name, group_id)?
            .map(|rec| self.adopt(rec))
            .ok_or_else(|| not_found(format!("{type_name} '{group_id}' not found")))?;
        let mut body = existing.body.clone();
        let mut members = match body.get("members") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        for entry in entries {
            let mut entry = entry.clone();
            if let Some(value) = entry.get("value").and_then(Value::as_str) {
                if let Some((_, id)) = value.strip_prefix("bulkId:").and_then(|b| resolved.get(b)) {
                    entry["value"] = Value::String(id.clone());
                    members.push(entry);
                }
            }
        }
        body["members"] = Value::Array(members);
        self.store_in(
            tx,
            &kind,
            group_id,
            body,
            Some(&existing),
            None,
            false,
            call.stamp(),
        )?;
        Ok(())
    }

    fn record(
        &self,
        op: &Op,
        outcome: Result<(Outcome, Option<(String, String)>), PluginError>,
        slot: &mut Option<Outcome>,
        resolved: &mut HashMap<String, (String, String)>,
        failed_ids: &mut BTreeSet<String>,
        errors: &mut u64,
    ) {
        match outcome {
            Ok((done, created)) => {
                if let (Some(bulk_id), Some(created)) = (&op.bulk_id, created) {
                    resolved.insert(bulk_id.clone(), created);
                }
                *slot = Some(done);
            }
            Err(e) => {
                if let Some(b) = &op.bulk_id {
                    failed_ids.insert(b.clone());
                }
                *errors += 1;
                *slot = Some(Outcome::Failed(e));
            }
        }
    }

    /// One operation in its own savepoint. With `break_cycle`, member
    /// entries that still reference unknown bulkIds are set aside.
    fn run_op(
        &self,
        tx: &mut dyn BackendTx,
        call: &Call<'_>,
        op: &Op,
        resolved: &HashMap<String, (String, String)>,
        break_cycle: bool,
        deferred: &mut Vec<(String, String, Vec<Value>)>,
    ) -> Result<(Outcome, Option<(String, String)>), PluginError> {
        let path = substitute_str(&op.path, resolved);
        let mut data = op.data.as_ref().map(|d| substitute(d, resolved));
        let mut set_aside = Vec::new();
        if break_cycle {
            if let Some(Value::Object(object)) = data.as_mut() {
                if let Some(Value::Array(members)) = object.get_mut("members") {
                    let (waiting, ready): (Vec<Value>, Vec<Value>) =
                        members.drain(..).partition(|m| {
                            m.get("value")
                                .and_then(Value::as_str)
                                .is_some_and(|v| v.starts_with("bulkId:"))
                        });
                    *members = ready;
                    set_aside = waiting;
                }
            }
        }
        // Resolved as the policies resolved it (bulkId references aside,
        // which stand for the id they resolve to).
        let (endpoint, id) = match Target::resolve(&path) {
            Target::Collection(endpoint) => (endpoint, None),
            Target::Resource(endpoint, id) => (endpoint, Some(id)),
            _ => {
                return Err(not_found(format!(
                    "a bulk operation addresses a resource endpoint such as /Users or /Users/{{id}}, not {path}"
                )))
            }
        };
        let rt = self
            .resource_type_at(endpoint)
            .ok_or_else(|| not_found(format!("no SCIM endpoint /{endpoint}")))?;
        let kind = self.kind(rt)?;
        let need_data = || {
            data.clone()
                .ok_or_else(|| invalid_syntax(format!("{} needs 'data'", op.method)))
        };
        let mut result = None;
        tx.savepoint(&mut |tx| {
            let outcome = match (op.method.as_str(), id) {
                ("POST", None) => {
                    let rec = self.create_in(tx, &kind, &need_data()?, call.stamp())?;
                    let location = self.location(call.base, &rt.name, &rec.id);
                    (
                        Outcome::Done {
                            location: Some(location),
                            version: Some(rec.version),
                            status: 201,
                            resource: Some((rt.name.clone(), rec.id.clone())),
                        },
                        Some((rt.name.clone(), rec.id)),
                    )
                }
                ("PUT" | "PATCH", Some(id)) => {
                    let data = need_data()?;
                    let version = op.version.as_deref();
                    let rec = if op.method == "PUT" {
                        self.replace_in(tx, &kind, id, &data, version, call.stamp())?
                    } else {
                        self.patch_in(tx, &kind, id, &data, version, call.stamp())?
                    };
                    (
                        Outcome::Done {
                            location: Some(self.location(call.base, &rt.name, id)),
                            version: Some(rec.version),
                            status: 200,
                            resource: Some((rt.name.clone(), id.to_string())),
                        },
                        None,
                    )
                }
                ("DELETE", Some(id)) => {
                    self.delete_in(tx, &kind, id, op.version.as_deref(), call.stamp())?;
                    (
                        Outcome::Done {
                            location: Some(self.location(call.base, &rt.name, id)),
                            version: None,
                            status: 204,
                            resource: None,
                        },
                        None,
                    )
                }
                ("POST", Some(_)) => {
                    return Err(invalid_syntax(
                        "POST takes a resource endpoint path such as /Users",
                    ))
                }
                (_, None) => {
                    return Err(invalid_syntax(format!(
                        "{} needs a path with a resource id",
                        op.method
                    )))
                }
                (other, _) => {
                    return Err(bad(
                        400,
                        "invalidSyntax",
                        format!("unknown bulk method '{other}'"),
                    ))
                }
            };
            result = Some(outcome);
            Ok(())
        })?;
        let (outcome, created) =
            result.ok_or_else(|| PluginError::internal("bulk operation produced nothing"))?;
        if !set_aside.is_empty() {
            if let Some((type_name, id)) = &created {
                deferred.push((type_name.clone(), id.clone(), set_aside));
            }
        }
        Ok((outcome, created))
    }
}

/// The bulk transaction, noting every resource whose version a write
/// bumped after it was created or updated (`touch`, `update`).
struct Bumps<'t> {
    inner: &'t mut dyn BackendTx,
    bumped: BTreeSet<String>,
}

impl<'t> Bumps<'t> {
    fn new(inner: &'t mut dyn BackendTx) -> Self {
        Bumps {
            inner,
            bumped: BTreeSet::new(),
        }
    }
}

impl BackendTx for Bumps<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.inner.get(resource_type, id)
    }
    fn type_of(&mut self, types: &[String], id: &str) -> BackendResult<Option<String>> {
        self.inner.type_of(types, id)
    }
    fn insert(&mut self, record: &NewRecord) -> BackendResult<Record> {
        self.inner.insert(record)
    }
    fn update(&mut self, record: &NewRecord, expected_version: i64) -> BackendResult<Record> {
        self.bumped.insert(record.id.clone());
        self.inner.update(record, expected_version)
    }
    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        self.inner.delete(resource_type, id, expected_version)
    }
    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        self.inner.taken(resource_type, column, value, except_id)
    }
    fn set_members(&mut self, group_id: &str, members: &[Member]) -> BackendResult<()> {
        self.inner.set_members(group_id, members)
    }
    fn members(&mut self, group_id: &str) -> BackendResult<Vec<Member>> {
        self.inner.members(group_id)
    }
    fn group_ids_of(&mut self, member_id: &str) -> BackendResult<Vec<String>> {
        self.inner.group_ids_of(member_id)
    }
    fn touch(&mut self, ids: &[String], now: &str) -> BackendResult<()> {
        self.bumped.extend(ids.iter().cloned());
        self.inner.touch(ids, now)
    }
    fn record_change(&mut self, entry: &scimgate_changes::Change) -> BackendResult<()> {
        self.inner.record_change(entry)
    }
    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        let bumped = &mut self.bumped;
        self.inner.savepoint(&mut |inner| {
            let mut nested = Bumps {
                inner,
                bumped: std::mem::take(bumped),
            };
            let result = work(&mut nested);
            *bumped = nested.bumped;
            result
        })
    }
}

impl From<BulkOperation> for Op {
    fn from(op: BulkOperation) -> Op {
        Op {
            method: op.method,
            bulk_id: op.bulk_id,
            version: op.version,
            path: op.path,
            data: op.data,
        }
    }
}

/// Every `bulkId:X` an operation refers to (in `path` and `data`).
fn references(op: &Op) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(rest) = op.path.split('/').find_map(|s| s.strip_prefix("bulkId:")) {
        out.insert(rest.to_string());
    }
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix("bulkId:") {
                    out.insert(id.to_string());
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    if let Some(data) = &op.data {
        walk(data, &mut out);
    }
    out
}

fn substitute_str(text: &str, resolved: &HashMap<String, (String, String)>) -> String {
    text.split('/')
        .map(|segment| {
            match segment
                .strip_prefix("bulkId:")
                .and_then(|b| resolved.get(b))
            {
                Some((_, id)) => id.clone(),
                None => segment.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn substitute(value: &Value, resolved: &HashMap<String, (String, String)>) -> Value {
    match value {
        Value::String(s) => match s.strip_prefix("bulkId:").and_then(|b| resolved.get(b)) {
            Some((_, id)) => Value::String(id.clone()),
            None => value.clone(),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, resolved)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, resolved)))
                .collect(),
        ),
        other => other.clone(),
    }
}
