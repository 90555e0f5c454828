//! `/openapi.json` is kept true: live responses of every documented operation, successes and
//! errors, validate against the document (its statuses, media types and JSON schemas), and
//! every operation in it is exercised. The schemas are checked by `tests/openapi/check.py` with
//! Python's `jsonschema` (Draft 2020-12, the dialect of OpenAPI 3.1); `LANTERN_PYTHON` names the
//! interpreter (default `python3`). Without `jsonschema` the test says so and passes, except
//! under CI (`CI` set), where it fails.

mod support;

use lantern::discord::Snowflake;
use lantern::sim::SimConfig;
use serde_json::{json, Value};
use support::kv::{create_token, value_body};
use support::{Env, Resp};

/// `auth` with a JSON content type.
fn json_body<'a>(auth: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = auth.to_vec();
    h.push(("Content-Type", "application/json"));
    h
}

fn python() -> String {
    std::env::var("LANTERN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_jsonschema() -> bool {
    std::process::Command::new(python()).args(["-c", "import jsonschema"]).output().is_ok_and(|o| o.status.success())
}

struct Recorder<'a> {
    env: &'a Env,
    records: Vec<Value>,
}

impl Recorder<'_> {
    /// Sends a request and records its answer under the document's path `template`.
    fn call(&mut self, method: &str, template: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let r = self.env.request(method, path, headers, body);
        let content_type = r.header("content-type").map(str::to_owned);
        let parsed = match content_type.as_deref() {
            Some(t) if t.starts_with("application/json") => {
                Some(serde_json::from_slice::<Value>(&r.body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text())))
            }
            _ => None,
        };
        self.records.push(json!({"method": method, "path": template, "status": r.status, "content_type": content_type, "body": parsed}));
        r
    }
}

