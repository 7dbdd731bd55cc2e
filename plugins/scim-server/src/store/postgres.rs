//! The PostgreSQL [`Backend`] for several nodes sharing one database: a small
//! blocking connection pool around the synchronous `postgres` client,
//! versioned migrations under an advisory lock, typed indexed columns beside
//! a `jsonb` body, optimistic concurrency on `version`, memberships with
//! foreign keys, and a store-wide generation kept in the database itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};
use scimgate_abi::sdk::StorePool;
use scimgate_abi::PluginError;
use serde_json::Value;

use scimgate_changes::{Position, PositionStore};

use super::sql::{count_query, scan_query, Param, POSTGRES};
use super::{
    attributes_json, change_op, split_record_and_groups, stash, take_stash, unstash, Backend,
    BackendError, BackendResult, Capabilities, Change, GroupRef, MemberView, Record, Scan, SqlScan,
    SqlStore, Visit, Visitor, Work, BATCH, CAPABILITIES, MAX_CHANGES,
};
use scimgate_scim::{AttrPath, Filter, SchemaCtx};
use scimgate_scim_service::pool::{BoundedPool, PoolCounts};

mod tls;
mod tx;

use tx::{Mode, PgTx};

/// The schema, one step per entry; entry `n` brings the database to version
/// `n + 1` (recorded in `schema_version`). Append only: never edit a
/// released step.
pub const MIGRATIONS: &[&str] = &[
    // 1: resources with typed indexed columns and a jsonb body, email values,
    //    memberships with foreign keys, the store-wide write generation.
    "CREATE TABLE resources (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        resource_type text NOT NULL,
        user_name text,
        external_id text,
        display_name text,
        created text NOT NULL,
        last_modified text NOT NULL,
        version bigint NOT NULL,
        body jsonb NOT NULL
    );
    CREATE UNIQUE INDEX resources_user_name ON resources (resource_type, lower(user_name))
        WHERE user_name IS NOT NULL;
    CREATE INDEX resources_type_seq ON resources (resource_type, seq);
    CREATE INDEX resources_external_id ON resources (external_id) WHERE external_id IS NOT NULL;
    CREATE INDEX resources_display_name ON resources (resource_type, display_name);
    CREATE INDEX resources_last_modified ON resources (resource_type, last_modified);
    CREATE TABLE emails (
        seq bigint NOT NULL REFERENCES resources (seq) ON DELETE CASCADE,
        value text NOT NULL
    );
    CREATE INDEX emails_value ON emails (value);
    CREATE INDEX emails_seq ON emails (seq);
    CREATE TABLE memberships (
        group_id text NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        member_id text NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        member_type text NOT NULL,
        position integer NOT NULL,
        display text,
        PRIMARY KEY (group_id, member_id)
    );
    CREATE INDEX memberships_member ON memberships (member_id, group_id);
    CREATE TABLE store_generation (
        id integer PRIMARY KEY CHECK (id = 1),
        value bigint NOT NULL
    );
    INSERT INTO store_generation (id, value) VALUES (1, 1);",
    // 2: the change log. Its seqs come from `store_generation.change_seq`,
    //    taken in the row update every write already does last, whose lock
    //    is held until COMMIT: seq order is commit order, without gaps.
    "ALTER TABLE store_generation ADD COLUMN change_seq bigint NOT NULL DEFAULT 0;
    CREATE TABLE scim_changes (
        seq bigint PRIMARY KEY,
        at bigint NOT NULL,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        op text NOT NULL,
        version text,
        provider_id text NOT NULL,
        client_id text,
        attributes text NOT NULL,
        via text
    );",
    // 3: the push subscribers' positions: the last acknowledged seq, the
    //    retry state, the dead letter, a compare-and-swap revision and the
    //    delivery lease that makes one node at a time deliver to each.
    "CREATE TABLE scim_change_subscribers (
        name text PRIMARY KEY,
        acked bigint NOT NULL DEFAULT 0,
        attempts bigint NOT NULL DEFAULT 0,
        next_attempt_ms bigint NOT NULL DEFAULT 0,
        last_error text,
        state text NOT NULL DEFAULT 'active',
        dead_seq bigint,
        dead_error text,
        rev bigint NOT NULL DEFAULT 0,
        lease_node text,
        lease_until_ms bigint NOT NULL DEFAULT 0
    );",
];

/// `pg_advisory_lock` key held while migrating ("scimgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x7363_696d_6761_7465;
/// How long a request waits for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows fetched per round trip while scanning (the connection goes back to
/// the pool between batches, so visitors may read the store themselves).
const SCAN_BATCH: u64 = 500;
const COLUMNS: &str = "seq, id, resource_type, version, created, last_modified, body";

/// A record (`part` 0) and the groups it is a direct member of (`part` 1),
/// in one statement: a `UNION ALL` of two index lookups, cheaper than
/// aggregating the groups into arrays (each ordered aggregate sets up a
/// sort, even for no rows).
const GET_WITH_GROUPS: &str =
    "SELECT seq, id, resource_type, version, created, last_modified, body, 0
     FROM resources WHERE id = $1 AND resource_type = $2
     UNION ALL
     SELECT x.seq, x.id, x.resource_type, x.version, x.created, x.last_modified, x.body, 1
     FROM memberships m JOIN resources x ON x.id = m.group_id
     WHERE m.member_id = $1";

/// A secret string: printed as `**REDACTED**`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// Where and how to connect, from the stage config.
#[derive(Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// `postgres://user@host:port/db?…` (may hold a password; never logged).
    pub url: Secret,
    /// `store_password`, if set (wins over a password in the URL).
    pub password: Option<Secret>,
    pub pool_size: usize,
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.label())
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// `sslmode` of the store URL (libpq's names; `prefer` and `allow` are
/// refused because they fall back to plaintext without telling anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A parsed store URL: the client config and, with TLS, its connector.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    ssl_mode: SslMode,
    tls: Option<tls::MakeRustls>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// The effective `sslmode` (after the default rule).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
    }
}

