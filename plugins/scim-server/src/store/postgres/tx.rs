//! The write side of the PostgreSQL store: one unit of work ([`PgTx`]) in a
//! transaction, with deferred inserts so that a Bulk request does not pay a
//! round trip per operation.
//!
//! A unit first runs *deferred*: a savepoint is only noted (no SQL), and
//! inside one (each Bulk operation runs in its own) an insert is buffered (its `seq` comes from a block reserved in advance),
//! a `userName` uniqueness check is answered from the buffer and noted, and
//! reads of buffered resources are answered from the buffer. The buffer is
//! sent in one multi-row statement (which first verifies every noted
//! check) between operations once [`FLUSH_AT`] inserts wait, before any
//! other kind of write, and before COMMIT. Before a write that cannot be
//! deferred, the open savepoints are created for real (the buffer is sent
//! in the pieces between them), so everything after runs as before.
//!
//! When a noted check turns out to be taken, or a statement fails while a
//! savepoint exists only in memory (PostgreSQL has then aborted the
//! transaction, and the failed operation cannot be undone alone), the unit
//! is *poisoned*: it is rolled back and run again from the start in the
//! direct mode, one statement at a time with real savepoints. That run
//! gives exactly the results a direct run always gives; the deferred run
//! never commits anything the direct run would not.

use std::collections::{HashMap, VecDeque};

use scimgate_abi::PluginError;

use super::{get_record, pg, record, Conn};
use crate::store::{
    BackendError, BackendResult, BackendTx, Change, Member, NewRecord, Record, UniqueColumn, Work,
};

/// Buffered inserts are sent once this many wait between operations.
pub(super) const FLUSH_AT: usize = 500;
/// The most `resources.seq` values reserved in one round trip (the first
/// reservation of a unit takes one; each next one eight times more).
const RESERVE_MAX: i64 = 1024;

/// How a unit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Inserts buffered, savepoints created only when needed.
    Deferred,
    /// Every call is a statement, every savepoint a `SAVEPOINT` (the
    /// fallback of a poisoned deferred run).
    Direct,
}

/// An open savepoint.
struct Level {
    name: String,
    /// The buffer's length when it was opened (its inserts come after).
    marker: usize,
    /// Whether `SAVEPOINT name` was sent.
    established: bool,
}

/// A `userName` check answered "free" without asking the database.
struct Check {
    resource_type: String,
    value: String,
    except_id: String,
}

pub(super) struct PgTx<'c> {
    pub(super) conn: &'c mut Conn,
    mode: Mode,
    levels: Vec<Level>,
    /// Savepoints opened so far (their names are unique in the unit).
    opened: usize,
    /// Change-log entries of this unit, written at its end.
    pub(super) changes: Vec<Change>,
    /// Inserts not yet sent, with their reserved `seq`.
    buffer: Vec<(NewRecord, i64)>,
    checks: Vec<Check>,
    /// (type, lower-cased userName) → id of the creates this unit sent,
    /// while nothing else it sent can have changed them.
    sent: HashMap<(String, String), String>,
    seqs: VecDeque<i64>,
    reserve: i64,
    /// The unit must be rolled back and run again in [`Mode::Direct`].
    pub(super) poisoned: bool,
}

/// What a poisoned unit's calls answer until it is run again (never seen
/// by a client: the unit is rolled back and re-run).
fn poisoned() -> BackendError {
    BackendError::Backend("the deferred unit of work is run again directly".into())
}

