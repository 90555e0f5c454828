//! The real `lantern` binary as a child process against a simulator: its configuration, its
//! start-up (the port it logs), and its memory as the kernel reports it.

use super::kv::wait_healthy;
use super::DEADLINE;
use lantern::sim::Simulator;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

pub const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Writes a config for a 2-shard server on an ephemeral port against `sim`, with `extra` TOML
/// appended (whole tables, e.g. `"[server.socket]\nmax_queued_bytes = 4096\n"`).
pub fn write_config(sim: &Simulator, dir: &Path, extra: &str) -> PathBuf {
    write_config_sharded(sim, dir, 2, extra)
}

/// [`write_config`] with `shards` shards.
pub fn write_config_sharded(sim: &Simulator, dir: &Path, shards: usize, extra: &str) -> PathBuf {
    write_config_with(sim, dir, shards, "", extra)
}

/// [`write_config_sharded`] with more keys of the `[server]` table (`server`, one per line).
pub fn write_config_with(sim: &Simulator, dir: &Path, shards: usize, server: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let toml = format!(
        "base_guild_id = '{}'\napplication_id = '{}'\n[server]\nhost = '127.0.0.1'\nport = 0\nshards = {shards}\n{server}\n\
         [storage]\ndir = {:?}\n[discord]\ngateway_url = '{}'\napi_url = '{}'\ncdn_url = '{}'\n[log]\nformat = 'json'\nlevel = 'info'\n{extra}",
        sim.guild_id(),
        sim.application_id(),
        dir.join("data").display().to_string(),
        sim.gateway_url(),
        sim.api_url(),
        sim.cdn_url(),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// `lantern serve --config <config>`, run where no stray `.env` can be picked up.
pub fn command(config: &Path, secret: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lantern"));
    cmd.arg("serve").arg("--config").arg(config);
    cmd.current_dir(config.parent().unwrap());
    cmd.env("DISCORD_BOT_TOKEN", "sim-token").env_remove("KV_TOKEN_ENCRYPTION_SECRET").env_remove("RUST_LOG");
    if let Some(s) = secret {
        cmd.env("KV_TOKEN_ENCRYPTION_SECRET", s);
    }
    cmd
}

/// Spawns the server (with the test secret) and returns it with its JSON log lines, which
/// arrive on the receiver until the process's stdout closes.
pub fn spawn_logged(mut cmd: Command) -> (Child, mpsc::Receiver<Value>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("lantern starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    (child, rx)
}

/// The `message` field of a JSON log line.
pub fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// Reads log lines until `listening`; returns them and the port it names.
pub fn wait_listening(rx: &mpsc::Receiver<Value>) -> (Vec<Value>, u16) {
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).expect("the server logs its port");
        let port = (message(&line) == "listening").then(|| line["fields"]["port"].as_u64().unwrap_or(0) as u16);
        lines.push(line);
        if let Some(p) = port {
            return (lines, p);
        }
    }
}

/// Starts the server and returns it with the port it reports in its log, once healthy.
pub fn start(config: &Path) -> (Child, u16) {
    let (child, rx) = spawn_logged(command(config, Some(SECRET)));
    let (_, port) = wait_listening(&rx);
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || rx.iter().for_each(drop));
    assert!(wait_healthy(port), "the server never became healthy");
    (child, port)
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Kills the child on drop, so a failing test leaves no server behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