impl PgSettings {
    /// The connection config: URL parsed, `sslmode`/`sslrootcert` applied
    /// (the CA file is read here), password applied. Errors never hold the
    /// password.
    pub fn config(&self) -> Result<PgTarget, String> {
        let (url, ssl_mode, root_cert) = split_tls_params(&self.url.0)?;
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL ({})", describe(&e)))?;
        if let Some(password) = &self.password {
            config.password(password.0.as_str());
        }
        let unix = config
            .get_hosts()
            .iter()
            .any(|h| !matches!(h, postgres::config::Host::Tcp(_)));
        let remote: Option<String> = config
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                postgres::config::Host::Tcp(name) if !is_loopback(name) => Some(name.clone()),
                _ => None,
            })
            .chain(
                config
                    .get_hostaddrs()
                    .iter()
                    .filter(|a| !a.is_loopback())
                    .map(|a| a.to_string()),
            )
            .next();
        let ssl_mode = match (ssl_mode, remote) {
            (Some(mode), _) => mode,
            (None, None) => SslMode::Disable,
            (None, Some(host)) => {
                return Err(format!(
                    "no sslmode, and {host} is not on this machine: add \
                     `?sslmode=verify-full&sslrootcert=/path/ca.pem` to the URL \
                     (or `sslmode=disable` to choose plaintext explicitly)"
                ))
            }
        };
        match (ssl_mode, &root_cert) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs `sslrootcert=/path/ca.pem` (the CA that signed \
                     the server's certificate)",
                    ssl_mode.name()
                ))
            }
            (SslMode::Disable | SslMode::Require, Some(_)) => {
                return Err(format!(
                    "sslrootcert is only read with sslmode=verify-ca or verify-full \
                     (sslmode={} checks no certificate)",
                    ssl_mode.name()
                ))
            }
            _ => {}
        }
        let verify = match ssl_mode {
            SslMode::Disable => None,
            SslMode::Require => Some(tls::Verify::Nothing),
            SslMode::VerifyCa => Some(tls::Verify::Chain),
            SslMode::VerifyFull => Some(tls::Verify::Full),
        };
        let tls = match verify {
            None => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                None
            }
            Some(verify) => {
                if unix {
                    return Err(format!(
                        "sslmode={}: PostgreSQL has no TLS over a Unix socket; \
                         connect over TCP or use sslmode=disable",
                        ssl_mode.name()
                    ));
                }
                config.ssl_mode(postgres::config::SslMode::Require);
                Some(tls::MakeRustls::new(verify, root_cert.as_deref())?)
            }
        };
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("scimgate");
        }
        Ok(PgTarget {
            config,
            ssl_mode,
            tls,
        })
    }

    /// The URL without password or parameters, for logs and errors.
    pub fn label(&self) -> String {
        redact_url(&self.url.0)
    }
}

impl SslMode {
    /// The URL spelling.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// `localhost` or a loopback address: plaintext is the default there.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query (the client
/// library knows neither `verify-*` nor `sslrootcert`): the rest of the URL,
/// the mode if given, the CA path if given.
fn split_tls_params(
    url: &str,
) -> Result<(String, Option<SslMode>, Option<std::path::PathBuf>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let mut rest = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = Some(match percent_decode(value).as_str() {
                    "disable" => SslMode::Disable,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    weak @ ("prefer" | "allow") => {
                        return Err(format!(
                            "sslmode={weak} is refused: it falls back to plaintext without \
                             telling anyone when the server (or whoever is in between) offers \
                             no TLS; use sslmode=verify-full&sslrootcert=/path/ca.pem, \
                             sslmode=require, or sslmode=disable to choose plaintext explicitly"
                        ))
                    }
                    other => {
                        return Err(format!(
                            "sslmode={other} is not one of disable, require, verify-ca, verify-full"
                        ))
                    }
                })
            }
            "sslrootcert" => {
                let path = percent_decode(value);
                if path.is_empty() {
                    return Err("sslrootcert is empty; expected the path of a PEM file".into());
                }
                root_cert = Some(std::path::PathBuf::from(path));
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, root_cert))
}

/// `%2F` → `/` (invalid escapes stay as they are).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `postgres://user:secret@host/db?password=…` → `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let rest = rest.split('?').next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// A PostgreSQL database used as a [`Backend`].
pub struct PostgresStore {
    pool: Pool,
    label: String,
    /// Handed out as the generation while the database cannot be read:
    /// never equal to a real one, so no cached page is trusted.
    offline_generation: AtomicU64,
    schema_version: usize,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("label", &self.label)
            .finish()
    }
}

impl PostgresStore {
    /// Connects, migrates (under an advisory lock, so nodes starting
    /// together do not race) and returns the store. Stores with the same
    /// settings are shared within the process, so a reload keeps its pool.
    pub fn open(settings: &PgSettings) -> BackendResult<Arc<PostgresStore>> {
        type Open = Mutex<Vec<(PgSettings, Weak<PostgresStore>)>>;
        static OPEN: OnceLock<Open> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| BackendError::Backend("store registry poisoned".into()))?;
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(store) = open
            .iter()
            .find(|(s, _)| s == settings)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(store);
        }
        let store = Arc::new(PostgresStore::connect(settings)?);
        open.push((settings.clone(), Arc::downgrade(&store)));
        Ok(store)
    }

    /// A new store with its own pool (not shared).
    pub fn connect(settings: &PgSettings) -> BackendResult<PostgresStore> {
        let config = settings.config().map_err(BackendError::Backend)?;
        let pool = Pool::new(config, settings.pool_size.max(1));
        let schema_version = super::metered::timed("migrate", || {
            let mut lease = pool.get()?;
            migrate(&mut lease.conn().client)
        })?;
        Ok(PostgresStore {
            pool,
            label: settings.label(),
            offline_generation: AtomicU64::new(0),
            schema_version,
        })
    }

    /// The connection pool's state, for the host's metrics.
    pub fn pool_state(&self) -> StorePool {
        self.pool.state()
    }

    /// The URL without its password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The schema version after migrating.
    pub fn schema_version(&self) -> usize {
        self.schema_version
    }

    /// Runs `f` on a pooled connection. A connection error drops that
    /// connection and every idle one (a restarted server leaves them all
    /// dead) and tries once more on a fresh connection.
    fn read<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
    ) -> BackendResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease = self.pool.get()?;
            match f(lease.conn()) {
                Ok(value) => return Ok(value),
                Err(e) if is_connection_error(&e) => {
                    lease.broken = true;
                    drop(lease);
                    self.pool.clear_idle();
                    if attempt >= 2 {
                        return Err(pg(e));
                    }
                }
                Err(e) => return Err(pg(e)),
            }
        }
    }

    /// A connection inside `BEGIN`, retried once on a connection error.
    fn begin(&self) -> BackendResult<Lease<'_>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease = self.pool.get()?;
            match lease.conn().client.batch_execute("BEGIN") {
                Ok(()) => return Ok(lease),
                Err(e) if is_connection_error(&e) && attempt < 2 => {
                    lease.broken = true;
                    drop(lease);
                    self.pool.clear_idle();
                }
                Err(e) => {
                    lease.broken = is_connection_error(&e);
                    return Err(pg(e));
                }
            }
        }
    }
}