#[test]
fn live_responses_of_every_route_validate_against_the_openapi_document() {
    if !has_jsonschema() {
        assert!(std::env::var_os("CI").is_none(), "CI needs Python's jsonschema for this test (LANTERN_PYTHON={})", python());
        eprintln!("SKIPPED: {} has no jsonschema module (pip install jsonschema, or set LANTERN_PYTHON)", python());
        return;
    }
    let env = Env::start(SimConfig { members: 60, seed: 5, ..SimConfig::default() }, 2);
    let members: Vec<Snowflake> = env.sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != env.sim.application_id()).collect();
    let a = members[0].to_string();
    let b = members[1].to_string();
    let unknown = "1300000000000000999";
    let mut r = Recorder { env: &env, records: Vec::new() };

    assert_eq!(r.call("GET", "/", "/", &[], b"").status, 200);
    assert_eq!(r.call("GET", "/health", "/health", &[], b"").status, 200);
    assert_eq!(r.call("GET", "/socket", "/socket", &[], b"").status, 400);
    assert_eq!(r.call("GET", "/openapi.json", "/openapi.json", &[], b"").status, 200);
    assert_eq!(r.call("GET", "/docs", "/docs", &[], b"").status, 200);
    assert_eq!(r.call("GET", "/metrics", "/metrics", &[], b"").status, 200);
    assert_eq!(r.call("POST", "/api/v1/github_auto_deploy", "/api/v1/github_auto_deploy", &[], b"{}").status, 404);

    // Users: every member in bulk (all the presence shapes the simulator makes), one by one,
    // the card, and each error.
    let users = "/api/v1/users";
    for chunk in members.chunks(50) {
        let q: Vec<String> = chunk.iter().map(|id| format!("user_ids={id}")).collect();
        assert_eq!(r.call("GET", users, &format!("{users}?{}", q.join("&")), &[], b"").status, 200);
    }
    assert_eq!(r.call("GET", users, &format!("{users}?user_ids={a},{b}"), &[], b"").status, 200);
    assert_eq!(r.call("GET", users, users, &[], b"").status, 400);
    assert_eq!(r.call("GET", users, &format!("{users}?user_ids=12"), &[], b"").status, 400);
    assert_eq!(r.call("GET", users, &format!("{users}?user_ids={a}&user_ids={a}"), &[], b"").status, 400);
    assert_eq!(r.call("GET", users, &format!("{users}?user_ids={unknown}"), &[], b"").status, 404);
    let user = "/api/v1/users/{user_id}";
    for id in &members {
        assert_eq!(r.call("GET", user, &format!("{users}/{id}"), &[], b"").status, 200);
    }
    let card = r.call("GET", user, &format!("{users}/{a}?svg=1&theme=light"), &[], b"");
    assert_eq!(card.status, 200);
    let etag = card.header("etag").expect("a card has an ETag").to_owned();
    assert_eq!(r.call("GET", user, &format!("{users}/{a}?svg=1&theme=light"), &[("If-None-Match", &etag)], b"").status, 304);
    assert_eq!(r.call("GET", user, &format!("{users}/{a}?format=png"), &[], b"").status, 200);
    assert_eq!(r.call("GET", user, &format!("{users}/{a}?format=json"), &[], b"").status, 200);
    assert_eq!(r.call("GET", user, &format!("{users}/0{a}"), &[], b"").status, 400);
    assert_eq!(r.call("GET", user, &format!("{users}/{a}?theme=blue"), &[], b"").status, 400);
    assert_eq!(r.call("GET", user, &format!("{users}/{unknown}"), &[], b"").status, 404);
    assert_eq!(r.call("GET", user, &format!("{users}/{unknown}?svg=1"), &[], b"").status, 404);
    assert_eq!(r.call("GET", user, &format!("{users}/{unknown}?format=png"), &[], b"").status, 404);

    // Storage: writes with and without the token, reads, limits.
    let token = create_token(&env.sim, members[0]);
    let auth = [("Authorization", token.as_str())];
    let store = "/api/v1/users/{user_id}/storage";
    let key = "/api/v1/users/{user_id}/storage/{key}";
    let k = |id: &str, key: &str| format!("{users}/{id}/storage/{key}");
    assert_eq!(r.call("PUT", key, &k(&a, "color"), &auth, &value_body("blue")).status, 200);
    assert_eq!(r.call("PUT", key, &k(&a, "color"), &[], &value_body("blue")).status, 401);
    assert_eq!(r.call("PUT", key, &k(&a, "color"), &auth, b"{not json").status, 400);
    assert_eq!(r.call("PUT", key, &k(&a, "bad-key"), &auth, &value_body("x")).status, 400);
    assert_eq!(r.call("PUT", key, &k(&unknown, "color"), &auth, &value_body("x")).status, 401);
    let big = vec![b' '; 400 * 1024];
    assert_eq!(r.call("PUT", key, &k(&a, "color"), &auth, &big).status, 413);
    assert_eq!(r.call("PATCH", key, &k(&a, "color"), &auth, &value_body("red")).status, 200);
    assert_eq!(r.call("PATCH", key, &k(&a, "nothere"), &auth, &value_body("red")).status, 404);
    assert_eq!(r.call("PATCH", key, &k(&a, "color"), &[], &value_body("red")).status, 401);
    assert_eq!(r.call("GET", key, &k(&a, "color"), &[], b"").status, 200);
    assert_eq!(r.call("GET", key, &k(&a, "nothere"), &[], b"").status, 404);
    assert_eq!(r.call("GET", key, &k(&b, "color"), &[], b"").status, 404);
    assert_eq!(r.call("GET", key, &k(&a, "a.b"), &[], b"").status, 400);
    assert_eq!(r.call("GET", store, &format!("{users}/{a}/storage"), &[], b"").status, 200);
    assert_eq!(r.call("GET", user, &format!("{users}/{a}"), &[], b"").status, 200);
    assert_eq!(r.call("GET", store, &format!("{users}/{b}/storage"), &[], b"").status, 404);
    assert_eq!(r.call("GET", store, &format!("{users}/{unknown}/storage"), &[], b"").status, 404);
    assert_eq!(r.call("GET", store, &format!("{users}/12/storage"), &[], b"").status, 400);
    assert_eq!(r.call("DELETE", key, &k(&a, "color"), &auth, b"").status, 200);
    assert_eq!(r.call("DELETE", key, &k(&a, "color"), &auth, b"").status, 404);
    assert_eq!(r.call("DELETE", key, &k(&a, "color"), &[], b"").status, 401);
    assert_eq!(r.call("DELETE", store, &format!("{users}/{a}/storage"), &[], b"").status, 401);
    assert_eq!(r.call("DELETE", store, &format!("{users}/{a}/storage"), &auth, b"").status, 200);

    // Privacy: the token holder's settings, every error, and a public storage read refused
    // while the member hides their map.
    let privacy = "/api/v1/users/{user_id}/privacy";
    let pv = |id: &str| format!("{users}/{id}/privacy");
    let b_token = create_token(&env.sim, members[1]);
    assert_eq!(r.call("GET", privacy, &pv(&a), &auth, b"").status, 200);
    assert_eq!(r.call("GET", privacy, &pv(&a), &[], b"").status, 401);
    assert_eq!(r.call("GET", privacy, &pv(&a), &[("Authorization", b_token.as_str())], b"").status, 403);
    assert_eq!(r.call("GET", privacy, &pv("12"), &auth, b"").status, 400);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &json_body(&auth), br#"{"hide_kv":true,"hidden_activity_types":["playing"]}"#).status, 200);
    assert_eq!(r.call("GET", store, &format!("{users}/{a}/storage"), &[], b"").status, 401);
    assert_eq!(r.call("GET", key, &k(&a, "color"), &[], b"").status, 401);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &json_body(&auth), br#"{"hide_kv":"yes"}"#).status, 400);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &[], b"{}").status, 401);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &[("Authorization", b_token.as_str())], b"{}").status, 403);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &auth, &vec![b' '; 20 * 1024]).status, 413);
    assert_eq!(r.call("PATCH", privacy, &pv(&a), &json_body(&auth), br#"{"hidden_applications":["1100000000000000001"],"hide_kv":false}"#).status, 200);
    assert_eq!(r.call("PATCH", privacy, &pv(&a), &json_body(&auth), b"{oops").status, 400);
    assert_eq!(r.call("PATCH", privacy, &pv(&a), &[], b"{}").status, 401);
    assert_eq!(r.call("PATCH", privacy, &pv(&a), &[("Authorization", b_token.as_str())], b"{}").status, 403);
    assert_eq!(r.call("PATCH", privacy, &pv(&a), &auth, &vec![b' '; 20 * 1024]).status, 413);
    assert_eq!(r.call("PUT", privacy, &pv(&a), &json_body(&auth), b"{}").status, 200);

    // The Lanyard dialect: presences, `@me`, the KV routes and quicklinks; the page's numbers.
    let ly = "/v1/users/{user_id}";
    for id in &members {
        assert_eq!(r.call("GET", ly, &format!("/v1/users/{id}"), &[], b"").status, 200);
    }
    assert_eq!(r.call("GET", ly, &format!("/v1/users/{unknown}"), &[], b"").status, 404);
    assert_eq!(r.call("GET", ly, "/v1/users/abc", &[], b"").status, 404);
    let me = "/v1/users/@me";
    assert_eq!(r.call("GET", me, me, &auth, b"").status, 200);
    assert_eq!(r.call("GET", me, me, &[], b"").status, 401);
    let lkv = "/v1/users/{user_id}/kv/{key}";
    let text = [auth[0], ("Content-Type", "text/plain")];
    assert_eq!(r.call("PUT", lkv, &format!("/v1/users/{a}/kv/fav_song"), &text, b"Take On Me").status, 204);
    assert_eq!(r.call("PUT", lkv, &format!("/v1/users/{a}/kv/bad-key"), &text, b"x").status, 400);
    assert_eq!(r.call("PUT", lkv, &format!("/v1/users/{b}/kv/x"), &text, b"x").status, 401);
    assert_eq!(r.call("PUT", lkv, &format!("/v1/users/{a}/kv/x"), &text, &vec![b'x'; 130_000]).status, 413);
    assert_eq!(r.call("DELETE", lkv, "/v1/users/@me/kv/fav_song", &auth, b"").status, 204);
    assert_eq!(r.call("DELETE", lkv, &format!("/v1/users/{a}/kv/x"), &[], b"").status, 401);
    let merge = "/v1/users/{user_id}/kv";
    let json_auth = [auth[0], ("Content-Type", "application/json")];
    assert_eq!(r.call("PATCH", merge, &format!("/v1/users/{a}/kv"), &json_auth, br#"{"a":"1"}"#).status, 204);
    assert_eq!(r.call("PATCH", merge, &format!("/v1/users/{a}/kv"), &json_auth, br#"{"a":1}"#).status, 400);
    assert_eq!(r.call("PATCH", merge, &format!("/v1/users/{a}/kv"), &[], br#"{"a":"1"}"#).status, 401);
    let avatar = "/{avatar}";
    assert_eq!(r.call("GET", avatar, &format!("/{a}.png"), &[], b"").status, 200);
    assert_eq!(r.call("GET", avatar, &format!("/{unknown}.webp"), &[], b"").status, 404);
    assert_eq!(r.call("GET", "/page/state", "/page/state", &[], b"").status, 200);

    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.json");
    std::fs::write(&records, serde_json::to_vec(&r.records).unwrap()).unwrap();
    let doc = dir.path().join("openapi.json");
    std::fs::write(&doc, lantern::http::openapi::DOCUMENT).unwrap();
    let out = std::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi/check.py"))
        .arg(&doc)
        .arg(&records)
        .output()
        .expect("the checker runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "responses that do not match the document:\n{text}");
    eprintln!("{text}");
}

#[test]
fn the_served_document_is_the_committed_one_and_docs_is_self_contained() {
    let env = Env::start(SimConfig { members: 5, ..SimConfig::default() }, 1);
    let doc = env.get("/openapi.json");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(doc.body, lantern::http::openapi::DOCUMENT.as_bytes());
    assert_eq!(doc.json()["openapi"], "3.1.0");
    let page = env.get("/docs");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = page.text();
    assert!(html.contains("fetch(\"/openapi.json\")"), "the page renders the served document");
    // Nothing from elsewhere: no external script, stylesheet, font or image.
    for needle in ["http://", "https://", "<link", "src="] {
        assert!(!html.contains(needle), "/docs refers to something outside the server: {needle}");
    }
}
