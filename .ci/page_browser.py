"""Drives lantern's web page in headless Chromium (see .ci/page-browser)."""
import argparse
import json
import sys
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000
# Predicates are passed as functions: a bare expression would be run through eval(), which the
# page's CSP (rightly) refuses.


def fail(msg):
    print(f"page-browser: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("content-type"), r.read()


def watch(page, base, problems):
    origin = urllib.parse.urlsplit(base)
    ws_origin = ("ws", origin.netloc)

    def on_console(msg):
        if msg.type == "error":
            problems.append(f"console error: {msg.text}")

    def on_request(req):
        u = urllib.parse.urlsplit(req.url)
        if u.scheme in ("data", "blob"):
            return
        if (u.scheme, u.netloc) != (origin.scheme, origin.netloc):
            problems.append(f"request off the origin: {req.url}")

    def on_ws(ws):
        u = urllib.parse.urlsplit(ws.url)
        if (u.scheme, u.netloc) != ws_origin:
            problems.append(f"websocket off the origin: {ws.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", on_request)
    page.on("websocket", on_ws)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base, user = a.base.rstrip("/"), a.user

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        problems = []

        # 1. Load, live numbers, lookup, an injected presence change, the configurator.
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        watch(page, base, problems)
        resp = page.goto(base + "/")
        if resp is None or resp.status != 200 or not resp.headers.get("content-type", "").startswith("text/html"):
            fail(f"/ did not answer the page: {resp and resp.status} {resp and resp.headers}")
        if "script-src 'self'" not in resp.headers.get("content-security-policy", ""):
            fail("no strict CSP on the page")
        page.wait_for_function("() => document.getElementById('live').textContent === 'live'")
        page.wait_for_function("() => /^[0-9,]+$/.test(document.getElementById('s-users').textContent)")
        print("page: loaded, server state live:", page.inner_text("#s-users"), "users,", page.inner_text("#s-rate"), "updates/s")

        page.fill("#user-id", user)
        page.click("#lookup-form button[type=submit]")
        page.wait_for_function("() => document.getElementById('p-name').textContent.includes('@')")
        print("page: lookup shows", page.inner_text("#p-name"))
        marker = "Injected by the browser test"
        post(a.sim + "presence", {
            "user": {"id": user}, "status": "dnd", "client_status": {"desktop": "dnd"},
            "activities": [{"name": marker, "type": 0, "details": "no reload needed"}],
        })
        page.wait_for_function(f"() => document.getElementById('p-activities').textContent.includes({json.dumps(marker)})")
        if page.inner_text("#p-status") != "dnd":
            fail("status did not follow the injected presence")
        page.click("#presence summary")
        raw = json.loads(page.inner_text("#p-json"))
        if raw["status"] != "dnd" or raw["activities"][0]["name"] != marker:
            fail(f"raw JSON is not the live user object: {raw}")
        print("page: injected presence change shown live, raw JSON matches")

        # The configurator: change parameters, the previews follow, the snippet's URL answers
        # the previewed card.
        page.select_option("#card-form select[name=theme]", "light")
        page.fill("#card-form input[name=maxActivities]", "2")
        page.check("#card-form input[name=hideBadges]")
        page.select_option("#card-form select[name=format]", "png")
        page.wait_for_function("() => document.getElementById('prev-png').complete && document.getElementById('prev-png').naturalWidth === 1200")
        page.wait_for_function("() => document.getElementById('prev-svg').complete && document.getElementById('prev-svg').naturalWidth === 600")
        md = page.input_value("#snip-md")
        url = md.split("](", 1)[1].split(")", 1)[0]
        png_src = page.get_attribute("#prev-png", "src")
        if urllib.parse.urljoin(base + "/", png_src) != url:
            fail(f"the snippet's URL {url} is not the PNG preview's {png_src}")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        if q != {"format": ["png"], "theme": ["light"], "maxActivities": ["2"], "hideBadges": ["1"]}:
            fail(f"snippet query: {q}")
        # What the page previews (fetched by the page) and what the snippet's URL answers
        # (fetched from outside) are the same card, byte for byte. A card showing a clock may
        # move to the next clock step between the two fetches: then both are fetched again.
        for attempt in range(3):
            shown = page.evaluate("""async (src) => {
                const r = await fetch(src);
                const b = new Uint8Array(await r.arrayBuffer());
                let s = ''; for (const x of b) s += String.fromCharCode(x);
                return [r.status, r.headers.get('content-type'), btoa(s)];
            }""", png_src)
            status, ty, body = get(url)
            if shown[0] != 200 or shown[1] != "image/png" or status != 200 or ty != "image/png":
                fail(f"snippet URL answered {status} {ty}, preview {shown[:2]}")
            if __import__("base64").b64decode(shown[2]) == body:
                break
        else:
            fail("the snippet's URL answers another card than the preview shows")
        html = page.input_value("#snip-html")
        if f'<img src="{url.replace("&", "&amp;")}"' not in html:
            fail(f"HTML snippet does not embed the card: {html}")
        page.click("button[data-copy=snip-md]")
        page.wait_for_function("() => document.getElementById('copy-status').textContent === 'Copied.'")
        print(f"page: configurator snippet {url} answers the previewed card ({len(body)} bytes PNG)")
        ctx.close()

        # 2. Screenshots: desktop and phone, light and dark, of a user with several activities.
        now = int(__import__("time").time() * 1000)
        post(a.sim + "presence", {
            "user": {"id": user}, "status": "online", "client_status": {"desktop": "online"},
            "activities": [
                {"name": "Custom Status", "type": 4, "state": "shipping the card", "emoji": {"name": "\U0001F389"}},
                {"name": "Factorio", "type": 0, "details": "Freeplay", "state": "Launching rockets", "timestamps": {"start": now - 3_905_000}},
                {"name": "Spotify", "type": 2, "details": "Get Lucky", "state": "Daft Punk; Pharrell Williams",
                 "timestamps": {"start": now - 95_000, "end": now + 154_000}, "sync_id": "69kOkLUCkxIZYexIgSG8rq",
                 "assets": {"large_image": "spotify:ab67616d0000b2739b9b36b0e22870b9f542d937", "large_text": "Random Access Memories"}},
                {"name": "Twitch", "type": 1, "url": "https://www.twitch.tv/lantern_live", "details": "Building a presence card live",
                 "state": "Software and Game Development", "assets": {"large_image": "twitch:lantern_live"}},
            ],
        })
        for name, viewport, mobile in [("desktop", {"width": 1280, "height": 900}, False), ("phone", {"width": 390, "height": 844}, True)]:
            for scheme in ["light", "dark"]:
                ctx = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile, color_scheme=scheme, device_scale_factor=1)
                page = ctx.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                watch(page, base, problems)
                page.goto(f"{base}/#user={user}")
                page.wait_for_function("() => document.getElementById('live').textContent === 'live'")
                page.wait_for_function("() => document.getElementById('p-activities').textContent.includes('Get Lucky')")
                # This page's own socket is counted in the server's numbers.
                page.wait_for_function("() => Number(document.getElementById('s-sockets').textContent) >= 1")
                page.fill("#card-form input[name=maxActivities]", "3")
                page.wait_for_function("() => document.getElementById('prev-svg').complete && document.getElementById('prev-svg').naturalWidth > 0 && document.getElementById('prev-png').complete && document.getElementById('prev-png').naturalWidth > 0")
                bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
                want = "rgb(17, 17, 20)" if scheme == "dark" else "rgb(244, 244, 246)"
                if bg != want:
                    fail(f"{name}/{scheme}: background {bg}, expected {want}")
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > viewport["width"]:
                    fail(f"{name}/{scheme}: the page scrolls sideways ({width} px)")
                shot = f"{a.out}/page-{name}-{scheme}.png"
                page.screenshot(path=shot, full_page=True)
                print(f"page: screenshot {shot}")
                ctx.close()
        browser.close()
        if problems:
            fail("\n  ".join(problems))
    print("page-browser: 0 problems")


if __name__ == "__main__":
    main()
