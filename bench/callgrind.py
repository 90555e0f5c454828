#!/usr/bin/env python3
"""Instructions per operation, counted by valgrind's callgrind: deterministic where timings are not.

    python3 bench/callgrind.py [--requests N] [--passes N] [--skip-build] [--only lookup|ingest]

Prints user-space instructions (Ir) per operation:

- lookup: `GET /api/v1/users/:id` (plain, and with `Accept-Encoding: gzip`) and a 10-id bulk
  GET, served by the release `lantern` binary running under callgrind against the simulator
  (`lantern sim`), one shard. The server's counters are dumped (`callgrind_control --dump`)
  before and after each batch, so start-up and the member list are not counted; everything
  the server process does per request is (hyper, routing, the handler, glommio's reactor), the
  kernel is not. Each kind is counted twice: N keep-alive requests from one connection (one
  request per pass of the executor's loop, so the loop's own work per pass is all in it), and
  rounds of one request on each of 64 connections (sent together, then read), where a pass
  serves many requests as under load.
- the comparator: `lantern-loadtest hyper-hello` (hyper 1 on a tokio current-thread runtime
  serving fixed bodies) under callgrind, serving the same bodies lantern answered, counted the
  same way; the ratio is lantern's count over hyper-hello's.
- ingest: one PRESENCE_UPDATE decoded, applied and its user object rebuilt, averaged over the
  corpus of `bench/ingest.rs` (LANTERN_INGEST_PASSES=1 and =1+N, difference / (N x corpus)).

Needs valgrind (callgrind_control comes with it). Release builds: `cargo build --release
--bin lantern --bin lantern-loadtest` and `cargo bench --bench ingest --no-run` (skipped with
--skip-build).
"""

import argparse
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def totals(path):
    """The total Ir of one callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, deadline_s):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return r.read()
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered 200")


class Client:
    """One keep-alive HTTP/1.1 connection, reading each answer by its content-length."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path, headers=""):
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lantern\r\n{headers}\r\n".encode())
        return self.read_answer(path)

    def read_answer(self, path):
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        body, self.buf = self.buf[:n], self.buf[n:]
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return body


def rounds_on(port, conns, path, headers=""):
    """`conns` keep-alive connections and a function sending one request on each, all
    written before any answer is read (so the server finds them ready together)."""
    clients = [Client(port) for _ in range(conns)]
    request = f"GET {path} HTTP/1.1\r\nHost: lantern\r\n{headers}\r\n".encode()

    def one_round():
        for c in clients:
            c.sock.sendall(request)
        for c in clients:
            c.read_answer(path)

    return clients, one_round


