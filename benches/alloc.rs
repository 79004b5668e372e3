//! Heap allocations per proxied request, counted by a global allocator that
//! counts (here only: the shipped binary uses the system allocator as is).
//!
//! The real proxy (`tokengate::start`, on a single-threaded runtime as
//! `--workers 1` runs it) between a client and an upstream that allocate
//! nothing per request (blocking sockets, fixed buffers, prebuilt requests),
//! so every allocation counted while requests run is tokengate's. Each case
//! sends the request `benches/load/run.sh` sends (a 598-byte RS256 bearer
//! token included) on one keep-alive connection, warms up, then counts.
//!
//!   cargo bench --bench alloc          # prints a table; TSV with --tsv
//!
//! Loopback only; bounded (a few thousand requests per case); the threads it
//! starts end with it.

use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokengate::access_log::{self, AccessLog, Format};
use tokengate::demo::{unix_now, KeyKind, SigningKey};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; counting
// has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ISSUER: &str = "https://issuer.bench.local";
const WARM_UP: usize = 500;
const COUNTED: usize = 3000;

fn main() {
    let tsv = std::env::args().any(|a| a == "--tsv");
    let key = SigningKey::generate(KeyKind::Rs256, "bench-rs256");
    let now = unix_now();
    let token = |n: usize| {
        key.sign_jwt(&json!({
            "iss": ISSUER, "aud": "bench-api", "sub": format!("user-{n}"), "scope": "bench:read",
            "iat": now, "exp": now + 3600, "jti": format!("bench-{n}"),
        }))
    };
    let upstream = upstream(json!({ "keys": [key.jwk()] }).to_string());
    let repeated = token(0);
    let unique: Vec<String> = (1..=WARM_UP + COUNTED).map(token).collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let front = runtime.block_on(start(upstream));
    let get = |path: &str, token: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n")
            .into_bytes()
    };
    let pass = vec![get("/public/x", &repeated)];
    let hit = vec![get("/api", &repeated)];
    let fresh: Vec<Vec<u8>> = unique.iter().map(|t| get("/api", t)).collect();

    let mut rows = vec![(
        "pass-through, access log off",
        runtime.block_on(count(front, pass.clone())),
    )];
    access_log::install(
        AccessLog::spawn(Format::Text, access_log::DEFAULT_CAPACITY, std::io::sink())
            .expect("access log"),
    );
    rows.push(("pass-through", runtime.block_on(count(front, pass))));
    rows.push(("cache hit", runtime.block_on(count(front, hit))));
    rows.push(("unique token", runtime.block_on(count(front, fresh))));
    access_log::close();

    for (case, (allocs, bytes)) in rows {
        if tsv {
            println!("{case}\t{allocs:.2}\t{bytes:.0}");
        } else {
            println!("{case:<30} {allocs:>8.2} allocations {bytes:>8.0} bytes per request");
        }
    }
}

/// Starts tokengate in front of `upstream`; its inbound address.
async fn start(upstream: SocketAddr) -> SocketAddr {
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{upstream}"
  issuers:
    - issuer: {ISSUER}
      jwks_uri: "http://{upstream}/jwks.json"
      audiences: [bench-api]
      algorithms: [RS256]
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /, scopes: ["bench:read"] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject }}
    authorization: keep
"#
    );
    let config = tokengate::config::Config::from_yaml(&yaml, "alloc bench", &|_| None)
        .expect("bench config");
    let app = tokengate::start(&config, tokio_util::sync::CancellationToken::new())
        .await
        .expect("start");
    let guard = app.inbound().expect("inbound");
    for _ in 0..500 {
        if guard.guard().is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(guard.guard().is_ready(), "keys did not load");
    let addr = app.inbound_addr.expect("inbound listener");
    // Serves until the process ends.
    std::mem::forget(app);
    addr
}

/// Sends `requests` in turn (round robin) on one connection from another
/// thread, while this runtime serves them: allocations and bytes per request
/// over the counted part.
async fn count(front: SocketAddr, requests: Vec<Vec<u8>>) -> (f64, f64) {
    tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(front).expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 64 * 1024];
        let mut send = |i: usize| {
            conn.write_all(&requests[i % requests.len()])
                .expect("write");
            let status = read_response(&mut conn, &mut buf);
            assert_eq!(status, 200, "request {i}");
        };
        (0..WARM_UP).for_each(&mut send);
        let (a0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        (WARM_UP..WARM_UP + COUNTED).for_each(&mut send);
        let (a1, b1) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        let n = COUNTED as f64;
        ((a1 - a0) as f64 / n, (b1 - b0) as f64 / n)
    })
    .await
    .expect("client")
}

/// Reads one response (headers and a `Content-Length` body) into `buf`; its status.
fn read_response(conn: &mut TcpStream, buf: &mut [u8]) -> u16 {
    let mut len = 0;
    loop {
        let n = conn.read(&mut buf[len..]).expect("read");
        assert!(n > 0, "closed");
        len += n;
        if let Some(end) = find(&buf[..len], b"\r\n\r\n") {
            let (status, body) = (parse_u64(&buf[9..12]) as u16, content_length(&buf[..end]));
            while len < end + 4 + body {
                let n = conn.read(&mut buf[len..]).expect("read body");
                assert!(n > 0, "closed in the body");
                len += n;
            }
            return status;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
            name.eq_ignore_ascii_case(b"content-length")
                .then(|| parse_u64(value[1..].trim_ascii()) as usize)
        })
        .unwrap_or(0)
}

fn parse_u64(digits: &[u8]) -> u64 {
    digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

/// An upstream on its own threads: `/jwks.json` answers `jwks`, anything else
/// `200 ok`; it allocates nothing per request once a connection is open.
fn upstream(jwks: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let jwks = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{jwks}",
        jwks.len()
    );
    let jwks: &'static [u8] = Box::leak(jwks.into_bytes().into_boxed_slice());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn, jwks));
        }
    });
    addr
}

fn serve(mut conn: TcpStream, jwks: &[u8]) {
    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 32 * 1024];
    let mut len = 0;
    loop {
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        // Requests without bodies, as tokengate forwards these.
        while let Some(end) = find(&buf[..len], b"\r\n\r\n") {
            let answer = if buf.starts_with(b"GET /jwks.json ") {
                jwks
            } else {
                OK
            };
            if conn.write_all(answer).is_err() {
                return;
            }
            buf.copy_within(end + 4..len, 0);
            len -= end + 4;
        }
        if len == buf.len() {
            return;
        }
    }
}
