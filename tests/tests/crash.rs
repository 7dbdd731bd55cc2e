//! Crash tests of the SCIM store: `kill -9` of the real `scimgate` binary
//! while it is in the middle of work — inside a 1,000-operation Bulk request,
//! amid concurrent PATCHes of group memberships and user attributes — on
//! SQLite and PostgreSQL, then a restart on the same store. The store must
//! open; every acknowledged write (a 2xx the client received before the
//! kill) is there with its effect; no request is half-applied (a Bulk is one
//! transaction, docs/scim-server.md: all of its effects or none); group
//! members and `User.groups` agree. The kill points are signals, not
//! delays: the request written, the store writing (the SQLite WAL growing,
//! a PostgreSQL transaction holding a transaction id), the effect visible,
//! the response received. Also: the SQLite store really runs WAL with
//! `synchronous=FULL` (every commit syncs the WAL, observed with `strace`),
//! which no process kill alone can tell from `synchronous=OFF`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use scimgate_e2e::*;

use crate::scim::{PgSchema, PgServer, StoreKind};

const AUTH: (&str, &str) = ("authorization", "Bearer crash-token");
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// How long one kill point may take to come before the test gives up (a
/// safety net for a loaded machine, not a timing assertion).
const POINT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs each named test body (`fn name(store: StoreKind)`) once per store:
/// `crash::sqlite::name` and `crash::postgres::name` (the latter prints the
/// loud `SKIPPED` of [`StoreKind::postgres_available`] without a server).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::StoreKind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if super::StoreKind::postgres_available() {
                    super::$name(super::StoreKind::Postgres)
                }
            } )*
        }
    };
}

on_both_stores!(
    acknowledged_writes_survive_kill_9,
    kill_9_inside_a_1000_operation_bulk_leaves_all_of_it_or_none,
    kill_9_amid_concurrent_patches_keeps_every_acknowledged_patch_whole,
);

/// One SCIM route at `/scim/v2` on the given store; pages big enough to
/// list every resource of these tests at once.
fn config(store_options: &str) -> String {
    scim_route_config(
        "crash-token",
        &format!("max_results = 10000\n{store_options}"),
    )
}

/// Where the resources live, and how to see the store write.
struct Store {
    kind: StoreKind,
    options: String,
    env: Vec<(String, String)>,
    /// PostgreSQL: the test's schema (dropped after the node) and the
    /// `application_name` of the node's connections.
    pg: Option<(PgSchema, String)>,
}

impl Store {
    fn new(kind: StoreKind, tag: &str) -> Store {
        match kind {
            StoreKind::Sqlite => Store {
                kind,
                options: String::new(),
                env: Vec::new(),
                pg: None,
            },
            StoreKind::Postgres => {
                let server = PgServer::from_env().expect("checked by on_both_stores!");
                let schema = server.fresh_schema(tag);
                // Unique per test, so pg_stat_activity shows this node only.
                let app: String = schema.name.chars().take(60).collect();
                let options = format!(
                    "store = \"{}&application_name={app}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\"\n",
                    schema.store_url()
                );
                Store {
                    kind,
                    options,
                    env: schema.env(),
                    pg: Some((schema, app)),
                }
            }
        }
    }

    /// Open write transactions of the node (PostgreSQL: backends of its
    /// connections that hold a transaction id, i.e. wrote and did not end).
    fn open_write_transactions(&self) -> usize {
        let (schema, app) = self.pg.as_ref().expect("PostgreSQL only");
        schema
            .server
            .psql(&format!(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE application_name = '{app}' AND backend_xid IS NOT NULL"
            ))
            .parse()
            .expect("count")
    }
}

/// The SQLite WAL's length and modification time: it changes exactly when
/// a transaction commits (frames are appended at commit, not before).
#[derive(Debug, Clone, PartialEq)]
struct WalMark(Option<(u64, SystemTime)>);

/// A scimgate process on a [`Store`], restarted in place after each crash.
struct Node {
    /// Dropped before the store (fields drop in order).
    server: Server,
    store: Store,
}