/// Applies the missing migrations under the advisory lock; the version reached.
fn migrate(client: &mut Client) -> BackendResult<usize> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    let result = migrate_locked(client).and_then(|version| {
        let hashed = hash_clear_passwords(client)?;
        if hashed > 0 {
            tracing::info!(
                count = hashed,
                "SCIM store: clear-text passwords found and replaced by argon2id hashes"
            );
        }
        Ok(version)
    });
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let version = result?;
    unlocked.map_err(pg)?;
    Ok(version)
}

/// Replaces every clear `password` (left by builds that stored it as sent)
/// with its argon2id PHC string; the number replaced. One read-only query
/// when there is nothing to do; `version` and `lastModified` stay (no
/// client-visible change: `password` is never returned). Runs under the
/// migration lock, so nodes starting together do not both hash a value.
fn hash_clear_passwords(client: &mut Client) -> BackendResult<usize> {
    let rows = client
        .query(
            "SELECT seq, body->>'password' FROM resources
             WHERE jsonb_typeof(body->'password') = 'string'
               AND left(body->>'password', 10) <> '$argon2id$'",
            &[],
        )
        .map_err(pg)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut updates = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0).map_err(pg)?;
        let clear: String = row.try_get(1).map_err(pg)?;
        let phc = scimgate_scim_service::password::hash_if_clear(
            &serde_json::json!({ "password": clear }),
        )
        .map_err(BackendError::Backend)?;
        if let Some(phc) = phc {
            updates.push((seq, clear, phc));
        }
    }
    let mut tx = client.transaction().map_err(pg)?;
    let mut done = 0;
    for (seq, clear, phc) in &updates {
        done += tx
            .execute(
                "UPDATE resources SET body = jsonb_set(body, '{password}', to_jsonb($2::text))
                 WHERE seq = $1 AND body->>'password' = $3",
                &[seq, phc, clear],
            )
            .map_err(pg)? as usize;
    }
    tx.commit().map_err(pg)?;
    Ok(done)
}

fn migrate_locked(client: &mut Client) -> BackendResult<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .map_err(pg)?;
    let current: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .and_then(|row| row.try_get(0))
        .map_err(pg)?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(BackendError::Backend(format!(
            "the database is at schema version {current}, newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index as i32 + 1;
        let mut tx = client.transaction().map_err(pg)?;
        tx.batch_execute(step)
            .and_then(|()| {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&version],
                )
            })
            .map_err(|e| {
                BackendError::Backend(format!(
                    "migration to schema version {version} failed: {}",
                    describe(&e)
                ))
            })?;
        tx.commit().map_err(pg)?;
        tracing::info!(version, "PostgreSQL store: schema migrated");
    }
    Ok(MIGRATIONS.len())
}

/// Whether the connection is gone (or the server is going away): the
/// request is answered 503 and the connection is not reused.
fn is_connection_error(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// The database's own message when there is one.
/// The error with its causes ("error performing TLS handshake: TLS with …
/// failed: invalid peer certificate: UnknownIssuer …"), never a password.
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pg(error: postgres::Error) -> BackendError {
    if is_connection_error(&error) {
        return BackendError::Unavailable(format!("PostgreSQL: {}", describe(&error)));
    }
    match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            BackendError::Conflict(describe(&error))
        }
        // A referenced row vanished, or PostgreSQL chose this transaction
        // as the loser of a conflict: the caller's view is stale.
        Some(code)
            if *code == SqlState::FOREIGN_KEY_VIOLATION
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE =>
        {
            BackendError::VersionMismatch
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => {
            BackendError::Unavailable(format!("PostgreSQL: {}", describe(&error)))
        }
        _ => BackendError::Backend(describe(&error)),
    }
}

fn record(row: &Row) -> Result<Record, postgres::Error> {
    Ok(Record {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        resource_type: row.try_get(2)?,
        version: row.try_get(3)?,
        created: row.try_get(4)?,
        last_modified: row.try_get(5)?,
        body: row.try_get(6)?,
    })
}

fn bind(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(text) => text as &(dyn ToSql + Sync),
            Param::Int(n) => n as &(dyn ToSql + Sync),
        })
        .collect()
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Scan texts vary with the filter; kept apart and bounded.
    dynamic: HashMap<String, Statement>,
}

impl Conn {
    fn prepare(&mut self, text: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(stmt) = self.statements.get(text) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(text)?;
        self.statements.insert(text, stmt.clone());
        Ok(stmt)
    }

    fn prepare_dynamic(&mut self, text: &str) -> Result<Statement, postgres::Error> {
        if let Some(stmt) = self.dynamic.get(text) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(text)?;
        if self.dynamic.len() >= 64 {
            self.dynamic.clear();
        }
        self.dynamic.insert(text.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn query(
        &mut self,
        text: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let stmt = self.prepare(text)?;
        self.client.query(&stmt, params)
    }

    fn execute(
        &mut self,
        text: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let stmt = self.prepare(text)?;
        self.client.execute(&stmt, params)
    }
}

/// The store's connections: a [`BoundedPool`] of at most `pool_size`;
/// requests wait up to [`POOL_WAIT`] for one.
struct Pool {
    target: PgTarget,
    conns: BoundedPool<Conn>,
}

impl Pool {
    fn new(target: PgTarget, size: usize) -> Pool {
        Pool {
            target,
            conns: BoundedPool::new(size),
        }
    }

    fn get(&self) -> BackendResult<Lease<'_>> {
        let conn = self.conns.take(
            POOL_WAIT,
            || match self.target.connect() {
                Ok(client) => Ok(Conn {
                    client,
                    statements: HashMap::new(),
                    dynamic: HashMap::new(),
                }),
                Err(e) => Err(BackendError::Unavailable(format!(
                    "cannot connect to PostgreSQL: {}",
                    describe(&e)
                ))),
            },
            || {
                BackendError::Unavailable(format!(
                    "all {} database connections stayed busy for {} s (pool_size)",
                    self.conns.max(),
                    POOL_WAIT.as_secs()
                ))
            },
        )?;
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            broken: false,
        })
    }

    /// Connections lent out, idle, and the most it opens. A poisoned lock
    /// reads as an empty pool.
    fn state(&self) -> StorePool {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let PoolCounts { open, idle } = self
            .conns
            .counts()
            .unwrap_or(PoolCounts { open: 0, idle: 0 });
        StorePool {
            in_use: clamp(open.saturating_sub(idle)),
            idle: clamp(idle),
            size: clamp(self.conns.max()),
        }
    }

    /// Closes every idle connection (after a connection error).
    fn clear_idle(&self) {
        self.conns.clear_idle();
    }
}

