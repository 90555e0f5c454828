//! Per-shard counters for `/metrics`, summed at scrape time.
//!
//! Each shard owns one [`ShardMetrics`] inside its own `Shard` value: only that shard's thread
//! touches it (plain `Cell`s and `RefCell`s, no atomics), so counting costs no shared cache line
//! on the hot path. A scrape asks every shard for a [`Snapshot`] through its mailbox
//! (`invoke_on_all`), adds them up ([`Snapshot::merge`]) and writes the sum in the Prometheus
//! text format 0.0.4 ([`Snapshot::encode`]).
//!
//! The format is written here, not with `prometheus-client`: that crate (0.24) writes only
//! OpenMetrics text, whose counter families (`# TYPE x counter` over `x_total` samples) the
//! `promtool check metrics` lint rejects, and the totals are built fresh from snapshots at each
//! scrape, so a library's atomic metric types would only be one more copy.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets; a last `+Inf` bucket follows.
pub const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of the group-commit size histogram (batches per commit); a last `+Inf` follows.
pub const GROUP_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Upper bounds of the fan-out size histogram (subscribers one change was delivered to on one
/// shard: Lanyard's buckets); a last `+Inf` follows.
pub const FANOUT_BUCKETS: [f64; 11] = [0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Counters bumped where the code has no handle on its `Shard` (a connection's outbox, the
/// subscriber table, the card's image fetcher): thread-locals of the shard's executor thread,
/// so each shard still counts in its own memory (plain cells, no atomics, no shared cache
/// line), and a shard's [`ShardMetrics::snapshot`], which runs on that thread, reads them.
pub mod local {
    use super::FANOUT_BUCKETS;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    /// This thread's counters.
    #[derive(Debug, Default)]
    pub struct Local {
        frames_out: Cell<u64>,
        frames_in: Cell<u64>,
        /// (closed by the server, close code) → closes.
        closes: RefCell<BTreeMap<(bool, u16), u64>>,
        fanout: RefCell<([u64; FANOUT_BUCKETS.len() + 1], u64)>,
        /// (series, label value) → count, as [`super::ShardMetrics::count`].
        counts: RefCell<BTreeMap<(&'static str, &'static str), u64>>,
    }

    thread_local! {
        static LOCAL: Local = Local::default();
    }

    /// `n` WebSocket frames sent (queued or written) to a client.
    pub fn frames_out(n: u64) {
        LOCAL.with(|l| l.frames_out.set(l.frames_out.get() + n));
    }

    /// One WebSocket frame (a message: text, binary, ping, pong or close) read from a client.
    pub fn frame_in() {
        LOCAL.with(|l| l.frames_in.set(l.frames_in.get() + 1));
    }

    /// A WebSocket close with `code`: begun by the server (`true`) or by the client.
    pub fn close(by_server: bool, code: u16) {
        LOCAL.with(|l| *l.closes.borrow_mut().entry((by_server, code)).or_insert(0) += 1);
    }

    /// One change delivered to `n` subscribers of this shard.
    pub fn fanout(n: usize) {
        LOCAL.with(|l| {
            let mut f = l.fanout.borrow_mut();
            let i = FANOUT_BUCKETS.iter().position(|&b| n as f64 <= b).unwrap_or(FANOUT_BUCKETS.len());
            f.0[i] += 1;
            f.1 += n as u64;
        });
    }

    /// Adds one to `series` (one of [`super::series`]) with label value `value`.
    pub fn count(series: &'static str, value: &'static str) {
        LOCAL.with(|l| *l.counts.borrow_mut().entry((series, value)).or_insert(0) += 1);
    }

    pub(super) fn read(s: &mut super::Snapshot) {
        LOCAL.with(|l| {
            for (k, v) in l.counts.borrow().iter() {
                *s.counts.entry(*k).or_insert(0) += v;
            }
            s.frames_out = l.frames_out.get();
            s.frames_in = l.frames_in.get();
            s.closes = l.closes.borrow().clone();
            let f = l.fanout.borrow();
            s.fanout = f.0;
            s.fanout_sum = f.1;
        });
    }
}

/// Dispatch types `lantern_gateway_events_total` names; any other counts as `other`.
pub const GATEWAY_EVENT_TYPES: [&str; 11] = [
    "READY",
    "RESUMED",
    "GUILD_CREATE",
    "GUILD_MEMBERS_CHUNK",
    "PRESENCE_UPDATE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE",
    "USER_UPDATE",
    "INTERACTION_CREATE",
    "other",
];

/// Why the gateway connection was lost and retried: `close` (a close code twilight retries),
/// `error` (a receive error).
pub const RECONNECT_CAUSES: [&str; 2] = ["close", "error"];

/// The gateway's counters: written only by the ingest thread (relaxed atomics, not on any
/// shard's executor), read by the scraping shard.
#[derive(Debug, Default)]
pub struct GatewayStats {
    events: [AtomicU64; GATEWAY_EVENT_TYPES.len()],
    reconnects: [AtomicU64; RECONNECT_CAUSES.len()],
}

impl GatewayStats {
    /// One dispatch (op 0) of type `t`.
    pub fn event(&self, t: &str) {
        let i = GATEWAY_EVENT_TYPES[..GATEWAY_EVENT_TYPES.len() - 1].iter().position(|k| *k == t).unwrap_or(GATEWAY_EVENT_TYPES.len() - 1);
        self.events[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A lost connection that is retried, by cause (one of [`RECONNECT_CAUSES`]).
    pub fn reconnect(&self, cause: &str) {
        if let Some(i) = RECONNECT_CAUSES.iter().position(|c| *c == cause) {
            self.reconnects[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read(&self) -> ([u64; GATEWAY_EVENT_TYPES.len()], [u64; RECONNECT_CAUSES.len()]) {
        (self.events.each_ref().map(|a| a.load(Ordering::Relaxed)), self.reconnects.each_ref().map(|a| a.load(Ordering::Relaxed)))
    }
}

/// One shard writer's group commits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitStats {
    pub commits: u64,
    pub failures: u64,
    /// Commits by batches merged, per [`GROUP_BUCKETS`] bucket (the last is `+Inf`).
    pub group: [u64; GROUP_BUCKETS.len() + 1],
    /// Batches committed in all (the group histogram's sum).
    pub batches: u64,
    /// Time each commit took (the transaction and its fsync).
    pub latency: Histogram,
}

impl CommitStats {
    fn merge(&mut self, other: &CommitStats) {
        self.commits += other.commits;
        self.failures += other.failures;
        for (a, b) in self.group.iter_mut().zip(other.group.iter()) {
            *a += b;
        }
        self.batches += other.batches;
        self.latency.merge(&other.latency);
    }
}

/// A latency histogram: per-bucket counts (the last is `+Inf`), their sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|&b| s <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    http: RefCell<Vec<RouteSeries>>,
    kv_writes: Cell<u64>,
    kv_latency: RefCell<Histogram>,
    counts: RefCell<BTreeMap<(&'static str, &'static str), u64>>,
    websockets: Cell<i64>,
    /// Open WebSockets by (dialect, compression).
    websocket_kinds: RefCell<BTreeMap<(&'static str, &'static str), i64>>,
}

/// One route's answered requests on a shard: how many by status, and how long they took.
#[derive(Debug)]
struct RouteSeries {
    route: &'static str,
    statuses: Vec<(u16, u64)>,
    latency: Histogram,
}

/// Labelled counters that share one map: (series, label value) → count.
pub mod series {
    /// Ingest events applied on their owner shard, by kind (`presence`, `member_add`, …).
    pub const INGEST_EVENTS: &str = "lantern_ingest_events_total";
    /// Presence events that changed nothing (the same status and activities again).
    pub const PRESENCE_NOOPS: &str = "lantern_presence_noop_updates_total";
    /// User-object changes those events made, by change (`joined`, `updated`, `left`, `storage`).
    pub const CHANGES: &str = "lantern_user_changes_total";
    /// Card answers by result (`rendered`, `not_modified`, `not_monitored`, `failed`).
    pub const CARDS: &str = "lantern_card_answers_total";
    /// Gateway state changes, by the state entered (counted once, on shard 0).
    pub const GATEWAY_TRANSITIONS: &str = "lantern_gateway_transitions_total";
    /// WebSocket connections opened (upgraded), in all.
    pub const WEBSOCKETS_OPENED: &str = "lantern_websocket_connections_opened_total";
    /// Cards drawn (SVG rendered; not cache hits, not 304s).
    pub const CARD_RENDERS: &str = "lantern_card_renders_total";
    /// Cards answered from the rendered-card cache.
    pub const CARD_CACHE_HITS: &str = "lantern_card_cache_hits_total";
    /// Card images wanted, by result (`ok`, `failed`: fetched; `cached`: from the image cache;
    /// `merged`: waited for a fetch already on its way).
    pub const CARD_IMAGES: &str = "lantern_card_image_fetches_total";
}

/// The label name of each series in [`series`].
fn label_of(series: &str) -> &'static str {
    match series {
        series::INGEST_EVENTS => "kind",
        series::CHANGES => "change",
        series::CARDS => "result",
        series::GATEWAY_TRANSITIONS => "state",
        series::CARD_IMAGES => "result",
        _ => "",
    }
}

impl ShardMetrics {
    /// One answered HTTP request: its route's label, status and time to answer.
    pub fn http(&self, route: &'static str, status: u16, took: Duration) {
        // A dozen routes whose labels are constants: a scan comparing addresses first finds
        // one in a few instructions, where a map keyed by the label compares strings at every
        // level (this runs for every request).
        let mut routes = self.http.borrow_mut();
        let at = match routes.iter().position(|r| std::ptr::eq(r.route, route) || r.route == route) {
            Some(at) => at,
            None => {
                routes.push(RouteSeries { route, statuses: Vec::new(), latency: Histogram::default() });
                routes.len() - 1
            }
        };
        let series = &mut routes[at];
        match series.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((status, 1)),
        }
        series.latency.observe(took);
    }

    /// One storage write made durable on this (the owner) shard, and how long it took from the
    /// request reaching the owner to the commit.
    pub fn kv_write(&self, took: Duration) {
        self.kv_writes.set(self.kv_writes.get() + 1);
        self.kv_latency.borrow_mut().observe(took);
    }

    /// Adds one to `series` (one of [`series`]) with label value `value` (`""` for none).
    pub fn count(&self, series: &'static str, value: &'static str) {
        *self.counts.borrow_mut().entry((series, value)).or_insert(0) += 1;
    }

    /// A WebSocket opened (`+1`) or closed (`-1`) on this shard.
    pub fn websocket(&self, delta: i64) {
        self.websockets.set(self.websockets.get() + delta);
        if delta > 0 {
            self.count(series::WEBSOCKETS_OPENED, "");
        }
    }

    /// A WebSocket of `dialect` (`lantern`) and `compression` (`none`, `permessage_deflate`)
    /// opened (`+1`) or closed (`-1`) on this shard.
    pub fn websocket_kind(&self, dialect: &'static str, compression: &'static str, delta: i64) {
        *self.websocket_kinds.borrow_mut().entry((dialect, compression)).or_insert(0) += delta;
    }

    /// A copy of the counters, to send to the scraping shard (on this shard's thread: the
    /// [`local`] counters read are this shard's).
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.own_snapshot();
        local::read(&mut s);
        s
    }

    fn own_snapshot(&self) -> Snapshot {
        Snapshot {
            websocket_kinds: self.websocket_kinds.borrow().clone(),
            http: self.http.borrow().iter().flat_map(|r| r.statuses.iter().map(|&(status, n)| ((r.route, status), n))).collect(),
            http_latency: self.http.borrow().iter().map(|r| (r.route, r.latency.clone())).collect(),
            kv_writes: self.kv_writes.get(),
            kv_latency: self.kv_latency.borrow().clone(),
            counts: self.counts.borrow().clone(),
            websockets: self.websockets.get(),
            ..Snapshot::default()
        }
    }
}

/// Counters of one shard or, merged, of all; plus the gauges the scraping shard fills in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub http: BTreeMap<(&'static str, u16), u64>,
    pub http_latency: BTreeMap<&'static str, Histogram>,
    pub kv_writes: u64,
    pub kv_latency: Histogram,
    pub counts: BTreeMap<(&'static str, &'static str), u64>,
    pub commits: CommitStats,
    /// WebSocket connections open.
    pub websockets: i64,
    /// WebSocket connections open by (dialect, compression).
    pub websocket_kinds: BTreeMap<(&'static str, &'static str), i64>,
    /// WebSocket frames out and in.
    pub frames_out: u64,
    pub frames_in: u64,
    /// WebSocket closes by (begun by the server, code).
    pub closes: BTreeMap<(bool, u16), u64>,
    /// Fan-out sizes per [`FANOUT_BUCKETS`] bucket (the last is `+Inf`), and their sum.
    pub fanout: [u64; FANOUT_BUCKETS.len() + 1],
    pub fanout_sum: u64,
    /// Gateway dispatches by [`GATEWAY_EVENT_TYPES`] and reconnects by [`RECONNECT_CAUSES`].
    pub gateway_events: [u64; GATEWAY_EVENT_TYPES.len()],
    pub gateway_reconnects: [u64; RECONNECT_CAUSES.len()],
    /// Messages waiting in each shard's mailbox at the scrape, by shard index.
    pub mailbox_depths: Vec<usize>,
    /// Members monitored (summed over the shards that answered).
    pub monitored_users: u64,
    /// Shards in all, and those that answered the scrape.
    pub shards: u64,
    pub shards_up: u64,
    /// The gateway's state name (`connected`, …) and whether the member list is loaded.
    pub gateway_state: &'static str,
    pub members_loaded: bool,
    /// Cluster mode: this node's place in the cluster, read at the scrape.
    pub cluster: Option<ClusterGauges>,
}

/// What `/metrics` reports of a cluster node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterGauges {
    pub leader: bool,
    pub lease_changes: u64,
    pub replication_lag_ms: Option<u64>,
    pub nats_connected: bool,
    pub synced: bool,
}

/// Every dialect `lantern_websocket_connections_by_kind` reports.
pub const WEBSOCKET_DIALECTS: [&str; 2] = ["lantern", "lanyard"];

/// The close code of a slow consumer's disconnect.
const SLOW_CONSUMER_CODE: u16 = 4008;

/// Every state `lantern_gateway_state` reports, one series each.
pub const GATEWAY_STATES: [&str; 4] = ["connecting", "connected", "reconnecting", "failed"];

impl Snapshot {
    /// Fills in the gateway's counters from the ingest thread's.
    pub fn read_gateway(&mut self, stats: &GatewayStats) {
        (self.gateway_events, self.gateway_reconnects) = stats.read();
    }

    /// Adds another shard's counters.
    pub fn merge(&mut self, other: &Snapshot) {
        for (k, v) in &other.http {
            *self.http.entry(*k).or_insert(0) += v;
        }
        for (k, h) in &other.http_latency {
            self.http_latency.entry(k).or_default().merge(h);
        }
        self.kv_writes += other.kv_writes;
        self.kv_latency.merge(&other.kv_latency);
        for (k, v) in &other.counts {
            *self.counts.entry(*k).or_insert(0) += v;
        }
        self.websockets += other.websockets;
        for (k, v) in &other.websocket_kinds {
            *self.websocket_kinds.entry(*k).or_insert(0) += v;
        }
        self.frames_out += other.frames_out;
        self.frames_in += other.frames_in;
        for (k, v) in &other.closes {
            *self.closes.entry(*k).or_insert(0) += v;
        }
        for (a, b) in self.fanout.iter_mut().zip(other.fanout.iter()) {
            *a += b;
        }
        self.fanout_sum += other.fanout_sum;
        self.commits.merge(&other.commits);
    }
}

/// Writes families in the Prometheus text format (0.0.4).
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".to_owned());
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

impl Snapshot {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut t = Text(String::with_capacity(8192));
        t.family("lantern_http_requests_total", "counter", "HTTP requests answered, by route and status.");
        for ((route, status), n) in &self.http {
            t.sample("lantern_http_requests_total", &[("route", route), ("status", &status.to_string())], n);
        }
        t.family("lantern_http_request_duration_seconds", "histogram", "Time from a request's head to its answer, by route.");
        for (route, h) in &self.http_latency {
            t.histogram("lantern_http_request_duration_seconds", &[("route", route)], h);
        }
        t.family("lantern_kv_writes_total", "counter", "Storage writes made durable (acknowledged).");
        t.sample("lantern_kv_writes_total", &[], self.kv_writes);
        t.family(
            "lantern_kv_write_duration_seconds",
            "histogram",
            "Time from a storage write reaching its owner shard to its durable commit (group commit and fsync included).",
        );
        t.histogram("lantern_kv_write_duration_seconds", &[], &self.kv_latency);
        t.family("lantern_storage_commits_total", "counter", "Group commits of the storage writers, by result.");
        t.sample("lantern_storage_commits_total", &[("result", "ok")], self.commits.commits);
        t.sample("lantern_storage_commits_total", &[("result", "failed")], self.commits.failures);
        t.family("lantern_storage_commit_batches", "histogram", "Batches (writes, last-seen updates) merged into one group commit.");
        let mut cumulative = 0;
        for (i, n) in self.commits.group.iter().enumerate() {
            cumulative += n;
            let le = GROUP_BUCKETS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".to_owned());
            t.sample("lantern_storage_commit_batches_bucket", &[("le", &le)], cumulative);
        }
        t.sample("lantern_storage_commit_batches_sum", &[], self.commits.batches);
        t.sample("lantern_storage_commit_batches_count", &[], cumulative);
        t.family("lantern_storage_commit_duration_seconds", "histogram", "Time one group commit takes (the transaction and its fsync).");
        t.histogram("lantern_storage_commit_duration_seconds", &[], &self.commits.latency);
        for (name, help) in [
            (series::INGEST_EVENTS, "Gateway events applied on their owner shard, by kind."),
            (series::PRESENCE_NOOPS, "Presence updates that changed nothing (skipped as no-ops)."),
            (series::CHANGES, "User-object changes applied, by change."),
            (series::CARDS, "Profile-card answers, by result."),
            (series::GATEWAY_TRANSITIONS, "Gateway state changes, by the state entered."),
            (series::WEBSOCKETS_OPENED, "WebSocket connections opened."),
            (series::CARD_RENDERS, "Profile cards drawn (not cache hits or 304s)."),
            (series::CARD_CACHE_HITS, "Profile cards answered from the rendered-card cache."),
            (series::CARD_IMAGES, "Card images wanted, by result: ok or failed (fetched), cached, merged (waited for a fetch on its way)."),
        ] {
            t.family(name, "counter", help);
            let label = label_of(name);
            let mut any = false;
            for ((_, value), n) in self.counts.range((name, "")..).take_while(|((s, _), _)| *s == name) {
                any = true;
                if label.is_empty() {
                    t.sample(name, &[], n);
                } else {
                    t.sample(name, &[(label, value)], n);
                }
            }
            if !any && label.is_empty() {
                t.sample(name, &[], 0);
            }
        }
        t.family("lantern_websocket_connections", "gauge", "WebSocket connections open.");
        t.sample("lantern_websocket_connections", &[], self.websockets);
        t.family("lantern_websocket_connections_by_kind", "gauge", "WebSocket connections open, by dialect and compression.");
        for dialect in WEBSOCKET_DIALECTS {
            for compression in ["none", "permessage_deflate", "zlib_json"] {
                let n = self.websocket_kinds.get(&(dialect, compression)).copied().unwrap_or(0);
                t.sample("lantern_websocket_connections_by_kind", &[("dialect", dialect), ("compression", compression)], n);
            }
        }
        t.family("lantern_websocket_frames_out_total", "counter", "WebSocket frames sent to clients (control frames included).");
        t.sample("lantern_websocket_frames_out_total", &[], self.frames_out);
        t.family("lantern_websocket_frames_in_total", "counter", "WebSocket frames read from clients (control frames included).");
        t.sample("lantern_websocket_frames_in_total", &[], self.frames_in);
        t.family("lantern_websocket_closes_total", "counter", "WebSocket closes, by who began the close and its code.");
        for ((by_server, code), n) in &self.closes {
            t.sample("lantern_websocket_closes_total", &[("by", if *by_server { "server" } else { "client" }), ("code", &code.to_string())], n);
        }
        t.family("lantern_websocket_slow_consumer_disconnects_total", "counter", "WebSocket connections closed for passing the outbound queue cap (4008).");
        t.sample("lantern_websocket_slow_consumer_disconnects_total", &[], self.closes.get(&(true, SLOW_CONSUMER_CODE)).copied().unwrap_or(0));
        t.family("lantern_fanout_subscribers", "histogram", "Subscribers one change was delivered to, per shard that delivered it.");
        let mut cumulative = 0;
        for (i, n) in self.fanout.iter().enumerate() {
            cumulative += n;
            let le = FANOUT_BUCKETS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".to_owned());
            t.sample("lantern_fanout_subscribers_bucket", &[("le", &le)], cumulative);
        }
        t.sample("lantern_fanout_subscribers_sum", &[], self.fanout_sum);
        t.sample("lantern_fanout_subscribers_count", &[], cumulative);
        t.family("lantern_gateway_events_total", "counter", "Gateway dispatches received by the ingest thread, by type (t).");
        for (t_, n) in GATEWAY_EVENT_TYPES.iter().zip(self.gateway_events) {
            t.sample("lantern_gateway_events_total", &[("type", t_)], n);
        }
        t.family("lantern_gateway_reconnects_total", "counter", "Gateway connections lost and retried, by cause.");
        for (c, n) in RECONNECT_CAUSES.iter().zip(self.gateway_reconnects) {
            t.sample("lantern_gateway_reconnects_total", &[("cause", c)], n);
        }
        t.family("lantern_gateway_sessions_total", "counter", "Gateway sessions begun: resumed (RESUMED) or identified afresh (READY).");
        t.sample("lantern_gateway_sessions_total", &[("how", "identified")], self.gateway_events[0]);
        t.sample("lantern_gateway_sessions_total", &[("how", "resumed")], self.gateway_events[1]);
        t.family("lantern_mailbox_depth", "gauge", "Messages waiting in each shard's mailbox, read at the scrape.");
        for (shard, n) in self.mailbox_depths.iter().enumerate() {
            t.sample("lantern_mailbox_depth", &[("shard", &shard.to_string())], n);
        }
        t.family("lantern_monitored_users", "gauge", "Guild members monitored.");
        t.sample("lantern_monitored_users", &[], self.monitored_users);
        t.family("lantern_shards", "gauge", "Shards configured.");
        t.sample("lantern_shards", &[], self.shards);
        t.family("lantern_shards_up", "gauge", "Shards that answered this scrape.");
        t.sample("lantern_shards_up", &[], self.shards_up);
        t.family("lantern_gateway_state", "gauge", "1 for the gateway's current state, 0 for the others.");
        for state in GATEWAY_STATES {
            t.sample("lantern_gateway_state", &[("state", state)], u8::from(state == self.gateway_state));
        }
        t.family("lantern_gateway_members_loaded", "gauge", "1 once the member list is loaded.");
        t.sample("lantern_gateway_members_loaded", &[], u8::from(self.members_loaded));
        if let Some(c) = &self.cluster {
            t.family("lantern_cluster_leader", "gauge", "1 while this node holds the gateway lease.");
            t.sample("lantern_cluster_leader", &[], u8::from(c.leader));
            t.family("lantern_cluster_lease_holder_changes_total", "counter", "Times this node saw the gateway lease go to another node than the one it last saw holding it.");
            t.sample("lantern_cluster_lease_holder_changes_total", &[], c.lease_changes);
            t.family("lantern_cluster_nats_connected", "gauge", "1 while this node is connected to NATS.");
            t.sample("lantern_cluster_nats_connected", &[], u8::from(c.nats_connected));
            t.family("lantern_cluster_synced", "gauge", "1 once this node has applied every user the presence bucket held when it began watching it.");
            t.sample("lantern_cluster_synced", &[], u8::from(c.synced));
            if let Some(ms) = c.replication_lag_ms {
                t.family("lantern_cluster_replication_lag_seconds", "gauge", "How old the last replicated presence change was when this node read it.");
                t.sample("lantern_cluster_replication_lag_seconds", &[], ms as f64 / 1000.0);
            }
        }
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_and_merge() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!((h.buckets[0], h.buckets[3], h.buckets[LATENCY_BUCKETS.len()], h.count), (1, 1, 1, 3));
        let mut m = Snapshot::default();
        let mut other = Snapshot { kv_writes: 2, kv_latency: h.clone(), ..Snapshot::default() };
        other.http.insert(("user", 200), 5);
        m.merge(&other);
        m.merge(&other);
        assert_eq!((m.kv_writes, m.kv_latency.count, m.http[&("user", 200)]), (4, 6, 10));
    }
}