impl Node {
    fn start(kind: StoreKind, tag: &str) -> Node {
        let store = Store::new(kind, tag);
        let server = Server::start_with_env(&config(&store.options), &env_refs(&store.env));
        let node = Node { server, store };
        node.assert_ready();
        node
    }

    fn url(&self, path: &str) -> String {
        self.server.url(&format!("/scim/v2{path}"))
    }

    fn get(&self, path: &str) -> Reply {
        let reply = get(&self.url(path), &[AUTH]);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> Reply {
        send_json(method, &self.url(path), &[AUTH], body)
    }

    fn count(&self, path_and_filter: &str) -> u64 {
        self.get(path_and_filter).json()["totalResults"]
            .as_u64()
            .expect("totalResults")
    }

    fn assert_ready(&self) {
        let ready = get(&self.server.url("/readyz"), &[]);
        assert_eq!(ready.status, 200, "{}\n{}", ready.body, self.server.logs());
    }

    /// `kill -9`, then a new process on the same folder and store: it must
    /// start (the store opens) and be ready. On PostgreSQL also waits until
    /// the killed process's open transactions are gone (rolled back by the
    /// server when their connections dropped).
    fn crash_and_restart(&mut self) {
        self.server.kill_hard();
        let dir = self.server.take_dir();
        let config_path = self.server.config_path.clone();
        self.server = Server::start_at(dir, config_path, &env_refs(&self.store.env));
        self.assert_ready();
        if self.store.kind == StoreKind::Postgres {
            let deadline = Instant::now() + POINT_TIMEOUT;
            while self.store.open_write_transactions() > 0 {
                assert!(
                    Instant::now() < deadline,
                    "the killed node's transactions stay open"
                );
            }
        }
    }

    fn wal_mark(&self) -> WalMark {
        let wal = self.server.dir.path().join("data/scim.db-wal");
        WalMark(
            std::fs::metadata(wal)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?))),
        )
    }

    /// Whether the store is writing a transaction now (SQLite: the WAL
    /// changed since `mark`, i.e. a commit is being appended or was; the
    /// caller makes sure nothing else writes).
    fn writing(&self, mark: &WalMark) -> bool {
        match self.store.kind {
            StoreKind::Sqlite => self.wal_mark() != *mark,
            StoreKind::Postgres => self.store.open_write_transactions() > 0,
        }
    }
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

/// Every user and group in one page each; asserts that members point at
/// resources that exist (of the type they claim) and that each user's
/// derived `groups` are exactly the groups listing it.
fn assert_memberships_consistent(node: &Node) -> (Vec<Value>, Vec<Value>) {
    let list = |path: &str| {
        let page = node.get(path).json();
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            page["totalResults"].as_u64(),
            Some(resources.len() as u64),
            "{path}: one page holds everything"
        );
        resources
    };
    let users = list("/Users?count=10000");
    let groups = list("/Groups?count=10000");
    let user_ids: BTreeSet<String> = users.iter().map(id_of).collect();
    let group_ids: BTreeSet<String> = groups.iter().map(id_of).collect();
    let mut groups_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for group in &groups {
        for member in group["members"].as_array().into_iter().flatten() {
            let value = member["value"].as_str().expect("member value").to_string();
            match member["type"].as_str() {
                Some("Group") => assert!(
                    group_ids.contains(&value),
                    "group {} lists a missing group {value}",
                    group["displayName"]
                ),
                _ => {
                    assert!(
                        user_ids.contains(&value),
                        "group {} lists a missing user {value}",
                        group["displayName"]
                    );
                    groups_of.entry(value).or_default().insert(id_of(group));
                }
            }
        }
    }
    for user in &users {
        let derived: BTreeSet<String> = user["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["value"].as_str().expect("groups.value").to_string())
            .collect();
        assert_eq!(
            derived,
            groups_of.remove(&id_of(user)).unwrap_or_default(),
            "User.groups of {} disagree with the groups' members",
            user["userName"]
        );
    }
    (users, groups)
}

