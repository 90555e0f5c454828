"""A permessage-deflate client for tests/socket_clients.rs: headless Chromium driven by
Playwright (PyPI) with the system's browser (`executable_path`, since no browser is downloaded).
Chromium offers `permessage-deflate; client_max_window_bits` and compresses what it sends.
Prints `EXTENSIONS <ws.extensions>` and `READY` once INIT_ACK arrived, then the first
PRESENCE_UPDATE's JSON as `UPDATE <json>`. Args: PORT USER_ID; the browser is $CHROMIUM_PATH."""

import json
import os
import sys

from playwright.sync_api import sync_playwright

port, user_id, browser_path = int(sys.argv[1]), sys.argv[2], os.environ["CHROMIUM_PATH"]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.on("console", lambda m: print("console:", m.text, file=sys.stderr, flush=True))
    # A page of the server itself: loopback to loopback passes Local Network Access checks.
    page.goto(f"http://127.0.0.1:{port}/health")
    page.evaluate(
        """([port, userId]) => new Promise((resolve, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`);
            window.lanternWs = ws;
            window.lanternUpdates = [];
            ws.onerror = () => reject(new Error("websocket error"));
            ws.onmessage = (ev) => {
                const msg = JSON.parse(ev.data);
                if (msg.op === 1) ws.send(JSON.stringify({op: 2, d: {user_id: userId}}));
                else if (msg.t === "INIT_ACK") resolve();
                else if (msg.t === "PRESENCE_UPDATE") window.lanternUpdates.push(msg);
            };
        })""",
        [port, user_id],
    )
    print("EXTENSIONS", page.evaluate("window.lanternWs.extensions"), flush=True)
    print("READY", flush=True)
    page.wait_for_function("window.lanternUpdates.length > 0", timeout=30000)
    print("UPDATE", json.dumps(page.evaluate("window.lanternUpdates[0]")), flush=True)
    browser.close()
