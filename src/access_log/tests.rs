use super::*;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// 2026-12-04T21:18:50.269071Z
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(1_796_419_130_269_071)
}

fn line<'a>(path: &'a str, upstream_status: Option<u16>) -> Line<'a> {
    Line {
        direction: "inbound",
        route: "/public",
        method: "GET",
        path,
        status: 200,
        reason: "anonymous",
        upstream_status,
        duration: Duration::from_micros(1_652_001),
    }
}

fn formatted(format: Format, line: &Line<'_>) -> String {
    let mut buf = Vec::new();
    format_line(&mut buf, format, &mut Stamp::default(), at(), line);
    String::from_utf8(buf).unwrap()
}

/// The lines `tracing-subscriber` printed for these requests (captured from
/// the build before the access log moved off it), but for `duration_ms`,
/// now in whole microseconds.
#[test]
fn lines_are_what_tracing_subscriber_printed() {
    let cases = [
        (
            Format::Text,
            line("/public/he%22llo", Some(200)),
            "2026-12-04T21:18:50.269071Z  INFO tokengate::access: request direction=\"inbound\" route=/public method=GET path=\"/public/he%22llo\" status=200 reason=\"anonymous\" upstream_status=200 duration_ms=1652.001\n",
        ),
        (
            Format::Text,
            Line { status: 401, reason: "missing_token", duration: Duration::from_micros(23), ..line("/orders/42", None) },
            "2026-12-04T21:18:50.269071Z  INFO tokengate::access: request direction=\"inbound\" route=/public method=GET path=\"/orders/42\" status=401 reason=\"missing_token\" duration_ms=0.023\n",
        ),
        (
            Format::Json,
            line("/public/he%22llo", Some(200)),
            "{\"timestamp\":\"2026-12-04T21:18:50.269071Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"direction\":\"inbound\",\"route\":\"/public\",\"method\":\"GET\",\"path\":\"/public/he%22llo\",\"status\":200,\"reason\":\"anonymous\",\"upstream_status\":200,\"duration_ms\":1652.001},\"target\":\"tokengate::access\"}\n",
        ),
        (
            Format::Json,
            Line { duration: Duration::from_micros(23), ..line("/x", None) },
            "{\"timestamp\":\"2026-12-04T21:18:50.269071Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"direction\":\"inbound\",\"route\":\"/public\",\"method\":\"GET\",\"path\":\"/x\",\"status\":200,\"reason\":\"anonymous\",\"duration_ms\":0.023},\"target\":\"tokengate::access\"}\n",
        ),
    ];
    for (format, line, want) in cases {
        assert_eq!(formatted(format, &line), want);
    }
}

/// Strings that need escaping in one format or both.
const AWKWARD: [&str; 8] = [
    "a\"b",
    "a\\b",
    "tab\there",
    "nl\nx",
    "cr\rx",
    "\u{1}\u{1f}",
    "ünï",
    "",
];

/// Whatever a route or path holds, a JSON line parses back to it, and a text
/// line quotes it as `tracing` did (Rust's debug escapes), fast path or not.
#[test]
fn strings_are_escaped() {
    for text in AWKWARD.iter().copied().chain(["x'y z"]) {
        let mut out = Vec::new();
        quoted(&mut out, text);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{text:?}"));
    }
    for text in AWKWARD {
        let line = Line {
            route: text,
            ..line(text, None)
        };
        let json: serde_json::Value =
            serde_json::from_str(&formatted(Format::Json, &line)).unwrap();
        assert_eq!(json["fields"]["path"], text);
        assert_eq!(json["fields"]["route"], text);
        let out = formatted(Format::Text, &line);
        assert!(out.contains(&format!("path={text:?} ")), "{out}");
        assert_eq!(out.matches('\n').count(), 1, "{out}");
    }
}