/// A connection borrowed from the pool; returned on drop unless broken.
struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        #[allow(clippy::expect_used)]
        self.conn
            .as_mut()
            .expect("a lease holds its connection until it is dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.client.is_closed() {
            self.pool.conns.forget_one();
        } else {
            self.pool.conns.give_back(conn);
        }
    }
}

impl SqlStore for PostgresStore {
    fn scan_sql(&self, scan: &SqlScan, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        unstash();
        if scan.resource_types.is_empty() {
            return Ok(());
        }
        let mut part = scan.clone();
        let mut remaining = scan.limit;
        loop {
            let batch = remaining.map_or(SCAN_BATCH, |r| r.min(SCAN_BATCH));
            if batch == 0 {
                return Ok(());
            }
            part.limit = Some(batch);
            let query = scan_query(POSTGRES, &part, COLUMNS);
            let params = bind(&query.params);
            let rows = self.read(|conn| {
                let stmt = conn.prepare_dynamic(&query.sql)?;
                conn.client.query(&stmt, &params)
            })?;
            let fetched = rows.len() as u64;
            let mut last = None;
            for row in &rows {
                let rec = record(row).map_err(pg)?;
                last = Some(rec.seq);
                if visit(rec)? == Visit::Stop {
                    return Ok(());
                }
            }
            let Some(last) = last else {
                return Ok(());
            };
            if fetched < batch {
                return Ok(());
            }
            remaining = remaining.map(|r| r - fetched);
            if part.sort.is_some() {
                // Sorted: no key to continue from, so by offset.
                part.offset += fetched;
                continue;
            }
            part.offset = 0;
            if part.descending {
                part.before = Some(last);
            } else {
                part.after = Some(last);
            }
        }
    }

    fn count_sql(&self, scan: &SqlScan) -> BackendResult<u64> {
        unstash();
        if scan.resource_types.is_empty() {
            return Ok(0);
        }
        let query = count_query(POSTGRES, scan);
        let params = bind(&query.params);
        let n: i64 = self.read(|conn| {
            let stmt = conn.prepare_dynamic(&query.sql)?;
            conn.client.query_one(&stmt, &params)?.try_get(0)
        })?;
        Ok(n.max(0) as u64)
    }
}

