//! Several nodes (PostgreSQL store): two `scimgate` processes on different
//! ports share one database and one token signing key. What is shared: a
//! token from one node works on the other, resources written on one are
//! read on the other (list totals and filters included), a user deactivated
//! through one node is inactive through the other (and the other refuses a
//! write against the version before it), concurrent `If-Match` PATCHes
//! spread over both nodes win once per version and lose no member. What is
//! not: providers are each node's own configuration, so deactivating one
//! takes effect on a node when that node reloads (docs/deployment.md:
//! "reload every node").

use std::path::Path;
use std::process::Command;

use scimgate_e2e::*;

use crate::oauth2::{bearer, env as oauth_env, oim_provider, oim_token};
use crate::scim::{
    add_members_concurrently, assert_one_win_per_version, PgSchema, PgServer, StoreKind,
};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// One node's config: token and SCIM routes, the shared key and database.
fn node_config(key: &Path, schema: &PgSchema, active: bool) -> String {
    let key = key.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
ttl = "1h"
signing_key = "{key}"
[stage.bearer]
use = "oauth2/bearer"
signing_key = "{key}"
[stage.active]
use = "policies/provider-active"
[stage.access]
use = "policies/access-mode"
[stage.scim]
use = "scim-server/scim"
{store}

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "token"]

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "access", "scim"]
{provider}
"#,
        store = schema.stage_options(),
        provider = oim_provider(active, ""),
    )
}

/// Two nodes on one fresh schema and one Ed25519 key, started at the same
/// time (so their migrations race for the advisory lock).
struct Cluster {
    a: Server,
    b: Server,
    key: std::path::PathBuf,
    schema: PgSchema,
    _keys: TempDir,
}

impl Cluster {
    fn start(tag: &str) -> Option<Cluster> {
        if !StoreKind::postgres_available() {
            return None;
        }
        let server = PgServer::from_env()?;
        let schema = server.fresh_schema(tag);
        let keys = TempDir::new("shared-key");
        let key = keys.path().join("token-key.pem");
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut env: Vec<(String, String)> = schema.env();
        env.extend(
            oauth_env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = node_config(&key, &schema, true);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| Server::start_with_env(&config, &env));
            let b = s.spawn(|| Server::start_with_env(&config, &env));
            (a.join().expect("node a"), b.join().expect("node b"))
        });
        assert_ne!(a.base, b.base);
        Some(Cluster {
            a,
            b,
            key,
            schema,
            _keys: keys,
        })
    }

    fn scim(node: &Server) -> String {
        node.url("/iso/scim/v2")
    }
}

