//! The embedded SQLite [`Backend`]: one writer connection behind a mutex (WAL,
//! `synchronous=FULL`, so an acknowledged write survives `kill -9`), a
//! bounded pool of reader connections that run in parallel ([`ReaderPool`]:
//! a read waits for a free connection, it never opens an extra one), and
//! versioned schema migrations kept in [`MIGRATIONS`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row};
use scimgate_abi::PluginError;
use serde_json::Value;

use scimgate_changes::{Position, PositionStore};

use super::sql::{count_query, scan_query, Param, SQLITE};
use super::{
    attributes_json, change_op, group_refs, stash, take_stash, unstash, Backend, BackendError,
    BackendResult, BackendTx, Capabilities, Change, GroupRef, Member, MemberView, NewRecord,
    QuickRead, Record, RecordText, Scan, SqlScan, SqlStore, TextVisitor, UniqueColumn, Visit,
    Visitor, Work, BATCH, CAPABILITIES, MAX_CHANGES,
};
use scimgate_scim::{AttrPath, Filter, SchemaCtx};
use scimgate_scim_service::backend::in_inline_call;
use scimgate_scim_service::pool::BoundedPool;

/// The schema, one step per entry; entry `n` brings the database to version
/// `n + 1`. Append only: never edit a released step.
pub const MIGRATIONS: &[&str] = &[
    // 1: resources with their indexed columns, email values, memberships.
    "CREATE TABLE resources (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        resource_type TEXT NOT NULL,
        user_name TEXT,
        external_id TEXT,
        display_name TEXT,
        created TEXT NOT NULL,
        last_modified TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX resources_user_name ON resources(resource_type, user_name)
        WHERE user_name IS NOT NULL;
    CREATE INDEX resources_type_seq ON resources(resource_type, seq);
    CREATE INDEX resources_external_id ON resources(external_id) WHERE external_id IS NOT NULL;
    CREATE INDEX resources_display_name ON resources(resource_type, display_name);
    CREATE INDEX resources_last_modified ON resources(resource_type, last_modified);
    CREATE TABLE emails (
        seq INTEGER NOT NULL,
        value TEXT NOT NULL
    );
    CREATE INDEX emails_value ON emails(value);
    CREATE INDEX emails_seq ON emails(seq);
    CREATE TABLE memberships (
        group_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        member_type TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (group_id, member_id)
    ) WITHOUT ROWID;
    CREATE INDEX memberships_member ON memberships(member_id, group_id);",
    // 2: the client's `display` of a member, kept as sent.
    "ALTER TABLE memberships ADD COLUMN display TEXT;",
    // 3: the change log, and the counter its seqs come from (it keeps the
    //    newest seq when every entry was pruned).
    "CREATE TABLE scim_changes (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        op TEXT NOT NULL,
        version TEXT,
        provider_id TEXT NOT NULL,
        client_id TEXT,
        attributes TEXT NOT NULL,
        via TEXT
    );
    CREATE TABLE scim_change_counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL
    );
    INSERT INTO scim_change_counter (id, seq) VALUES (1, 0);",
    // 4: the push subscribers' positions (`scim_change_subscribers`): the
    //    last acknowledged seq, the retry state, the dead letter, a
    //    compare-and-swap revision and the delivery lease.
    "CREATE TABLE scim_change_subscribers (
        name TEXT PRIMARY KEY,
        acked INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        state TEXT NOT NULL DEFAULT 'active',
        dead_seq INTEGER,
        dead_error TEXT,
        rev INTEGER NOT NULL DEFAULT 0,
        lease_node TEXT,
        lease_until_ms INTEGER NOT NULL DEFAULT 0
    );",
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a free reader connection before it fails as
/// unavailable (503 with `Retry-After`): as long as a statement waits for a
/// lock (`busy_timeout`).
const READER_WAIT: Duration = BUSY_TIMEOUT;

/// The reader pool's size: twice the cores, at least 4, at most 16. SQLite
/// reads are CPU work on pages the OS caches, so more readers than about
/// twice the cores only add memory (each keeps its own page and statement
/// cache); 4 keeps a small machine's reads parallel while one is slow.
fn reader_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).clamp(4, 16)
}

/// The writer's page cache (`cache_size`, KiB): a Bulk request's 1,000
/// inserts touch pages all over the `id` and `displayName` indexes; 8 MiB
/// keeps most of them until the commit (the SQLite default is 2 MiB)
/// without growing the process much.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// WAL pages after which a commit checkpoints (`wal_autocheckpoint`; the
/// SQLite default is 1,000): every commit still syncs the WAL
/// (`synchronous=FULL`), but the pages a stream of writes keeps changing
/// (index roots, the table's last page) are copied into the database file
/// once per 10,000 WAL pages (about 40 MiB) instead of once per 1,000.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// The WAL file is cut back to this size after a checkpoint
/// (`journal_size_limit`), so one large Bulk request does not leave a large
/// file behind.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Each reader's page cache (`cache_size`, KiB; the SQLite default): the
/// index interior pages and hot leaves; everything else comes from the OS
/// page cache.
const READER_CACHE_KIB: i64 = 2 * 1024;

/// All page caches of this library's SQLite together give memory back
/// above this (`soft_heap_limit`, bytes): a cap on what the store adds to
/// the process whatever the pool size.
const SOFT_HEAP_LIMIT_BYTES: i64 = 48 * 1024 * 1024;

/// Reader connections: a [`BoundedPool`] (a read takes an idle one, opens
/// one while fewer than its size are open, or waits up to [`READER_WAIT`]),
/// plus the connection this thread already holds for nested reads.
///
/// A reader keeps its read transaction across loans ("warm"): opening and
/// closing one takes and drops SQLite's WAL read lock, an `fcntl` on the
/// `-shm` file under a mutex the async workers contend for, which was the
/// largest cost of a GET after sending it. A kept transaction is one
/// snapshot, so it is kept only while nothing can have changed that this
/// process should see: within one write epoch (no write of this store has
/// begun or ended since) and for at most `warm_for` (what another process
/// writes is seen that late at most). A write makes the idle readers end
/// theirs as it begins, and readers lent during a write keep none, so at
/// its commit only the reads then running hold snapshots, as without warm
/// readers, and SQLite's checkpoint and WAL restart proceed as before.
struct ReaderPool {
    conns: BoundedPool<Reader>,
    /// Connections ever opened (for tests and diagnostics).
    opened: AtomicU64,
    /// Even while no write runs on the store's writer connection, odd while
    /// one does: every write moves it twice ([`ReaderPool::writing`]).
    epoch: AtomicU64,
    /// How long a reader keeps one read transaction ([`WARM_FOR`]).
    warm_for: Duration,
}

thread_local! {
    /// The reader connections this thread holds, by pool: a read nested in
    /// another (a scan's visitor asking for members or groups) runs on the
    /// connection the outer read holds, so it neither waits for the pool it
    /// is holding from nor opens an extra connection.
    static HELD: RefCell<Vec<(usize, Rc<Reader>)>> = const { RefCell::new(Vec::new()) };
}