/// A writer that blocks until told to go on: stderr piped to a reader that
/// stopped reading.
struct Stalled {
    go: mpsc::Receiver<()>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Write for Stalled {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.go.recv();
        self.out.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With stderr stalled, requests go on: lines past the bound are dropped and
/// counted, never waited for; once stderr drains, every line kept is written
/// whole.
#[test]
fn a_stalled_writer_drops_lines_and_blocks_nothing() {
    let (go, gate) = mpsc::channel();
    let out = Arc::new(Mutex::new(Vec::new()));
    let capacity = 4096;
    let log = AccessLog::spawn(
        Format::Text,
        capacity,
        Stalled {
            go: gate,
            out: out.clone(),
        },
    )
    .unwrap();
    let one = formatted(Format::Text, &line("/a", Some(200))).len();
    let sent = 1000;
    for _ in 0..sent {
        log.record(&line("/a", Some(200)));
    }
    let dropped = log.dropped();
    // At most the bound and the buffer the writer holds are kept.
    assert!(
        dropped >= sent - 2 * (capacity / one + 1) as u64,
        "{dropped}"
    );
    for _ in 0..sent {
        let _ = go.send(());
    }
    log.close();
    let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len() as u64, sent - dropped);
    assert!(lines.iter().all(|l| l.ends_with("duration_ms=1652.001")));
}

/// A flush waits for lines the writer has already taken but not yet written
/// (nothing pending is not everything written).
#[test]
fn flush_waits_for_the_buffer_being_written() {
    let (go, gate) = mpsc::channel();
    let out = Arc::new(Mutex::new(Vec::new()));
    let stalled = Stalled {
        go: gate,
        out: out.clone(),
    };
    let log = AccessLog::spawn(Format::Text, DEFAULT_CAPACITY, stalled).unwrap();
    log.record(&line("/a", Some(200)));
    // The writer takes the line (after its gather wait) and stalls writing it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lock(&log.shared.state).taken == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer took nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::scope(|s| {
        let (done, flushed) = mpsc::channel();
        let log = &log;
        s.spawn(move || {
            log.flush();
            let _ = done.send(());
        });
        let early = flushed.recv_timeout(std::time::Duration::from_millis(200));
        // The writer goes on before anything is asserted: a failing test
        // must not leave it (and the log's close) stalled.
        go.send(()).unwrap();
        assert!(early.is_err(), "flush returned before the line was written");
        flushed.recv().unwrap();
        assert_eq!(
            out.lock().unwrap().iter().filter(|&&b| b == b'\n').count(),
            1
        );
    });
    log.close();
}

/// A flush returns once every line recorded before it is written; lines after
/// `close` are dropped.
#[test]
fn flush_and_close_write_everything_recorded() {
    let out = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = AccessLog::spawn(Format::Json, DEFAULT_CAPACITY, Shared(out.clone())).unwrap();
    for round in 1..=3 {
        for _ in 0..10 {
            log.record(&line("/b", None));
        }
        log.flush();
        let written = out.lock().unwrap().iter().filter(|&&b| b == b'\n').count();
        assert_eq!(written, round * 10);
    }
    log.record(&line("/c", None));
    log.close();
    log.record(&line("/d", None));
    let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(written.lines().count(), 31);
    assert!(written.contains("\"/c\"") && !written.contains("\"/d\""));
    assert_eq!(log.dropped(), 1);
}

/// The second's text is kept while the second lasts, and redone when it turns
/// (also backwards: the wall clock may be set back).
#[test]
fn the_timestamp_follows_the_clock() {
    let mut stamp = Stamp::default();
    let mut at_time = |micros: u64| {
        let mut out = Vec::new();
        stamp.write(&mut out, UNIX_EPOCH + Duration::from_micros(micros));
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        at_time(1_796_419_130_269_071),
        "2026-12-04T21:18:50.269071Z"
    );
    assert_eq!(
        at_time(1_796_419_130_000_001),
        "2026-12-04T21:18:50.000001Z"
    );
    assert_eq!(
        at_time(1_796_419_131_000_000),
        "2026-12-04T21:18:51.000000Z"
    );
    assert_eq!(
        at_time(1_796_419_129_999_999),
        "2026-12-04T21:18:49.999999Z"
    );
    assert_eq!(at_time(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
}

/// Statuses and durations, at the edges of their fixed widths.
#[test]
fn numbers_are_written_whole() {
    let cases: [(u16, u64, &str); 5] = [
        (100, 0, "status=100 reason=\"anonymous\" duration_ms=0.000"),
        (
            599,
            999,
            "status=599 reason=\"anonymous\" duration_ms=0.999",
        ),
        (
            999,
            1_000,
            "status=999 reason=\"anonymous\" duration_ms=1.000",
        ),
        (
            42,
            1_000_001,
            "status=42 reason=\"anonymous\" duration_ms=1000.001",
        ),
        (
            1_000,
            u64::MAX,
            "status=1000 reason=\"anonymous\" duration_ms=18446744073709551.615",
        ),
    ];
    for (status, micros, want) in cases {
        let line = Line {
            status,
            duration: Duration::from_micros(micros),
            ..line("/n", None)
        };
        let out = formatted(Format::Text, &line);
        assert!(out.ends_with(&format!("{want}\n")), "{out}");
    }
}
