//! [`LdapBackend`]: the SCIM engine's [`Backend`] over an LDAP directory.
//!
//! Reads push the filter down ([`crate::filter`]) and page with the simple
//! paged results control (RFC 2696); a sequential walk by `startIndex`
//! continues the paged search it left (a small continuation cache keyed by
//! base, filter and next offset keeps the cookie on its connection) instead
//! of skipping from the start again. Writes are applied one by one (no
//! transactions); group members are the `member` DNs of `groupOfNames`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ldap3::controls::{Control, ControlType, PagedResults, RawControl, RelaxRules};
use ldap3::{LdapConn, Mod, Scope, SearchEntry};
use scimgate_abi::PluginError;
use scimgate_scim::{Filter, SchemaCtx};
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, GroupRef, Member, MemberView,
    NewRecord, Record, Scan, UniqueColumn, Visit, Visitor, Work,
};

use crate::config::LdapConfig;
use crate::conn::{is_connection_error, result_error, unavailable, Pool, Target, NO_SUCH_OBJECT};
use crate::filter::{escape, translate};
use crate::mapping::{generalized_to_rfc3339, TypeMap, GROUP, USER};

/// Paged searches parked for the next sequential page.
const CONTINUATIONS: usize = 4;
/// How long a parked paged search waits for its next page.
const CONTINUATION_TTL: Duration = Duration::from_secs(60);
/// Member ids per search of [`Backend::groups_of_many`] (the length of its
/// `(|(member=…)…)` filter).
const BATCH: usize = 100;

struct Continuation {
    key: (String, String, u64),
    conn: LdapConn,
    cookie: Vec<u8>,
    pending: VecDeque<SearchEntry>,
    parked: Instant,
}

/// The SCIM engine's view of one directory.
pub struct LdapBackend {
    pool: Pool,
    users: TypeMap,
    groups: TypeMap,
    page_size: u32,
    /// The member DN of an otherwise empty group (hidden from SCIM).
    placeholder: String,
    continuations: Mutex<Vec<Continuation>>,
}

impl LdapBackend {
    /// The backend for a checked config (no connection is opened yet).
    pub fn new(config: &LdapConfig) -> Result<LdapBackend, String> {
        Ok(LdapBackend {
            pool: Pool::new(Target::from_config(config)?, config.pool_size),
            users: TypeMap::build(config, false)?,
            groups: TypeMap::build(config, true)?,
            page_size: config.page_size.max(1),
            placeholder: config.empty_group_member(),
            continuations: Mutex::new(Vec::new()),
        })
    }

    fn map(&self, resource_type: &str) -> BackendResult<&TypeMap> {
        if resource_type.eq_ignore_ascii_case(USER) {
            Ok(&self.users)
        } else if resource_type.eq_ignore_ascii_case(GROUP) {
            Ok(&self.groups)
        } else {
            Err(BackendError::Backend(format!(
                "the LDAP backend keeps no '{resource_type}' resources"
            )))
        }
    }