/// The old durability test: writes acknowledged one by one and by Bulk are
/// all there after `kill -9` of the (then idle) server.
fn acknowledged_writes_survive_kill_9(kind: StoreKind) {
    let mut node = Node::start(kind, "ack");
    let mut created = Vec::new();
    for i in 0..40 {
        let reply = node.send(
            "POST",
            "/Users",
            &json!({"schemas": [USER], "userName": format!("durable{i}")}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        created.push(id_of(&reply.json()));
    }
    let bulk = json!({"schemas": [BULK], "Operations": (0..20).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("d{i}"),
        "data": {"schemas": [USER], "userName": format!("bulkdurable{i}")}})).collect::<Vec<_>>()});
    assert_eq!(node.send("POST", "/Bulk", &bulk).status, 200);
    node.crash_and_restart();
    assert_eq!(node.count("/Users?count=0"), 60);
    for id in &created {
        node.get(&format!("/Users/{id}"));
    }
}

/// Where a round of the Bulk test kills the server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillPoint {
    /// The client wrote the whole request (the server may still be reading
    /// or working through it).
    Sent,
    /// The store is writing: the n-th poll that sees it (see [`Node::writing`]).
    Writing(u32),
    /// The Bulk's last user is visible to another client (committed; the
    /// response may not have been sent).
    Committed,
    /// The client received the response.
    Acknowledged,
}

/// Users per Bulk; with 4 groups and 2 PATCHes, 1,000 operations.
const BULK_USERS: usize = 994;

/// Round `round`'s Bulk: `r{round}-u0…` users, four groups of ten of them
/// (the last one also holding the first group), and two PATCHes of
/// resources that existed before: a member for `anchor_group`, a `title`
/// for `anchor_user`.
fn bulk_request(round: usize, anchor_user: &str, anchor_group: &str) -> Value {
    let mut ops: Vec<Value> = (0..BULK_USERS)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": {
                "schemas": [USER], "userName": format!("r{round}-u{i}"), "displayName": format!("Round {round} user {i}"),
                "emails": [{"value": format!("r{round}-u{i}@example.com"), "type": "work"}]}})
        })
        .collect();
    for g in 0..4 {
        let mut members: Vec<Value> = (g * 10..g * 10 + 10)
            .map(|i| json!({"type": "User", "value": format!("bulkId:u{i}")}))
            .collect();
        if g == 3 {
            members.push(json!({"type": "Group", "value": "bulkId:g0"}));
        }
        ops.push(
            json!({"method": "POST", "path": "/Groups", "bulkId": format!("g{g}"), "data": {
            "schemas": [GROUP], "displayName": format!("r{round}-g{g}"), "members": members}}),
        );
    }
    ops.push(json!({"method": "PATCH", "path": format!("/Groups/{anchor_group}"), "data": {
        "schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u0"}]}]}}));
    ops.push(json!({"method": "PATCH", "path": format!("/Users/{anchor_user}"), "data": {
        "schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": format!("r{round}")}]}}));
    assert_eq!(ops.len(), 1000);
    json!({"schemas": [BULK], "Operations": ops})
}

/// Whether round `round`'s Bulk is in the store; asserts it is all there
/// or not at all.
fn bulk_is_in(node: &Node, round: usize, anchor_members: &BTreeSet<String>) -> bool {
    let users = node.count(&format!(
        "/Users?count=0&filter={}",
        percent_encode(&format!("userName sw \"r{round}-\""))
    ));
    let groups = node.get(&format!(
        "/Groups?filter={}",
        percent_encode(&format!("displayName sw \"r{round}-\""))
    ));
    let groups = groups.json()["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = node.get(&format!(
        "/Users?filter={}",
        percent_encode(&format!("userName eq \"r{round}-u0\""))
    ));
    let first = first.json()["Resources"]
        .as_array()
        .and_then(|r| r.first())
        .map(id_of);
    let in_anchor = first.as_ref().is_some_and(|id| anchor_members.contains(id));
    let summary = format!(
        "round {round}: {users} of {BULK_USERS} users, {} of 4 groups, anchor member: {in_anchor}",
        groups.len()
    );
    if users == 0 {
        assert!(
            groups.is_empty() && !in_anchor,
            "half-applied Bulk: {summary}"
        );
        return false;
    }
    assert!(
        users == BULK_USERS as u64 && groups.len() == 4 && in_anchor,
        "half-applied Bulk: {summary}"
    );
    for group in &groups {
        let expected = if group["displayName"] == format!("r{round}-g3") {
            11
        } else {
            10
        };
        assert_eq!(
            group["members"].as_array().map(Vec::len),
            Some(expected),
            "{summary}: {group}"
        );
    }
    true
}

