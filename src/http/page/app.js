// lantern's web page: live server numbers, a live user lookup over /socket, a card configurator.
// Everything comes from this server (the page runs under a CSP that allows nothing else).
"use strict";

const $ = (id) => document.getElementById(id);
const wsUrl = () => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
const fmt = new Intl.NumberFormat();

// ---- server state ----
async function pollState() {
  const pill = $("live");
  try {
    const r = await fetch("/page/state", { cache: "no-store" });
    const s = await r.json();
    $("s-gateway").textContent = s.gateway + (s.members_loaded ? "" : " (loading members)");
    $("s-users").textContent = fmt.format(s.monitored_users);
    $("s-sockets").textContent = fmt.format(s.socket_connections);
    $("s-rate").textContent = s.updates_per_second.toFixed(1);
    $("s-shards").textContent = s.shards.up + " / " + s.shards.total;
    $("docs-link").hidden = !s.links.docs;
    $("metrics-link").hidden = !s.links.metrics;
    const ok = s.gateway === "connected";
    pill.textContent = ok ? "live" : s.gateway;
    pill.className = "pill " + (ok ? "ok" : "bad");
  } catch (e) {
    pill.textContent = "unreachable";
    pill.className = "pill bad";
  }
}

// ---- user lookup ----
let socket = null;
let heartbeat = null;
let watched = null;

function closeSocket() {
  if (heartbeat) clearInterval(heartbeat);
  heartbeat = null;
  if (socket) socket.close();
  socket = null;
}

function describe(a) {
  const li = document.createElement("li");
  if (a.type === "CUSTOM") {
    const emoji = a.emoji && !a.emoji.id ? a.emoji.name + " " : "";
    li.textContent = "Custom status: " + emoji + (a.state || "");
    return li;
  }
  const verb = { PLAYING: "Playing", STREAMING: "Streaming", LISTENING: "Listening to", WATCHING: "Watching", COMPETING: "Competing in" }[a.type] || a.type;
  const b = document.createElement("strong");
  b.textContent = a.name;
  li.append(verb + " ", b);
  const rest = [a.details, a.state].filter(Boolean).join(" · ");
  if (rest) li.append(" — " + rest);
  return li;
}

function showUser(u) {
  const m = u.metadata || {};
  $("presence").hidden = false;
  $("p-name").textContent = (m.global_name ? m.global_name + " " : "") + "@" + m.username;
  const st = $("p-status");
  st.textContent = u.status;
  st.className = "status-" + u.status;
  const list = $("p-activities");
  list.replaceChildren(...(u.activities || []).map(describe));
  if (!u.activities || u.activities.length === 0) {
    const li = document.createElement("li");
    li.textContent = "No activity";
    list.append(li);
  }
  $("p-updated").textContent = new Date().toLocaleTimeString();
  $("p-json").textContent = JSON.stringify(u, null, 2);
  const art = $("presence");
  art.classList.remove("flash");
  void art.offsetWidth;
  art.classList.add("flash");
}

function watch(id) {
  closeSocket();
  watched = id;
  $("lookup-status").textContent = "Connecting to /socket…";
  const ws = new WebSocket(wsUrl());
  socket = ws;
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.op === 1) {
      ws.send(JSON.stringify({ op: 2, d: { user_id: id } }));
      heartbeat = setInterval(() => ws.readyState === 1 && ws.send(JSON.stringify({ op: 4 })), Math.max(1000, msg.d.heartbeat_interval - 2000));
    } else if (msg.op === 3 || (msg.op === 6 && msg.d && msg.d.metadata && msg.d.metadata.id === watched)) {
      $("lookup-status").textContent = msg.op === 3 ? "Watching " + id + " live." : "Presence update received.";
      showUser(msg.d);
    } else if (msg.op === 11) {
      $("lookup-status").textContent = msg.d;
      $("presence").hidden = true;
    } else if (msg.op === 9) {
      $("lookup-status").textContent = "Disconnected: " + (msg.d && msg.d.error);
    }
  };
  ws.onclose = () => { if (socket === ws) $("lookup-status").textContent += " (connection closed)"; };
}

