//! The web page at `/` and its live numbers (`/page/state`), against the real server (2 shards)
//! and the simulator, over real TCP. What a browser does with the page is checked in headless
//! Chromium by `.ci/page-browser`.

mod support;

use lantern::discord::{ClientStatus, PartialUser, Presence, Status};
use lantern::sim::SimConfig;
use support::raw_ws::RawWs;
use support::{wait_for, Env, DEADLINE};

const CHROMIUM_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn env() -> Env {
    Env::start(SimConfig { members: 30, seed: 11, heartbeat_interval_ms: 1000, ..SimConfig::default() }, 2)
}

fn info_json(members: usize) -> String {
    format!(
        r#"{{"data":{{"info":"Lantern provides Discord presences as an API and WebSocket. Find out more here: https://github.com/discordplace/lantern","discord_invite":"https://invite.lantern.rest","currently_monitoring_users":{members}}}}}"#
    )
}

#[test]
fn curl_and_json_clients_still_get_the_info_json_on_root() {
    let env = env();
    let want = info_json(env.sim.members().len());
    for accept in [None, Some("*/*"), Some("application/json"), Some("application/json, text/html"), Some("text/html;q=0.1, application/json")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let r = env.request("GET", "/", &headers, b"");
        assert_eq!(r.status, 200, "{accept:?}");
        assert_eq!(r.text(), want, "{accept:?}");
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"), "{accept:?}");
        assert_eq!(r.header("content-security-policy"), None);
    }
}

#[test]
fn a_browser_gets_the_page_under_a_strict_csp_and_its_files_from_this_server() {
    let env = env();
    let r = env.request("GET", "/", &[("Accept", CHROMIUM_ACCEPT)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("vary"), Some("Accept"));
    let html = r.text();
    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"), "{html:.80}");
    assert!(html.contains(r#"<script src="/page/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/page/app.css">"#));
    // No inline script or style (the CSP would block them), nothing from another origin.
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let v = &html[i + attr.len()..];
            assert!(v.starts_with('/') || v.starts_with('#'), "off-origin {attr}{:.60}", v);
        }
    }
    for (path, ty) in [("/page/app.js", "text/javascript; charset=utf-8"), ("/page/app.css", "text/css; charset=utf-8"), ("/page/icon.svg", "image/svg+xml; charset=utf-8")] {
        let a = env.get(path);
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(ty), "{path}");
        assert_eq!(a.header("content-security-policy"), Some(CSP), "{path}");
        assert!(!a.body.is_empty());
    }
    let js = env.get("/page/app.js").text();
    assert!(!js.contains("http://") && !js.contains("https://discord.com/api"), "the script talks to this server only");
    let missing = env.get("/page/nope.js");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), serde_json::json!({"success": false, "error": "Resource not found.", "code": "not_found"}));
    // HEAD works as GET; other methods are refused.
    assert_eq!(env.request("HEAD", "/page/app.css", &[], b"").status, 200);
    assert_eq!(env.request("POST", "/page/state", &[], b"").status, 405);
}

#[test]
fn page_state_sums_users_sockets_and_updates_over_every_shard() {
    let env = env();
    let state = || env.get("/page/state").json();
    let s = state();
    let members = env.sim.members().len() as u64;
    assert_eq!(s["gateway"], "connected");
    assert_eq!(s["members_loaded"], true);
    assert_eq!(s["monitored_users"], members);
    assert_eq!(s["shards"], serde_json::json!({"total": 2, "up": 2}));
    assert_eq!(s["socket_connections"], 0);
    assert!(s["updates_per_second"].is_number() && s["updates_total"].is_u64());
    assert_eq!(env.get("/page/state").header("cache-control"), Some("no-store"));
    // Sockets from one address are counted on its home shard; the sum covers them all.
    let sockets: Vec<RawWs> = (0..3).map(|_| RawWs::connect(env.port)).collect();
    assert!(wait_for(DEADLINE, || state()["socket_connections"] == 3), "{}", state());
    drop(sockets);
    assert!(wait_for(DEADLINE, || state()["socket_connections"] == 0), "{}", state());
    // Presence changes are counted, on whichever shard owns each user.
    let before = state()["updates_total"].as_u64().unwrap();
    let ids: Vec<_> = env.sim.members().iter().filter(|(m, _)| !m.user.bot).map(|(m, _)| m.user.id).take(6).collect();
    for (i, id) in ids.iter().enumerate() {
        let status = if i % 2 == 0 { Status::Dnd } else { Status::Idle };
        env.sim.set_presence(Presence {
            user: PartialUser { id: *id, ..Default::default() },
            status,
            client_status: ClientStatus { web: Some(status), ..Default::default() },
            ..Default::default()
        });
    }
    assert!(wait_for(DEADLINE, || state()["updates_total"].as_u64().unwrap() >= before + 6), "{}", state());
    assert!(wait_for(DEADLINE, || state()["updates_per_second"].as_f64().unwrap() > 0.0), "{}", state());
}