    fn session(&self) -> BackendResult<Session<'_>> {
        Ok(Session {
            backend: self,
            conn: Some(self.pool.get()?),
        })
    }

    /// The record of an entry (`None` without an id).
    fn record(&self, map: &TypeMap, entry: &SearchEntry) -> Option<Record> {
        let id = first(&entry.attrs, &map.id_attr)?.to_string();
        let created = first(&entry.attrs, "createTimestamp")
            .and_then(generalized_to_rfc3339)
            .unwrap_or_default();
        let last_modified = first(&entry.attrs, "modifyTimestamp")
            .and_then(generalized_to_rfc3339)
            .unwrap_or_else(|| created.clone());
        Some(Record {
            id,
            resource_type: map.resource_type.to_string(),
            seq: 0,
            version: 0,
            created,
            last_modified,
            body: map.to_body(&entry.attrs),
        })
    }

    /// The LDAP filter of a scan of one type; `None` when nothing matches.
    fn scan_filter(&self, map: &TypeMap, scan: &Scan<'_>) -> Option<String> {
        match scan.filter {
            Some((filter, _)) => translate(filter, map).with_selector(&map.selector()),
            None => Some(map.selector()),
        }
    }

    fn take_continuation(&self, key: &(String, String, u64)) -> Option<Continuation> {
        let mut parked = self.continuations.lock().ok()?;
        let mut expired = Vec::new();
        let mut i = 0;
        while i < parked.len() {
            if parked[i].parked.elapsed() > CONTINUATION_TTL {
                expired.push(parked.swap_remove(i));
            } else {
                i += 1;
            }
        }
        let found = parked
            .iter()
            .position(|c| &c.key == key)
            .map(|i| parked.swap_remove(i));
        drop(parked);
        for old in expired {
            drop(old.conn);
            self.pool.forget();
        }
        found
    }

    fn park(&self, continuation: Continuation) {
        let evicted = match self.continuations.lock() {
            Ok(mut parked) => {
                parked.push(continuation);
                if parked.len() > CONTINUATIONS.min(self.pool_size().saturating_sub(1)).max(1) {
                    Some(parked.remove(0))
                } else {
                    None
                }
            }
            Err(_) => None,
        };
        if let Some(old) = evicted {
            drop(old.conn);
            self.pool.forget();
        }
    }

    /// Parked searches hold at most all but one connection.
    fn pool_size(&self) -> usize {
        self.pool.size()
    }

    /// Visits entries of `map` matching `filter` from `offset`, at most
    /// `limit`; returns (delivered, stopped by the visitor).
    fn paged(
        &self,
        map: &TypeMap,
        filter: &str,
        offset: u64,
        limit: Option<u64>,
        visit: &mut Visitor<'_>,
    ) -> Result<(u64, bool), PluginError> {
        let key = (map.base.clone(), filter.to_string(), offset);
        let (mut session, mut cookie, mut pending, mut started, mut skip) =
            match self.take_continuation(&key) {
                Some(c) => (
                    Session {
                        backend: self,
                        conn: Some(c.conn),
                    },
                    c.cookie,
                    c.pending,
                    true,
                    0,
                ),
                None => (self.session()?, Vec::new(), VecDeque::new(), false, offset),
            };
        let attrs = map.read_attributes();
        let mut delivered = 0u64;
        loop {
            while let Some(entry) = pending.pop_front() {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if limit.is_some_and(|l| delivered >= l) {
                    pending.push_front(entry);
                    if let Some(conn) = session.conn.take() {
                        self.park(Continuation {
                            key: (key.0, key.1, offset + delivered),
                            conn,
                            cookie,
                            pending,
                            parked: Instant::now(),
                        });
                    }
                    return Ok((delivered, false));
                }
                let Some(record) = self.record(map, &entry) else {
                    continue;
                };
                delivered += 1;
                if visit(record)? == Visit::Stop {
                    return Ok((delivered, true));
                }
            }
            if started && cookie.is_empty() {
                return Ok((delivered, false));
            }
            let (entries, next) = self.one_page(
                &mut session,
                &map.base,
                filter,
                &attrs,
                std::mem::take(&mut cookie),
            )?;
            started = true;
            pending.extend(entries);
            cookie = next;
        }
    }

    fn find(
        &self,
        session: &mut Session<'_>,
        map: &TypeMap,
        id: &str,
        extra: &[&str],
    ) -> BackendResult<Option<SearchEntry>> {
        let filter = format!("(&{}({}={}))", map.selector(), map.id_attr, escape(id));
        let mut attrs = map.read_attributes();
        attrs.extend(extra.iter().map(|a| a.to_string()));
        let (mut entries, _) =
            session.search(&map.base, Scope::Subtree, &filter, &attrs, vec![])?;
        Ok(entries.pop())
    }

    /// The DN and type of the resource `id` (Users first).
    fn locate(
        &self,
        session: &mut Session<'_>,
        id: &str,
    ) -> BackendResult<Option<(String, &TypeMap)>> {
        for map in [&self.users, &self.groups] {
            if let Some(entry) = self.find(session, map, id, &[])? {
                return Ok(Some((entry.dn, map)));
            }
        }
        Ok(None)
    }

    /// Groups (entries) holding `dn` as a member.
    fn groups_holding(
        &self,
        session: &mut Session<'_>,
        dn: &str,
    ) -> BackendResult<Vec<SearchEntry>> {
        let filter = format!("(&{}(member={}))", self.groups.selector(), escape(dn));
        let mut attrs = self.groups.read_attributes();
        attrs.push("member".into());
        Ok(session
            .search(&self.groups.base, Scope::Subtree, &filter, &attrs, vec![])?
            .0)
    }

    /// Members of a group entry as (DN-resolved) records with their type.
    fn member_records(
        &self,
        session: &mut Session<'_>,
        group: &SearchEntry,
    ) -> BackendResult<Vec<Record>> {
        let mut out = Vec::new();
        let user_class = self
            .users
            .object_classes
            .last()
            .cloned()
            .unwrap_or_default();
        let group_class = self
            .groups
            .object_classes
            .last()
            .cloned()
            .unwrap_or_default();
        let mut attrs = self.users.read_attributes();
        attrs.extend(self.groups.read_attributes());
        for dn in all(&group.attrs, "member") {
            if dn.eq_ignore_ascii_case(&self.placeholder) {
                continue;
            }
            let (entries, _) =
                session.search(dn, Scope::Base, "(objectClass=*)", &attrs, vec![])?;
            let Some(entry) = entries.first() else {
                continue;
            };
            let classes = all(&entry.attrs, "objectClass");
            let has = |class: &str| classes.iter().any(|c| c.eq_ignore_ascii_case(class));
            let map = if has(&user_class) {
                &self.users
            } else if has(&group_class) {
                &self.groups
            } else {
                continue;
            };
            if let Some(record) = self.record(map, entry) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Removes `dn` from every group (an emptied group gets the placeholder).
    fn drop_references(&self, session: &mut Session<'_>, dn: &str) -> BackendResult<()> {
        for group in self.groups_holding(session, dn)? {
            let remaining = all(&group.attrs, "member")
                .iter()
                .filter(|m| !m.eq_ignore_ascii_case(dn))
                .count();
            let mods = if remaining == 0 {
                vec![Mod::Replace(
                    "member".to_string(),
                    set([self.placeholder.clone()]),
                )]
            } else {
                vec![Mod::Delete("member".to_string(), set([dn.to_string()]))]
            };
            session.modify(&group.dn, mods, &[16])?;
        }
        Ok(())
    }

    /// Points every group holding `old` at `new` (after a rename).
    fn move_references(
        &self,
        session: &mut Session<'_>,
        old: &str,
        new: &str,
    ) -> BackendResult<()> {
        for group in self.groups_holding(session, old)? {
            let mods = vec![
                Mod::Add("member".to_string(), set([new.to_string()])),
                Mod::Delete("member".to_string(), set([old.to_string()])),
            ];
            // 16/20: a referential-integrity overlay did it already.
            session.modify(&group.dn, mods, &[16, 20])?;
        }
        Ok(())
    }

    /// The entry attributes of a write, with the RDN value.
    fn entry_of(&self, map: &TypeMap, record: &NewRecord) -> BackendResult<EntryParts> {
        let mut body = record.body.clone();
        let password = body
            .as_object_mut()
            .and_then(|o| o.remove("password"))
            .and_then(|p| p.as_str().map(str::to_string));
        let attrs = map
            .to_entry(&body)
            .map_err(|m| BackendError::Invalid(m, "invalidValue"))?;
        let rdn_value = attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&map.rdn))
            .and_then(|(_, v)| v.first().cloned())
            .ok_or_else(|| {
                BackendError::Invalid(
                    format!(
                        "a {} needs a value for its naming attribute '{}'",
                        map.resource_type, map.rdn
                    ),
                    "invalidValue",
                )
            })?;
        let password = password.map(|p| user_password(&p));
        Ok((attrs.into_iter().collect(), rdn_value, password))
    }
}

