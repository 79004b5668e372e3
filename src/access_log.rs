//! Leaf: the access log, written off the request path.
//!
//! A request formats its line straight into a shared, bounded buffer (no
//! allocation, no syscall); one writer thread takes the whole buffer at a time
//! and writes it to stderr in a single `write`. A writer that cannot keep up
//! (stderr is a pipe nobody drains) never blocks a request: once the buffer
//! holds [`AccessLog::capacity`] bytes, further lines are dropped and counted
//! (`tokengate_access_log_dropped_total`).
//!
//! The lines are the ones `tracing-subscriber` printed for the access log
//! before it moved here, in both formats, so log pipelines see no change.
//!
//! The sink is installed once, at start-up, like the `tracing` dispatcher it
//! sits beside ([`install`]); a process that installs none (the library's
//! tests) logs no access lines.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The `tracing` target the access log's lines name, and that a log filter
/// names to turn it off (`tokengate::access=off`).
pub const TARGET: &str = "tokengate::access";

/// Bytes of lines held for the writer; past it, lines are dropped. About
/// 5 000 lines: at 50 000 requests a second, 100 ms of a stalled stderr.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// The writer is woken early once this much is waiting.
const WRITE_AT: usize = 64 * 1024;
/// Otherwise, it gathers lines for at most this long before writing them.
const GATHER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `tracing-subscriber`'s text format (`… INFO tokengate::access: request direction="inbound" …`).
    Text,
    /// `tracing-subscriber`'s JSON format, the fields under `fields`.
    Json,
}

/// What one line says of a request.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub direction: &'static str,
    /// The rule's name, the outbound host, or `none`.
    pub route: &'a str,
    pub method: &'a str,
    /// The path, never the query (it may hold secrets).
    pub path: &'a str,
    pub status: u16,
    pub reason: &'static str,
    /// The upstream's status, when the answer came from the upstream.
    pub upstream_status: Option<u16>,
    pub duration: Duration,
}

/// A bounded line buffer and the thread that writes it out.
pub struct AccessLog {
    format: Format,
    capacity: usize,
    shared: std::sync::Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (lines waiting, or closing).
    wake: Condvar,
    /// Wakes [`AccessLog::flush`] callers after each write.
    written: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Buffers the writer has taken, and of those, written: a flush waits
    /// until the next one taken is written.
    taken: u64,
    written: u64,
    closing: bool,
    /// The writer has returned.
    stopped: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while formatting leaves complete lines behind it: still valid.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

static SINK: OnceLock<AccessLog> = OnceLock::new();

/// Makes `log` the process's access log (the first call wins; start-up makes
/// it). Returns the one installed.
pub fn install(log: AccessLog) -> &'static AccessLog {
    SINK.get_or_init(|| log)
}

/// The process's access log, if one is installed.
pub fn sink() -> Option<&'static AccessLog> {
    SINK.get()
}

/// Lines the process's access log dropped because its writer was behind.
pub fn dropped() -> u64 {
    sink().map_or(0, AccessLog::dropped)
}

/// Writes out every line logged so far and stops the writer: the last thing
/// the process does before it exits.
pub fn close() {
    if let Some(log) = sink() {
        log.close();
    }
}