#[test]
fn tokens_resources_and_user_deactivation_are_shared_by_two_nodes() {
    let Some(cluster) = Cluster::start("nodes") else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    assert_eq!(
        cluster
            .schema
            .psql("SELECT MAX(version) FROM schema_version"),
        "3"
    );
    assert_eq!(
        cluster.schema.psql("SELECT COUNT(*) FROM schema_version"),
        "3"
    );

    // A token from node A works on node B, and the other way round.
    let token_a = oim_token(a);
    let token_b = oim_token(b);
    let auth_a = bearer(&token_a);
    let auth_b = bearer(&token_b);
    let on_b = get(
        &format!("{}/Users", Cluster::scim(b)),
        &[("authorization", &auth_a)],
    );
    assert_eq!(on_b.status, 200, "{}", on_b.body);
    let on_a = get(
        &format!("{}/Users", Cluster::scim(a)),
        &[("authorization", &auth_b)],
    );
    assert_eq!(on_a.status, 200, "{}", on_a.body);
    assert_eq!(on_b.json()["totalResults"], 0);

    // Written on A, read on B: same resource, same ETag, list totals follow.
    let created = send_json(
        "POST",
        &format!("{}/Users", Cluster::scim(a)),
        &[("authorization", &auth_a)],
        &json!({"schemas": [USER], "userName": "shared", "emails": [{"value": "shared@example.com"}]}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let read = get(
        &format!("{}/Users/{id}", Cluster::scim(b)),
        &[("authorization", &auth_a)],
    );
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["userName"], "shared");
    assert_eq!(read.header("etag"), created.header("etag"));
    let listed = get(
        &format!(
            "{}/Users?filter=emails.value%20eq%20%22SHARED@example.com%22",
            Cluster::scim(b)
        ),
        &[("authorization", &auth_b)],
    );
    assert_eq!(listed.json()["totalResults"], 1, "{}", listed.body);
    // userName stays unique across nodes, case-insensitively.
    let dup = send_json(
        "POST",
        &format!("{}/Users", Cluster::scim(b)),
        &[("authorization", &auth_b)],
        &json!({"schemas": [USER], "userName": "SHARED"}),
    );
    assert_eq!(dup.status, 409, "{}", dup.body);
    // B's remembered totals notice A's writes (the generation is shared).
    let count_b = |auth: &str| {
        get(
            &format!("{}/Users?count=0", Cluster::scim(b)),
            &[("authorization", auth)],
        )
        .json()["totalResults"]
            .clone()
    };
    assert_eq!(count_b(&auth_b), 1);
    let second = send_json(
        "POST",
        &format!("{}/Users", Cluster::scim(a)),
        &[("authorization", &auth_a)],
        &json!({"schemas": [USER], "userName": "second"}),
    );
    assert_eq!(second.status, 201);
    assert_eq!(count_b(&auth_b), 2);
    // A PATCH on B is seen on A with the version B assigned.
    let patched = send_json(
        "PATCH",
        &format!("{}/Users/{id}", Cluster::scim(b)),
        &[("authorization", &auth_b), ("if-match", "W/\"1\"")],
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "From B"}]}),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let on_a = get(
        &format!("{}/Users/{id}", Cluster::scim(a)),
        &[("authorization", &auth_a)],
    );
    assert_eq!(on_a.json()["displayName"], "From B");
    assert_eq!(on_a.header("etag"), Some("W/\"2\""));

    // A user deactivated through A is inactive through B: read, filtered
    // (B's remembered totals follow), and B refuses a write against the
    // version before the deactivation.
    let active_on_b = |value: bool| {
        let list = get(
            &format!(
                "{}/Users?filter={}",
                Cluster::scim(b),
                percent_encode(&format!("active eq {value}"))
            ),
            &[("authorization", &auth_b)],
        );
        assert_eq!(list.status, 200, "{}", list.body);
        list.json()["Resources"]
            .as_array()
            .expect("Resources")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };
    let second = second.json()["id"].as_str().expect("id").to_string();
    for (node, user) in [(a, &id), (b, &second)] {
        let activated = send_json(
            "PATCH",
            &format!("{}/Users/{user}", Cluster::scim(node)),
            &[("authorization", &auth_a)],
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": true}]}),
        );
        assert_eq!(activated.status, 200, "{}", activated.body);
    }
    assert_eq!(active_on_b(false), Vec::<String>::new());
    assert_eq!(active_on_b(true).len(), 2);
    let before = get(
        &format!("{}/Users/{id}", Cluster::scim(b)),
        &[("authorization", &auth_b)],
    );
    let stale = before.header("etag").expect("etag").to_string();
    let deactivated = send_json(
        "PATCH",
        &format!("{}/Users/{id}", Cluster::scim(a)),
        &[("authorization", &auth_a), ("if-match", &stale)],
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    );
    assert_eq!(deactivated.status, 200, "{}", deactivated.body);
    let seen = get(
        &format!("{}/Users/{id}", Cluster::scim(b)),
        &[("authorization", &auth_b)],
    );
    assert_eq!(seen.json()["active"], false, "{}", seen.body);
    assert_eq!(seen.header("etag"), deactivated.header("etag"));
    assert_ne!(seen.header("etag"), Some(stale.as_str()));
    assert_eq!(active_on_b(false), vec![id.clone()]);
    assert_eq!(active_on_b(true), vec![second.clone()]);
    let late = send_json(
        "PATCH",
        &format!("{}/Users/{id}", Cluster::scim(b)),
        &[("authorization", &auth_b), ("if-match", &stale)],
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": true}]}),
    );
    assert_eq!(late.status, 412, "{}", late.body);
    let still = get(
        &format!("{}/Users/{id}", Cluster::scim(a)),
        &[("authorization", &auth_a)],
    );
    assert_eq!(still.json()["active"], false, "{}", still.body);
}

