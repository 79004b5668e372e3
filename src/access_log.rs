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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// `inbound`, `outbound` or `authz`: like `reason`, one of tokengate's
    /// own words, written without an escape check.
    pub direction: &'static str,
    /// The rule's name, the outbound host, or `none`.
    pub route: &'a str,
    pub method: &'a str,
    /// The path, never the query (it may hold secrets).
    pub path: &'a str,
    pub status: u16,
    /// Why the answer is what it is (`ok`, `missing_token`, …).
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
    stamp: Stamp,
    /// Buffers the writer has taken, and of those, written: a flush waits
    /// until the one holding its lines is written.
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
        let State { pending, stamp, .. } = &mut *state;
        format_line(pending, self.format, stamp, now, line);
        let wake = before == 0 || (before < WRITE_AT && pending.len() >= WRITE_AT);
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
        // Lines still pending go out in the next buffer taken; with none
        // pending, the writer may still be writing the last one it took.
        let target = state.taken + u64::from(!state.pending.is_empty());
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
/// `buf` with its newline. Allocates nothing beyond `buf`'s growth; `stamp`
/// keeps the formatted second between lines.
pub fn format_line(
    buf: &mut Vec<u8>,
    format: Format,
    stamp: &mut Stamp,
    now: SystemTime,
    line: &Line<'_>,
) {
    match format {
        Format::Text => text(buf, stamp, now, line),
        Format::Json => json(buf, stamp, now, line),
    }
}

fn text(out: &mut Vec<u8>, stamp: &mut Stamp, now: SystemTime, line: &Line<'_>) {
    out.reserve(TEXT_FIXED + line.route.len() + line.method.len() + line.path.len());
    stamp.write(out, now);
    debug_assert!(plain(line.direction) && plain(line.reason));
    out.extend_from_slice(b"  INFO tokengate::access: request direction=\"");
    out.extend_from_slice(line.direction.as_bytes());
    out.extend_from_slice(b"\" route=");
    // Bare, as tracing printed it; quoted if it would not read back as one word.
    if plain(line.route) && !line.route.is_empty() {
        out.extend_from_slice(line.route.as_bytes());
    } else {
        quoted(out, line.route);
    }
    out.extend_from_slice(b" method=");
    out.extend_from_slice(line.method.as_bytes());
    out.extend_from_slice(b" path=");
    quoted(out, line.path);
    out.extend_from_slice(b" status=");
    status(out, line.status);
    out.extend_from_slice(b" reason=\"");
    out.extend_from_slice(line.reason.as_bytes());
    out.push(b'"');
    if let Some(upstream) = line.upstream_status {
        out.extend_from_slice(b" upstream_status=");
        status(out, upstream);
    }
    out.extend_from_slice(b" duration_ms=");
    millis(out, line.duration);
    out.push(b'\n');
}

/// A text line's bytes beyond its route, method and path, or more.
const TEXT_FIXED: usize = 224;

fn json(out: &mut Vec<u8>, stamp: &mut Stamp, now: SystemTime, line: &Line<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    stamp.write(out, now);
    out.extend_from_slice(
        b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"direction\":",
    );
    json_string(out, line.direction);
    out.extend_from_slice(b",\"route\":");
    json_string(out, line.route);
    out.extend_from_slice(b",\"method\":");
    json_string(out, line.method);
    out.extend_from_slice(b",\"path\":");
    json_string(out, line.path);
    out.extend_from_slice(b",\"status\":");
    status(out, line.status);
    out.extend_from_slice(b",\"reason\":");
    json_string(out, line.reason);
    if let Some(upstream) = line.upstream_status {
        out.extend_from_slice(b",\"upstream_status\":");
        status(out, upstream);
    }
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, line.duration);
    out.extend_from_slice(b"},\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// The timestamp's text up to the second, kept while the second lasts: RFC
/// 3339 in UTC with microseconds, as `tracing-subscriber` writes it.
#[derive(Debug, Default)]
pub struct Stamp {
    second: u64,
    /// `2026-12-04T21:18:50.`
    text: Vec<u8>,
}

impl Stamp {
    fn write(&mut self, out: &mut Vec<u8>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.text.is_empty() || self.second != since.as_secs() {
            let t = time::OffsetDateTime::from(now);
            self.second = since.as_secs();
            self.text.clear();
            let mut text = String::with_capacity(20);
            // Writing into a String cannot fail.
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            self.text.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.text);
        out.extend_from_slice(&digits::<6>(since.subsec_micros().into()));
        out.push(b'Z');
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An HTTP status: three digits (hyper's `StatusCode` holds 100–999), else
/// as a number.
fn status(out: &mut Vec<u8>, code: u16) {
    if (100..1000).contains(&code) {
        out.extend_from_slice(&digits::<3>(code.into()));
    } else {
        number(out, code.into());
    }
}

/// The last `N` decimal digits of `n`, zero-padded.
fn digits<const N: usize>(mut n: u64) -> [u8; N] {
    let mut text = [b'0'; N];
    for digit in text.iter_mut().rev() {
        // A remainder of 10 is below 10: the cast is exact.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    text
}

/// Milliseconds with three decimals (microsecond resolution).
fn millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    number(out, micros / 1000);
    out.push(b'.');
    out.extend_from_slice(&digits::<3>(micros % 1000));
}

/// Printable ASCII that needs no escape in either format.
fn plain(text: &str) -> bool {
    text.bytes().all(|b| PLAIN[usize::from(b)])
}

/// [`plain`]'s bytes: printable ASCII but `"` and `\\`.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    table
};

/// `text` as Rust's `{:?}` quotes it (what `tracing` printed for a string).
fn quoted(out: &mut Vec<u8>, text: &str) {
    if plain(text) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let mut escaped = String::new();
        // Writing into a String cannot fail.
        let _ = write!(escaped, "{text:?}");
        out.extend_from_slice(escaped.as_bytes());
    }
}

/// A JSON string literal (RFC 8259 escapes), written in place.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text.as_bytes()[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests;
