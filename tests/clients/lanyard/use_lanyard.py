"""Drives use-lanyard 1.7.0 (the page in this folder, bundled with esbuild) in headless Chromium
(Debian's, through Playwright's executable_path), for tests/lanyard_clients.rs.

    python use_lanyard.py MODE HOST USER_ID       MODE: ws or rest; HOST: 127.0.0.1:PORT

Prints {"step":"shown",...} once the page shows the user's presence, then reads one line from
stdin: the status the presence now has (the test changed it in the simulator); prints
{"step":"updated",...} once the page shows it (the ws page by itself, the rest page after
revalidating), and {"step":"console",...} with every console error and failed request.
"""
import functools
import http.server
import json
import os
import shutil
import sys
import threading
import time

from playwright.sync_api import sync_playwright

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def chromium():
    for candidate in (os.environ.get("LANTERN_CHROMIUM"), "chromium", "chromium-headless-shell"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    sys.exit("no chromium found")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_page():
    handler = functools.partial(Quiet, directory=HERE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def shown(page):
    status = page.get_attribute("#status", "data-status")
    text = page.text_content("#presence")
    return status, (json.loads(text) if text else None)


def main():
    mode, host, user = sys.argv[1:4]
    port = serve_page()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url} {r.failure}"))
        page.goto(f"http://127.0.0.1:{port}/index.html?mode={mode}&id={user}&host={host}")
        page.wait_for_function("document.querySelector('#status') && document.querySelector('#status').dataset.status !== 'loading'", timeout=15000)
        status, data = shown(page)
        emit("shown", status=status, data=data)
        want = sys.stdin.readline().strip()
        deadline = time.monotonic() + 15
        while True:
            if mode == "rest":
                page.click("#revalidate")
            status, data = shown(page)
            if status == want or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        emit("updated", status=status, data=data)
        emit("console", problems=problems)
        browser.close()


if __name__ == "__main__":
    main()