impl AccessLog {
    /// A log writing to `out` from its own thread.
    pub fn spawn(
        format: Format,
        capacity: usize,
        out: impl Write + Send + 'static,
    ) -> std::io::Result<AccessLog> {
        let shared = std::sync::Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_out(&shared, out))?
        };
        Ok(AccessLog {
            format,
            capacity,
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Adds `line`; drops it (and counts it) when the buffer is full. Never
    /// blocks on the writer: the lock is held only to append.
    pub fn record(&self, line: &Line<'_>) {
        let now = SystemTime::now();
        let mut state = lock(&self.shared.state);
        let before = state.pending.len();
        if before >= self.capacity || state.closing {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        format_line(&mut state.pending, self.format, now, line);
        let wake = before == 0 || (before < WRITE_AT && state.pending.len() >= WRITE_AT);
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line recorded before the call is written.
    pub fn flush(&self) {
        let mut state = lock(&self.shared.state);
        if state.pending.is_empty() {
            return;
        }
        let target = state.taken + 1;
        while state.written < target && !state.stopped {
            state = self
                .shared
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes what is left and stops the writer; later lines are dropped.
    pub fn close(&self) {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_one();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: waits for lines, gathers more for a moment (or until
/// [`WRITE_AT`] bytes wait), then writes them all at once, outside the lock.
fn write_out(shared: &Shared, mut out: impl Write) {
    // However the thread ends, a flush waiting on it returns.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            lock(&self.0.state).stopped = true;
            self.0.written.notify_all();
        }
    }
    let _stopped = Stopped(shared);
    let mut spare = Vec::new();
    loop {
        let mut state = lock(&shared.state);
        while state.pending.is_empty() && !state.closing {
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if !state.closing && state.pending.len() < WRITE_AT {
            state = shared
                .wake
                .wait_timeout(state, GATHER)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut state.pending, &mut spare);
        state.taken += 1;
        let closing = state.closing;
        drop(state);
        if !spare.is_empty() {
            // Nowhere to report a failed stderr write but stderr.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        let mut state = lock(&shared.state);
        state.written += 1;
        let done = closing && state.pending.is_empty();
        drop(state);
        shared.written.notify_all();
        if done {
            return;
        }
    }
}

/// PURE: `line` as `tracing-subscriber` would print it at `now`, appended to
/// `buf` with its newline. Allocates nothing beyond `buf`'s growth.
pub fn format_line(buf: &mut Vec<u8>, format: Format, now: SystemTime, line: &Line<'_>) {
    let mut out = Out(buf);
    // Writing into a Vec cannot fail.
    let _ = match format {
        Format::Text => text(&mut out, now, line),
        Format::Json => json(&mut out, now, line),
    };
}

/// `Vec<u8>` as a `fmt::Write`, so numbers and escapes format in place.
struct Out<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn text(out: &mut Out<'_>, now: SystemTime, line: &Line<'_>) -> std::fmt::Result {
    timestamp(out, now)?;
    write!(
        out,
        "  INFO {TARGET}: request direction={:?} route=",
        line.direction
    )?;
    // Bare, as tracing printed it; quoted if it would not read back as one word.
    if line
        .route
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        out.write_str(line.route)?;
    } else {
        write!(out, "{:?}", line.route)?;
    }
    write!(
        out,
        " method={} path={:?} status={} reason={:?}",
        line.method, line.path, line.status, line.reason
    )?;
    if let Some(upstream) = line.upstream_status {
        write!(out, " upstream_status={upstream}")?;
    }
    out.write_str(" duration_ms=")?;
    millis(out, line.duration)?;
    out.write_char('\n')
}

fn json(out: &mut Out<'_>, now: SystemTime, line: &Line<'_>) -> std::fmt::Result {
    out.write_str("{\"timestamp\":\"")?;
    timestamp(out, now)?;
    out.write_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"direction\":")?;
    json_string(out, line.direction)?;
    out.write_str(",\"route\":")?;
    json_string(out, line.route)?;
    out.write_str(",\"method\":")?;
    json_string(out, line.method)?;
    out.write_str(",\"path\":")?;
    json_string(out, line.path)?;
    write!(out, ",\"status\":{},\"reason\":", line.status)?;
    json_string(out, line.reason)?;
    if let Some(upstream) = line.upstream_status {
        write!(out, ",\"upstream_status\":{upstream}")?;
    }
    out.write_str(",\"duration_ms\":")?;
    millis(out, line.duration)?;
    writeln!(out, "}},\"target\":\"{TARGET}\"}}")
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it.
fn timestamp(out: &mut Out<'_>, now: SystemTime) -> std::fmt::Result {
    let t = time::OffsetDateTime::from(now);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Milliseconds with three decimals (microsecond resolution).
fn millis(out: &mut Out<'_>, duration: Duration) -> std::fmt::Result {
    let micros = duration.as_micros();
    write!(out, "{}.{:03}", micros / 1000, micros % 1000)
}

/// A JSON string literal (RFC 8259 escapes), written in place.
fn json_string(out: &mut Out<'_>, text: &str) -> std::fmt::Result {
    out.write_char('"')?;
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.write_str(&text[start..i])?;
        if escape.is_empty() {
            write!(out, "\\u{b:04x}")?;
        } else {
            out.write_str(escape)?;
        }
        start = i + 1;
    }
    out.write_str(&text[start..])?;
    out.write_char('"')
}

#[cfg(test)]
mod tests;
