//! `tokengate run` as a child process: its log lines, signals and exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// Sends SIGTERM to a child we started.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for a child to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let mut code = None;
    let exited = super::eventually_blocking(limit, || {
        code = child
            .try_wait()
            .unwrap()
            .map(|status| status.code().unwrap_or(-1));
        code.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("tokengate did not exit within {limit:?}");
    }
    code.expect("the check that held read an exit code")
}

/// `tokengate run` as a child process, with its log lines forwarded to a channel.
pub struct Running {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    /// `http://` + the inbound address it logged at start-up (empty without one).
    pub base: String,
    /// `http://` + the admin address.
    pub admin: String,
}

/// A field of a log line, text (`key=value`) or JSON (`"fields": {"key": …}`).
pub fn field(line: &str, key: &str) -> String {
    if let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) {
        return entry["fields"][key]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    let value = line
        .split(&format!("{key}="))
        .nth(1)
        .unwrap_or_else(|| panic!("{key} in {line}"));
    value.split_whitespace().next().unwrap_or("").to_string()
}

impl Running {
    pub fn start(config: &std::path::Path) -> Running {
        let mut command = Command::new(BIN);
        command.args(["run", "--config", config.to_str().unwrap()]);
        Running::spawn(command)
    }

    /// Runs `command` (a `tokengate run`) and waits for its start-up line.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut running = Running {
            child,
            lines,
            base: String::new(),
            admin: String::new(),
        };
        let started = running.wait_for("tokengate started");
        if started.contains("inbound") {
            running.base = format!("http://{}", field(&started, "inbound"));
        }
        running.admin = format!("http://{}", field(&started, "admin"));
        running
    }

    /// The next log line containing `needle` (bounded wait; blocks the thread).
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut passed = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(needle) {
                    return line;
                }
                passed.push(line);
            }
        }
        let last = &passed[passed.len().saturating_sub(10)..];
        panic!(
            "no log line containing {needle:?}; the last lines were:\n{}",
            last.join("\n")
        );
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn stop(mut self) -> i32 {
        terminate(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only if a test failed before stop(): end the process we started.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGHUP to a child we started.
pub fn hangup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What `find` finds, after installing Debian's `package` when it finds
/// nothing (as the interop test installs its npm packages): a missing tool
/// fails the test that needs it (`needed_by`), never skips it.
pub fn debian_package(
    package: &str,
    find: impl Fn() -> Option<std::path::PathBuf>,
    needed_by: &str,
) -> std::path::PathBuf {
    if let Some(found) = find() {
        return found;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    eprintln!("installing Debian's {package} with apt-get, for {needed_by}");
    let mut install = Command::new(if root { "apt-get" } else { "sudo" });
    if !root {
        install.args(["-n", "apt-get"]);
    }
    let installed = install
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    find().unwrap_or_else(|| {
        panic!("{package} is needed for {needed_by} and could not be installed ({installed:?}): apt-get install {package}")
    })
}
