//! Operating a running server from outside it: a local control socket (`lantern backup` asks it
//! for a backup) and the backup schedule (`[backup] interval_secs`).
//!
//! The socket is a Unix stream socket (`[backup] socket`, by default `control.sock` in the
//! storage directory), mode 0600: only the server's own user (and root) can use it, and it is
//! not reachable over the network, unlike an HTTP admin route. One request a connection, one
//! line each way: `backup <absolute directory>` → `ok <archive path> <bytes>` or
//! `error <message>`. Requests are served one at a time on the socket's own thread, and a
//! scheduled backup waits for one in progress (and the other way round): backups never overlap.
//! Everything here blocks on its own threads, never on a shard's executor.

use crate::config::Config;
use crate::storage::backup::{self, Archive};
use redb::Database;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The control socket and the schedule of one server.
pub struct Control {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    schedule: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

/// The shard databases and the lock that keeps backups from overlapping.
struct Backups {
    dbs: Vec<Arc<Database>>,
    running: Mutex<()>,
}

impl Backups {
    fn take(&self, out: &Path) -> Result<Archive, String> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|p| p.into_inner());
        backup::backup(&self.dbs, out, crate::time_fmt::now_ms()).map_err(|e| e.to_string())
    }
}

/// Binds the control socket and starts the schedule.
pub fn start(config: &Config, dbs: Vec<Arc<Database>>) -> std::io::Result<Control> {
    let cfg = &config.backup;
    let backups = Arc::new(Backups { dbs, running: Mutex::new(()) });
    let socket = cfg.socket.clone();
    if UnixStream::connect(&socket).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use: another server runs on this data directory", socket.display()),
        ));
    }
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    let stop = Arc::new(AtomicBool::new(false));
    let listener = {
        let (stop, backups) = (stop.clone(), backups.clone());
        std::thread::Builder::new().name("lantern-control".into()).spawn(move || serve(listener, &stop, &backups))?
    };
    let schedule = match cfg.interval {
        Some(interval) => {
            let (tx, rx) = mpsc::channel();
            let config = config.clone();
            let handle =
                std::thread::Builder::new().name("lantern-backups".into()).spawn(move || schedule(&rx, interval, &config, &backups))?;
            Some((tx, handle))
        }
        None => None,
    };
    Ok(Control { socket, stop, listener: Some(listener), schedule })
}

impl Control {
    /// Stops the schedule and the socket (waiting for a backup in progress) and removes the
    /// socket file.
    pub fn stop(&mut self) {
        if let Some((tx, handle)) = self.schedule.take() {
            drop(tx);
            let _ = handle.join();
        }
        if let Some(handle) = self.listener.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the blocked accept.
            let _ = UnixStream::connect(&self.socket);
            let _ = handle.join();
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: UnixListener, stop: &AtomicBool, backups: &Backups) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        if BufReader::new(&conn).take_line(&mut line).is_err() {
            continue;
        }
        let answer = match line.trim_end().split_once(' ') {
            Some(("backup", dir)) if Path::new(dir).is_absolute() => match backups.take(Path::new(dir)) {
                Ok(a) => {
                    tracing::info!(path = %a.path.display(), bytes = a.bytes, shards = a.shards, "backup taken");
                    format!("ok {} {}\n", a.path.display(), a.bytes)
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup failed");
                    format!("error {e}\n")
                }
            },
            Some(("backup", _)) => "error the backup directory must be an absolute path\n".to_owned(),
            _ => "error unknown request (expected: backup <absolute directory>)\n".to_owned(),
        };
        let _ = conn.write_all(answer.as_bytes());
    }
}

trait TakeLine {
    fn take_line(self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: std::io::Read> TakeLine for BufReader<R> {
    /// Reads one line of at most 4 KiB.
    fn take_line(self, line: &mut String) -> std::io::Result<usize> {
        std::io::Read::take(self, 4096).read_line(line)
    }
}

fn schedule(stop: &mpsc::Receiver<()>, interval: Duration, config: &Config, backups: &Backups) {
    let cfg = &config.backup;
    // Only for the upload: a runtime of this thread for twilight's client.
    let upload = cfg.discord_channel.and_then(|channel| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match rt {
            Ok(rt) => {
                // twilight's rate limiter starts a task: build the client inside the runtime.
                let client = {
                    let _inside = rt.enter();
                    crate::bot::http_client(config)
                };
                Some((rt, client, channel))
            }
            Err(e) => {
                tracing::error!(error = %e, "backups will not be posted to Discord: no runtime for the client");
                None
            }
        }
    });
    // `recv_timeout` returns early only when the server stops (the sender is dropped).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        match backups.take(&cfg.dir) {
            Ok(a) => {
                tracing::info!(path = %a.path.display(), bytes = a.bytes, shards = a.shards, "scheduled backup taken");
                if let Some((rt, client, channel)) = &upload {
                    post(rt, client, *channel, &a, cfg.discord_max_bytes);
                }
                match backup::prune(&cfg.dir, cfg.keep) {
                    Ok(removed) => {
                        for p in removed {
                            tracing::info!(path = %p.display(), "old backup removed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "old backups could not be removed"),
                }
            }
            Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
        }
    }
}

/// Posts an archive to `channel` as an attachment, unless it is over `max` bytes.
fn post(rt: &tokio::runtime::Runtime, client: &twilight_http::Client, channel: crate::discord::Snowflake, a: &Archive, max: u64) {
    use twilight_model::http::attachment::Attachment;
    use twilight_model::id::Id;
    if a.bytes > max {
        tracing::error!(path = %a.path.display(), bytes = a.bytes, limit = max,
            "backup not sent to Discord: the archive is larger than the attachment limit ([backup] discord_max_bytes)");
        return;
    }
    let Some(channel) = Id::new_checked(channel.0) else { return };
    let name = a.path.file_name().and_then(|n| n.to_str()).unwrap_or("lantern-backup.tar.gz").to_owned();
    let bytes = match std::fs::read(&a.path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(path = %a.path.display(), error = %e, "backup not sent to Discord: cannot read the archive");
            return;
        }
    };
    let attachments = [Attachment::from_bytes(name.clone(), bytes, 0)];
    let content = format!("Lantern backup {name} ({} bytes, {} shards)", a.bytes, a.shards);
    let sent = rt.block_on(async { client.create_message(channel).content(&content).attachments(&attachments).await });
    match sent {
        Ok(_) => tracing::info!(path = %a.path.display(), channel = channel.get(), "backup sent to Discord channel"),
        Err(e) => tracing::error!(path = %a.path.display(), error = %e, "backup not sent to Discord"),
    }
}

/// `lantern backup`: asks the server listening on `socket` for a backup into `out` (made
/// absolute here, against this process's working directory) and returns the archive's path
/// and size.
pub fn request_backup(socket: &Path, out: &Path) -> Result<(PathBuf, u64), String> {
    let out = std::path::absolute(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut conn = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the server's control socket {}: {e} (is `lantern serve` running?)", socket.display()))?;
    conn.write_all(format!("backup {}\n", out.display()).as_bytes()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("ok ") {
        let (path, bytes) = rest.rsplit_once(' ').ok_or_else(|| format!("unexpected answer {line:?}"))?;
        return Ok((PathBuf::from(path), bytes.parse().unwrap_or(0)));
    }
    Err(line.strip_prefix("error ").unwrap_or(line).to_owned())
}