impl<'c> PgTx<'c> {
    pub(super) fn new(conn: &'c mut Conn, mode: Mode) -> PgTx<'c> {
        PgTx {
            conn,
            mode,
            levels: Vec::new(),
            opened: 0,
            changes: Vec::new(),
            buffer: Vec::new(),
            checks: Vec::new(),
            sent: HashMap::new(),
            seqs: VecDeque::new(),
            reserve: 1,
            poisoned: false,
        }
    }

    /// A database error: with a savepoint that exists only in memory open,
    /// the failed operation cannot be undone alone, so the unit is poisoned.
    fn fail(&mut self, error: postgres::Error) -> BackendError {
        if self.levels.last().is_some_and(|l| !l.established) {
            self.poisoned = true;
        }
        pg(error)
    }

    /// Whether writes are deferred now: in [`Mode::Deferred`], inside a
    /// savepoint (a Bulk operation). Outside one, every call is direct, as a
    /// caller that sees each answer at once expects.
    fn deferring(&self) -> bool {
        self.mode == Mode::Deferred && !self.levels.is_empty()
    }

    /// Before a write that is not a buffered create: the creates already
    /// sent may change, so their names are no longer known.
    fn direct_write(&mut self) -> BackendResult<()> {
        self.direct()?;
        self.sent.clear();
        Ok(())
    }

    fn alive(&self) -> BackendResult<()> {
        if self.poisoned {
            return Err(poisoned());
        }
        Ok(())
    }

    /// Before a call that is not deferred: the noted checks verified, the
    /// open savepoints created, the buffer sent (in the pieces between
    /// them). Any failure poisons the unit.
    fn direct(&mut self) -> BackendResult<()> {
        self.alive()?;
        if self.mode == Mode::Direct {
            return Ok(());
        }
        let result = self.materialize();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn materialize(&mut self) -> BackendResult<()> {
        let mut start = 0;
        let mut verify = !self.checks.is_empty();
        for i in 0..self.levels.len() {
            if self.levels[i].established {
                continue;
            }
            let marker = self.levels[i].marker;
            if marker > start || verify {
                self.send(start, marker, verify)?;
                verify = false;
            }
            start = marker;
            let sql = format!("SAVEPOINT {}", self.levels[i].name);
            self.conn.client.batch_execute(&sql).map_err(pg)?;
            self.levels[i].established = true;
        }
        if self.buffer.len() > start || verify {
            self.send(start, self.buffer.len(), verify)?;
        }
        self.buffer.clear();
        self.checks.clear();
        for level in &mut self.levels {
            level.marker = 0;
        }
        Ok(())
    }

    /// Sends `buffer[from..to]` in one statement; with `verify`, only when
    /// no noted check is taken (else the unit is poisoned).
    fn send(&mut self, from: usize, to: usize, verify: bool) -> BackendResult<()> {
        let rows = &self.buffer[from..to];
        let seqs: Vec<i64> = rows.iter().map(|(_, seq)| *seq).collect();
        let ids: Vec<&str> = rows.iter().map(|(r, _)| r.id.as_str()).collect();
        let types: Vec<&str> = rows.iter().map(|(r, _)| r.resource_type.as_str()).collect();
        let user_names: Vec<Option<&str>> =
            rows.iter().map(|(r, _)| r.user_name.as_deref()).collect();
        let external_ids: Vec<Option<&str>> =
            rows.iter().map(|(r, _)| r.external_id.as_deref()).collect();
        let display_names: Vec<Option<&str>> = rows
            .iter()
            .map(|(r, _)| r.display_name.as_deref())
            .collect();
        let nows: Vec<&str> = rows.iter().map(|(r, _)| r.now.as_str()).collect();
        let bodies: Vec<&serde_json::Value> = rows.iter().map(|(r, _)| &r.body).collect();
        let mut email_seqs = Vec::new();
        let mut emails = Vec::new();
        for (r, seq) in rows {
            for email in &r.emails {
                email_seqs.push(*seq);
                emails.push(email.as_str());
            }
        }
        let none = Vec::new();
        let checks = if verify { &self.checks } else { &none };
        let check_types: Vec<&str> = checks.iter().map(|c| c.resource_type.as_str()).collect();
        let check_values: Vec<&str> = checks.iter().map(|c| c.value.as_str()).collect();
        let check_except: Vec<&str> = checks.iter().map(|c| c.except_id.as_str()).collect();
        let taken: i64 = self
            .conn
            .query(
                "WITH chk AS (
                    SELECT count(*) AS n
                    FROM unnest($11::text[], $12::text[], $13::text[]) AS t(rt, v, ex)
                    WHERE EXISTS (SELECT 1 FROM resources x WHERE x.resource_type = t.rt
                        AND lower(x.user_name) = t.v AND x.id <> t.ex)
                 ), r AS (
                    INSERT INTO resources (seq, id, resource_type, user_name, external_id,
                        display_name, created, last_modified, version, body)
                    SELECT u.seq, u.id, u.rt, u.un, u.ext, u.dn, u.now, u.now, 1, u.body
                    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::text[], $7::text[], $8::jsonb[]) AS u(seq, id, rt, un, ext, dn, now, body)
                    WHERE (SELECT n FROM chk) = 0
                    ORDER BY u.seq
                    RETURNING seq
                 ), e AS (
                    INSERT INTO emails (seq, value)
                    SELECT e.seq, e.value FROM unnest($9::bigint[], $10::text[]) AS e(seq, value)
                    WHERE e.seq IN (SELECT seq FROM r)
                 )
                 SELECT n FROM chk",
                &[
                    &seqs,
                    &ids,
                    &types,
                    &user_names,
                    &external_ids,
                    &display_names,
                    &nows,
                    &bodies,
                    &email_seqs,
                    &emails,
                    &check_types,
                    &check_values,
                    &check_except,
                ],
            )
            .and_then(|rows| match rows.first() {
                Some(row) => row.try_get(0),
                None => Ok(0),
            })
            .map_err(pg)?;
        if taken > 0 {
            return Err(BackendError::Conflict(
                "a uniqueness check answered without the database was wrong".into(),
            ));
        }
        for (rec, _) in &self.buffer[from..to] {
            if let Some(name) = &rec.user_name {
                let key = (rec.resource_type.clone(), name.to_lowercase());
                self.sent.insert(key, rec.id.clone());
            }
        }
        Ok(())
    }