fn kill_9_inside_a_1000_operation_bulk_leaves_all_of_it_or_none(kind: StoreKind) {
    let mut node = Node::start(kind, "bulkcrash");
    let anchor_user = node.send(
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": "anchor"}),
    );
    assert_eq!(anchor_user.status, 201, "{}", anchor_user.body);
    let anchor_user = id_of(&anchor_user.json());
    let anchor_group = node.send(
        "POST",
        "/Groups",
        &json!({"schemas": [GROUP], "displayName": "anchor-group"}),
    );
    assert_eq!(anchor_group.status, 201, "{}", anchor_group.body);
    let anchor_group = id_of(&anchor_group.json());

    let points: &[KillPoint] = match kind {
        // A SQLite commit is one short append to the WAL: poll it once.
        StoreKind::Sqlite => &[
            KillPoint::Sent,
            KillPoint::Writing(1),
            KillPoint::Committed,
            KillPoint::Acknowledged,
            KillPoint::Writing(1),
        ],
        // A PostgreSQL Bulk is a transaction open for the whole request:
        // kill it early and later inside. (A whole Bulk takes seconds in a
        // debug build, so only one round waits for one; a Bulk acknowledged
        // before the kill is `acknowledged_writes_survive_kill_9`.)
        StoreKind::Postgres => &[
            KillPoint::Sent,
            KillPoint::Writing(1),
            KillPoint::Writing(6),
            KillPoint::Committed,
        ],
    };
    let mut present: Vec<bool> = Vec::new();
    for (round, &point) in points.iter().enumerate() {
        let request = bulk_request(round, &anchor_user, &anchor_group).to_string();
        let url = node.url("/Bulk");
        let mark = node.wal_mark();
        let sent = Arc::new(AtomicBool::new(false));
        let client = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                try_send_notify(
                    "POST",
                    &url,
                    &[AUTH, ("content-type", "application/scim+json")],
                    Some(&request),
                    || sent.store(true, Ordering::SeqCst),
                )
            })
        };
        let last_user = format!(
            "/Users?count=0&filter={}",
            percent_encode(&format!("userName eq \"r{round}-u{}\"", BULK_USERS - 1))
        );
        let deadline = Instant::now() + POINT_TIMEOUT;
        let mut seen_writing = 0;
        loop {
            let reached = match point {
                KillPoint::Sent => sent.load(Ordering::SeqCst),
                KillPoint::Writing(n) => {
                    if node.writing(&mark) {
                        seen_writing += 1;
                    }
                    seen_writing >= n
                }
                KillPoint::Committed => node.count(&last_user) == 1,
                KillPoint::Acknowledged => client.is_finished(),
            };
            // A Bulk that finished before its kill point is killed at once.
            if reached || client.is_finished() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {point:?} never came\n{}",
                node.server.logs()
            );
            std::thread::yield_now();
        }
        node.crash_and_restart();
        let reply = client.join().expect("bulk client");
        let acknowledged = match &reply {
            Ok(reply) => {
                assert_eq!(reply.status, 200, "{}", reply.body);
                for op in reply.json()["Operations"].as_array().expect("ops") {
                    let status = op["status"].as_str().unwrap_or_default();
                    assert!(status.starts_with('2'), "round {round}: {op}");
                }
                true
            }
            Err(_) => false,
        };

        let anchor = node.get(&format!("/Groups/{anchor_group}")).json();
        let anchor_members: BTreeSet<String> = anchor["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["value"].as_str().expect("value").to_string())
            .collect();
        // Earlier rounds are as they were; this one is all there or not at all.
        for (earlier, was) in present.iter().enumerate() {
            assert_eq!(
                bulk_is_in(&node, earlier, &anchor_members),
                *was,
                "round {earlier} changed after a later crash"
            );
        }
        let is_in = bulk_is_in(&node, round, &anchor_members);
        if acknowledged || point == KillPoint::Committed {
            assert!(
                is_in,
                "round {round} ({point:?}, acknowledged: {acknowledged}): a committed Bulk is lost"
            );
        }
        println!("{kind:?} round {round}: killed at {point:?}, acknowledged: {acknowledged}, in the store: {is_in}");
        present.push(is_in);
        assert_eq!(
            anchor_members.len(),
            present.iter().filter(|p| **p).count(),
            "the anchor group gets one member per applied Bulk"
        );
        let title = node.get(&format!("/Users/{anchor_user}")).json()["title"].clone();
        let expected = present
            .iter()
            .rposition(|p| *p)
            .map(|r| json!(format!("r{r}")))
            .unwrap_or(Value::Null);
        assert_eq!(
            title, expected,
            "the anchor user's title is the last applied Bulk's"
        );
        let (users, groups) = assert_memberships_consistent(&node);
        let applied = present.iter().filter(|p| **p).count();
        assert_eq!(users.len(), 1 + applied * BULK_USERS);
        assert_eq!(groups.len(), 1 + applied * 4);
    }
}

