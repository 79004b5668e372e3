//! A gRPC load client for `benches/load/h2.sh`'s unique-token case, which
//! h2load cannot drive (its headers are the same on every request): unary
//! `grpc.health.v1.Health/Check` calls over h2c, a different bearer token on
//! each, on C connections with M streams each, for D seconds. Counts a call
//! as good only when its trailers say `grpc-status: 0`.
//!
//! ```text
//! cargo run --release --example grpc-load -- <url> <conns> <streams> <seconds> [tokens-file]
//! ```
//!
//! Without a tokens file every call carries the `TOKEN` environment value (or
//! none). Prints one line: `RESULT rps=… p50_us=… p99_us=… requests=… failed=… tokens=…`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper::{Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An empty `HealthCheckRequest` in gRPC framing: not compressed, 0 bytes.
const EMPTY_MESSAGE: [u8; 5] = [0, 0, 0, 0, 0];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(Ok(conns)), Some(Ok(streams)), Some(Ok(seconds))) = (
        args.first().map(|u| u.parse::<Uri>()),
        args.get(1).map(|n| n.parse::<usize>()),
        args.get(2).map(|n| n.parse::<usize>()),
        args.get(3).map(|n| n.parse::<u64>()),
    ) else {
        eprintln!("usage: grpc-load <url> <conns> <streams> <seconds> [tokens-file]");
        return ExitCode::from(64);
    };
    let Ok(url) = url else {
        eprintln!("grpc-load: not a URL: {}", args[0]);
        return ExitCode::from(64);
    };
    let tokens: Vec<String> = match args.get(4) {
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => text.lines().map(|t| format!("Bearer {t}")).collect(),
            Err(e) => {
                eprintln!("grpc-load: {file}: {e}");
                return ExitCode::from(1);
            }
        },
        None => std::env::var("TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| vec![format!("Bearer {t}")])
            .unwrap_or_default(),
    };
    let tokens = Arc::new(tokens);
    let authority = url.authority().map(|a| a.to_string()).unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..conns {
        let tcp = match tokio::net::TcpStream::connect(&authority).await {
            Ok(tcp) => tcp,
            Err(e) => {
                eprintln!("grpc-load: {authority}: {e}");
                return ExitCode::from(1);
            }
        };
        let _ = tcp.set_nodelay(true);
        let (sender, connection) =
            match http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("grpc-load: handshake: {e}");
                    return ExitCode::from(1);
                }
            };
        tokio::spawn(connection);
        for _ in 0..streams {
            let (mut sender, url) = (sender.clone(), url.clone());
            let (tokens, next, failed) = (tokens.clone(), next.clone(), failed.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let mut req = Request::post(url.clone())
                        .header("content-type", "application/grpc")
                        .header("te", "trailers");
                    if !tokens.is_empty() {
                        let i = next.fetch_add(1, Ordering::Relaxed) % tokens.len();
                        req = req.header("authorization", tokens[i].as_str());
                    }
                    let Ok(req) = req.body(Full::new(Bytes::from_static(&EMPTY_MESSAGE))) else {
                        break;
                    };
                    let started = Instant::now();
                    let ok = match sender.send_request(req).await {
                        Ok(resp) => match resp.into_body().collect().await {
                            Ok(body) => body
                                .trailers()
                                .and_then(|t| t.get("grpc-status"))
                                .is_some_and(|s| s == "0"),
                            Err(_) => false,
                        },
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(started.elapsed().as_micros() as u64);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            }));
        }
    }
    let mut latencies = Vec::new();
    for worker in workers {
        if let Ok(mut l) = worker.await {
            latencies.append(&mut l);
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "RESULT rps={:.0} p50_us={} p99_us={} requests={} failed={} tokens={}",
        latencies.len() as f64 / seconds as f64,
        at(0.5),
        at(0.99),
        latencies.len(),
        failed.load(Ordering::Relaxed),
        tokens.len()
    );
    ExitCode::SUCCESS
}
