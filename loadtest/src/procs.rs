//! Child processes the harness drives over stdin/stdout lines: clients, comparators and the
//! lantern server itself.

use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

/// Runs the child pinned to `cpu` (before exec, so every thread it starts inherits it).
fn pin_command(cmd: &mut Command, cpu: Option<usize>) {
    if let Some(cpu) = cpu.filter(|c| *c < crate::util::cores()) {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls (sched_setaffinity) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, cpu: Option<usize>) -> Result<Proc, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        pin_command(&mut cmd, cpu);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { name: name.into(), stdin: child.stdin.take(), child, lines })
    }

    /// Starts `lantern-loadtest <sub>` and sends it `spec` as its first line.
    pub fn spawn_self<S: serde::Serialize>(sub: &str, spec: &S, cpu: Option<usize>) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg(sub);
        let mut p = Proc::spawn(sub, cmd, cpu)?;
        p.send(&serde_json::to_string(spec).map_err(|e| e.to_string())?)?;
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).map_err(|e| format!("{}: {e}", self.name))
    }

    pub fn recv<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, String> {
        loop {
            match self.lines.recv_timeout(timeout) {
                Ok(l) => match serde_json::from_str::<T>(&l) {
                    Ok(v) => return Ok(v),
                    // Anything else on stdout (a stray log line) is skipped.
                    Err(_) => continue,
                },
                Err(RecvTimeoutError::Timeout) => return Err(format!("{}: no answer within {timeout:?}", self.name)),
                Err(RecvTimeoutError::Disconnected) => return Err(format!("{}: exited", self.name)),
            }
        }
    }

    /// Asks for a graceful exit (`exit` line, or SIGTERM), then kills after `grace`.
    pub fn stop(mut self, grace: Duration) {
        let _ = self.send("exit");
        self.stdin = None;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = std::time::Instant::now() + grace;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `lantern` binary: `--lantern-bin`, else the one next to this executable (same
/// profile), else `target/release/lantern` from the current directory.
pub fn find_lantern(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    let mut dirs = vec![];
    if let Some(d) = exe.parent() {
        dirs.push(d.to_path_buf());
        if let Some(up) = d.parent() {
            // Test binaries live in target/<profile>/deps.
            dirs.push(up.to_path_buf());
        }
    }
    dirs.push(PathBuf::from("target/release"));
    dirs.into_iter().map(|d| d.join("lantern")).find(|p| p.is_file())
}
