//! Resource writes (create, replace, patch, delete) against a
//! [`BackendTx`], and the read-side rendering that adds what is derived:
//! `id`, `meta`, group `members` (with `display`, `$ref`, `type`) and
//! `User.groups`.
//!
//! Membership follows `Capabilities::native_members`: with it, members go
//! to [`BackendTx::set_members`] and are read back from the backend;
//! without, the engine keeps `members` (`value`, `type`, `display`) inside
//! the group's body, checks every member exists, derives `User.groups` by
//! scanning the group types (`members.value eq "<id>"`, pushed down where
//! the backend can) and, when a resource is deleted, removes it from the
//! groups that list it (those groups are found among committed data).
//! Versions follow `Capabilities::versions`: without, the engine derives
//! them from the content and checks `If-Match` and concurrent changes
//! itself before writing.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use scimgate_abi::PluginError;
use scimgate_scim::schema::Uniqueness;
use scimgate_scim::{
    apply_patch, validate_create, validate_replace, AttrPath, CompValue, CompareOp, Filter,
    PatchRequest, ResourceType, SchemaCtx,
};
use serde_json::{json, Map, Value};

use crate::backend::{
    BackendError, BackendTx, GroupRef, Member, MemberView, NewRecord, Record, Scan, UniqueColumn,
    Visit,
};
use crate::changes::{changed_attributes, Stamp};
use crate::errors::{bad, from_scim, invalid_value, not_found, precondition_failed};
use crate::password::{protect, PasswordStorage, PASSWORD};
use crate::service::{derived_version, ScimService};
use scimgate_changes::Op;

/// A resource type with its schema view and what the endpoint derives for it.
pub struct Kind<'r> {
    pub rt: &'r ResourceType,
    pub ctx: SchemaCtx<'r>,
    /// Members are kept in the membership table (Group).
    pub has_members: bool,
    /// `groups` is derived from memberships (User).
    pub has_groups: bool,
    pub has_user_name: bool,
    pub unique_user_name: bool,
    pub unique_display_name: bool,
    /// The core schema has a top-level `password` (User): writes go through
    /// [`protect`].
    pub has_password: bool,
}

/// `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match`/`If-None-Match` value names `version` (`*` names any).
pub fn etag_matches(header: &str, version: i64) -> bool {
    let wanted = version.to_string();
    header.split(',').map(str::trim).any(|tag| {
        tag == "*" || {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"') == wanted
        }
    })
}

impl ScimService {
    pub(crate) fn kind<'r>(&'r self, rt: &'r ResourceType) -> Result<Kind<'r>, PluginError> {
        let ctx = self.registry.context(rt).map_err(from_scim)?;
        let core = ctx.core;
        let attr = |name: &str| core.and_then(|c| c.attribute(name));
        let has_members = attr("members").is_some_and(|a| a.sub_attribute("value").is_some());
        let has_groups =
            attr("groups").is_some_and(|a| a.mutability == scimgate_scim::Mutability::ReadOnly);
        let user_name = attr("userName");
        let is_group = core.is_some_and(|c| c.is(scimgate_scim::urn::GROUP));
        Ok(Kind {
            has_members,
            has_groups,
            has_user_name: user_name.is_some(),
            unique_user_name: user_name.is_some_and(|a| a.uniqueness != Uniqueness::None),
            unique_display_name: self.settings.unique_group_names && is_group,
            has_password: attr(PASSWORD).is_some(),
            rt,
            ctx,
        })
    }

    /// The stage's `password_storage`.
    pub(crate) fn password_storage(&self) -> PasswordStorage {
        match self.settings.password_storage {
            // A clear password only ever reaches a backend that stores it
            // its own way.
            PasswordStorage::Backend if !self.backend.stores_passwords() => PasswordStorage::Hash,
            storage => storage,
        }
    }