    /// The deferred work still waiting, before COMMIT.
    pub(super) fn finish(&mut self) -> BackendResult<()> {
        if self.buffer.is_empty() && self.checks.is_empty() {
            return self.alive();
        }
        self.direct()
    }

    /// The next reserved `resources.seq` (reserving a block when none is left).
    fn next_seq(&mut self) -> BackendResult<i64> {
        if self.seqs.is_empty() {
            let n = self.reserve;
            let rows = self
                .conn
                .query(
                    "SELECT nextval(pg_get_serial_sequence('resources', 'seq'))
                     FROM generate_series(1, $1::bigint)",
                    &[&n],
                )
                .map_err(|e| self.fail(e))?;
            let mut seqs = rows
                .iter()
                .map(|row| row.try_get::<_, i64>(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.fail(e))?;
            seqs.sort_unstable();
            self.seqs.extend(seqs);
            self.reserve = (n * 8).min(RESERVE_MAX);
        }
        self.seqs
            .pop_front()
            .ok_or_else(|| BackendError::Backend("no seq reserved".into()))
    }

    fn buffered(&self, id: &str) -> Option<&(NewRecord, i64)> {
        self.buffer.iter().rev().find(|(r, _)| r.id == id)
    }

    /// The stored form of a buffered insert (what `INSERT … RETURNING` gives).
    fn stored(rec: &NewRecord, seq: i64) -> Record {
        rec.stored(seq, 1, rec.now.clone())
    }

    fn insert_now(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let rows = self
            .conn
            .query(
                "WITH r AS (
                    INSERT INTO resources (id, resource_type, user_name, external_id,
                        display_name, created, last_modified, version, body)
                    VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7)
                    RETURNING seq, id, resource_type, version, created, last_modified, body
                 ), e AS (
                    INSERT INTO emails (seq, value) SELECT r.seq, v FROM r, unnest($8::text[]) AS v
                 )
                 SELECT seq, id, resource_type, version, created, last_modified, body FROM r",
                &[
                    &rec.id,
                    &rec.resource_type,
                    &rec.user_name,
                    &rec.external_id,
                    &rec.display_name,
                    &rec.now,
                    &rec.body,
                    &rec.emails,
                ],
            )
            .map_err(|e| self.fail(e))?;
        rows.first()
            .map(record)
            .transpose()
            .map_err(pg)?
            .ok_or_else(|| BackendError::Backend("INSERT returned no row".into()))
    }
}