/// A write's attributes, its RDN value and how its password is written.
type EntryParts = (Vec<(String, Vec<String>)>, String, Option<PasswordWrite>);

/// How a password reaches the directory.
enum PasswordWrite {
    /// A hashed value written to `userPassword` as is.
    Attribute(String),
    /// A clear value (`password_storage = "backend"`), set with the Password
    /// Modify extended operation (RFC 3062) so that the directory hashes it
    /// with its own scheme.
    Modify(String),
}

/// What the engine hands over: its argon2id PHC string becomes `{ARGON2}`
/// (OpenLDAP's argon2 module verifies it), an `{SCHEME}` value stays, and
/// anything else is a clear password for the Password Modify operation.
fn user_password(stored: &str) -> PasswordWrite {
    if stored.starts_with("$argon2") {
        PasswordWrite::Attribute(format!("{{ARGON2}}{stored}"))
    } else if stored.starts_with('{') && stored.contains('}') {
        PasswordWrite::Attribute(stored.to_string())
    } else {
        PasswordWrite::Modify(stored.to_string())
    }
}

/// An LDAP filter component selecting at least every entry whose `attr`
/// holds a value `v` with `v.to_lowercase() == value` (`value` is already
/// lower-cased), whatever the directory's case folding: an equality
/// assertion for a pure ASCII value (ASCII case folding is the same
/// everywhere); otherwise a substring assertion on the value's runs of
/// ASCII characters that surely come from the same ASCII characters of `v`
/// (not `i`/`k`, which `İ` and the Kelvin sign lower-case to, not one
/// followed by a non-ASCII character a directory may compose it with, no
/// spaces, which directories fold), in order; with no such run, every entry
/// holding the attribute.
fn candidates(attr: &str, value: &str) -> String {
    if value.is_ascii() {
        return format!("({attr}={})", escape(value));
    }
    let chars: Vec<char> = value.chars().collect();
    let mut runs: Vec<String> = Vec::new();
    let mut run = String::new();
    for (n, c) in chars.iter().enumerate() {
        let next_ascii = !matches!(chars.get(n + 1), Some(next) if !next.is_ascii());
        if c.is_ascii_graphic() && !matches!(c, 'i' | 'k') && next_ascii {
            run.push(*c);
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    if runs.is_empty() {
        return format!("({attr}=*)");
    }
    let inner: Vec<String> = runs.iter().map(|r| escape(r)).collect();
    format!("({attr}=*{}*)", inner.join("*"))
}

fn first<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

fn all<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> &'a [String] {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// A DN compared as the directory mostly would: ASCII case folded, spaces
/// around `,`, `=` and `+` dropped (a spelling this misses sends
/// [`Backend::groups_of_many`] back to per-member searches, never to a
/// wrong answer).
fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    // Spaces since the last significant character (dropped before and
    // after a separator).
    let mut spaces = 0;
    let mut after_separator = false;
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            escaped = false;
        } else if c == ' ' {
            if !after_separator {
                spaces += 1;
            }
            continue;
        } else if matches!(c, ',' | '=' | '+') {
            out.push(c);
            spaces = 0;
            after_separator = true;
            continue;
        } else if c == '\\' {
            escaped = true;
        }
        out.extend(std::iter::repeat_n(' ', spaces));
        spaces = 0;
        after_separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn set<const N: usize>(values: [String; N]) -> HashSet<String> {
    values.into_iter().collect()
}

/// One connection lent by the pool; a broken one is closed, a healthy one
/// goes back on drop.
struct Session<'a> {
    backend: &'a LdapBackend,
    conn: Option<LdapConn>,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.backend.pool.put(conn);
        }
    }
}