    pub(crate) fn kind_named(&self, name: &str) -> Option<Kind<'_>> {
        self.registry
            .resource_type(name)
            .and_then(|rt| self.kind(rt).ok())
    }

    fn derives_groups(&self, type_name: &str) -> bool {
        self.kind_named(type_name).is_some_and(|k| k.has_groups)
    }

    /// `base/Endpoint/id`.
    pub(crate) fn location(&self, base: &str, type_name: &str, id: &str) -> String {
        let endpoint = self
            .registry
            .resource_type(type_name)
            .map_or("", |rt| rt.endpoint.as_str());
        // Made twice per resource sent (`meta.location`, `Location`):
        // joined without `format!`'s machinery.
        let base = base.trim_end_matches('/');
        let mut location = String::with_capacity(base.len() + endpoint.len() + 1 + id.len());
        location.push_str(base);
        location.push_str(endpoint);
        location.push('/');
        location.push_str(id);
        location
    }

    /// The full resource a client sees (before projection): body, `id`,
    /// `meta`, and with `relations` the derived `members`/`groups`.
    pub(crate) fn render(
        &self,
        kind: &Kind<'_>,
        rec: &Record,
        base: &str,
        relations: bool,
    ) -> Result<Value, PluginError> {
        self.render_with(kind, rec, base, relations, None)
    }

    /// [`ScimService::render`] with the native `groups` of a whole page
    /// fetched beforehand ([`ScimService::page_groups`]): a resource found
    /// in `groups` is rendered from it instead of asking the backend.
    pub(crate) fn render_with(
        &self,
        kind: &Kind<'_>,
        rec: &Record,
        base: &str,
        relations: bool,
        groups: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Value, PluginError> {
        let body = match &rec.body {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        self.render_body(kind, rec, body, base, relations, groups)
    }

    /// [`ScimService::render`] of a record the caller gives up: its body is
    /// moved into the rendered resource, not copied.
    pub(crate) fn render_owned(
        &self,
        kind: &Kind<'_>,
        mut rec: Record,
        base: &str,
        relations: bool,
    ) -> Result<Value, PluginError> {
        let body = match std::mem::take(&mut rec.body) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.render_body(kind, &rec, body, base, relations, None)
    }

    /// Renders `body` (the stored body of `rec`, which may have been taken
    /// out of it) with `id`, `meta` and the derived `members`/`groups`.
    fn render_body(
        &self,
        kind: &Kind<'_>,
        rec: &Record,
        mut body: Map<String, Value>,
        base: &str,
        relations: bool,
        groups: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Value, PluginError> {
        body.insert("id".into(), Value::String(rec.id.clone()));
        body.insert("meta".into(), self.meta(kind, rec, base));
        if relations && kind.has_members {
            let views = if self.caps.native_members {
                self.backend.members(&kind.rt.name, &rec.id)?
            } else {
                self.member_views(&body)?
            };
            let members: Vec<Value> = views
                .into_iter()
                .map(|m| {
                    let mut entry = json!({
                        "value": m.id,
                        "type": m.member_type,
                        "$ref": self.location(base, &m.member_type, &m.id),
                    });
                    if let Some(display) =
                        m.display.or_else(|| m.body.as_ref().and_then(display_of))
                    {
                        entry["display"] = Value::String(display);
                    }
                    entry
                })
                .collect();
            if members.is_empty() {
                body.remove("members");
            } else {
                body.insert("members".into(), Value::Array(members));
            }
        }
        if relations && kind.has_groups {
            let groups = self.groups(rec, base, groups)?;
            if !groups.is_empty() {
                body.insert("groups".into(), Value::Array(groups));
            }
        }
        Ok(Value::Object(body))
    }

    /// The `meta` of `rec`.
    pub(crate) fn meta(&self, kind: &Kind<'_>, rec: &Record, base: &str) -> Value {
        self.meta_members(kind, rec, base)
            .into_iter()
            .map(|(name, value)| (name.to_string(), Value::String(value.into_owned())))
            .collect::<Map<String, Value>>()
            .into()
    }

    /// The members of `rec`'s `meta`, in the order a serialized
    /// `serde_json::Map` has them (the one list [`ScimService::meta`] and
    /// the copy of a stored resource, `crate::ready`, both write).
    pub(crate) fn meta_members<'a>(
        &self,
        kind: &'a Kind<'_>,
        rec: &'a Record,
        base: &str,
    ) -> [(&'static str, Cow<'a, str>); 5] {
        [
            ("created", Cow::Borrowed(rec.created.as_str())),
            ("lastModified", Cow::Borrowed(rec.last_modified.as_str())),
            (
                "location",
                Cow::Owned(self.location(base, &kind.rt.name, &rec.id)),
            ),
            ("resourceType", Cow::Borrowed(kind.rt.name.as_str())),
            ("version", Cow::Owned(etag(rec.version))),
        ]
    }

    /// The derived `groups` of `rec` (`page`: a list page's, fetched
    /// beforehand, if any).
    pub(crate) fn groups(
        &self,
        rec: &Record,
        base: &str,
        page: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Vec<Value>, PluginError> {
        let refs = if self.caps.native_members {
            match page {
                Some(page) => page.get(&rec.id).cloned().unwrap_or_default(),
                None => self.backend.groups_of(&rec.id)?,
            }
        } else {
            self.groups_by_scan(&rec.id)?
        };
        Ok(refs
            .into_iter()
            .map(|g| {
                let mut entry = json!({
                    "value": g.id,
                    "$ref": self.location(base, &g.resource_type, &g.id),
                    "type": "direct",
                });
                if let Some(display) = display_of(&g.body) {
                    entry["display"] = Value::String(display);
                }
                entry
            })
            .collect())
    }

    /// With native membership, the `groups` of the resources of `recs`
    /// that derive them, in one [`Backend::groups_of_many`] call when there
    /// are several (a list page); `None` when there is nothing to batch
    /// (then [`ScimService::render`] asks per resource, as a single GET
    /// does).
    ///
    /// [`Backend::groups_of_many`]: crate::backend::Backend::groups_of_many
    pub(crate) fn page_groups<'a>(
        &self,
        kinds: &[Kind<'_>],
        recs: impl IntoIterator<Item = &'a Record>,
        relations: bool,
    ) -> Result<Option<HashMap<String, Vec<GroupRef>>>, PluginError> {
        if !relations || !self.caps.native_members {
            return Ok(None);
        }
        let ids: Vec<&str> = recs
            .into_iter()
            .filter(|rec| {
                kinds
                    .iter()
                    .any(|k| k.has_groups && k.rt.name == rec.resource_type)
            })
            .map(|rec| rec.id.as_str())
            .collect();
        if ids.len() < 2 {
            return Ok(None);
        }
        Ok(Some(self.backend.groups_of_many(&ids)?))
    }

    /// POST: validates, assigns the id, stores.
    pub(crate) fn create_in(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        input: &Value,
        stamp: &Stamp,
    ) -> Result<Record, PluginError> {
        let cleaned = validate_create(&kind.ctx, input).map_err(from_scim)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.store_in(tx, kind, &id, cleaned, None, None, false, stamp)
    }

    /// PUT: replaces the resource (immutable attributes checked).
    pub(crate) fn replace_in(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        id: &str,
        input: &Value,
        if_match: Option<&str>,
        stamp: &Stamp,
    ) -> Result<Record, PluginError> {
        let existing = self.existing(tx, kind, id, if_match)?;
        let mut current = existing.body.clone();
        if kind.has_members && self.caps.native_members {
            let members: Vec<Value> = tx.members(id)?.into_iter().map(member_json).collect();
            if !members.is_empty() {
                current["members"] = Value::Array(members);
            }
        }
        let cleaned = validate_replace(&kind.ctx, input, &current).map_err(from_scim)?;
        self.store_in(
            tx,
            kind,
            id,
            cleaned,
            Some(&existing),
            None,
            if_match.is_some(),
            stamp,
        )
    }

    /// PATCH: applies the operations to the current resource, all or nothing.
    pub(crate) fn patch_in(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        stamp: &Stamp,
    ) -> Result<Record, PluginError> {
        // Standard RFC 7644 PatchOp only: the client dialects are rewritten by
        // the route's profile (scimgate_scim::profile), which owns PATCH
        // normalisation, so a profile's `normalize_patch = false` takes effect.
        let request = PatchRequest::parse(body).map_err(from_scim)?;
        let existing = self.existing(tx, kind, id, if_match)?;
        let mut current = existing.body.clone();
        current["id"] = Value::String(id.to_string());
        if kind.has_members && self.caps.native_members {
            let members: Vec<Value> = tx.members(id)?.into_iter().map(member_json).collect();
            if !members.is_empty() {
                current["members"] = Value::Array(members);
            }
        }
        let patched = apply_patch(&kind.ctx, &current, &request).map_err(from_scim)?;
        self.store_in(
            tx,
            kind,
            id,
            patched,
            Some(&existing),
            Some(&request),
            if_match.is_some(),
            stamp,
        )
    }

    /// DELETE: removes the resource and its memberships both ways.
    pub(crate) fn delete_in(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        id: &str,
        if_match: Option<&str>,
        stamp: &Stamp,
    ) -> Result<(), PluginError> {
        let now = stamp.now.as_str();
        let existing = self.existing(tx, kind, id, if_match)?;
        // Native membership: the resources whose derived attributes change.
        let mut touched = Vec::new();
        // The groups that listed it, and the members whose `groups` change.
        let mut groups = Vec::new();
        let mut members = BTreeSet::new();
        if self.caps.native_members {
            groups = tx.group_ids_of(id)?;
            touched.clone_from(&groups);
            if kind.has_members {
                for member in tx.members(id)? {
                    if self.derives_groups(&member.member_type) {
                        members.insert(member.id.clone());
                        touched.push(member.id);
                    }
                }
            }
        } else if kind.has_members {
            members = self.member_ids(&existing.body);
        }
        self.check_unchanged(tx, kind, &existing)?;
        match tx.delete(&kind.rt.name, id, self.expected(&existing)) {
            Ok(true) => {}
            Ok(false) => return Err(not_found(format!("{} '{id}' not found", kind.rt.name))),
            Err(BackendError::VersionMismatch) => {
                return Err(precondition_failed("the resource changed; fetch it again"))
            }
            Err(e) => return Err(e.into()),
        }
        let change =
            self.record_change(tx, stamp, &kind.rt.name, id, Op::Delete, None, Vec::new())?;
        self.record_members(tx, &change, &members)?;
        if self.caps.native_members {
            tx.touch(&touched, now)?;
            for group in &groups {
                self.record_group_side_effect(tx, stamp, group)?;
            }
            Ok(())
        } else {
            self.unlink_everywhere(tx, id, stamp)
        }
    }

    /// Without native membership: the ids of the members a group's body
    /// lists whose type derives `groups`.
    fn member_ids(&self, body: &Value) -> BTreeSet<String> {
        body.get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| {
                m.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| self.derives_groups(t))
            })
            .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// The current row, checking `If-Match`.
    fn existing(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Record, PluginError> {
        let existing = tx
            .get(&kind.rt.name, id)?
            .map(|rec| self.adopt(rec))
            .ok_or_else(|| not_found(format!("{} '{id}' not found", kind.rt.name)))?;
        if let Some(header) = if_match {
            if !etag_matches(header, existing.version) {
                return Err(precondition_failed(format!(
                    "If-Match {header} does not match the current version {}",
                    etag(existing.version)
                )));
            }
        }
        Ok(existing)
    }

    /// Stores a validated resource: members into the membership table,
    /// indexed columns, uniqueness, optimistic concurrency, and bumps the
    /// version of resources whose derived attributes changed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store_in(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        id: &str,
        cleaned: Value,
        existing: Option<&Record>,
        patch: Option<&PatchRequest>,
        if_match_given: bool,
        stamp: &Stamp,
    ) -> Result<Record, PluginError> {
        let now = stamp.now.as_str();
        let Value::Object(mut body) = cleaned else {
            return Err(invalid_value("a resource must be a JSON object"));
        };
        // The one place every write passes: `password` is never stored in clear.
        if kind.has_password {
            protect(
                self.password_storage(),
                &mut body,
                existing.map(|old| &old.body),
            )?;
        }
        body.remove("meta");
        if kind.has_groups {
            body.remove("groups");
        }
        let members = if kind.has_members {
            let raw = body.remove("members");
            let members = self.resolve_members(tx, id, raw)?;
            if !self.caps.native_members {
                if !members.is_empty() {
                    let kept = members.into_iter().map(member_json).collect();
                    body.insert("members".into(), Value::Array(kept));
                }
                None
            } else {
                Some(members)
            }
        } else {
            None
        };
        body.insert("id".into(), Value::String(id.to_string()));

        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let (user_name, display_name, external_id, emails) = index_values(kind, &body);
        let name = &kind.rt.name;
        if let (true, Some(value)) = (kind.unique_user_name, &user_name) {
            if tx.taken(name, UniqueColumn::UserName, value, id)? {
                return Err(bad(
                    409,
                    "uniqueness",
                    format!(
                        "userName '{}' is already in use",
                        text("userName").unwrap_or_default()
                    ),
                ));
            }
        }
        if let (true, Some(value)) = (kind.unique_display_name, &display_name) {
            if tx.taken(name, UniqueColumn::DisplayName, value, id)? {
                return Err(bad(
                    409,
                    "uniqueness",
                    format!(
                        "displayName '{}' is already in use",
                        text("displayName").unwrap_or_default()
                    ),
                ));
            }
        }
        let display_changed = self.caps.native_members
            && existing.is_some_and(|old| {
                display_of(&old.body).as_deref()
                    != body
                        .get("displayName")
                        .or_else(|| body.get("userName"))
                        .and_then(Value::as_str)
            });
        let record = NewRecord {
            id: id.to_string(),
            resource_type: name.clone(),
            user_name,
            external_id,
            display_name,
            emails,
            now: now.to_string(),
            body: Value::Object(body),
        };
        let stored = match existing {
            None => tx
                .insert(&record)
                .map_err(|e| match e {
                    BackendError::Conflict(_) => {
                        bad(409, "uniqueness", "a unique value is already in use")
                    }
                    other => other.into(),
                })
                .map(|stored| self.adopt(stored))?,
            Some(old) => match self
                .check_unchanged(tx, kind, old)
                .and_then(|()| match patch {
                    Some(patch) => tx.update_by_patch(old, &record, patch, old.version),
                    None => tx.update(&record, old.version),
                }) {
                Ok(stored) => self.adopt(stored),
                Err(BackendError::VersionMismatch) if if_match_given => {
                    return Err(precondition_failed("the resource changed; fetch it again"))
                }
                Err(BackendError::VersionMismatch) => {
                    return Err(PluginError::new(
                        409,
                        "the resource was modified concurrently; retry",
                    ))
                }
                Err(BackendError::Conflict(_)) => {
                    return Err(bad(409, "uniqueness", "a unique value is already in use"))
                }
                Err(e) => return Err(e.into()),
            },
        };
        let mut touched: Vec<String> = Vec::new();
        let log = self.settings.changes.enabled;
        let mut attributes = if log {
            changed_attributes(&kind.ctx, existing.map(|old| &old.body), &record.body)
        } else {
            Vec::new()
        };
        // The members whose `groups` this write changed.
        let mut member_changes: BTreeSet<String> = BTreeSet::new();
        if log && !self.caps.native_members && kind.has_members {
            let old = existing.map_or_else(BTreeSet::new, |old| self.member_ids(&old.body));
            let new = self.member_ids(&record.body);
            member_changes = old.symmetric_difference(&new).cloned().collect();
        }
        if let Some(new_members) = members {
            let old_members = if existing.is_some() {
                tx.members(id)?
            } else {
                Vec::new()
            };
            if old_members != new_members {
                if log && !attributes.iter().any(|a| a == "members") {
                    attributes.push("members".into());
                    attributes.sort();
                }
                let old: BTreeSet<(&str, &str)> = old_members
                    .iter()
                    .map(|m| (m.id.as_str(), m.member_type.as_str()))
                    .collect();
                let new: BTreeSet<(&str, &str)> = new_members
                    .iter()
                    .map(|m| (m.id.as_str(), m.member_type.as_str()))
                    .collect();
                for (member, member_type) in old.symmetric_difference(&new) {
                    if self.derives_groups(member_type) {
                        touched.push(member.to_string());
                        member_changes.insert(member.to_string());
                    }
                }
                tx.set_members(id, &new_members)?;
            }
        }
        if display_changed {
            touched.extend(tx.group_ids_of(id)?);
        }
        touched.sort();
        touched.dedup();
        tx.touch(&touched, now)?;
        let op = match (existing, patch) {
            (None, _) => Op::Create,
            (Some(_), Some(_)) => Op::Patch,
            (Some(_), None) => Op::Replace,
        };
        let change =
            self.record_change(tx, stamp, name, id, op, Some(stored.version), attributes)?;
        self.record_members(tx, &change, &member_changes)?;
        Ok(stored)
    }

    /// Without `versions`: the stored resource must still have the version
    /// `old` was read with (the backend cannot check it).
    fn check_unchanged(
        &self,
        tx: &mut dyn BackendTx,
        kind: &Kind<'_>,
        old: &Record,
    ) -> Result<(), BackendError> {
        if self.caps.versions {
            return Ok(());
        }
        match tx.get(&kind.rt.name, &old.id)? {
            Some(now) if derived_version(&now) == old.version => Ok(()),
            _ => Err(BackendError::VersionMismatch),
        }
    }

    /// The `expected_version` handed to the backend: only one it keeps.
    fn expected(&self, existing: &Record) -> Option<i64> {
        self.caps.versions.then_some(existing.version)
    }

    /// Without native membership: the members kept in a group's body, with
    /// the member's body when `display` must be derived.
    fn member_views(&self, body: &Map<String, Value>) -> Result<Vec<MemberView>, PluginError> {
        let items = body.get("members").and_then(Value::as_array);
        let mut out = Vec::with_capacity(items.map_or(0, Vec::len));
        for item in items.into_iter().flatten() {
            let Some(id) = item.get("value").and_then(Value::as_str) else {
                continue;
            };
            let member_type = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let display = item
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_string);
            let body = match (&display, member_type.is_empty()) {
                (None, false) => self.backend.get(&member_type, id)?.map(|r| r.body),
                _ => None,
            };
            out.push(MemberView {
                id: id.to_string(),
                member_type,
                display,
                body,
            });
        }
        Ok(out)
    }

    /// Without native membership: the groups (of every type with members)
    /// whose body lists `member_id`, in the backend's natural order.
    fn groups_by_scan(&self, member_id: &str) -> Result<Vec<GroupRef>, PluginError> {
        let mut out = Vec::new();
        for (rt, kind) in self.member_kinds()? {
            self.scan_listing(&kind, member_id, &mut |rec| {
                out.push(GroupRef {
                    id: rec.id,
                    resource_type: rt.name.clone(),
                    body: rec.body,
                });
            })?;
        }
        Ok(out)
    }

    /// The resource types whose resources keep members.
    fn member_kinds(&self) -> Result<Vec<(&ResourceType, Kind<'_>)>, PluginError> {
        let mut out = Vec::new();
        for rt in self.registry.resource_types() {
            let kind = self.kind(rt)?;
            if kind.has_members {
                out.push((rt, kind));
            }
        }
        Ok(out)
    }

    /// Visits the resources of `kind` whose body lists `member_id` (the
    /// backend narrows by `members.value eq`, the engine checks).
    fn scan_listing(
        &self,
        kind: &Kind<'_>,
        member_id: &str,
        found: &mut dyn FnMut(Record),
    ) -> Result<(), PluginError> {
        let filter = Filter::Compare {
            path: AttrPath {
                urn: None,
                attr: "members".into(),
                sub_attr: Some("value".into()),
            },
            op: CompareOp::Eq,
            value: CompValue::String(member_id.to_string()),
        };
        let scan = Scan {
            resource_types: vec![kind.rt.name.clone()],
            filter: Some((&filter, &kind.ctx)),
            ..Scan::default()
        };
        self.backend.scan(&scan, &mut |rec| {
            if lists_member(&rec.body, member_id) {
                found(rec);
            }
            Ok(Visit::Continue)
        })
    }

    /// Without native membership: removes `member_id` from every group that
    /// lists it (after the member was deleted).
    fn unlink_everywhere(
        &self,
        tx: &mut dyn BackendTx,
        member_id: &str,
        stamp: &Stamp,
    ) -> Result<(), PluginError> {
        let now = stamp.now.as_str();
        for (rt, kind) in self.member_kinds()? {
            let mut ids = Vec::new();
            self.scan_listing(&kind, member_id, &mut |rec| ids.push(rec.id))?;
            for group_id in ids {
                let Some(group) = tx.get(&rt.name, &group_id)?.map(|r| self.adopt(r)) else {
                    continue;
                };
                let Value::Object(mut body) = group.body.clone() else {
                    continue;
                };
                if let Some(Value::Array(members)) = body.get_mut("members") {
                    members.retain(|m| m.get("value").and_then(Value::as_str) != Some(member_id));
                    if members.is_empty() {
                        body.remove("members");
                    }
                }
                let record = new_record(&kind, &group_id, body, now);
                self.check_unchanged(tx, &kind, &group)?;
                let stored = self.adopt(tx.update(&record, group.version)?);
                self.record_change(
                    tx,
                    stamp,
                    &rt.name,
                    &group_id,
                    Op::Patch,
                    Some(stored.version),
                    vec!["members".into()],
                )?;
            }
        }
        Ok(())
    }

    /// Checks that every member exists and has the stated type.
    fn resolve_members(
        &self,
        tx: &mut dyn BackendTx,
        group_id: &str,
        raw: Option<Value>,
    ) -> Result<Vec<Member>, PluginError> {
        let items = match raw {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(invalid_value("'members' must be an array")),
        };
        let mut out: Vec<Member> = Vec::with_capacity(items.len());
        for item in items {
            let value = item.get("value").and_then(Value::as_str).ok_or_else(|| {
                invalid_value("every member needs a string 'value' (the member's id)")
            })?;
            let actual = tx
                .type_of(&self.type_names, value)?
                .ok_or_else(|| invalid_value(format!("member '{value}' does not exist")))?;
            if let Some(stated) = item.get("type").and_then(Value::as_str) {
                if !stated.eq_ignore_ascii_case(&actual) {
                    return Err(invalid_value(format!(
                        "member '{value}' is a {actual}, not a {stated}"
                    )));
                }
            }
            if value == group_id {
                return Err(invalid_value("a group cannot be a member of itself"));
            }
            let display = item
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !out.iter().any(|m| m.id == value) {
                out.push(Member {
                    id: value.to_string(),
                    member_type: actual,
                    display,
                });
            }
        }
        Ok(out)
    }
}