impl BackendTx for PgTx<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.alive()?;
        if let Some((rec, seq)) = self.buffered(id) {
            return Ok((rec.resource_type == resource_type).then(|| PgTx::stored(rec, *seq)));
        }
        get_record(self.conn, resource_type, id).map_err(|e| self.fail(e))
    }

    fn type_of(&mut self, types: &[String], id: &str) -> BackendResult<Option<String>> {
        self.alive()?;
        let found: Option<String> = match self.buffered(id) {
            Some((rec, _)) => Some(rec.resource_type.clone()),
            None => self
                .conn
                .query("SELECT resource_type FROM resources WHERE id = $1", &[&id])
                .and_then(|rows| rows.first().map(|r| r.try_get(0)).transpose())
                .map_err(|e| self.fail(e))?,
        };
        Ok(found.filter(|t| types.contains(t)))
    }

    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        if !self.deferring() {
            self.direct()?;
            return self.insert_now(rec);
        }
        self.alive()?;
        let seq = self.next_seq()?;
        self.buffer.push((rec.clone(), seq));
        Ok(PgTx::stored(rec, seq))
    }

    fn update(&mut self, rec: &NewRecord, expected_version: i64) -> BackendResult<Record> {
        self.direct_write()?;
        let rows = self
            .conn
            .query(
                "WITH r AS (
                    UPDATE resources SET user_name = $3, external_id = $4, display_name = $5,
                        last_modified = $6, version = version + 1, body = $7
                    WHERE id = $1 AND resource_type = $2 AND version = $8
                    RETURNING seq, id, resource_type, version, created, last_modified, body
                 ), d AS (
                    DELETE FROM emails WHERE seq IN (SELECT seq FROM r)
                 ), e AS (
                    INSERT INTO emails (seq, value) SELECT r.seq, v FROM r, unnest($9::text[]) AS v
                 )
                 SELECT seq, id, resource_type, version, created, last_modified, body FROM r",
                &[
                    &rec.id,
                    &rec.resource_type,
                    &rec.user_name,
                    &rec.external_id,
                    &rec.display_name,
                    &rec.now,
                    &rec.body,
                    &expected_version,
                    &rec.emails,
                ],
            )
            .map_err(|e| self.fail(e))?;
        rows.first()
            .map(record)
            .transpose()
            .map_err(pg)?
            .ok_or(BackendError::VersionMismatch)
    }

    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        self.direct_write()?;
        let Some(existing) = get_record(self.conn, resource_type, id).map_err(pg)? else {
            return Ok(false);
        };
        if expected_version.is_some_and(|v| v != existing.version) {
            return Err(BackendError::VersionMismatch);
        }
        // Emails and memberships (both ways) go by ON DELETE CASCADE.
        let deleted = self
            .conn
            .execute(
                "DELETE FROM resources WHERE seq = $1 AND version = $2",
                &[&existing.seq, &existing.version],
            )
            .map_err(pg)?;
        match (deleted, expected_version) {
            (1, _) => Ok(true),
            (_, Some(_)) => Err(BackendError::VersionMismatch),
            (_, None) => self.delete(resource_type, id, None),
        }
    }

    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        self.alive()?;
        if self.deferring() && column == UniqueColumn::UserName {
            // Answered from the buffer, or noted and verified when the
            // buffer is sent (the unique index settles races).
            let in_buffer = self.buffer.iter().any(|(r, _)| {
                r.resource_type == resource_type
                    && r.id != except_id
                    && r.user_name.as_deref().map(str::to_lowercase).as_deref() == Some(value)
            }) || self
                .sent
                .get(&(resource_type.to_string(), value.to_string()))
                .is_some_and(|id| id != except_id);
            if !in_buffer {
                self.checks.push(Check {
                    resource_type: resource_type.to_string(),
                    value: value.to_string(),
                    except_id: except_id.to_string(),
                });
            }
            return Ok(in_buffer);
        }
        self.direct()?;
        let rows = match column {
            // The unique index settles races on userName.
            UniqueColumn::UserName => self.conn.query(
                "SELECT 1 FROM resources
                 WHERE resource_type = $1 AND lower(user_name) = $2 AND id <> $3 LIMIT 1",
                &[&resource_type, &value, &except_id],
            ),
            // displayName uniqueness is optional, so there is no unique
            // index: writers of the same name queue on an advisory lock
            // held until their transaction ends, then look.
            UniqueColumn::DisplayName => self
                .conn
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2, 0))",
                    &[&resource_type, &value],
                )
                .and_then(|_| {
                    self.conn.query(
                        "SELECT 1 FROM resources
                         WHERE resource_type = $1 AND display_name = $2 AND id <> $3 LIMIT 1",
                        &[&resource_type, &value, &except_id],
                    )
                }),
        };
        rows.map(|rows| !rows.is_empty()).map_err(pg)
    }

    fn set_members(&mut self, group_id: &str, members: &[Member]) -> BackendResult<()> {
        self.direct_write()?;
        self.conn
            .execute("DELETE FROM memberships WHERE group_id = $1", &[&group_id])
            .map_err(pg)?;
        if members.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let types: Vec<&str> = members.iter().map(|m| m.member_type.as_str()).collect();
        let displays: Vec<Option<&str>> = members.iter().map(|m| m.display.as_deref()).collect();
        self.conn
            .execute(
                "INSERT INTO memberships (group_id, member_id, member_type, position, display)
                 SELECT $1, m.id, m.type, m.position - 1, m.display
                 FROM unnest($2::text[], $3::text[], $4::text[])
                    WITH ORDINALITY AS m(id, type, display, position)
                 ON CONFLICT DO NOTHING",
                &[&group_id, &ids, &types, &displays],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn members(&mut self, group_id: &str) -> BackendResult<Vec<Member>> {
        self.direct()?;
        let rows = self
            .conn
            .query(
                "SELECT member_id, member_type, display FROM memberships
                 WHERE group_id = $1 ORDER BY position",
                &[&group_id],
            )
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    id: r.try_get(0)?,
                    member_type: r.try_get(1)?,
                    display: r.try_get(2)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(pg)
    }

    fn group_ids_of(&mut self, member_id: &str) -> BackendResult<Vec<String>> {
        self.direct()?;
        let rows = self
            .conn
            .query(
                "SELECT group_id FROM memberships WHERE member_id = $1",
                &[&member_id],
            )
            .map_err(pg)?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, postgres::Error>>()
            .map_err(pg)
    }

    fn touch(&mut self, ids: &[String], now: &str) -> BackendResult<()> {
        self.alive()?;
        if ids.is_empty() {
            return Ok(());
        }
        self.direct_write()?;
        self.conn
            .execute(
                "UPDATE resources SET version = version + 1, last_modified = $2
                 WHERE id = ANY($1)",
                &[&ids, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn record_change(&mut self, entry: &Change) -> BackendResult<()> {
        self.alive()?;
        self.changes.push(entry.clone());
        Ok(())
    }

    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        self.alive()?;
        if self.mode == Mode::Deferred && self.levels.is_empty() && self.buffer.len() >= FLUSH_AT {
            self.direct()?;
        }
        self.opened += 1;
        let name = format!("sp{}", self.opened);
        let established = self.mode == Mode::Direct;
        if established {
            self.conn
                .client
                .batch_execute(&format!("SAVEPOINT {name}"))
                .map_err(pg)?;
        }
        self.levels.push(Level {
            name,
            marker: self.buffer.len(),
            established,
        });
        // Entries of a step that fails are undone with it.
        let recorded = self.changes.len();
        let result = work(self);
        let Some(level) = self.levels.pop() else {
            return Err(PluginError::internal("savepoint levels out of step"));
        };
        let finish = match &result {
            Ok(()) if level.established => self
                .conn
                .client
                .batch_execute(&format!("RELEASE {}", level.name)),
            Ok(()) => Ok(()),
            Err(_) => {
                self.changes.truncate(recorded);
                self.buffer.truncate(level.marker);
                if level.established && !self.poisoned {
                    self.sent.clear();
                    self.conn
                        .client
                        .batch_execute(&format!("ROLLBACK TO {0}; RELEASE {0}", level.name))
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = finish {
            return Err(self.fail(e).into());
        }
        result
    }
}