/// How long a reader keeps one read transaction (one snapshot) across the
/// reads it is lent for, while no write of this store begins: also the
/// longest a write by another process goes unseen.
const WARM_FOR: Duration = Duration::from_millis(1);

/// A reader connection and the read transaction it keeps open between
/// loans, if any.
struct Reader {
    conn: Connection,
    warm: Option<Warm>,
}

/// A read transaction a reader keeps: when it began, and the pool's write
/// epoch then.
#[derive(Clone, Copy)]
struct Warm {
    since: Instant,
    epoch: u64,
}

/// A reader connection lent out of its pool to this thread: registered in
/// `HELD` while lent, back in the pool when dropped (also when the read's
/// closure panics).
struct Lent<'p> {
    pool: &'p ReaderPool,
    conn: Option<Rc<Reader>>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let key = self.pool.key();
        // Only after the thread's `HELD` clone is gone can the connection
        // leave the thread again.
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|(pool, _)| *pool == key) {
                held.remove(at);
            }
        });
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

impl ReaderPool {
    fn new(max: usize, warm_for: Duration) -> ReaderPool {
        ReaderPool {
            conns: BoundedPool::new(max),
            opened: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            warm_for,
        }
    }

    /// Runs `write` (a use of the writer connection) inside a write epoch:
    /// the idle readers end their kept transactions first, readers lent
    /// meanwhile keep none, and after it every kept snapshot is stale.
    fn writing<T>(&self, write: impl FnOnce() -> T) -> T {
        struct Ended<'p>(&'p AtomicU64);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let _ended = Ended(&self.epoch);
        for mut reader in self.conns.take_idle() {
            match end_kept(&mut reader) {
                Ok(()) => self.conns.give_back(reader),
                Err(_) => self.conns.forget_one(),
            }
        }
        write()
    }

    fn key(&self) -> usize {
        self as *const ReaderPool as usize
    }

    /// Runs `f` on a reader connection of this pool: the one this thread
    /// already holds, an idle one, a new one while fewer than the pool's
    /// size are open, or the first one given back within `wait`.
    fn with<T>(
        &self,
        path: &Path,
        wait: Duration,
        f: impl FnOnce(&Connection) -> T,
    ) -> BackendResult<T> {
        let key = self.key();
        let held = HELD.with(|held| {
            held.borrow()
                .iter()
                .rev()
                .find(|(pool, _)| *pool == key)
                .map(|(_, conn)| Rc::clone(conn))
        });
        if let Some(reader) = held {
            // A connection may run several statements at once; the nested
            // one reads the same snapshot as the outer one.
            return Ok(f(&reader.conn));
        }
        let mut reader = self.take(path, wait)?;
        if let Err(error) = self.ready(&mut reader) {
            self.conns.forget_one();
            return Err(error);
        }
        let reader = Rc::new(reader);
        HELD.with(|held| held.borrow_mut().push((key, Rc::clone(&reader))));
        let lent = Lent {
            pool: self,
            conn: Some(reader),
        };
        let reader = lent
            .conn
            .as_deref()
            .ok_or_else(|| backend("reader pool: nothing lent"))?;
        Ok(f(&reader.conn))
    }

    fn take(&self, path: &Path, wait: Duration) -> BackendResult<Reader> {
        self.conns.take(
            wait,
            || {
                self.opened.fetch_add(1, Ordering::SeqCst);
                connect_reader(path).map(|conn| Reader { conn, warm: None })
            },
            || {
                BackendError::Unavailable(format!(
                    "all {} reader connections stayed busy for {} s",
                    self.conns.max(),
                    wait.as_secs_f64()
                ))
            },
        )
    }

    /// Whether a read would get a connection now without waiting (an idle
    /// one, or room to open one); a hint, another read may take it first.
    fn has_free(&self) -> bool {
        self.conns.has_free()
    }

    /// Connections opened so far (never more than the pool's size at once).
    #[cfg(test)]
    fn opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// Readies a reader for a loan: its kept transaction if it began less
    /// than `warm_for` ago in this epoch, else a new one (the snapshot
    /// starts at the next statement); during a write, none (each statement
    /// its own, as SQLite does by default).
    fn ready(&self, reader: &mut Reader) -> BackendResult<()> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some(warm) = reader.warm {
            if warm.epoch == epoch
                && warm.since.elapsed() < self.warm_for
                && !reader.conn.is_autocommit()
            {
                return Ok(());
            }
        }
        end_kept(reader)?;
        if epoch.is_multiple_of(2) {
            begin_read(&reader.conn)?;
            reader.warm = Some(Warm {
                since: Instant::now(),
                epoch,
            });
        }
        Ok(())
    }

    /// Puts a lent connection back, its transaction kept while its epoch
    /// lasts; or closes it when it cannot be lent again (still shared,
    /// which cannot happen, or left inside a transaction it did not keep).
    fn give_back(&self, reader: Rc<Reader>) {
        let Ok(mut reader) = Rc::try_unwrap(reader) else {
            self.conns.forget_one();
            return;
        };
        if reader.conn.is_autocommit() {
            reader.warm = None;
        } else if reader.warm.is_none() {
            self.conns.forget_one();
            return;
        }
        // A write that begins between this check and the return finds the
        // reader lent, not idle, and leaves its snapshot: it is ended at
        // the next loan or write (a checkpoint may stop short once), never
        // read from, as the next loan sees the new epoch.
        let epoch = self.epoch.load(Ordering::SeqCst);
        if reader.warm.is_some_and(|warm| warm.epoch != epoch) && end_kept(&mut reader).is_err() {
            self.conns.forget_one();
            return;
        }
        self.conns.give_back(reader);
    }

    /// Idle readers inside a kept transaction now.
    #[cfg(test)]
    fn idle_warm(&self) -> usize {
        let idle = self.conns.take_idle();
        let warm = idle.iter().filter(|r| !r.conn.is_autocommit()).count();
        for reader in idle {
            self.conns.give_back(reader);
        }
        warm
    }
}

/// Ends the read transaction `reader` keeps, if any.
fn end_kept(reader: &mut Reader) -> BackendResult<()> {
    reader.warm = None;
    if reader.conn.is_autocommit() {
        return Ok(());
    }
    end_read(&reader.conn)
}

/// Opens a read transaction on a reader connection (its snapshot starts at
/// the next statement).
fn begin_read(conn: &Connection) -> BackendResult<()> {
    conn.prepare_cached("BEGIN")
        .and_then(|mut begin| begin.execute([]))
        .map(drop)
        .map_err(sql)
}

/// Ends a reader connection's read transaction: nothing was written, so
/// COMMIT only ends it.
fn end_read(conn: &Connection) -> BackendResult<()> {
    conn.prepare_cached("COMMIT")
        .and_then(|mut commit| commit.execute([]))
        .map(drop)
        .map_err(sql)
}