impl Session<'_> {
    fn conn(&mut self) -> BackendResult<&mut LdapConn> {
        match self.conn.as_mut() {
            Some(conn) => Ok(conn.with_timeout(self.backend.pool.target.operation_timeout)),
            None => Err(BackendError::Unavailable(
                "the connection was closed".into(),
            )),
        }
    }

    fn broken(&mut self, what: &str, error: &ldap3::LdapError) -> BackendError {
        if is_connection_error(error) {
            self.conn = None;
            self.backend.pool.forget();
            self.backend.pool.clear_idle();
            unavailable(what, error)
        } else {
            BackendError::Backend(format!("{what}: {error}"))
        }
    }

    fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        controls: Vec<RawControl>,
    ) -> BackendResult<(Vec<SearchEntry>, Vec<Control>)> {
        let conn = self.conn()?;
        if !controls.is_empty() {
            conn.with_controls(controls);
        }
        match conn.search(base, scope, filter, attrs) {
            Ok(result) => {
                let (entries, res) = (result.0, result.1);
                match res.rc {
                    0 => Ok((
                        entries.into_iter().map(SearchEntry::construct).collect(),
                        res.ctrls,
                    )),
                    NO_SUCH_OBJECT => Ok((Vec::new(), Vec::new())),
                    _ => Err(result_error("search", &res)),
                }
            }
            Err(e) => Err(self.broken("search", &e)),
        }
    }

    fn add(
        &mut self,
        dn: &str,
        attrs: Vec<(String, HashSet<String>)>,
        relax: bool,
    ) -> BackendResult<()> {
        let conn = self.conn()?;
        if relax {
            conn.with_controls(RelaxRules.critical());
        }
        match conn.add(dn, attrs) {
            Ok(res) if res.rc == 0 => Ok(()),
            Ok(res) => Err(result_error("new entry", &res)),
            Err(e) => Err(self.broken("add", &e)),
        }
    }

    /// `tolerated`: result codes that count as done.
    fn modify(&mut self, dn: &str, mods: Vec<Mod<String>>, tolerated: &[u32]) -> BackendResult<()> {
        if mods.is_empty() {
            return Ok(());
        }
        let conn = self.conn()?;
        match conn.modify(dn, mods) {
            Ok(res) if res.rc == 0 || tolerated.contains(&res.rc) => Ok(()),
            Ok(res) => Err(result_error("change", &res)),
            Err(e) => Err(self.broken("modify", &e)),
        }
    }

    /// Sets a password with the Password Modify extended operation (RFC
    /// 3062): the directory hashes it with its configured scheme.
    fn set_password(&mut self, dn: &str, password: &str) -> BackendResult<()> {
        let conn = self.conn()?;
        let exop = ldap3::exop::PasswordModify {
            user_id: Some(dn),
            old_pass: None,
            new_pass: Some(password),
        };
        match conn.extended(exop) {
            Ok(res) if res.1.rc == 0 => Ok(()),
            Ok(res) => Err(result_error("password", &res.1)),
            Err(e) => Err(self.broken("password modify", &e)),
        }
    }

    fn rename(&mut self, dn: &str, rdn: &str) -> BackendResult<()> {
        let conn = self.conn()?;
        match conn.modifydn(dn, rdn, true, None) {
            Ok(res) if res.rc == 0 => Ok(()),
            Ok(res) => Err(result_error("rename", &res)),
            Err(e) => Err(self.broken("rename", &e)),
        }
    }

    fn delete(&mut self, dn: &str) -> BackendResult<bool> {
        let conn = self.conn()?;
        match conn.delete(dn) {
            Ok(res) if res.rc == 0 => Ok(true),
            Ok(res) if res.rc == NO_SUCH_OBJECT => Ok(false),
            Ok(res) => Err(result_error("removal", &res)),
            Err(e) => Err(self.broken("delete", &e)),
        }
    }
}