class Counter:
    """Dumps the counters of a process running under callgrind, one numbered file a dump."""

    def __init__(self, pid, out):
        self.pid, self.out, self.dumps = pid, out, 0

    def dump(self):
        subprocess.run(["callgrind_control", "--dump", str(self.pid)], check=True, capture_output=True)
        self.dumps += 1
        # callgrind names the n-th dump <out>.<n>.
        path = f"{self.out}.{self.dumps}"
        end = time.time() + 30
        while not os.path.exists(path):
            if time.time() > end:
                raise RuntimeError(f"callgrind wrote no {path}")
            time.sleep(0.1)
        time.sleep(0.2)
        return totals(path)

    def per_request(self, port, path, headers, conns, requests):
        """Instructions per request over `requests` requests on `conns` connections."""
        clients, one_round = rounds_on(port, conns, path, headers)
        for _ in range(max(1, 200 // conns)):
            one_round()
        n = max(1, requests // conns)
        self.dump()
        for _ in range(n):
            one_round()
        per = self.dump() / (n * conns)
        for c in clients:
            c.sock.close()
        return per


def build(skip):
    if skip:
        return
    subprocess.run(["cargo", "build", "--release", "--bin", "lantern", "--bin", "lantern-loadtest"], cwd=ROOT, check=True)


def ingest_binary(skip):
    if not skip:
        subprocess.run(["cargo", "bench", "--bench", "ingest", "--no-run"], cwd=ROOT, check=True)
    found = [p for p in glob.glob(os.path.join(ROOT, "target/release/deps/ingest-*")) if os.access(p, os.X_OK) and not p.endswith(".d")]
    if not found:
        raise RuntimeError("no ingest bench binary in target/release/deps")
    return max(found, key=os.path.getmtime)


def count_ingest(binary, passes, tmp):
    irs = []
    events = []
    for n in (1, 1 + passes):
        out = os.path.join(tmp, f"ingest.{n}.out")
        env = dict(os.environ, LANTERN_INGEST_PASSES=str(n))
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary], env=env, capture_output=True, text=True, check=True)
        m = re.search(r"events (\d+)", r.stdout)
        events.append(int(m.group(1)))
        irs.append(totals(out))
    per = (irs[1] - irs[0]) / (events[1] - events[0])
    print(f"ingest: {per:,.0f} instructions per PRESENCE_UPDATE (decode + apply + rebuild, {events[1] - events[0]} events)")
    return per


def count_lookups(requests, tmp, lantern):
    gw, http = free_port(), free_port()
    sim = subprocess.Popen([lantern, "sim", "--members", "200", "--churn", "0", "--gateway-port", str(gw), "--http-port", str(http)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server = None
    try:
        info = {}
        while "guild" not in info:
            line = sim.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited")
            parts = line.split()
            info[parts[0]] = parts[1:]
        guild, app, token = info["guild"][0], info["guild"][2], info["guild"][4]
        members = json.loads(wait_http(f"http://127.0.0.1:{http}/_sim/members", 30))
        # The single lookup: the largest object among members online without a Spotify track
        # (whose elapsed time makes every second's object different), over the gzip
        # threshold like a typical 1.3 KB object; the bulk: ten others, whatever they do.
        def plain(m):
            p = m.get("presence")
            return p is not None and all(a.get("type") != 2 for a in p.get("activities", []))
        candidates = [str(m["member"]["user"]["id"]) for m in members if plain(m)][:40]
        others = [str(m["member"]["user"]["id"]) for m in members]
        port = free_port()
        data = os.path.join(tmp, "data")
        cfg = os.path.join(tmp, "lantern.toml")
        with open(cfg, "w") as f:
            f.write(f"base_guild_id = '{guild}'\napplication_id = '{app}'\n[server]\nhost = '127.0.0.1'\nport = {port}\nshards = 1\n"
                    f"[storage]\ndir = {data!r}\n[discord]\ngateway_url = 'ws://127.0.0.1:{gw}'\napi_url = 'http://127.0.0.1:{http}'\n"
                    f"cdn_url = 'http://127.0.0.1:{http}/cdn'\n[log]\nlevel = 'warn'\n")
        out = os.path.join(tmp, "lookup.out")
        env = dict(os.environ, DISCORD_BOT_TOKEN=token, KV_TOKEN_ENCRYPTION_SECRET="0123456789abcdef" * 4)
        env.pop("RUST_LOG", None)
        # Uncompressed names: each dump then reads on its own in callgrind_annotate (compressed
        # ones refer back to names defined in earlier dumps).
        server = subprocess.Popen(["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}", lantern, "serve", "--config", cfg],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Served once the member list is in.
        end = time.time() + 120
        while True:
            try:
                Client(port).get(f"/api/v1/users/{candidates[0]}")
                break
            except Exception:
                if time.time() > end or server.poll() is not None:
                    raise RuntimeError("lantern under callgrind never served the user")
                time.sleep(0.5)
        client = Client(port)
        sizes = {i: len(client.get(f"/api/v1/users/{i}")) for i in candidates}
        chosen = max(candidates, key=lambda i: sizes[i])
        print(f"lookup: user {chosen}, a {sizes[chosen]}-byte object")
        ids = [chosen] + [i for i in others if i != chosen][:10]
        one = f"/api/v1/users/{ids[0]}"
        bulk = "/api/v1/users?" + "&".join(f"user_ids={i}" for i in ids[1:11])
        phases = [("GET /api/v1/users/:id", one, "", 1), ("  with Accept-Encoding: gzip", one, "Accept-Encoding: gzip\r\n", 1),
                  ("GET /api/v1/users?user_ids= (10 ids)", bulk, "", 1),
                  ("GET /api/v1/users/:id", one, "", 64), ("GET /api/v1/users?user_ids= (10 ids)", bulk, "", 64)]
        counter = Counter(server.pid, out)
        results = []
        for label, path, headers, conns in phases:
            per = counter.per_request(port, path, headers, conns, requests)
            results.append((label, path, conns, per))
            how = "one keep-alive connection" if conns == 1 else f"{conns} connections, one request on each per round"
            print(f"lookup: {per:,.0f} instructions per request, {label} ({how})")
        bodies = {one: client.get(one).decode(), bulk: client.get(bulk).decode()}
        return results, bodies
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()


def count_hyper(binary, bodies, requests, tmp, phases):
    """The comparator: hyper-hello under callgrind serving `bodies`, counted like lantern."""
    out = os.path.join(tmp, "hyper.out")
    spec = json.dumps({"bodies": bodies})
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "hyper-hello"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdin.write(spec + "\n")
        server.stdin.flush()
        port = json.loads(server.stdout.readline())["port"]
        counter = Counter(server.pid, out)
        results = {}
        for label, path, conns in phases:
            per = counter.per_request(port, path, "", conns, requests)
            results[(path, conns)] = per
        return results
    finally:
        server.kill()
        server.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests per lookup batch")
    ap.add_argument("--passes", type=int, default=2, help="extra passes over the ingest corpus")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--only", choices=["lookup", "ingest"])
    ap.add_argument("--lantern", default=os.path.join(ROOT, "target/release/lantern"), help="the server binary to count")
    ap.add_argument("--ingest-bin", help="the ingest bench binary to count (default: the newest built)")
    ap.add_argument("--loadtest-bin", default=os.path.join(ROOT, "target/release/lantern-loadtest"), help="the binary whose hyper-hello is the comparator")
    ap.add_argument("--keep", help="keep callgrind's output files in this directory (for callgrind_annotate)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lantern-callgrind-") as tmp:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            tmp = args.keep
        if args.only != "ingest":
            build(args.skip_build)
            results, bodies = count_lookups(args.requests, tmp, args.lantern)
            plain = [(label, path, conns) for label, path, conns, _ in results if "gzip" not in label]
            hyper = count_hyper(args.loadtest_bin, bodies, args.requests, tmp, plain)
            for label, path, conns, per in results:
                if "gzip" not in label and (path, conns) in hyper:
                    h = hyper[(path, conns)]
                    print(f"comparator: {label.strip()}, {conns} connection(s): lantern {per:,.0f}, hyper-hello {h:,.0f} instructions per request ({per / h:.2f}x)")
        if args.only != "lookup":
            count_ingest(args.ingest_bin or ingest_binary(args.skip_build), args.passes, tmp)


if __name__ == "__main__":
    sys.exit(main())