/// Whether a body's `members` lists `member_id`.
fn lists_member(body: &Value, member_id: &str) -> bool {
    body.get("members")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items
                .iter()
                .any(|m| m.get("value").and_then(Value::as_str) == Some(member_id))
        })
}

/// The indexed values of a body: lower-cased `userName` (when the type has
/// one), lower-cased `displayName`, `externalId`, lower-cased email values.
fn index_values(
    kind: &Kind<'_>,
    body: &Map<String, Value>,
) -> (Option<String>, Option<String>, Option<String>, Vec<String>) {
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let user_name = if kind.has_user_name {
        text("userName").map(str::to_lowercase)
    } else {
        None
    };
    let display_name = text("displayName").map(str::to_lowercase);
    let external_id = text("externalId").map(str::to_string);
    let emails: Vec<String> = body
        .get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("value").and_then(Value::as_str))
        .map(str::to_lowercase)
        .collect();
    (user_name, display_name, external_id, emails)
}

/// What a write of `body` stores.
fn new_record(kind: &Kind<'_>, id: &str, body: Map<String, Value>, now: &str) -> NewRecord {
    let (user_name, display_name, external_id, emails) = index_values(kind, &body);
    NewRecord {
        id: id.to_string(),
        resource_type: kind.rt.name.clone(),
        user_name,
        external_id,
        display_name,
        emails,
        now: now.to_string(),
        body: Value::Object(body),
    }
}

/// A stored member as the PATCH engine sees it.
fn member_json(m: Member) -> Value {
    let mut entry = json!({"value": m.id, "type": m.member_type});
    if let Some(display) = m.display {
        entry["display"] = Value::String(display);
    }
    entry
}

/// What `display` shows for a resource: `displayName`, else `userName`.
pub fn display_of(body: &Value) -> Option<String> {
    body.get("displayName")
        .or_else(|| body.get("userName"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// RFC 3339 UTC with milliseconds: fixed width, so it sorts as text.
pub fn timestamp(unix_ms: i64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_weak_strong_lists_and_star() {
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("\"3\"", 3));
        assert!(etag_matches("W/\"1\", W/\"3\"", 3));
        assert!(etag_matches("*", 9));
        assert!(!etag_matches("W/\"2\"", 3));
        assert_eq!(etag(5), "W/\"5\"");
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