/// Providers are configuration, not shared state: deactivating one takes
/// effect on each node when that node reloads, at its very next request,
/// whatever tokens (from either node) the caller holds.
#[test]
fn each_node_refuses_a_deactivated_provider_once_it_reloads_its_own_config() {
    let Some(cluster) = Cluster::start("reload") else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    let auth_a = bearer(&oim_token(a));
    let auth_b = bearer(&oim_token(b));
    let status_on = |node: &Server, auth: &str| {
        let reply = get(
            &format!("{}/Users?count=0", Cluster::scim(node)),
            &[("authorization", auth)],
        );
        if reply.status == 403 {
            assert!(reply.body.contains("inactive"), "{}", reply.body);
        }
        reply.status
    };
    let inactive = node_config(&cluster.key, &cluster.schema, false);
    let active = node_config(&cluster.key, &cluster.schema, true);

    // Only A reloaded: A refuses both nodes' tokens, B still serves them.
    a.reload_with(&inactive);
    for auth in [&auth_a, &auth_b] {
        assert_eq!(status_on(a, auth), 403);
        assert_eq!(status_on(b, auth), 200);
    }
    // Both reloaded: refused everywhere.
    b.reload_with(&inactive);
    for node in [a, b] {
        for auth in [&auth_a, &auth_b] {
            assert_eq!(status_on(node, auth), 403);
        }
    }
    // The reloads kept the store usable: reactivated, the same tokens work.
    a.reload_with(&active);
    b.reload_with(&active);
    for node in [a, b] {
        for auth in [&auth_a, &auth_b] {
            assert_eq!(status_on(node, auth), 200);
        }
    }
}

#[test]
fn concurrent_if_match_patches_over_two_nodes_win_once_per_version() {
    let Some(cluster) = Cluster::start("race") else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    let token = bearer(&oim_token(a));
    let auth = ("authorization", token.as_str());
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": (0..50).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"),
            "data": {"schemas": [USER], "userName": format!("racer{i:02}")}})).collect::<Vec<_>>()});
    let reply = send_json(
        "POST",
        &format!("{}/Bulk", Cluster::scim(a)),
        &[auth],
        &bulk,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let members: Vec<String> = reply.json()["Operations"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|op| {
            assert_eq!(op["status"], "201", "{op}");
            op["location"]
                .as_str()
                .and_then(|l| l.rsplit('/').next())
                .expect("id")
                .to_string()
        })
        .collect();
    let group = send_json(
        "POST",
        &format!("{}/Groups", Cluster::scim(b)),
        &[auth],
        &json!({"schemas": [GROUP], "displayName": "Racers"}),
    );
    assert_eq!(group.status, 201, "{}", group.body);
    let group = group.json()["id"].as_str().expect("id").to_string();

    let bases = [Cluster::scim(a), Cluster::scim(b)];
    let won = add_members_concurrently(&bases, auth, &group, &members);
    assert_one_win_per_version(&Cluster::scim(b), auth, &group, &members, won);
    // Both nodes see the same final group.
    let from_a = get(&format!("{}/Groups/{group}", Cluster::scim(a)), &[auth]);
    let from_b = get(&format!("{}/Groups/{group}", Cluster::scim(b)), &[auth]);
    assert_eq!(from_a.header("etag"), Some("W/\"51\""));
    assert_eq!(from_a.header("etag"), from_b.header("etag"));
    assert_eq!(
        cluster.schema.psql(&format!(
            "SELECT COUNT(*) FROM memberships WHERE group_id = '{group}'"
        )),
        "50"
    );
}