use ldap3::controls::MakeCritical;

impl Backend for LdapBackend {
    /// With `password_storage = "backend"` a clear password goes to the
    /// directory through the Password Modify operation.
    fn stores_passwords(&self) -> bool {
        true
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            transactions: false,
            versions: false,
            keyset: false,
            native_members: true,
            generation: false,
        }
    }

    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        let map = self.map(resource_type)?;
        let mut session = self.session()?;
        Ok(self
            .find(&mut session, map, id, &[])?
            .and_then(|entry| self.record(map, &entry)))
    }

    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        let mut offset = scan.offset;
        let mut limit = scan.limit;
        for resource_type in &scan.resource_types {
            if limit == Some(0) {
                break;
            }
            let map = self.map(resource_type)?;
            let Some(filter) = self.scan_filter(map, scan) else {
                continue;
            };
            if offset > 0 && scan.resource_types.len() > 1 {
                // Several types: skip whole types by counting.
                let total = self.count_one(map, &filter)?;
                if offset >= total {
                    offset -= total;
                    continue;
                }
            }
            let (delivered, stopped) = self.paged(map, &filter, offset, limit, visit)?;
            if stopped {
                break;
            }
            offset = 0;
            limit = limit.map(|l| l.saturating_sub(delivered));
        }
        Ok(())
    }

    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        let map = match ctx.resource_type.map(|rt| rt.name.as_str()) {
            Some(name) => match self.map(name) {
                Ok(map) => map,
                Err(_) => return false,
            },
            None => return false,
        };
        translate(filter, map).exact
    }

    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        let mut total = 0;
        for resource_type in &scan.resource_types {
            let map = self.map(resource_type)?;
            if let Some(filter) = self.scan_filter(map, scan) {
                total += self.count_one(map, &filter)?;
            }
        }
        Ok(Some(total))
    }

    fn members(&self, _group_type: &str, group_id: &str) -> BackendResult<Vec<MemberView>> {
        let mut session = self.session()?;
        let Some(group) = self.find(&mut session, &self.groups, group_id, &["member"])? else {
            return Ok(Vec::new());
        };
        Ok(self
            .member_records(&mut session, &group)?
            .into_iter()
            .map(|r| MemberView {
                id: r.id,
                member_type: r.resource_type,
                display: None,
                body: Some(r.body),
            })
            .collect())
    }

    fn groups_of(&self, member_id: &str) -> BackendResult<Vec<GroupRef>> {
        let mut session = self.session()?;
        let Some((dn, _)) = self.locate(&mut session, member_id)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .groups_holding(&mut session, &dn)?
            .iter()
            .filter_map(|g| self.record(&self.groups, g))
            .map(|r| GroupRef {
                id: r.id,
                resource_type: r.resource_type,
                body: r.body,
            })
            .collect())
    }

    /// One search for the members' DNs and one for their groups per
    /// [`BATCH`] ids, instead of two searches per member.
    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        let mut out = HashMap::new();
        let mut session = self.session()?;
        for chunk in member_ids.chunks(BATCH) {
            if !self.groups_of_batch(&mut session, chunk, &mut out)? {
                drop(session);
                for id in chunk {
                    out.insert(id.to_string(), self.groups_of(id)?);
                }
                session = self.session()?;
            }
        }
        Ok(out)
    }

    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        let mut tx = LdapTx {
            backend: self,
            session: self.session()?,
        };
        work(&mut tx)
    }

    fn ready(&self) -> Result<(), String> {
        let mut session = self.session().map_err(|e| e.to_string())?;
        session
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                &["1.1".to_string()],
                vec![],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl LdapBackend {
    /// Every entry matching `filter` under `base` (subtree), with `attrs`,
    /// by pages of `page_size` (no server size limit applies).
    fn search_paged(
        &self,
        session: &mut Session<'_>,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> BackendResult<Vec<SearchEntry>> {
        let mut out = Vec::new();
        self.each_page(session, base, filter, attrs, &mut |entries| {
            out.extend(entries)
        })?;
        Ok(out)
    }

    /// Runs the search of [`LdapBackend::search_paged`] and hands each page
    /// of entries to `page` as it arrives.
    fn each_page(
        &self,
        session: &mut Session<'_>,
        base: &str,
        filter: &str,
        attrs: &[String],
        page: &mut dyn FnMut(Vec<SearchEntry>),
    ) -> BackendResult<()> {
        let mut cookie = Vec::new();
        loop {
            let (entries, next) = self.one_page(session, base, filter, attrs, cookie)?;
            page(entries);
            if next.is_empty() {
                return Ok(());
            }
            cookie = next;
        }
    }

    /// One page of a simple-paged-results search (RFC 2696) from `cookie`
    /// (empty: the first page): its entries and the cookie of the next page
    /// (empty: that was the last).
    fn one_page(
        &self,
        session: &mut Session<'_>,
        base: &str,
        filter: &str,
        attrs: &[String],
        cookie: Vec<u8>,
    ) -> BackendResult<(Vec<SearchEntry>, Vec<u8>)> {
        let control = PagedResults {
            size: self.page_size.min(i32::MAX as u32) as i32,
            cookie,
        };
        let (entries, controls) = session.search(
            base,
            Scope::Subtree,
            filter,
            attrs,
            vec![RawControl::from(control)],
        )?;
        let next = controls
            .iter()
            .find_map(|Control(kind, raw)| match kind {
                Some(ControlType::PagedResults) => Some(raw.parse::<PagedResults>().cookie),
                _ => None,
            })
            .unwrap_or_default();
        Ok((entries, next))
    }

    /// [`Backend::groups_of_many`] for at most [`BATCH`] ids: their DNs in
    /// one search per type (Users first, as [`LdapBackend::locate`]), then
    /// the groups holding any of them in one search. `false` when a group
    /// came back whose `member` values name none of the DNs as written
    /// (the directory matched another spelling of a DN): the caller then
    /// asks per member.
    fn groups_of_batch(
        &self,
        session: &mut Session<'_>,
        ids: &[&str],
        out: &mut HashMap<String, Vec<GroupRef>>,
    ) -> BackendResult<bool> {
        let mut missing: Vec<&str> = ids.to_vec();
        // (member DN, normalized, member id)
        let mut dns: Vec<(String, String, String)> = Vec::new();
        for map in [&self.users, &self.groups] {
            if missing.is_empty() {
                break;
            }
            let any: String = missing
                .iter()
                .map(|id| format!("({}={})", map.id_attr, escape(id)))
                .collect();
            let filter = format!("(&{}(|{any}))", map.selector());
            let attrs = [map.id_attr.clone()];
            for entry in self.search_paged(session, &map.base, &filter, &attrs)? {
                let Some(found) = first(&entry.attrs, &map.id_attr) else {
                    continue;
                };
                let normalized = normalize_dn(&entry.dn);
                missing.retain(|id| {
                    if id.eq_ignore_ascii_case(found) {
                        dns.push((entry.dn.clone(), normalized.clone(), id.to_string()));
                        false
                    } else {
                        true
                    }
                });
            }
        }
        if dns.is_empty() {
            return Ok(true);
        }
        let any: String = dns
            .iter()
            .map(|(dn, _, _)| format!("(member={})", escape(dn)))
            .collect();
        let filter = format!("(&{}(|{any}))", self.groups.selector());
        let mut attrs = self.groups.read_attributes();
        attrs.push("member".into());
        let groups = self.search_paged(session, &self.groups.base, &filter, &attrs)?;
        let mut found: HashMap<String, Vec<GroupRef>> = HashMap::new();
        for group in &groups {
            let Some(record) = self.record(&self.groups, group) else {
                continue;
            };
            let members: HashSet<String> = all(&group.attrs, "member")
                .iter()
                .map(|m| normalize_dn(m))
                .collect();
            let mut named = false;
            for (_, normalized, id) in &dns {
                if members.contains(normalized) {
                    named = true;
                    found.entry(id.clone()).or_default().push(GroupRef {
                        id: record.id.clone(),
                        resource_type: record.resource_type.clone(),
                        body: record.body.clone(),
                    });
                }
            }
            if !named {
                return Ok(false);
            }
        }
        out.extend(found);
        Ok(true)
    }

    /// Entries matching `filter` under the type's base (DNs only, paged).
    fn count_one(&self, map: &TypeMap, filter: &str) -> BackendResult<u64> {
        let mut session = self.session()?;
        let mut total = 0u64;
        self.each_page(
            &mut session,
            &map.base,
            filter,
            &["1.1".to_string()],
            &mut |entries| total += entries.len() as u64,
        )?;
        Ok(total)
    }
}

/// One unit of work: the operations run on one connection, each applied as
/// it runs.
struct LdapTx<'a> {
    backend: &'a LdapBackend,
    session: Session<'a>,
}