function listUsers() {
  const pick = $("user-pick");
  $("lookup-status").textContent = "Loading the monitored users…";
  const ws = new WebSocket(wsUrl());
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.op === 1) ws.send(JSON.stringify({ op: 2, d: { user_id: "ALL" } }));
    if (msg.op === 3) {
      ws.close();
      const users = msg.d.filter((u) => !u.metadata.bot).sort((a, b) => a.metadata.username.localeCompare(b.metadata.username));
      const first = document.createElement("option");
      first.textContent = users.length + " users: pick one";
      first.value = "";
      pick.replaceChildren(first, ...users.slice(0, 2000).map((u) => {
        const o = document.createElement("option");
        o.value = u.metadata.id;
        o.textContent = "@" + u.metadata.username + " (" + u.status + (u.activities.length ? ", " + u.activities.length + " activities" : "") + ")";
        return o;
      }));
      pick.hidden = false;
      $("user-pick-label").hidden = false;
      $("lookup-status").textContent = users.length + " monitored users listed.";
    }
  };
}

// ---- card configurator ----
const PARAMS = ["theme", "borderRadius", "maxActivities", "noActivityTitle", "noActivityMessage"];
const DEFAULTS = { theme: "dark", borderRadius: "2", maxActivities: "1", noActivityTitle: "", noActivityMessage: "" };
const FLAGS = ["hideGlobalName", "hideStatus", "hideBadges", "hideActivity", "hideLastSeen", "hideServerTag"];

function cardQuery(form, format) {
  const q = new URLSearchParams();
  if (format === "png") q.set("format", "png"); else q.set("svg", "1");
  for (const p of PARAMS) {
    const v = form.elements[p].value.trim();
    if (v !== "" && v !== DEFAULTS[p]) q.set(p, v);
  }
  for (const f of FLAGS) if (form.elements[f].checked) q.set(f, "1");
  return q.toString();
}

function updateCard() {
  const form = $("card-form");
  const id = form.elements.id.value.trim();
  if (!/^[0-9]{17,19}$/.test(id)) return;
  const path = "/api/v1/users/" + id + "?";
  $("prev-svg").src = path + cardQuery(form, "svg");
  $("prev-png").src = path + cardQuery(form, "png");
  const chosen = location.origin + path + cardQuery(form, form.elements.format.value);
  $("snip-md").value = "[![Discord presence](" + chosen + ")](https://discord.com/users/" + id + ")";
  $("snip-html").value = '<a href="https://discord.com/users/' + id + '">\n  <img src="' + chosen.replace(/&/g, "&amp;") + '" alt="Discord presence" width="600">\n</a>';
}

async function copy(target) {
  const box = $(target);
  try {
    await navigator.clipboard.writeText(box.value);
  } catch {
    box.select();
    document.execCommand("copy");
  }
  $("copy-status").textContent = "Copied.";
}

document.addEventListener("DOMContentLoaded", () => {
  pollState();
  setInterval(pollState, 2000);
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("user-id").value.trim();
    watch(id);
    $("c-id").value = id;
    updateCard();
  });
  $("list-users").addEventListener("click", listUsers);
  $("user-pick").addEventListener("change", (e) => {
    if (!e.target.value) return;
    $("user-id").value = e.target.value;
    $("lookup-form").requestSubmit();
  });
  const form = $("card-form");
  form.addEventListener("input", updateCard);
  form.addEventListener("change", updateCard);
  form.addEventListener("submit", (e) => e.preventDefault());
  for (const b of document.querySelectorAll("[data-copy]")) b.addEventListener("click", () => copy(b.dataset.copy));
  const fromHash = location.hash.match(/^#user=([0-9]{17,19})$/);
  if (fromHash) { $("user-id").value = fromHash[1]; $("lookup-form").requestSubmit(); }
});