/// Client threads of the PATCH test, and the users each one owns.
const THREADS: usize = 4;
const USERS_PER_THREAD: usize = 4;
/// Groups every thread patches (each only for its own users).
const CREWS: usize = 2;

/// What one client thread knows: the state its acknowledged PATCHes left.
#[derive(Debug, Clone)]
struct Owned {
    users: Vec<String>,
    /// displayName = nickName = title of each user (set together).
    tokens: Vec<String>,
    /// Which of this thread's users each crew group holds.
    members: Vec<BTreeSet<String>>,
}

/// The PATCH a thread had in flight when the server died: applied or not.
#[derive(Debug, Clone)]
enum Pending {
    Tokens { user: usize, token: String },
    Members { crew: usize, set: BTreeSet<String> },
}

struct ThreadRun {
    owned: Owned,
    pending: Option<Pending>,
    acknowledged: usize,
    conflicts: usize,
}

/// One client thread: PATCHes until the server is gone, alternating three
/// attributes of one of its users (one request, three operations) and one
/// crew's membership (one request adding one of its users and removing
/// another). 409 (a concurrent write won; PostgreSQL) is not applied.
fn patch_until_killed(
    base: String,
    crews: Vec<String>,
    mut owned: Owned,
    round: usize,
    thread: usize,
    acked: Arc<AtomicUsize>,
) -> Result<ThreadRun, String> {
    let mut run_acknowledged = 0;
    let mut conflicts = 0;
    for seq in 0..100_000usize {
        let (path, body, pending) = if seq.is_multiple_of(2) {
            let user = (seq / 2) % USERS_PER_THREAD;
            let token = format!("t{thread}-r{round}-s{seq}");
            let body = json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "displayName", "value": token},
                {"op": "replace", "path": "nickName", "value": token},
                {"op": "replace", "path": "title", "value": token}]});
            (
                format!("/Users/{}", owned.users[user]),
                body,
                Pending::Tokens { user, token },
            )
        } else {
            let crew = (seq / 2) % CREWS;
            let current = &owned.members[crew];
            let pick = seq / 2 / CREWS;
            let outside: Vec<&String> = owned
                .users
                .iter()
                .filter(|u| !current.contains(*u))
                .collect();
            let inside: Vec<&String> = current.iter().collect();
            let mut ops = Vec::new();
            let mut set = current.clone();
            if !outside.is_empty() {
                let add = outside[pick % outside.len()].clone();
                ops.push(json!({"op": "add", "path": "members", "value": [{"value": add, "type": "User"}]}));
                set.insert(add);
            }
            if !inside.is_empty() && (outside.is_empty() || !pick.is_multiple_of(3)) {
                let remove = inside[pick % inside.len()].clone();
                ops.push(
                    json!({"op": "remove", "path": format!("members[value eq \"{remove}\"]")}),
                );
                set.remove(&remove);
            }
            (
                format!("/Groups/{}", crews[crew]),
                json!({"schemas": [PATCH], "Operations": ops}),
                Pending::Members { crew, set },
            )
        };
        match try_send_json("PATCH", &format!("{base}{path}"), &[AUTH], &body) {
            Ok(reply) if reply.status == 200 || reply.status == 204 => {
                match pending {
                    Pending::Tokens { user, token } => owned.tokens[user] = token,
                    Pending::Members { crew, set } => owned.members[crew] = set,
                }
                run_acknowledged += 1;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(reply) if reply.status == 409 => conflicts += 1,
            Ok(reply) => {
                return Err(format!(
                    "thread {thread}: PATCH {path}: {} {}",
                    reply.status, reply.body
                ))
            }
            Err(_) => {
                return Ok(ThreadRun {
                    owned,
                    pending: Some(pending),
                    acknowledged: run_acknowledged,
                    conflicts,
                })
            }
        }
    }
    Err(format!("thread {thread}: the server was never killed"))
}

