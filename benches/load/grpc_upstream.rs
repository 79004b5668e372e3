//! The gRPC app for `benches/load/h2.sh`: tonic-health's standard
//! `grpc.health.v1` service, answering SERVING, over h2c on one thread.
//!
//! ```text
//! cargo run --release --example grpc-upstream -- <port>
//! ```

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(Ok(port)) = std::env::args().nth(1).map(|p| p.parse::<u16>()) else {
        eprintln!("usage: grpc-upstream <port>");
        return ExitCode::from(64);
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("grpc-upstream: 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    match tonic::transport::Server::builder()
        .serve_with_incoming(health, incoming)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc-upstream: {e}");
            ExitCode::from(1)
        }
    }
}
