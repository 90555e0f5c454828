// The load test's Node.js peer (lantern-loadtest starts it as `node server.js`, after `npm ci`):
// the same job as lantern's /socket, the best way Node 20 and `ws` can do it. It speaks what the
// harness's clients need (upgrade, HELLO, INIT -> INIT_ACK, HEARTBEAT -> HEARTBEAT_ACK) and, on
// `burst <stamp>` from stdin, serializes the update once (one JSON.stringify) and sends the same
// buffer to every subscriber. Like the harness's other comparators it reads a JSON spec line on
// stdin first and prints {"port":N} once listening.
'use strict';

const readline = require('readline');
const { WebSocketServer } = require('ws');

const PLACEHOLDER = 'lantern-lt:0000000000000000000';
const HEARTBEAT_ACK = Buffer.from('{"t":"HEARTBEAT_ACK","op":5}');

let spec = null;
let update = null;
let setStamp = null;
const subscribers = new Set();

// Finds the string holding the stamp in the update and returns a setter for it, so that each
// burst changes one field and serializes the object once.
function stampSetter(obj) {
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === 'string' && v.includes(PLACEHOLDER)) {
      return (stamp) => { obj[k] = v.replace(PLACEHOLDER, stamp); };
    }
    if (v && typeof v === 'object') {
      const s = stampSetter(v);
      if (s) return s;
    }
  }
  return null;
}

function start() {
  update = JSON.parse(spec.template);
  setStamp = stampSetter(update) || (() => {});
  const interval = Number(spec.heartbeat_interval_ms) || 30000;
  const hello = Buffer.from(`{"t":"HELLO","op":1,"d":{"heartbeat_interval":${interval}}}`);
  const initAck = Buffer.from(`{"t":"INIT_ACK","op":3,"d":${spec.init_ack || 'null'}}`);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/socket', perMessageDeflate: false, clientTracking: false });
  wss.on('connection', (ws) => {
    ws.send(hello, { binary: false });
    ws.on('message', (data) => {
      let msg;
      try { msg = JSON.parse(data); } catch { return; }
      if (msg.op === 2) {
        ws.send(initAck, { binary: false });
        subscribers.add(ws);
      } else if (msg.op === 4) {
        ws.send(HEARTBEAT_ACK, { binary: false });
      }
    });
    ws.on('close', () => subscribers.delete(ws));
    ws.on('error', () => subscribers.delete(ws));
  });
  wss.on('listening', () => {
    process.stdout.write(JSON.stringify({ port: wss.address().port }) + '\n');
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (spec === null) {
    spec = JSON.parse(line);
    start();
    return;
  }
  const parts = line.trim().split(/\s+/);
  if (parts[0] === 'burst') {
    setStamp('lantern-lt:' + String(parts[1] || '0').padStart(19, '0'));
    const frame = Buffer.from(JSON.stringify(update));
    for (const ws of subscribers) ws.send(frame, { binary: false });
    process.stdout.write(JSON.stringify({ sockets: subscribers.size }) + '\n');
  } else if (parts[0] === 'count') {
    process.stdout.write(JSON.stringify({ sockets: subscribers.size }) + '\n');
  } else if (parts[0] === 'exit') {
    process.exit(0);
  } else {
    process.stdout.write('{}\n');
  }
});
rl.on('close', () => process.exit(0));