fn kill_9_amid_concurrent_patches_keeps_every_acknowledged_patch_whole(kind: StoreKind) {
    let mut node = Node::start(kind, "patchcrash");
    let mut owned: Vec<Owned> = (0..THREADS)
        .map(|t| {
            let users = (0..USERS_PER_THREAD)
                .map(|i| {
                    let reply = node.send(
                        "POST",
                        "/Users",
                        &json!({"schemas": [USER], "userName": format!("p{t}-{i}"),
                            "displayName": "init", "nickName": "init", "title": "init"}),
                    );
                    assert_eq!(reply.status, 201, "{}", reply.body);
                    id_of(&reply.json())
                })
                .collect();
            Owned {
                users,
                tokens: vec!["init".to_string(); USERS_PER_THREAD],
                members: vec![BTreeSet::new(); CREWS],
            }
        })
        .collect();
    let crews: Vec<String> = (0..CREWS)
        .map(|c| {
            let reply = node.send(
                "POST",
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": format!("crew-{c}")}),
            );
            assert_eq!(reply.status, 201, "{}", reply.body);
            id_of(&reply.json())
        })
        .collect();

    // Kill after a few, some more, many acknowledged PATCHes.
    for (round, threshold) in [3usize, 12, 30].into_iter().enumerate() {
        let acked = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = owned
            .iter()
            .cloned()
            .enumerate()
            .map(|(t, mine)| {
                let (base, crews, acked) = (node.url(""), crews.clone(), acked.clone());
                std::thread::spawn(move || patch_until_killed(base, crews, mine, round, t, acked))
            })
            .collect();
        let deadline = Instant::now() + POINT_TIMEOUT;
        while acked.load(Ordering::SeqCst) < threshold {
            assert!(
                Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()),
                "round {round}: only {} PATCHes acknowledged\n{}",
                acked.load(Ordering::SeqCst),
                node.server.logs()
            );
            std::thread::yield_now();
        }
        node.crash_and_restart();
        let runs: Vec<ThreadRun> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .expect("client thread")
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let total: usize = runs.iter().map(|r| r.acknowledged).sum();
        let conflicts: usize = runs.iter().map(|r| r.conflicts).sum();
        println!("{kind:?} round {round}: killed after {total} acknowledged PATCHes ({conflicts} conflicts)");

        let crew_members: Vec<BTreeSet<String>> = crews
            .iter()
            .map(|c| {
                node.get(&format!("/Groups/{c}")).json()["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| m["value"].as_str().expect("value").to_string())
                    .collect()
            })
            .collect();
        for (t, run) in runs.into_iter().enumerate() {
            let mut now = run.owned.clone();
            for (i, id) in run.owned.users.iter().enumerate() {
                let user = node.get(&format!("/Users/{id}")).json();
                let token = user["displayName"].as_str().unwrap_or_default().to_string();
                assert!(
                    user["nickName"] == token.as_str() && user["title"] == token.as_str(),
                    "a half-applied PATCH: {user}"
                );
                let in_flight = match &run.pending {
                    Some(Pending::Tokens { user, token: tok }) if *user == i => Some(tok),
                    _ => None,
                };
                assert!(
                    token == run.owned.tokens[i] || Some(&token) == in_flight,
                    "thread {t}, user {i}: {token:?}, but the last acknowledged PATCH set {:?} (in flight: {in_flight:?})",
                    run.owned.tokens[i]
                );
                now.tokens[i] = token;
            }
            let mine: BTreeSet<&String> = run.owned.users.iter().collect();
            for (c, members) in crew_members.iter().enumerate() {
                let held: BTreeSet<String> = members
                    .iter()
                    .filter(|m| mine.contains(m))
                    .cloned()
                    .collect();
                let in_flight = match &run.pending {
                    Some(Pending::Members { crew, set }) if *crew == c => Some(set),
                    _ => None,
                };
                assert!(
                    held == run.owned.members[c] || Some(&held) == in_flight,
                    "thread {t}, crew {c}: {held:?}, but the acknowledged PATCHes left {:?} (in flight: {in_flight:?})",
                    run.owned.members[c]
                );
                now.members[c] = held;
            }
            owned[t] = now;
        }
        assert_memberships_consistent(&node);
    }
}