impl Backend for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// The record and, in the same statement, the groups it is a direct
    /// member of ([`GET_WITH_GROUPS`]): they are kept for the
    /// [`Backend::groups_of`] that renders it next (one round trip for a
    /// `GET /Users/{id}`).
    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        unstash();
        let rows = self.read(|conn| conn.query(GET_WITH_GROUPS, &[&id, &resource_type]))?;
        let mut parts = Vec::with_capacity(rows.len());
        for row in &rows {
            let part: i32 = row.try_get(7).map_err(pg)?;
            parts.push((part == 0, record(row).map_err(pg)?));
        }
        let Some((rec, groups)) = split_record_and_groups(parts) else {
            return Ok(None);
        };
        stash(self.stash_key(), &rec.id, groups);
        Ok(Some(rec))
    }

    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        self.scan_sql(&SqlScan::from_scan(scan), visit)
    }

    fn filter_is_exact(&self, filter: &Filter, ctx: &SchemaCtx<'_>) -> bool {
        super::sql::translate(filter, ctx).1
    }

    fn can_sort(&self, path: &AttrPath, ctx: &SchemaCtx<'_>) -> bool {
        super::sql::sort_key(path, ctx).is_some()
    }

    fn count(&self, scan: &Scan<'_>) -> BackendResult<Option<u64>> {
        self.count_sql(&SqlScan::from_scan(scan)).map(Some)
    }

    fn members(&self, _group_type: &str, group_id: &str) -> BackendResult<Vec<MemberView>> {
        unstash();
        let rows = self.read(|conn| {
            conn.query(
                "SELECT m.member_id, m.member_type, r.body, m.display FROM memberships m
                 LEFT JOIN resources r ON r.id = m.member_id
                 WHERE m.group_id = $1 ORDER BY m.position",
                &[&group_id],
            )
        })?;
        rows.iter()
            .map(|row| {
                Ok(MemberView {
                    id: row.try_get(0)?,
                    member_type: row.try_get(1)?,
                    body: row.try_get(2)?,
                    display: row.try_get(3)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(pg)
    }

    fn groups_of(&self, member_id: &str) -> BackendResult<Vec<GroupRef>> {
        if let Some(groups) = take_stash(self.stash_key(), member_id) {
            return Ok(groups);
        }
        let rows = self.read(|conn| {
            conn.query(
                "SELECT r.id, r.resource_type, r.body FROM memberships m
                 JOIN resources r ON r.id = m.group_id
                 WHERE m.member_id = $1 ORDER BY r.seq",
                &[&member_id],
            )
        })?;
        rows.iter()
            .map(|row| {
                Ok(GroupRef {
                    id: row.try_get(0)?,
                    resource_type: row.try_get(1)?,
                    body: row.try_get::<_, Option<Value>>(2)?.unwrap_or(Value::Null),
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(pg)
    }

    /// One `member_id = ANY($1)` query per [`BATCH`] ids; each member's
    /// groups in the order of [`Backend::groups_of`] (`seq`).
    fn groups_of_many(&self, member_ids: &[&str]) -> BackendResult<HashMap<String, Vec<GroupRef>>> {
        unstash();
        let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
        for chunk in member_ids.chunks(BATCH) {
            let ids: Vec<&str> = chunk.to_vec();
            let rows = self.read(|conn| {
                conn.query(
                    "SELECT m.member_id, r.id, r.resource_type, r.body FROM memberships m
                     JOIN resources r ON r.id = m.group_id
                     WHERE m.member_id = ANY($1) ORDER BY r.seq",
                    &[&ids],
                )
            })?;
            for row in &rows {
                let member: String = row.try_get(0).map_err(pg)?;
                let group = GroupRef {
                    id: row.try_get(1).map_err(pg)?,
                    resource_type: row.try_get(2).map_err(pg)?,
                    body: row
                        .try_get::<_, Option<Value>>(3)
                        .map_err(pg)?
                        .unwrap_or(Value::Null),
                };
                out.entry(member).or_default().push(group);
            }
        }
        Ok(out)
    }

    fn generation(&self) -> u64 {
        unstash();
        let read = self.read(|conn| {
            conn.query("SELECT value FROM store_generation WHERE id = 1", &[])?
                .first()
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()
        });
        match read {
            Ok(Some(value)) => value.max(0) as u64,
            _ => u64::MAX - self.offline_generation.fetch_add(1, Ordering::SeqCst),
        }
    }

    /// Runs the unit deferred ([`tx`]); a poisoned deferred run is rolled
    /// back and run again directly.
    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        unstash();
        let mut mode = Mode::Deferred;
        loop {
            let mut lease = self.begin()?;
            let (result, broken, again) = {
                let mut tx = PgTx::new(lease.conn(), mode);
                let outcome = work(&mut tx).and_then(|()| Ok(tx.finish()?));
                if tx.poisoned {
                    let broken = tx.conn.client.batch_execute("ROLLBACK").is_err();
                    (outcome, broken, true)
                } else {
                    match outcome {
                        Ok(()) => {
                            // Last, so the one-row lock is held only until
                            // COMMIT; the change log's seqs are taken under it.
                            let committed = if tx.changes.is_empty() {
                                tx.conn
                                    .execute(
                                        "UPDATE store_generation SET value = value + 1 WHERE id = 1",
                                        &[],
                                    )
                                    .map(|_| ())
                            } else {
                                append_changes(tx.conn, &tx.changes)
                            }
                            .and_then(|()| tx.conn.client.batch_execute("COMMIT"));
                            match committed {
                                Ok(()) => (Ok(()), false, false),
                                Err(e) => {
                                    let broken = is_connection_error(&e)
                                        || tx.conn.client.batch_execute("ROLLBACK").is_err();
                                    (Err(PluginError::from(pg(e))), broken, false)
                                }
                            }
                        }
                        Err(error) => {
                            let broken = tx.conn.client.batch_execute("ROLLBACK").is_err();
                            (Err(error), broken, false)
                        }
                    }
                }
            };
            lease.broken = broken;
            drop(lease);
            if broken {
                self.pool.clear_idle();
            }
            if again && mode == Mode::Deferred {
                mode = Mode::Direct;
                continue;
            }
            return result;
        }
    }

    fn ready(&self) -> Result<(), String> {
        self.read(|conn| conn.query("SELECT 1", &[]).map(|_| ()))
            .map_err(|e| format!("{}: {e}", self.label))
    }

    fn changes(&self, after: u64, limit: usize) -> BackendResult<Option<Vec<Change>>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_CHANGES) as i64;
        let rows = self.read(|conn| {
            conn.query(
                "SELECT seq, at, resource_type, resource_id, op, version, provider_id,
                        client_id, attributes, via
                 FROM scim_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
        })?;
        rows.iter()
            .map(change_row)
            .collect::<BackendResult<Vec<_>>>()
            .map(Some)
    }

    fn newest_change(&self) -> BackendResult<Option<u64>> {
        let newest: i64 = self
            .read(|conn| {
                conn.query("SELECT change_seq FROM store_generation WHERE id = 1", &[])?
                    .first()
                    .map(|row| row.try_get::<_, i64>(0))
                    .transpose()
            })?
            .unwrap_or(0);
        Ok(Some(newest.max(0) as u64))
    }

    fn prune_changes(&self, before_ms: i64) -> BackendResult<u64> {
        self.read(|conn| {
            conn.execute(
                "DELETE FROM scim_changes WHERE seq < COALESCE(
                (SELECT seq FROM scim_changes WHERE at >= $1 ORDER BY seq LIMIT 1),
                9223372036854775807)
                AND seq <= COALESCE(
                (SELECT MIN(acked) FROM scim_change_subscribers),
                9223372036854775807)",
                &[&before_ms],
            )
        })
    }
}

/// The push subscribers' positions and leases (`scim_change_subscribers`),
/// shared by every node: saves are compare-and-swap on `rev`, the lease is
/// taken with one conditional upsert (a node holds it until
/// `lease_until_ms`, so a node that dies mid-delivery hands over when it
/// expires).
impl PositionStore for PostgresStore {
    fn load(&self, subscriber: &str) -> Result<Position, String> {
        let rows = self
            .read(|conn| {
                conn.query(
                    "SELECT acked, attempts, next_attempt_ms, last_error, state, dead_seq,
                            dead_error, rev
                     FROM scim_change_subscribers WHERE name = $1",
                    &[&subscriber],
                )
            })
            .map_err(|e| e.to_string())?;
        let Some(r) = rows.first() else {
            return Ok(Position::default());
        };
        let row = (|| -> Result<super::PositionRow, postgres::Error> {
            Ok(super::PositionRow {
                acked: r.try_get(0)?,
                attempts: r.try_get(1)?,
                next_attempt_ms: r.try_get(2)?,
                last_error: r.try_get(3)?,
                state: r.try_get(4)?,
                dead_seq: r.try_get(5)?,
                dead_error: r.try_get(6)?,
                rev: r.try_get(7)?,
            })
        })()
        .map_err(|e| e.to_string())?;
        Ok(super::position_of(row))
    }

    fn save(&self, subscriber: &str, pos: &Position) -> Result<bool, String> {
        let row = super::PositionRow::of(pos);
        self.read(|conn| {
            conn.execute(
                "INSERT INTO scim_change_subscribers AS s
                     (name, acked, attempts, next_attempt_ms, last_error, state, dead_seq,
                      dead_error, rev)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::bigint + 1)
                 ON CONFLICT (name) DO UPDATE SET
                     acked = excluded.acked, attempts = excluded.attempts,
                     next_attempt_ms = excluded.next_attempt_ms,
                     last_error = excluded.last_error, state = excluded.state,
                     dead_seq = excluded.dead_seq, dead_error = excluded.dead_error,
                     rev = s.rev + 1
                 WHERE s.rev = $9::bigint",
                &[
                    &subscriber,
                    &row.acked,
                    &row.attempts,
                    &row.next_attempt_ms,
                    &row.last_error,
                    &row.state,
                    &row.dead_seq,
                    &row.dead_error,
                    &row.rev,
                ],
            )
        })
        .map(|n| n == 1)
        .map_err(|e| e.to_string())
    }

    fn try_lease(
        &self,
        subscriber: &str,
        node: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, String> {
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.read(|conn| {
            conn.execute(
                "INSERT INTO scim_change_subscribers AS s (name, lease_node, lease_until_ms)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET
                     lease_node = excluded.lease_node, lease_until_ms = excluded.lease_until_ms
                 WHERE s.lease_node IS NULL OR s.lease_node = excluded.lease_node
                    OR s.lease_until_ms <= $4",
                &[&subscriber, &node, &until, &now_ms],
            )
        })
        .map(|n| n == 1)
        .map_err(|e| e.to_string())
    }

    fn release(&self, subscriber: &str, node: &str) -> Result<(), String> {
        self.read(|conn| {
            conn.execute(
                "UPDATE scim_change_subscribers SET lease_node = NULL, lease_until_ms = 0
                 WHERE name = $1 AND lease_node = $2",
                &[&subscriber, &node],
            )
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// Takes the next seqs for `changes` (with the write's generation bump)
/// and inserts the entries, in one statement: one round trip, the same row
/// lock every write takes last anyway.
fn append_changes(conn: &mut Conn, changes: &[Change]) -> Result<(), postgres::Error> {
    // The common case, one entry: scalar parameters, no arrays to encode.
    if let [c] = changes {
        let attributes = attributes_json(&c.attributes);
        conn.execute(
            "WITH g AS (
                UPDATE store_generation SET value = value + 1, change_seq = change_seq + 1
                WHERE id = 1 RETURNING change_seq
             )
             INSERT INTO scim_changes (seq, at, resource_type, resource_id, op, version,
                provider_id, client_id, attributes, via)
             SELECT g.change_seq, $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM g",
            &[
                &c.at,
                &c.resource_type,
                &c.resource_id,
                &c.op.as_str(),
                &c.version,
                &c.provider_id,
                &c.client_id,
                &attributes,
                &c.via,
            ],
        )?;
        return Ok(());
    }
    let n = changes.len() as i64;
    let at: Vec<i64> = changes.iter().map(|c| c.at).collect();
    let types: Vec<&str> = changes.iter().map(|c| c.resource_type.as_str()).collect();
    let ids: Vec<&str> = changes.iter().map(|c| c.resource_id.as_str()).collect();
    let ops: Vec<&str> = changes.iter().map(|c| c.op.as_str()).collect();
    let versions: Vec<Option<&str>> = changes.iter().map(|c| c.version.as_deref()).collect();
    let providers: Vec<&str> = changes.iter().map(|c| c.provider_id.as_str()).collect();
    let clients: Vec<Option<&str>> = changes.iter().map(|c| c.client_id.as_deref()).collect();
    let attributes: Vec<String> = changes
        .iter()
        .map(|c| attributes_json(&c.attributes))
        .collect();
    let via: Vec<Option<&str>> = changes.iter().map(|c| c.via.as_deref()).collect();
    conn.execute(
        "WITH g AS (
            UPDATE store_generation SET value = value + 1, change_seq = change_seq + $1
            WHERE id = 1 RETURNING change_seq
         )
         INSERT INTO scim_changes (seq, at, resource_type, resource_id, op, version,
            provider_id, client_id, attributes, via)
         SELECT g.change_seq - $1 + u.n, u.at, u.rt, u.rid, u.op, u.version, u.provider,
            u.client, u.attributes, u.via
         FROM g, UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[])
            WITH ORDINALITY AS u(at, rt, rid, op, version, provider, client, attributes, via, n)",
        &[
            &n,
            &at,
            &types,
            &ids,
            &ops,
            &versions,
            &providers,
            &clients,
            &attributes,
            &via,
        ],
    )?;
    Ok(())
}

/// A `scim_changes` row.
fn change_row(row: &Row) -> BackendResult<Change> {
    let get = |e: postgres::Error| BackendError::Backend(e.to_string());
    let op: String = row.try_get(4).map_err(get)?;
    let attributes: String = row.try_get(8).map_err(get)?;
    Ok(Change {
        seq: row.try_get::<_, i64>(0).map_err(get)?.max(0) as u64,
        at: row.try_get(1).map_err(get)?,
        resource_type: row.try_get(2).map_err(get)?,
        resource_id: row.try_get(3).map_err(get)?,
        op: change_op(&op)
            .ok_or_else(|| BackendError::Backend(format!("unknown change op '{op}'")))?,
        version: row.try_get(5).map_err(get)?,
        provider_id: row.try_get(6).map_err(get)?,
        client_id: row.try_get(7).map_err(get)?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        via: row.try_get(9).map_err(get)?,
    })
}

fn get_record(
    conn: &mut Conn,
    resource_type: &str,
    id: &str,
) -> Result<Option<Record>, postgres::Error> {
    conn.query(
        "SELECT seq, id, resource_type, version, created, last_modified, body
         FROM resources WHERE id = $1 AND resource_type = $2",
        &[&id, &resource_type],
    )?
    .first()
    .map(record)
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{suite, NewRecord};

    #[test]
    fn the_store_suite_passes_on_postgres() {
        let Some(db) = suite::TestDatabase::create("suite") else {
            return;
        };
        let store = PostgresStore::connect(&db.settings(4)).expect("connect");
        assert_eq!(store.schema_version(), MIGRATIONS.len());
        suite::run_all(&store);
        suite::run_positions(&store, &store);
    }

    #[test]
    fn nodes_starting_together_migrate_once_and_share_the_generation() {
        let Some(db) = suite::TestDatabase::create("race") else {
            return;
        };
        let settings = db.settings(2);
        let stores: Vec<PostgresStore> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| PostgresStore::connect(&settings).expect("connect")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        let versions: i64 = db.query_i64("SELECT COUNT(*) FROM schema_version");
        assert_eq!(versions, MIGRATIONS.len() as i64, "each step applied once");
        // A write on one "node" moves the generation every node reads.
        let before = stores[1].generation();
        suite::insert_user(&stores[0], "gen-1", "generation");
        assert!(stores[1].generation() > before);
        assert!(stores[2].get("User", "gen-1").expect("get").is_some());
    }

    #[test]
    fn urls_are_redacted_and_settings_never_print_secrets() {
        assert_eq!(
            redact_url(
                "postgres://scim:hunter2@db.example:5432/scim?password=hunter2&sslmode=disable"
            ),
            "postgres://scim@db.example:5432/scim"
        );
        assert_eq!(redact_url("postgresql://db/scim"), "postgresql://db/scim");
        let settings = PgSettings {
            url: Secret("postgres://u:hunter2@h/d".into()),
            password: Some(Secret("hunter3".into())),
            pool_size: 8,
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        // `h` is not loopback: no sslmode is refused, not plaintext.
        let error = settings.config().expect_err("remote host without sslmode");
        assert!(
            error.contains("no sslmode") && error.contains("verify-full"),
            "{error}"
        );
        assert!(!error.contains("hunter"), "{error}");
    }

    fn target(url: &str) -> Result<PgTarget, String> {
        PgSettings {
            url: Secret(url.into()),
            password: Some(Secret("hunter2".into())),
            pool_size: 1,
        }
        .config()
    }

    #[test]
    fn sslmode_defaults_to_disable_on_loopback_only() {
        for url in [
            "postgres://u@127.0.0.1:5432/d",
            "postgres://u@localhost/d?options=-csearch_path%3Dx",
            "postgres://u@[::1]:5432/d",
            "postgres://u@%2Frun%2Fpostgresql/d",
        ] {
            let target = target(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(target.ssl_mode(), SslMode::Disable, "{url}");
            assert!(target.tls.is_none(), "{url}");
        }
        // A loopback name with a remote hostaddr is remote.
        let error = target("postgres://u@localhost/d?hostaddr=10.0.0.5").expect_err("remote");
        assert!(error.contains("10.0.0.5 is not on this machine"), "{error}");
        let error = target("postgres://u:hunter2@db.example/d").expect_err("remote");
        assert!(
            error.contains("db.example is not on this machine"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        let explicit = target("postgres://u@db.example/d?sslmode=disable").expect("explicit");
        assert_eq!(explicit.ssl_mode(), SslMode::Disable);
        let require = target("postgres://u@db.example/d?sslmode=require&connect_timeout=3")
            .expect("require needs no CA");
        assert_eq!(require.ssl_mode(), SslMode::Require);
        assert!(require.tls.is_some());
    }

    #[test]
    fn weak_unknown_and_incomplete_sslmodes_are_refused() {
        let error = target("postgres://u@db/d?sslmode=prefer").expect_err("prefer");
        assert!(
            error.contains("sslmode=prefer is refused") && error.contains("plaintext"),
            "{error}"
        );
        let error = target("postgres://u@127.0.0.1/d?sslmode=allow").expect_err("allow");
        assert!(error.contains("sslmode=allow is refused"), "{error}");
        let error = target("postgres://u@db/d?sslmode=strict").expect_err("unknown");
        assert!(error.contains("not one of disable, require"), "{error}");
        let error = target("postgres://u@db/d?sslmode=verify-full").expect_err("no CA");
        assert!(error.contains("needs `sslrootcert="), "{error}");
        let error =
            target("postgres://u@db/d?sslmode=require&sslrootcert=/x.pem").expect_err("unused CA");
        assert!(
            error.contains("only read with sslmode=verify-ca"),
            "{error}"
        );
        let error = target("postgres://u@%2Frun%2Fpostgresql/d?sslmode=require").expect_err("unix");
        assert!(error.contains("Unix socket"), "{error}");
    }

    #[test]
    fn a_bad_ca_file_is_a_readable_error() {
        let error =
            target("postgres://u@db/d?sslmode=verify-full&sslrootcert=%2Fnonexistent%2Fca.pem")
                .expect_err("missing file");
        assert!(
            error.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("scimgate-pgtls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let error = target(&format!(
            "postgres://u@db/d?sslmode=verify-ca&sslrootcert={}",
            garbage.display()
        ))
        .expect_err("no certificate");
        assert!(error.contains("no \"BEGIN CERTIFICATE\" block"), "{error}");
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let error = target(&format!(
            "postgres://u@db/d?sslmode=verify-full&sslrootcert={}",
            broken.display()
        ))
        .expect_err("not a CA");
        assert!(error.contains("sslrootcert"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unreachable_server_is_unavailable_not_internal() {
        // Nothing listens on port 1.
        let settings = PgSettings {
            url: Secret("postgres://nobody@127.0.0.1:1/none".into()),
            password: None,
            pool_size: 1,
        };
        match PostgresStore::connect(&settings) {
            Err(BackendError::Unavailable(message)) => {
                assert!(message.contains("cannot connect"), "{message}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let error = PluginError::from(BackendError::Unavailable("x".into()));
        assert_eq!(error.status, 503);
    }

    /// One Bulk-like unit as the engine runs it: each create in its own
    /// savepoint (uniqueness checked first, a change recorded), outcomes
    /// reset on every run of the work; returns the outcomes and how many
    /// times the work ran.
    fn bulk_create(store: &PostgresStore, recs: &[NewRecord]) -> (Vec<Result<i64, u16>>, usize) {
        use crate::store::{BackendTx, ChangeOp, UniqueColumn};
        let mut outcomes = Vec::new();
        let mut runs = 0;
        store
            .write(&mut |tx| {
                runs += 1;
                outcomes = Vec::new();
                for rec in recs {
                    let mut seq = 0;
                    let done = tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                        let name = rec.user_name.as_deref().unwrap_or_default();
                        if tx.taken("User", UniqueColumn::UserName, name, &rec.id)? {
                            return Err(PluginError::new(409, "taken"));
                        }
                        seq = tx.insert(rec)?.seq;
                        let mut change = suite_change(&rec.id);
                        change.op = ChangeOp::Create;
                        tx.record_change(&change)?;
                        Ok(())
                    });
                    outcomes.push(done.map(|()| seq).map_err(|e| e.status));
                }
                Ok(())
            })
            .expect("bulk");
        (outcomes, runs)
    }

    fn suite_change(id: &str) -> Change {
        Change {
            seq: 0,
            at: 1,
            resource_type: "User".into(),
            resource_id: id.into(),
            op: crate::store::ChangeOp::Create,
            version: Some("W/\"1\"".into()),
            provider_id: "iga".into(),
            client_id: None,
            attributes: vec!["userName".into()],
            via: None,
        }
    }

    fn user(i: usize, name: &str) -> NewRecord {
        let mut rec = suite::new_record(
            &format!("bulk-{i}"),
            "User",
            Some(name),
            "2024-01-01T00:00:00.000Z",
        );
        rec.emails = vec![format!("{name}@example.com")];
        rec
    }

    #[test]
    fn deferred_bulk_creates_store_everything_in_order_in_few_round_trips() {
        let Some(db) = suite::TestDatabase::create("deferred") else {
            return;
        };
        let store = PostgresStore::connect(&db.settings(2)).expect("connect");
        let start = store.newest_change().expect("newest").unwrap_or(0);
        // More than one flush, and two names taken within the unit.
        let n = tx::FLUSH_AT * 2 + 7;
        let mut recs: Vec<NewRecord> = (0..n).map(|i| user(i, &format!("u{i}"))).collect();
        recs[10].user_name = Some("u3".into());
        recs[n - 1].user_name = Some("u600".into());
        let (outcomes, runs) = bulk_create(&store, &recs);
        assert_eq!(runs, 1, "nothing made the unit run again");
        assert_eq!(outcomes[10], Err(409));
        assert_eq!(outcomes[n - 1], Err(409));
        let seqs: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        assert_eq!(seqs.len(), n - 2);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seqs in operation order"
        );
        // Stored as reported: each seq and email, in insertion order.
        let mut scanned = Vec::new();
        store
            .scan_sql(&suite_users(), &mut |r| {
                scanned.push((r.seq, r.id));
                Ok(Visit::Continue)
            })
            .expect("scan");
        let want: Vec<(i64, String)> = recs
            .iter()
            .zip(&outcomes)
            .filter_map(|(r, o)| o.as_ref().ok().map(|seq| (*seq, r.id.clone())))
            .collect();
        assert_eq!(scanned, want);
        let by_email = SqlScan {
            cond: Some(crate::store::Cond::Email("u777@example.com".into())),
            ..suite_users()
        };
        assert_eq!(store.count_sql(&by_email).expect("count"), 1);
        let got = store.get("User", "bulk-777").expect("get").expect("stored");
        assert_eq!(got.version, 1);
        assert_eq!(got.body, recs[777].body);
        // One change per created user, gap-free.
        let newest = store.newest_change().expect("newest").unwrap_or(0);
        assert_eq!(newest - start, (n - 2) as u64);
        let changes = store
            .changes(start, MAX_CHANGES)
            .expect("changes")
            .expect("log");
        assert!(changes.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    fn suite_users() -> SqlScan {
        SqlScan {
            resource_types: vec!["User".into()],
            ..SqlScan::default()
        }
    }

    #[test]
    fn a_name_taken_in_the_database_runs_the_unit_again_directly_with_the_same_results() {
        let Some(db) = suite::TestDatabase::create("rerun") else {
            return;
        };
        let store = PostgresStore::connect(&db.settings(2)).expect("connect");
        suite::insert_user(&store, "existing", "Taken");
        let start = store.newest_change().expect("newest").unwrap_or(0);
        let recs: Vec<NewRecord> = ["a", "taken", "b", "TAKEN", "c"]
            .iter()
            .enumerate()
            .map(|(i, name)| user(i, name))
            .collect();
        let (outcomes, runs) = bulk_create(&store, &recs);
        assert_eq!(
            runs, 2,
            "the deferred run found the name taken and ran again"
        );
        let statuses: Vec<Option<u16>> = outcomes.iter().map(|o| o.err()).collect();
        assert_eq!(statuses, vec![None, Some(409), None, Some(409), None]);
        for (i, stored) in [(0, true), (1, false), (2, true), (3, false), (4, true)] {
            let id = format!("bulk-{i}");
            assert_eq!(
                store.get("User", &id).expect("get").is_some(),
                stored,
                "{id}"
            );
        }
        // Only the committed run's entries, without gaps.
        let changes = store.changes(start, 10).expect("changes").expect("log");
        let ids: Vec<&str> = changes.iter().map(|c| c.resource_id.as_str()).collect();
        assert_eq!(ids, vec!["bulk-0", "bulk-2", "bulk-4"]);
        assert_eq!(changes[0].seq, start + 1);
        assert_eq!(changes[2].seq, start + 3);
    }

    #[test]
    fn a_failed_statement_inside_a_deferred_savepoint_runs_the_unit_again_directly() {
        use crate::store::BackendTx;
        let Some(db) = suite::TestDatabase::create("poison") else {
            return;
        };
        let store = PostgresStore::connect(&db.settings(2)).expect("connect");
        let mut runs = 0;
        let mut outcomes = Vec::new();
        store
            .write(&mut |tx| {
                runs += 1;
                outcomes.clear();
                tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    tx.insert(&user(0, "kept"))?;
                    Ok(())
                })?;
                // A read that fails: PostgreSQL aborts the transaction, and
                // the savepoint exists only in memory.
                let failed = tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    tx.insert(&user(1, "undone"))?;
                    // Text with a NUL byte is refused by PostgreSQL.
                    tx.get("User", "nul\0id")?;
                    Ok(())
                });
                outcomes.push(failed.is_err());
                let after = tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    tx.insert(&user(2, "after"))?;
                    Ok(())
                });
                outcomes.push(after.is_ok());
                Ok(())
            })
            .expect("unit");
        assert_eq!(runs, 2);
        assert_eq!(outcomes, vec![true, true]);
        assert!(store.get("User", "bulk-0").expect("get").is_some());
        assert!(store.get("User", "bulk-1").expect("get").is_none());
        assert!(store.get("User", "bulk-2").expect("get").is_some());
    }

    #[test]
    fn buffered_creates_are_read_and_updated_within_their_unit() {
        use crate::store::BackendTx;
        let Some(db) = suite::TestDatabase::create("ryw") else {
            return;
        };
        let store = PostgresStore::connect(&db.settings(2)).expect("connect");
        let mut runs = 0;
        store
            .write(&mut |tx| {
                runs += 1;
                tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    tx.insert(&user(0, "first"))?;
                    Ok(())
                })?;
                tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    let got = tx
                        .get("User", "bulk-0")?
                        .expect("buffered create is visible");
                    assert_eq!(got.version, 1);
                    assert_eq!(
                        tx.type_of(&["User".into()], "bulk-0")?.as_deref(),
                        Some("User")
                    );
                    let mut changed = user(0, "renamed");
                    changed.now = "2024-01-02T00:00:00.000Z".into();
                    let stored = tx.update(&changed, got.version)?;
                    assert_eq!(stored.version, 2);
                    Ok(())
                })?;
                // A failed savepoint that updated a buffered create (sent by
                // then) undoes only its own update.
                let failed = tx.savepoint(&mut |tx: &mut dyn BackendTx| {
                    tx.insert(&user(1, "second"))?;
                    let mut again = user(0, "again");
                    again.now = "2024-01-03T00:00:00.000Z".into();
                    tx.update(&again, 2)?;
                    Err(PluginError::new(400, "no"))
                });
                assert!(failed.is_err());
                Ok(())
            })
            .expect("unit");
        assert_eq!(runs, 1);
        let got = store.get("User", "bulk-0").expect("get").expect("stored");
        assert_eq!(got.version, 2);
        assert_eq!(got.last_modified, "2024-01-02T00:00:00.000Z");
        assert!(store.get("User", "bulk-1").expect("get").is_none());
        let renamed = SqlScan {
            cond: Some(crate::store::Cond::UserName("renamed".into())),
            ..suite_users()
        };
        assert_eq!(store.count_sql(&renamed).expect("count"), 1);
    }
}
