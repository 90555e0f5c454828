//! Backups while the server runs and writes go on, and restores into another shard count.

mod support;

use lantern::discord::Snowflake;
use lantern::sim::SimConfig;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::kv::{create_token, value_body};
use support::{request, wait_for, Env, DEADLINE};

const WRITES: usize = 1000;
const WRITERS: usize = 4;

fn guild() -> SimConfig {
    SimConfig { members: 12, seed: 3, ..SimConfig::default() }
}

fn lantern(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lantern")).args(args).output().expect("lantern runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_backup_during_writes_holds_every_write_acknowledged_before_it_and_restores_into_another_shard_count() {
    let env = Env::start(guild(), 2);
    let users: Vec<Snowflake> =
        env.sim.members().iter().map(|(m, _)| m.user.id).filter(|id| *id != env.sim.application_id()).take(WRITERS).collect();
    let tokens: Vec<String> = users.iter().map(|id| create_token(&env.sim, *id)).collect();

    // WRITERS clients, each writing its own user's keys one after another; every acknowledged
    // (200) key is recorded, in order, with a global count.
    let acked: Arc<Mutex<Vec<(Snowflake, String)>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let port = env.port;
    let handles: Vec<_> = users
        .iter()
        .zip(tokens)
        .map(|(&id, token)| {
            let (acked, done, failed) = (acked.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                for n in 0..WRITES / WRITERS {
                    let key = format!("k{n}");
                    let r = request(port, "PUT", &format!("/api/v1/users/{id}/storage/{key}"), &[("Authorization", &token)], &value_body(&format!("v{n}")));
                    if r.status != 200 {
                        failed.store(true, Ordering::SeqCst);
                        return;
                    }
                    acked.lock().unwrap().push((id, key));
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Once a third of the writes are acknowledged, back up while the rest go on.
    assert!(wait_for(DEADLINE * 4, || done.load(Ordering::SeqCst) >= WRITES / 3));
    let before: BTreeSet<(Snowflake, String)> = acked.lock().unwrap().iter().cloned().collect();
    let out = tempfile::tempdir().unwrap();
    let socket = env.dir.path().join("control.sock");
    let (ok, text) = lantern(&["backup", "--socket", socket.to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
    assert!(ok, "lantern backup failed: {text}");
    let during = done.load(Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert!(!failed.load(Ordering::SeqCst), "a write was refused");
    assert_eq!(done.load(Ordering::SeqCst), WRITES);
    let files = archives(out.path());
    assert_eq!(files.len(), 1, "one archive: {files:?}");
    let archive = &files[0];
    let name = archive.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("lantern-") && name.ends_with(".tar.gz"), "{name}");
    assert_eq!(text.trim(), format!("{} ({} bytes)", archive.display(), std::fs::metadata(archive).unwrap().len()));
    eprintln!("backup taken with {} writes acknowledged before and {during} by its end", before.len());

    // Restore into a fresh directory with 3 shards and serve it.
    let restored = tempfile::tempdir().unwrap();
    let data = restored.path().join("shards");
    let (ok, text) = lantern(&["restore", archive.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--shards", "3"]);
    assert!(ok, "lantern restore failed: {text}");
    assert_eq!(text.trim(), format!("restored 2 shards from {} into {} (3 shards)", archive.display(), data.display()));
    let (ok, text) = lantern(&["restore", archive.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(!ok && text.contains("is not empty"), "a restore over data is refused: {text}");

    let secret = env.config().kv_secret;
    let data2 = data.clone();
    let env3 = Env::start_tweaked(guild(), 3, |_| {}, move |c| {
        c.storage.dir = data2.clone();
        c.backup.socket = data2.join("control.sock");
        c.kv_secret = secret.clone();
    });
    for id in &users {
        let r = env3.get(&format!("/api/v1/users/{id}/storage"));
        assert_eq!(r.status, 200, "{}", r.text());
        let map = r.json();
        for (_, key) in before.iter().filter(|(u, _)| u == id) {
            let n = &key[1..];
            assert_eq!(map[key.as_str()], format!("v{n}"), "{id} {key}: acknowledged before the backup, missing after the restore");
        }
    }
    // The restored tokens still work (the same secret).
    let restored_files: Vec<String> = archives(&data).iter().filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).filter(|n| n.ends_with(".redb")).collect();
    assert_eq!(restored_files, ["shard-00.redb", "shard-01.redb", "shard-02.redb"]);
    drop(env);
}

#[test]
fn scheduled_backups_are_taken_and_only_the_newest_kept() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_owned();
    let _env = Env::start_tweaked(guild(), 2, |_| {}, move |c| {
        c.backup.dir = dir.clone();
        c.backup.interval = Some(std::time::Duration::from_millis(1100));
        c.backup.keep = 2;
    });
    // A backup in progress is written to a hidden `.….staging` file and renamed when done, so
    // finished archives and at most one staging file are what the folder may hold.
    let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let is_archive = |p: &PathBuf| { let n = name(p); n.starts_with("lantern-") && n.ends_with(".tar.gz") };
    let finished = |dir: &Path| -> Vec<PathBuf> { archives(dir).into_iter().filter(is_archive).collect() };
    // Archive names have one-second resolution: three or more, a second apart.
    assert!(wait_for(DEADLINE, || finished(out.path()).len() >= 2));
    let first = finished(out.path());
    assert!(wait_for(DEADLINE, || finished(out.path()).first() != first.first()), "the oldest is removed once a third is taken");
    let all = archives(out.path());
    let (done, other): (Vec<PathBuf>, Vec<PathBuf>) = all.iter().cloned().partition(is_archive);
    assert!(done.len() <= 2, "keep = 2: {all:?}");
    assert!(other.len() <= 1 && other.iter().all(|p| { let n = name(p); n.starts_with(".lantern-") && n.ends_with(".tar.gz.staging") }), "nothing but archives and the one in progress: {all:?}");
}

#[test]
fn backup_without_a_running_server_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let (ok, text) = lantern(&["backup", "--socket", socket.to_str().unwrap(), "--out", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("cannot reach the server's control socket") && text.contains("is `lantern serve` running?"), "{text}");
}

#[test]
fn scheduled_backups_are_posted_to_the_discord_channel_as_attachments_unless_too_large() {
    let channel = "1378135304107458999";
    let posted = |env: &Env| {
        env.sim.requests().into_iter().filter(|r| r.method == "POST" && r.path == format!("/api/v10/channels/{channel}/messages")).collect::<Vec<_>>()
    };
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_owned();
    let env = Env::start_tweaked(guild(), 2, |_| {}, move |c| {
        c.backup.dir = dir.clone();
        c.backup.interval = Some(std::time::Duration::from_millis(300));
        c.backup.discord_channel = Snowflake::parse_strict(channel);
    });
    assert!(wait_for(DEADLINE, || !posted(&env).is_empty()), "no backup reached the channel");
    let request = &posted(&env)[0];
    assert_eq!(request.authorization.as_deref(), Some(format!("Bot {}", env.sim.token()).as_str()));
    let taken: Vec<String> = archives(out.path()).iter().filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).collect();
    let name = taken.iter().find(|n| request.body.contains(&format!("filename=\"{n}\""))).unwrap_or_else(|| panic!("no archive attached: {taken:?}"));
    assert!(request.body.contains(&format!("Lantern backup {name} (")), "the message names the archive");
    drop(env);

    // Over the limit: the archive is kept but not posted.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_owned();
    let env = Env::start_tweaked(guild(), 2, |_| {}, move |c| {
        c.backup.dir = dir.clone();
        c.backup.interval = Some(std::time::Duration::from_millis(300));
        c.backup.discord_channel = Snowflake::parse_strict(channel);
        c.backup.discord_max_bytes = 100;
    });
    assert!(wait_for(DEADLINE, || archives(out.path()).len() >= 2));
    assert!(posted(&env).is_empty(), "an archive over discord_max_bytes was posted");
}