/// The SQLite store's WAL file and `synchronous=FULL`: the database header
/// says WAL (bytes 18 and 19 are 2), and every acknowledged write syncs the
/// WAL (`fdatasync`/`fsync` on `scim.db-wal`, seen by `strace` attached to
/// the server). With `synchronous=NORMAL` or `OFF` a commit syncs nothing,
/// which no process kill can show (the kernel still holds the writes).
#[test]
fn sqlite_store_is_wal_and_syncs_the_wal_on_every_commit() {
    let node = Node::start(StoreKind::Sqlite, "fsync");
    let create = |name: &str| {
        let reply = node.send(
            "POST",
            "/Users",
            &json!({"schemas": [USER], "userName": name}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
    };
    create("first");
    let db = node.server.dir.path().join("data/scim.db");
    let header = std::fs::read(&db).expect("read the database");
    assert_eq!(
        header.get(18..20),
        Some(&[2u8, 2][..]),
        "{} is not in WAL mode",
        db.display()
    );

    let trace = node.server.dir.path().join("strace.txt");
    let strace = Command::new("strace")
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args(["-p", &node.server.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut strace) = strace else {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: the synchronous=FULL check needs strace (apt-get install strace)"
        );
        return;
    };
    // strace says "Process N attached with M threads" once every thread is
    // traced (or why it cannot attach, and exits).
    let stderr = strace.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    let attached = loop {
        match rx.recv_timeout(POINT_TIMEOUT) {
            Ok(line) if line.contains("attached") => break true,
            Ok(line) => said.push_str(&format!("{line}\n")),
            Err(_) => break false,
        }
    };
    if !attached {
        let _ = strace.kill();
        let _ = strace.wait();
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: the synchronous=FULL check: strace could not attach: {said}"
        );
        return;
    }
    let writes = 8;
    for i in 0..writes {
        create(&format!("synced{i}"));
    }
    let status = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).expect("strace output");
    let wal_syncs = text
        .lines()
        .filter(|l| {
            (l.contains("fdatasync(") || l.contains("fsync(")) && l.contains("scim.db-wal>")
        })
        .count();
    println!("{writes} acknowledged writes, {wal_syncs} syncs of the WAL");
    assert!(
        wal_syncs >= writes,
        "{writes} acknowledged writes synced the WAL {wal_syncs} times (synchronous=FULL syncs at every commit):\n{text}"
    );
}