/// An SQLite database file used as a [`Backend`].
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: ReaderPool,
    generation: AtomicU64,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`. Instances for
    /// the same file are shared within the process, so a configuration
    /// reload keeps one writer.
    pub fn open(path: &Path) -> BackendResult<Arc<SqliteStore>> {
        static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<SqliteStore>>>> = OnceLock::new();
        let key = path.to_path_buf();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| backend("store registry poisoned"))?;
        if let Some(store) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Arc::new(SqliteStore::open_new(path)?);
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(key, Arc::downgrade(&store));
        Ok(store)
    }

    fn open_new(path: &Path) -> BackendResult<SqliteStore> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| backend(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        create_private(path)?;
        let writer = connect(path)?;
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .and_then(|()| {
                writer.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            })
            .and_then(|()| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES))
            .and_then(|()| writer.pragma_update(None, "soft_heap_limit", SOFT_HEAP_LIMIT_BYTES))
            .map_err(sql)?;
        super::metered::timed("migrate", || migrate(&writer))?;
        let hashed = hash_clear_passwords(&writer)?;
        if hashed > 0 {
            tracing::info!(
                store = %path.display(),
                count = hashed,
                "SCIM store: clear-text passwords found and replaced by argon2id hashes"
            );
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: ReaderPool::new(reader_pool_size(), WARM_FOR),
            generation: AtomicU64::new(1),
        })
    }

    /// Runs `f` on a reader connection of the bounded pool (waiting up to
    /// [`READER_WAIT`] for one; then `Unavailable`). An inline call, on an
    /// async worker, never waits: with no connection free at once it is
    /// [`BackendError::WouldBlock`], and the host runs the request again on
    /// its blocking pool (`quick_read` only says a reader *was* free).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> BackendResult<T> {
        if in_inline_call() {
            return self
                .readers
                .with(&self.path, Duration::ZERO, f)
                .map_err(|error| match error {
                    BackendError::Unavailable(_) => BackendError::WouldBlock,
                    other => other,
                });
        }
        self.readers.with(&self.path, READER_WAIT, f)
    }

    /// Runs `f` on the writer connection, inside a write epoch of the
    /// readers ([`ReaderPool::writing`]): every use of the writer goes
    /// through here, so no reader keeps a snapshot older than a write.
    fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, &'static str> {
        let conn = self.writer.lock().map_err(|_| "store writer poisoned")?;
        Ok(self.readers.writing(|| f(&conn)))
    }
}

/// Creates a missing database file readable by its owner only (mode 0600);
/// SQLite gives its `-wal` and `-shm` files the same mode. An existing file
/// keeps the mode its operator chose.
fn create_private(path: &Path) -> BackendResult<()> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another opener created it first: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(format!("cannot create {}: {e}", path.display()))),
    }
}

fn connect(path: &Path) -> BackendResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(sql)?;
    // No memory-mapped I/O: mapped database pages would count in the
    // process's resident memory (a 1M-user database is about 1 GiB); reads go
    // through the OS page cache instead. Explicit, so a build default of
    // the bundled SQLite cannot change it.
    conn.pragma_update(None, "mmap_size", 0).map_err(sql)?;
    // The query planner stability guarantee: a cached statement keeps its
    // plan whatever is bound to it. Without it SQLite re-prepares (parses
    // and plans again) every statement whose bound value it once compared
    // with a partial index's WHERE (`user_name IS NOT NULL`, …) each time a
    // new value is bound: a full SQL parse on every GET.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A reader connection: [`connect`] with the reader's page cache.
fn connect_reader(path: &Path) -> BackendResult<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
        .map_err(sql)?;
    Ok(conn)
}

/// Replaces every clear `password` (left by builds that stored it as sent)
/// with its argon2id PHC string; the number replaced. One read-only query
/// when there is nothing to do; `version` and `lastModified` stay (no
/// client-visible change: `password` is never returned).
fn hash_clear_passwords(conn: &Connection) -> BackendResult<usize> {
    let clear: Vec<(i64, String)> = {
        let mut statement = conn
            .prepare(
                "SELECT seq, body FROM resources
                 WHERE instr(body, '\"password\"') > 0
                   AND json_type(body, '$.password') = 'text'
                   AND substr(json_extract(body, '$.password'), 1, 10) <> '$argon2id$'",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)?
    };
    if clear.is_empty() {
        return Ok(0);
    }
    let mut updates = Vec::with_capacity(clear.len());
    for (seq, text) in clear {
        let mut body: Value = serde_json::from_str(&text)
            .map_err(|e| backend(format!("resource #{seq}: stored body is not JSON: {e}")))?;
        if let Some(phc) = scimgate_scim_service::password::hash_if_clear(&body).map_err(backend)? {
            body[scimgate_scim_service::password::PASSWORD] = Value::String(phc);
            updates.push((seq, text, body.to_string()));
        }
    }
    // Zero the space the clear values leave, and leave no old page in the WAL.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(sql)?;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
    let mut done = 0;
    for (seq, old, new) in &updates {
        match conn.execute(
            "UPDATE resources SET body = ?1 WHERE seq = ?2 AND body = ?3",
            params![new, seq, old],
        ) {
            Ok(n) => done += n,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(sql(e));
            }
        }
    }
    conn.execute_batch("COMMIT").map_err(sql)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(sql)?;
    conn.pragma_update(None, "secure_delete", "OFF")
        .map_err(sql)?;
    Ok(done)
}

fn migrate(conn: &Connection) -> BackendResult<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(sql)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    if current > MIGRATIONS.len() as i64 {
        return Err(backend(format!(
            "the database is at schema version {current}, newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let applied = conn.execute_batch(step).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT").map_err(sql)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(backend(format!(
                    "migration to schema version {version} failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

fn backend(message: impl Into<String>) -> BackendError {
    BackendError::Backend(message.into())
}

fn sql(error: rusqlite::Error) -> BackendError {
    if let rusqlite::Error::SqliteFailure(code, _) = &error {
        if code.code == rusqlite::ErrorCode::ConstraintViolation {
            return BackendError::Conflict(error.to_string());
        }
    }
    BackendError::Backend(error.to_string())
}

const COLUMNS: &str = "seq, id, resource_type, version, created, last_modified, body";

fn record(row: &Row<'_>) -> rusqlite::Result<Record> {
    // Parsed where SQLite keeps the text, not from a copy of it.
    let body = serde_json::from_str(row.get_ref(6)?.as_str()?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
    })?;
    record_with(row, body)
}

/// The record of a row of [`COLUMNS`] with its body as stored, unparsed.
fn record_text(row: &Row<'_>) -> rusqlite::Result<RecordText> {
    Ok(RecordText {
        record: record_with(row, Value::Null)?,
        text: row.get(6)?,
    })
}

/// The record of a row of [`COLUMNS`] with `body`.
fn record_with(row: &Row<'_>, body: Value) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: row.get(0)?,
        id: row.get(1)?,
        resource_type: row.get(2)?,
        version: row.get(3)?,
        created: row.get(4)?,
        last_modified: row.get(5)?,
        body,
    })
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(text) => text.to_sql(),
            Param::Int(n) => n.to_sql(),
        }
    }
}

impl SqliteStore {
    /// Visits the rows of `scan`, each decoded by `decode`, until the
    /// visitor says stop.
    fn scan_rows<T>(
        &self,
        scan: &SqlScan,
        decode: fn(&Row<'_>) -> rusqlite::Result<T>,
        visit: &mut dyn FnMut(T) -> Result<Visit, PluginError>,
    ) -> Result<(), PluginError> {
        unstash();
        if scan.resource_types.is_empty() {
            return Ok(());
        }
        let query = scan_query(SQLITE, scan, COLUMNS);
        self.read(|conn| -> Result<(), PluginError> {
            let mut stmt = conn.prepare_cached(&query.sql).map_err(sql)?;
            let mut rows = stmt
                .query(params_from_iter(query.params.iter()))
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                if visit(decode(row).map_err(sql)?)? == Visit::Stop {
                    break;
                }
            }
            Ok(())
        })?
    }
}

impl SqlStore for SqliteStore {
    fn scan_sql(&self, scan: &SqlScan, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.scan_rows(scan, record, visit)
    }

    fn count_sql(&self, scan: &SqlScan) -> BackendResult<u64> {
        unstash();
        if scan.resource_types.is_empty() {
            return Ok(0);
        }
        let query = count_query(SQLITE, scan);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&query.sql).map_err(sql)?;
            let n: i64 = stmt
                .query_row(params_from_iter(query.params.iter()), |r| r.get(0))
                .map_err(sql)?;
            Ok(n.max(0) as u64)
        })?
    }
}

impl Backend for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// One reader connection and one read transaction for all `reads`: the
    /// reads inside find the connection this thread holds (`HELD`), so they
    /// take no other from the pool and see one snapshot. Inside a
    /// transaction already (the one the reader keeps, or a nested
    /// snapshot's), `reads` just joins it; only during a write, when
    /// readers keep none, does it open one for `reads`. A connection left
    /// inside that transaction (a panic in `reads`) is closed, not lent
    /// again (`ReaderPool::give_back`).
    fn snapshot(
        &self,
        reads: &mut dyn FnMut() -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        self.read(|conn| {
            if !conn.is_autocommit() {
                return reads();
            }
            begin_read(conn)?;
            let result = reads();
            result.and(end_read(conn).map_err(PluginError::from))
        })?
    }

    /// The record and, in the same statement (one read transaction, one
    /// snapshot), the groups it is a direct member of: they are kept for
    /// the [`Backend::groups_of`] that renders it next.
    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.get_text(resource_type, id)?
            .map(RecordText::into_record)
            .transpose()
    }

    /// The body column is the body's JSON text, as serde_json wrote it.
    fn keeps_json_text(&self) -> bool {
        true
    }

    fn get_text(&self, resource_type: &str, id: &str) -> BackendResult<Option<RecordText>> {
        unstash();
        let Some((rec, groups)) = self.read(|conn| get_with_groups(conn, resource_type, id))??
        else {
            return Ok(None);
        };
        stash(self.stash_key(), &rec.record.id, groups);
        Ok(Some(rec))
    }

    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.scan_sql(&SqlScan::from_scan(scan), visit)
    }

    fn scan_text(&self, scan: &Scan<'_>, visit: &mut TextVisitor<'_>) -> Result<(), PluginError> {
        self.scan_rows(&SqlScan::from_scan(scan), record_text, visit)
    }

    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        super::sql::translate(filter, ctx).1
    }

    /// A file on this machine: a read by id, or by a filter whose SQL
    /// condition is a point index (userName, externalId, id, an email),
    /// takes microseconds (WAL readers never wait for the writer).
    /// Only while a reader connection is free: a quick read runs on an
    /// async worker, which must not wait for the pool.
    fn quick_read(&self, read: QuickRead<'_>, ctx: &SchemaCtx<'_>) -> bool {
        if !self.readers.has_free() {
            return false;
        }
        match read {
            QuickRead::Get => true,
            // Exact or not: the rows of a point condition are few, and the
            // engine filters those in memory.
            QuickRead::Filter(filter) => super::sql::translate(filter, ctx)
                .0
                .is_some_and(|cond| cond.is_point_lookup()),
        }
    }

    fn can_sort(&self, path: &AttrPath, ctx: &SchemaCtx<'_>) -> bool {
        super::sql::sort_key(path, ctx).is_some()
    }

    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        self.count_sql(&SqlScan::from_scan(scan)).map(Some)
    }

    fn members(&self, _group_type: &str, group_id: &str) -> BackendResult<Vec<MemberView>> {
        unstash();
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT m.member_id, m.member_type, r.body, m.display FROM memberships m
                     LEFT JOIN resources r ON r.id = m.member_id
                     WHERE m.group_id = ?1 ORDER BY m.position",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([group_id], |row| {
                    let body: Option<String> = row.get(2)?;
                    Ok(MemberView {
                        id: row.get(0)?,
                        member_type: row.get(1)?,
                        display: row.get(3)?,
                        body: body.and_then(|b| serde_json::from_str(&b).ok()),
                    })
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })?
    }

    fn groups_of(&self, member_id: &str) -> BackendResult<Vec<GroupRef>> {
        if let Some(groups) = take_stash(self.stash_key(), member_id) {
            return Ok(groups);
        }
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT r.id, r.resource_type, r.body FROM memberships m
                     JOIN resources r ON r.id = m.group_id
                     WHERE m.member_id = ?1 ORDER BY r.seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([member_id], |row| {
                    let body: String = row.get(2)?;
                    Ok(GroupRef {
                        id: row.get(0)?,
                        resource_type: row.get(1)?,
                        body: serde_json::from_str(&body).unwrap_or(Value::Null),
                    })
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })?
    }

    /// One `member_id IN (…)` query per [`BATCH`] ids; each member's
    /// groups in the order of [`Backend::groups_of`] (`seq`).
    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        unstash();
        let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
        for chunk in member_ids.chunks(BATCH) {
            let marks = vec!["?"; chunk.len()].join(",");
            let query = format!(
                "SELECT m.member_id, r.id, r.resource_type, r.body FROM memberships m
                 JOIN resources r ON r.id = m.group_id
                 WHERE m.member_id IN ({marks}) ORDER BY r.seq"
            );
            let rows = self.read(|conn| {
                let mut stmt = conn.prepare_cached(&query).map_err(sql)?;
                let rows = stmt
                    .query_map(params_from_iter(chunk.iter()), |row| {
                        let body: String = row.get(3)?;
                        Ok((
                            row.get::<_, String>(0)?,
                            GroupRef {
                                id: row.get(1)?,
                                resource_type: row.get(2)?,
                                body: serde_json::from_str(&body).unwrap_or(Value::Null),
                            },
                        ))
                    })
                    .map_err(sql)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql)
            })??;
            for (member, group) in rows {
                out.entry(member).or_default().push(group);
            }
        }
        Ok(out)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        unstash();
        self.with_writer(|conn| {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
            let mut tx = SqliteTx {
                conn,
                depth: 0,
                changes: Vec::new(),
            };
            let result = work(&mut tx).and_then(|()| tx.append_changes().map_err(Into::into));
            match result {
                Ok(()) => match conn.execute_batch("COMMIT") {
                    Ok(()) => {
                        self.generation.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(sql(e).into())
                    }
                },
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .map_err(PluginError::internal)?
    }

    fn ready(&self) -> Result<(), String> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn changes(&self, after: u64, limit: usize) -> BackendResult<Option<Vec<Change>>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_CHANGES) as i64;
        self.read(|conn| -> BackendResult<Vec<Change>> {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at, resource_type, resource_id, op, version, provider_id,
                            client_id, attributes, via
                     FROM scim_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![after, limit], change_row)
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })?
        .map(Some)
    }

    fn newest_change(&self) -> BackendResult<Option<u64>> {
        let newest: i64 = self
            .read(|conn| {
                conn.prepare_cached("SELECT seq FROM scim_change_counter WHERE id = 1")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
            })?
            .map_err(sql)?;
        Ok(Some(newest.max(0) as u64))
    }

    fn prune_changes(&self, before_ms: i64) -> BackendResult<u64> {
        let removed = self
            .with_writer(|conn| {
                conn.prepare_cached(
                    "DELETE FROM scim_changes WHERE seq < COALESCE(
                    (SELECT seq FROM scim_changes WHERE at >= ?1 ORDER BY seq LIMIT 1),
                    9223372036854775807)
                    AND seq <= COALESCE(
                    (SELECT MIN(acked) FROM scim_change_subscribers),
                    9223372036854775807)",
                )
                .and_then(|mut s| s.execute([before_ms]))
            })
            .map_err(backend)?
            .map_err(sql)?;
        Ok(removed as u64)
    }
}

/// The push subscribers' positions and leases (`scim_change_subscribers`):
/// reads on a reader connection, writes on the writer (each one statement).
impl PositionStore for SqliteStore {
    fn load(&self, subscriber: &str) -> Result<Position, String> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT acked, attempts, next_attempt_ms, last_error, state, dead_seq,
                        dead_error, rev
                 FROM scim_change_subscribers WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.query_row([subscriber], |r| {
                    Ok(super::position_of(super::PositionRow {
                        acked: r.get(0)?,
                        attempts: r.get(1)?,
                        next_attempt_ms: r.get(2)?,
                        last_error: r.get(3)?,
                        state: r.get(4)?,
                        dead_seq: r.get(5)?,
                        dead_error: r.get(6)?,
                        rev: r.get(7)?,
                    }))
                })
                .optional()
            })
        })
        .map_err(|e| e.to_string())?
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
    }

    fn save(&self, subscriber: &str, pos: &Position) -> Result<bool, String> {
        let row = super::PositionRow::of(pos);
        self.with_writer(|conn| {
            conn.prepare_cached(
                "INSERT INTO scim_change_subscribers
                     (name, acked, attempts, next_attempt_ms, last_error, state, dead_seq,
                      dead_error, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 + 1)
                 ON CONFLICT (name) DO UPDATE SET
                     acked = excluded.acked, attempts = excluded.attempts,
                     next_attempt_ms = excluded.next_attempt_ms, last_error = excluded.last_error,
                     state = excluded.state, dead_seq = excluded.dead_seq,
                     dead_error = excluded.dead_error, rev = scim_change_subscribers.rev + 1
                 WHERE scim_change_subscribers.rev = ?9",
            )
            .and_then(|mut s| {
                s.execute(params![
                    subscriber,
                    row.acked,
                    row.attempts,
                    row.next_attempt_ms,
                    row.last_error,
                    row.state,
                    row.dead_seq,
                    row.dead_error,
                    row.rev
                ])
            })
            .map(|n| n == 1)
            .map_err(|e| e.to_string())
        })?
    }

    fn try_lease(
        &self,
        subscriber: &str,
        node: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, String> {
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.with_writer(|conn| {
            conn.prepare_cached(
                "INSERT INTO scim_change_subscribers (name, lease_node, lease_until_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET
                     lease_node = excluded.lease_node, lease_until_ms = excluded.lease_until_ms
                 WHERE scim_change_subscribers.lease_node IS NULL
                    OR scim_change_subscribers.lease_node = excluded.lease_node
                    OR scim_change_subscribers.lease_until_ms <= ?4",
            )
            .and_then(|mut s| s.execute(params![subscriber, node, until, now_ms]))
            .map(|n| n == 1)
            .map_err(|e| e.to_string())
        })?
    }

    fn release(&self, subscriber: &str, node: &str) -> Result<(), String> {
        self.with_writer(|conn| {
            conn.prepare_cached(
                "UPDATE scim_change_subscribers SET lease_node = NULL, lease_until_ms = 0
                 WHERE name = ?1 AND lease_node = ?2",
            )
            .and_then(|mut s| s.execute(params![subscriber, node]))
            .map(|_| ())
            .map_err(|e| e.to_string())
        })?
    }
}

/// A `scim_changes` row.
fn change_row(row: &Row<'_>) -> rusqlite::Result<Change> {
    let op: String = row.get(4)?;
    let attributes: String = row.get(8)?;
    Ok(Change {
        seq: row.get::<_, i64>(0)?.max(0) as u64,
        at: row.get(1)?,
        resource_type: row.get(2)?,
        resource_id: row.get(3)?,
        op: change_op(&op).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown change op '{op}'").into(),
            )
        })?,
        version: row.get(5)?,
        provider_id: row.get(6)?,
        client_id: row.get(7)?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        via: row.get(9)?,
    })
}

/// A record (its body as stored, unparsed) and the groups it is a direct
/// member of, in one statement (one read transaction): the record's row is
/// `part` 0, each group's `part` 1.
fn get_with_groups(
    conn: &Connection,
    resource_type: &str,
    id: &str,
) -> BackendResult<Option<(RecordText, Vec<GroupRef>)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, id, resource_type, version, created, last_modified, body, 0
             FROM resources WHERE id = ?1 AND resource_type = ?2
             UNION ALL
             SELECT x.seq, x.id, x.resource_type, x.version, x.created, x.last_modified, x.body, 1
             FROM memberships m JOIN resources x ON x.id = m.group_id
             WHERE m.member_id = ?1",
        )
        .map_err(sql)?;
    let mut rows = stmt.query(params![id, resource_type]).map_err(sql)?;
    let mut found = None;
    let mut groups = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        if row.get::<_, i64>(7).map_err(sql)? == 0 {
            found = Some(record_text(row).map_err(sql)?);
        } else {
            groups.push(record(row).map_err(sql)?);
        }
    }
    Ok(found.map(|rec| (rec, group_refs(groups))))
}

fn get_record(conn: &Connection, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM resources WHERE id = ?1 AND resource_type = ?2"
        ))
        .map_err(sql)?;
    stmt.query_row(params![id, resource_type], record)
        .optional()
        .map_err(sql)
}

struct SqliteTx<'c> {
    conn: &'c Connection,
    depth: usize,
    /// Change-log entries of this unit, written at its end.
    changes: Vec<Change>,
}

impl SqliteTx<'_> {
    /// Writes the unit's entries with the next seqs (the one writer makes
    /// seq order commit order).
    fn append_changes(&mut self) -> BackendResult<()> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let n = self.changes.len() as i64;
        let last: i64 = self
            .conn
            .prepare_cached(
                "UPDATE scim_change_counter SET seq = seq + ?1 WHERE id = 1 RETURNING seq",
            )
            .and_then(|mut s| s.query_row([n], |r| r.get(0)))
            .map_err(sql)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO scim_changes (seq, at, resource_type, resource_id, op, version,
                    provider_id, client_id, attributes, via)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(sql)?;
        for (i, c) in std::mem::take(&mut self.changes).into_iter().enumerate() {
            stmt.execute(params![
                last - n + 1 + i as i64,
                c.at,
                c.resource_type,
                c.resource_id,
                c.op.as_str(),
                c.version,
                c.provider_id,
                c.client_id,
                attributes_json(&c.attributes),
                c.via
            ])
            .map_err(sql)?;
        }
        Ok(())
    }

    fn write_emails(&self, seq: i64, emails: &[String]) -> BackendResult<()> {
        self.conn
            .prepare_cached("DELETE FROM emails WHERE seq = ?1")
            .and_then(|mut s| s.execute([seq]))
            .map_err(sql)?;
        self.insert_emails(seq, emails)
    }

    fn insert_emails(&self, seq: i64, emails: &[String]) -> BackendResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO emails (seq, value) VALUES (?1, ?2)")
            .map_err(sql)?;
        for email in emails {
            stmt.execute(params![seq, email]).map_err(sql)?;
        }
        Ok(())
    }
}

impl BackendTx for SqliteTx<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        get_record(self.conn, resource_type, id)
    }

    fn type_of(&mut self, types: &[String], id: &str) -> BackendResult<Option<String>> {
        let found: Option<String> = self
            .conn
            .prepare_cached("SELECT resource_type FROM resources WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(sql)?;
        Ok(found.filter(|t| types.contains(t)))
    }

    /// The stored body is `rec.body` as text: the returned record takes
    /// the value itself instead of parsing the text back.
    fn insert(&mut self, rec: &NewRecord) -> BackendResult<Record> {
        let body = rec.body.to_string();
        let seq: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO resources (id, resource_type, user_name, external_id, display_name,
                    created, last_modified, version, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7) RETURNING seq",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        rec.id,
                        rec.resource_type,
                        rec.user_name,
                        rec.external_id,
                        rec.display_name,
                        rec.now,
                        body
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(sql)?;
        // A new seq (AUTOINCREMENT never reuses one) has no email rows yet.
        self.insert_emails(seq, &rec.emails)?;
        Ok(rec.stored(seq, 1, rec.now.clone()))
    }

    fn update(&mut self, rec: &NewRecord, expected_version: i64) -> BackendResult<Record> {
        let body = rec.body.to_string();
        let (seq, version, created): (i64, i64, String) = self
            .conn
            .prepare_cached(
                "UPDATE resources SET user_name = ?3, external_id = ?4, display_name = ?5,
                    last_modified = ?6, version = version + 1, body = ?7
                 WHERE id = ?1 AND resource_type = ?2 AND version = ?8
                 RETURNING seq, version, created",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        rec.id,
                        rec.resource_type,
                        rec.user_name,
                        rec.external_id,
                        rec.display_name,
                        rec.now,
                        body,
                        expected_version
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .map_err(sql)?
            .ok_or(BackendError::VersionMismatch)?;
        self.write_emails(seq, &rec.emails)?;
        Ok(rec.stored(seq, version, created))
    }

    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        let Some(existing) = get_record(self.conn, resource_type, id)? else {
            return Ok(false);
        };
        if expected_version.is_some_and(|v| v != existing.version) {
            return Err(BackendError::VersionMismatch);
        }
        let conn = self.conn;
        conn.prepare_cached("DELETE FROM emails WHERE seq = ?1")
            .and_then(|mut s| s.execute([existing.seq]))
            .map_err(sql)?;
        conn.prepare_cached("DELETE FROM memberships WHERE group_id = ?1 OR member_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(sql)?;
        conn.prepare_cached("DELETE FROM resources WHERE seq = ?1")
            .and_then(|mut s| s.execute([existing.seq]))
            .map_err(sql)?;
        Ok(true)
    }

    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        let text = match column {
            UniqueColumn::UserName => {
                "SELECT 1 FROM resources WHERE resource_type = ?1 AND user_name = ?2 AND id <> ?3 LIMIT 1"
            }
            UniqueColumn::DisplayName => {
                "SELECT 1 FROM resources WHERE resource_type = ?1 AND display_name = ?2 AND id <> ?3 LIMIT 1"
            }
        };
        self.conn
            .prepare_cached(text)
            .and_then(|mut s| {
                s.query_row(params![resource_type, value, except_id], |_| Ok(()))
                    .optional()
            })
            .map(|found| found.is_some())
            .map_err(sql)
    }

    fn set_members(&mut self, group_id: &str, members: &[Member]) -> BackendResult<()> {
        self.conn
            .prepare_cached("DELETE FROM memberships WHERE group_id = ?1")
            .and_then(|mut s| s.execute([group_id]))
            .map_err(sql)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO memberships (group_id, member_id, member_type, position, display)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql)?;
        for (position, member) in members.iter().enumerate() {
            stmt.execute(params![
                group_id,
                member.id,
                member.member_type,
                position as i64,
                member.display
            ])
            .map_err(sql)?;
        }
        Ok(())
    }

    fn members(&mut self, group_id: &str) -> BackendResult<Vec<Member>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT member_id, member_type, display FROM memberships WHERE group_id = ?1 ORDER BY position",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([group_id], |r| {
                Ok(Member {
                    id: r.get(0)?,
                    member_type: r.get(1)?,
                    display: r.get(2)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    fn group_ids_of(&mut self, member_id: &str) -> BackendResult<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT group_id FROM memberships WHERE member_id = ?1")
            .map_err(sql)?;
        let rows = stmt.query_map([member_id], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    fn touch(&mut self, ids: &[String], now: &str) -> BackendResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "UPDATE resources SET version = version + 1, last_modified = ?2 WHERE id = ?1",
            )
            .map_err(sql)?;
        for id in ids {
            stmt.execute(params![id, now]).map_err(sql)?;
        }
        Ok(())
    }

    fn record_change(&mut self, entry: &Change) -> BackendResult<()> {
        self.changes.push(entry.clone());
        Ok(())
    }

    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        self.depth += 1;
        let name = format!("sp{}", self.depth);
        let conn = self.conn;
        // Entries of a step that fails are undone with it.
        let recorded = self.changes.len();
        let result = conn
            .execute_batch(&format!("SAVEPOINT {name}"))
            .map_err(|e| PluginError::from(sql(e)))
            .and_then(|()| work(self));
        let finish = match &result {
            Ok(()) => conn.execute_batch(&format!("RELEASE {name}")),
            Err(_) => {
                self.changes.truncate(recorded);
                conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))
            }
        };
        self.depth -= 1;
        finish.map_err(sql)?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scim-server-test-{}-{tag}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        dir.join("scim.db")
    }

    /// The supply-chain floor (docs/security.md, "Supply chain"): the SQLite
    /// linked into the plugin is the bundled one and at least 3.50.2.
    #[test]
    fn the_linked_sqlite_is_the_bundled_one_and_at_least_3_50_2() {
        let linked = rusqlite::version_number();
        assert!(
            linked >= 3_050_002,
            "linked SQLite {} is older than the 3.50.2 floor",
            rusqlite::version()
        );
        assert_eq!(
            linked,
            rusqlite::ffi::SQLITE_VERSION_NUMBER,
            "the linked SQLite {} is not the bundled one",
            rusqlite::version()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_database_and_its_wal_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_db("mode");
        let store = SqliteStore::open(&path).expect("open");
        drop(store);
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&path).ok(), Some(0o600));
        let wal = path.with_extension("db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal).ok(), Some(0o600));
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn the_store_suite_passes_on_sqlite() {
        let path = temp_db("suite");
        let store = SqliteStore::open(&path).expect("open");
        super::super::suite::run_all(store.as_ref());
        super::super::suite::run_positions(store.as_ref(), store.as_ref());
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn opening_hashes_clear_passwords_left_by_older_builds_once() {
        let path = temp_db("passwords");
        {
            let store = SqliteStore::open_new(&path).expect("open");
            super::super::suite::insert_user(&store, "u1", "alice");
            super::super::suite::insert_user(&store, "u2", "bob");
            let conn = store.writer.lock().expect("writer");
            conn.execute(
                "UPDATE resources SET body = json_set(body, '$.password', 'clear-secret-1') WHERE id = 'u1'",
                [],
            )
            .expect("seed a clear password");
        }
        let store = SqliteStore::open_new(&path).expect("reopen");
        let body = store.get("User", "u1").expect("get").expect("u1").body;
        let phc = body["password"].as_str().expect("a password").to_string();
        assert!(
            scimgate_scim_service::password::is_argon2id_phc(&phc),
            "{phc}"
        );
        assert!(store
            .get("User", "u2")
            .expect("get")
            .expect("u2")
            .body
            .get("password")
            .is_none());
        let conn = store.writer.lock().expect("writer");
        assert_eq!(hash_clear_passwords(&conn).expect("second pass"), 0);
        drop(conn);
        drop(store);
        let bytes = [path.clone(), path.with_extension("db-wal")]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .flatten()
            .collect::<Vec<u8>>();
        assert!(!bytes.windows(14).any(|w| w == b"clear-secret-1"));
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    /// A store whose reader pool holds at most `readers` connections.
    fn store_with_readers(tag: &str, readers: usize) -> (SqliteStore, PathBuf) {
        store_with_pool(tag, readers, WARM_FOR)
    }

    /// A store whose readers keep a read transaction for `warm_for`.
    fn store_with_pool(tag: &str, readers: usize, warm_for: Duration) -> (SqliteStore, PathBuf) {
        let path = temp_db(tag);
        let mut store = SqliteStore::open_new(&path).expect("open");
        store.readers = ReaderPool::new(readers, warm_for);
        (store, path)
    }

    fn user_name(store: &SqliteStore, id: &str) -> Option<String> {
        store
            .get("User", id)
            .expect("get")
            .and_then(|rec| rec.body["userName"].as_str().map(str::to_string))
    }

    #[test]
    fn a_kept_read_transaction_never_hides_a_write_of_this_process() {
        // Kept for a minute unless a write intervenes: only the epoch can
        // make these reads fresh.
        let (store, path) = store_with_pool("warm-own", 1, Duration::from_secs(60));
        super::super::suite::insert_user(&store, "u1", "alice");
        assert_eq!(user_name(&store, "u1").as_deref(), Some("alice"));
        assert_eq!(store.readers.idle_warm(), 1, "the reader kept its snapshot");
        super::super::suite::insert_user(&store, "u2", "bob");
        assert_eq!(user_name(&store, "u2").as_deref(), Some("bob"));
        let position = PositionStore::load(&store, "hr").expect("load");
        assert!(PositionStore::save(&store, "hr", &position).expect("save"));
        let saved = PositionStore::load(&store, "hr").expect("load again");
        assert!(
            PositionStore::save(&store, "hr", &saved).expect("save again"),
            "the second save saw the first one's revision"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn another_process_write_is_seen_once_the_kept_snapshot_expires() {
        let warm_for = Duration::from_secs(1);
        let (store, path) = store_with_pool("warm-other", 1, warm_for);
        super::super::suite::insert_user(&store, "u1", "alice");
        assert_eq!(user_name(&store, "u1").as_deref(), Some("alice"));
        // As another process would: its own connection to the file.
        let other = Connection::open(&path).expect("another connection");
        other
            .execute(
                "UPDATE resources SET body = '{\"id\":\"u1\",\"userName\":\"changed\"}' WHERE id = 'u1'",
                [],
            )
            .expect("update");
        assert_eq!(
            user_name(&store, "u1").as_deref(),
            Some("alice"),
            "within warm_for the reader reads its kept snapshot"
        );
        std::thread::sleep(warm_for + Duration::from_millis(100));
        assert_eq!(user_name(&store, "u1").as_deref(), Some("changed"));
        drop(other);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn idle_readers_end_their_kept_transactions_when_a_write_begins() {
        const POOL: usize = 3;
        let (store, path) = store_with_pool("warm-idle", POOL, Duration::from_secs(60));
        super::super::suite::insert_user(&store, "u1", "alice");
        // POOL reads at once: each on its own reader, each kept warm.
        let together = std::sync::Barrier::new(POOL);
        std::thread::scope(|scope| {
            for _ in 0..POOL {
                scope.spawn(|| {
                    store
                        .read(|conn| {
                            together.wait();
                            get_record(conn, "User", "u1")
                        })
                        .expect("reader")
                        .expect("get");
                });
            }
        });
        assert_eq!(store.readers.idle_warm(), POOL);
        super::super::suite::insert_user(&store, "u2", "bob");
        assert_eq!(
            store.readers.idle_warm(),
            0,
            "a write ends every kept snapshot"
        );
        // The WAL can restart from its beginning: nothing holds a snapshot.
        store
            .with_writer(|conn| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .expect("writer")
            .map(|busy| assert_eq!(busy, 0, "the checkpoint was not blocked"))
            .expect("checkpoint");
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn concurrent_reads_never_open_more_connections_than_the_pool_holds() {
        const POOL: usize = 3;
        const THREADS: usize = 12;
        let (store, path) = store_with_readers("pool", POOL);
        super::super::suite::insert_user(&store, "u1", "alice");
        // Each read holds its connection until POOL reads are inside at
        // once: the pool must let exactly POOL in together (never more,
        // and without opening an extra connection for the rest).
        let together = std::sync::Barrier::new(POOL);
        let inside = AtomicU64::new(0);
        let most = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    let found = store
                        .read(|conn| {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            together.wait();
                            let found = get_record(conn, "User", "u1");
                            inside.fetch_sub(1, Ordering::SeqCst);
                            found
                        })
                        .expect("a pooled reader")
                        .expect("get");
                    assert_eq!(found.map(|r| r.id).as_deref(), Some("u1"));
                });
            }
        });
        assert_eq!(store.readers.opened(), POOL as u64);
        assert_eq!(most.load(Ordering::SeqCst), POOL as u64);
        // Later reads reuse the pooled connections.
        for _ in 0..10 {
            assert!(store.get("User", "u1").expect("get").is_some());
        }
        assert_eq!(store.readers.opened(), POOL as u64);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn a_read_that_finds_every_reader_busy_waits_then_fails_as_unavailable() {
        let (store, path) = store_with_readers("busy", 1);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            // Released as this closure unwinds, should an assertion fail.
            let release_tx = release_tx;
            let store_ref = &store;
            let holder = scope.spawn(move || {
                store_ref
                    .read(|_| {
                        held_tx.send(()).expect("signal");
                        release_rx.recv().expect("release");
                    })
                    .expect("the one reader");
            });
            held_rx.recv().expect("the reader is held");
            let waited = Instant::now();
            let busy = store
                .readers
                .with(&store.path, Duration::from_millis(100), |_| ());
            assert!(
                matches!(&busy, Err(BackendError::Unavailable(m)) if m.contains("busy")),
                "{:?}",
                busy.err()
            );
            assert!(waited.elapsed() >= Duration::from_millis(100));
            assert!(!store.readers.has_free(), "no reader is free");
            // The error the engine turns into 503 with Retry-After.
            let error = PluginError::from(busy.expect_err("unavailable"));
            assert_eq!(error.status, 503);
            release_tx.send(()).expect("release");
            holder.join().expect("holder");
        });
        // Once given back, the one connection serves the next read.
        assert!(store.readers.has_free());
        assert!(store.ready().is_ok());
        assert_eq!(store.readers.opened(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn an_inline_get_that_finds_every_reader_busy_answers_would_block_at_once() {
        use scimgate_abi::{Caller, Request};
        let (store, path) = store_with_readers("inline-busy", 1);
        super::super::suite::insert_user(&store, "u1", "alice");
        let store = Arc::new(store);
        let config: crate::ScimConfig =
            scimgate_abi::sdk::deserialize_config(&serde_json::json!({})).expect("defaults");
        let registry = config.registry(&std::env::temp_dir()).expect("registry");
        let scim = scimgate_scim_service::ScimService::new(
            config.settings(),
            registry,
            Arc::clone(&store) as Arc<dyn Backend>,
        );
        let mut get = Request::new("GET", "/Users/u1");
        get.set_inline(true);
        // A reader is free: the inline GET is answered where it runs.
        let answered = scim.handle(&get, Caller::ANONYMOUS).expect("inline GET");
        assert_eq!(answered.status, 200);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            // Owned by this closure: should an assertion below fail, the
            // holder is released as it unwinds (else the scope waits for it
            // for ever).
            let release_tx = release_tx;
            let store_ref = &store;
            let holder = scope.spawn(move || {
                store_ref
                    .read(|_| {
                        held_tx.send(()).expect("signal");
                        release_rx.recv().expect("release");
                    })
                    .expect("the one reader");
            });
            held_rx.recv().expect("the reader is held");
            // The race `quick_read` cannot close: it saw a free reader, and
            // another read took it. An async worker must not wait for it
            // (READER_WAIT is 10 s): the call answers would-block at once,
            // and the host runs the request again on its blocking pool.
            let started = Instant::now();
            let error = scim
                .handle(&get, Caller::ANONYMOUS)
                .expect_err("no reader is free");
            assert!(error.is_would_block(), "{error}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "waited {:?} on an async worker",
                started.elapsed()
            );
            // Not inline, the same GET waits for the reader as before.
            let waiting = scope.spawn(|| {
                let mut get = Request::new("GET", "/Users/u1");
                get.set_inline(false);
                scim.handle(&get, Caller::ANONYMOUS).map(|r| r.status)
            });
            std::thread::sleep(Duration::from_millis(50));
            release_tx.send(()).expect("release");
            holder.join().expect("holder");
            assert_eq!(waiting.join().expect("waiting").expect("GET"), 200);
        });
        assert_eq!(
            scim.handle(&get, Caller::ANONYMOUS)
                .expect("inline GET")
                .status,
            200
        );
        drop(scim);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn a_read_nested_in_a_scan_runs_on_the_connection_the_scan_holds() {
        let (store, path) = store_with_readers("nested", 1);
        super::super::suite::insert_user(&store, "u1", "alice");
        super::super::suite::insert_user(&store, "u2", "bob");
        let scan = SqlScan {
            resource_types: vec!["User".into()],
            ..SqlScan::default()
        };
        let mut seen = Vec::new();
        // With one reader, a nested read that went to the pool would wait
        // for the connection its own scan holds and fail as unavailable.
        store
            .scan_sql(&scan, &mut |rec| {
                let again = store.get("User", &rec.id)?.expect("the same row");
                seen.push(again.id);
                Ok(Visit::Continue)
            })
            .expect("scan with nested reads");
        assert_eq!(seen, ["u1", "u2"]);
        assert_eq!(store.readers.opened(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn the_reads_of_a_snapshot_share_one_connection_and_see_one_state() {
        let (store, path) = store_with_readers("snapshot", 1);
        super::super::suite::insert_user(&store, "u1", "alice");
        let users = SqlScan {
            resource_types: vec!["User".into()],
            ..SqlScan::default()
        };
        let count = || store.count_sql(&users).expect("count");
        let mut inside = Vec::new();
        store
            .snapshot(&mut || {
                inside.push(count());
                // A write commits while the snapshot is open (WAL lets the
                // writer go on); the reads inside do not see it.
                std::thread::scope(|s| {
                    s.spawn(|| super::super::suite::insert_user(&store, "u2", "bob"))
                        .join()
                        .expect("writer");
                });
                inside.push(count());
                // A nested snapshot joins the open one.
                store.snapshot(&mut || {
                    inside.push(count());
                    Ok(())
                })
            })
            .expect("snapshot");
        assert_eq!(inside, [1, 1, 1]);
        // One reader (the pool's only one): every read inside ran on it.
        assert_eq!(store.readers.opened(), 1);
        // Ended: the next read sees the write, on the same connection (it
        // went back to the pool outside any transaction).
        assert_eq!(count(), 2);
        assert_eq!(store.readers.opened(), 1);
        // A failing read inside ends the transaction too, and the error is
        // the snapshot's.
        let failed = store.snapshot(&mut || Err(PluginError::internal("inside")));
        assert!(failed.is_err());
        assert_eq!(count(), 2);
        assert_eq!(store.readers.opened(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }

    #[test]
    fn migrations_are_recorded_and_reopening_keeps_data() {
        let path = temp_db("reopen");
        {
            let store = SqliteStore::open_new(&path).expect("open");
            super::super::suite::insert_user(&store, "u1", "alice");
        }
        let store = SqliteStore::open_new(&path).expect("reopen");
        assert!(store.get("User", "u1").expect("get").is_some());
        let version: i64 = store
            .read(|c| c.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0)))
            .expect("read")
            .expect("query");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let _ = std::fs::remove_dir_all(path.parent().expect("parent"));
    }
}