impl LdapTx<'_> {
    fn read_back(&mut self, map: &TypeMap, id: &str) -> BackendResult<Record> {
        self.backend
            .find(&mut self.session, map, id, &[])?
            .and_then(|e| self.backend.record(map, &e))
            .ok_or_else(|| {
                BackendError::Backend(format!(
                    "{} '{id}' vanished after the write",
                    map.resource_type
                ))
            })
    }
}

impl BackendTx for LdapTx<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        let map = self.backend.map(resource_type)?;
        Ok(self
            .backend
            .find(&mut self.session, map, id, &[])?
            .and_then(|entry| self.backend.record(map, &entry)))
    }

    fn insert(&mut self, record: &NewRecord) -> BackendResult<Record> {
        let backend = self.backend;
        let map = backend.map(&record.resource_type)?;
        let (attrs, rdn_value, password) = backend.entry_of(map, record)?;
        let dn = map.dn_for(&rdn_value);
        let mut entry: Vec<(String, HashSet<String>)> = vec![(
            "objectClass".into(),
            map.object_classes.iter().cloned().collect(),
        )];
        for (name, values) in attrs {
            if !values.is_empty() {
                entry.push((name, values.into_iter().collect()));
            }
        }
        entry.push((map.id_attr.clone(), set([record.id.clone()])));
        let mut clear = None;
        match password {
            Some(PasswordWrite::Attribute(hashed)) => {
                entry.push(("userPassword".into(), set([hashed])));
            }
            Some(PasswordWrite::Modify(value)) => clear = Some(value),
            None => {}
        }
        if map.is_group() {
            entry.push(("member".into(), set([backend.placeholder.clone()])));
        }
        // entryUUID is operational: setting it needs the Relax Rules control.
        let relax = map.id_attr.eq_ignore_ascii_case("entryUUID");
        self.session.add(&dn, entry, relax)?;
        if let Some(clear) = clear {
            self.session.set_password(&dn, &clear)?;
        }
        self.read_back(map, &record.id)
    }

    fn update(&mut self, record: &NewRecord, _expected_version: i64) -> BackendResult<Record> {
        let backend = self.backend;
        let map = backend.map(&record.resource_type)?;
        let Some(current) = backend.find(&mut self.session, map, &record.id, &[])? else {
            return Err(BackendError::VersionMismatch);
        };
        let (attrs, rdn_value, password) = backend.entry_of(map, record)?;
        let mut dn = current.dn.clone();
        let new_dn = map.dn_for(&rdn_value);
        if !new_dn.eq_ignore_ascii_case(&dn) {
            let rdn = new_dn
                .strip_suffix(&format!(",{}", map.base))
                .unwrap_or(&new_dn)
                .to_string();
            self.session.rename(&dn, &rdn)?;
            backend.move_references(&mut self.session, &dn, &new_dn)?;
            dn = new_dn;
        }
        let mut mods: Vec<Mod<String>> = Vec::new();
        for (name, values) in attrs {
            if name.eq_ignore_ascii_case(&map.rdn) {
                continue;
            }
            mods.push(Mod::Replace(name, values.into_iter().collect()));
        }
        let mut clear = None;
        match password {
            Some(PasswordWrite::Attribute(hashed)) => {
                mods.push(Mod::Replace("userPassword".into(), set([hashed])));
            }
            Some(PasswordWrite::Modify(value)) => clear = Some(value),
            None => {}
        }
        self.session.modify(&dn, mods, &[])?;
        if let Some(clear) = clear {
            self.session.set_password(&dn, &clear)?;
        }
        self.read_back(map, &record.id)
    }

    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        _expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        let backend = self.backend;
        let map = backend.map(resource_type)?;
        let Some(entry) = backend.find(&mut self.session, map, id, &[])? else {
            return Ok(false);
        };
        backend.drop_references(&mut self.session, &entry.dn)?;
        self.session.delete(&entry.dn)
    }

    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        let map = self.backend.map(resource_type)?;
        let scim = match column {
            UniqueColumn::UserName => "userName",
            UniqueColumn::DisplayName => "displayName",
        };
        let Some(field) = map
            .fields
            .iter()
            .find(|f| f.attr == scim && f.sub.is_none())
        else {
            return Ok(false);
        };
        // The directory's matching rules fold case (and spaces) their own
        // way: search a superset it surely returns, then compare as SCIM
        // does (`to_lowercase`; the engine's `value` already is).
        let value = value.to_lowercase();
        let value = value.as_str();
        let filter = format!("(&{}{})", map.selector(), candidates(&field.ldap, value));
        let attrs = vec![map.id_attr.clone(), field.ldap.clone()];
        let entries = self
            .backend
            .search_paged(&mut self.session, &map.base, &filter, &attrs)?;
        Ok(entries.iter().any(|e| {
            first(&e.attrs, &map.id_attr).is_some_and(|id| id != except_id)
                && all(&e.attrs, &field.ldap)
                    .iter()
                    .any(|v| v.to_lowercase() == value)
        }))
    }

    fn set_members(&mut self, group_id: &str, members: &[Member]) -> BackendResult<()> {
        let backend = self.backend;
        let Some(group) = backend.find(&mut self.session, &backend.groups, group_id, &[])? else {
            return Err(BackendError::VersionMismatch);
        };
        let mut dns: Vec<String> = Vec::new();
        for member in members {
            let map = backend.map(&member.member_type)?;
            let entry = backend
                .find(&mut self.session, map, &member.id, &[])?
                .ok_or_else(|| {
                    BackendError::Invalid(
                        format!("member '{}' does not exist", member.id),
                        "invalidValue",
                    )
                })?;
            if !dns.iter().any(|d| d.eq_ignore_ascii_case(&entry.dn)) {
                dns.push(entry.dn);
            }
        }
        if dns.is_empty() {
            dns.push(backend.placeholder.clone());
        }
        self.session.modify(
            &group.dn,
            vec![Mod::Replace("member".into(), dns.into_iter().collect())],
            &[],
        )
    }

    fn members(&mut self, group_id: &str) -> BackendResult<Vec<Member>> {
        let backend = self.backend;
        let Some(group) =
            backend.find(&mut self.session, &backend.groups, group_id, &["member"])?
        else {
            return Ok(Vec::new());
        };
        Ok(backend
            .member_records(&mut self.session, &group)?
            .into_iter()
            .map(|r| Member {
                id: r.id,
                member_type: r.resource_type,
                display: None,
            })
            .collect())
    }

    fn group_ids_of(&mut self, member_id: &str) -> BackendResult<Vec<String>> {
        let backend = self.backend;
        let Some((dn, _)) = backend.locate(&mut self.session, member_id)? else {
            return Ok(Vec::new());
        };
        Ok(backend
            .groups_holding(&mut self.session, &dn)?
            .iter()
            .filter_map(|g| first(&g.attrs, &backend.groups.id_attr).map(str::to_string))
            .collect())
    }

    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniqueness_searches_a_superset_the_directory_surely_returns() {
        // Pure ASCII: the equality match folds ASCII case like SCIM does.
        assert_eq!(candidates("uid", "alice(1)"), "(uid=alice\\281\\29)");
        // ASCII runs, in order; `i`/`k`, spaces and a letter before a
        // combining mark break them.
        assert_eq!(candidates("uid", "ünal.smith"), "(uid=*nal.sm*th*)");
        assert_eq!(candidates("uid", "kai ño"), "(uid=*a*o*)");
        assert_eq!(candidates("uid", "e\u{301}x"), "(uid=*x*)");
        // Nothing safe to anchor on: every entry holding the attribute.
        assert_eq!(candidates("uid", "σας"), "(uid=*)");
        assert_eq!(candidates("uid", "i\u{307}k"), "(uid=*)");
    }

    #[test]
    fn dns_compare_without_case_and_spaces_around_separators() {
        assert_eq!(
            normalize_dn("UID=Ann , OU=People,dc=Example"),
            normalize_dn("uid=ann,ou=people,DC=example")
        );
        assert_ne!(
            normalize_dn("uid=a\\, b,ou=x"),
            normalize_dn("uid=a\\,b,ou=x")
        );
        assert_ne!(normalize_dn("uid=ann,ou=x"), normalize_dn("uid=anne,ou=x"));
    }
}
