//! DEVELOPMENT ONLY: a built-in issuer with ephemeral keys (JWKS, discovery and a
//! `/mint` endpoint) and an echo upstream, for `tokengate demo` and for tests.
//! Never started by `tokengate run`. What only tests use is in `fixtures`,
//! behind the `test-fixtures` feature.

mod echo;
#[cfg(feature = "test-fixtures")]
mod fixtures;
mod issuer;
mod keys;

pub use crate::clock::unix_now;
pub use echo::Echo;
pub use issuer::{DevIssuer, DEV_CLIENT_ID, DEV_CLIENT_SECRET};
pub use keys::{sign_with_header, KeyKind, SigningKey};

use crate::body::{full, Body};
use crate::server::{serve, Handler, ServeOptions};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `handler` on `listener` until the returned token is cancelled.
fn spawn_dev_server<H: Handler>(listener: TcpListener, handler: Arc<H>) -> CancellationToken {
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 64 * 1024,
        drain: Duration::from_millis(200),
        max_connections: 1024,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, None, options, handler, shutdown.clone()));
    shutdown
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The audience the demo issuer's tokens carry and the demo guard accepts.
const DEMO_AUDIENCE: &str = "demo-api";

/// `tokengate demo`: issuer + echo upstream + guard, all on loopback; prints curl commands.
pub async fn run_demo(shutdown: CancellationToken) -> Result<(), String> {
    let issuer = DevIssuer::start(
        vec![SigningKey::generate(KeyKind::Rs256, "demo-rs256")],
        DEMO_AUDIENCE,
    )
    .await
    .map_err(|e| e.to_string())?;
    let echo = Echo::start().await.map_err(|e| e.to_string())?;
    let yaml = demo_config(&issuer.issuer, echo.addr);
    let config =
        crate::config::Config::from_yaml(&yaml, "<demo>", &|_| None).map_err(|e| e.to_string())?;
    let app = crate::start(&config, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    let guard = app.inbound().ok_or("demo config has no inbound")?;
    // Waited for (bounded): the printed commands should work at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), guard.guard().ready()).await;
    let base = format!("http://{}", app.inbound_addr.ok_or("no inbound address")?);
    let reader = issuer.mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let writer = issuer.mint(json!({ "sub": "bob", "scope": "orders:read orders:write" }));
    println!(
        r#"
tokengate demo — DEVELOPMENT ONLY (ephemeral keys; never use this issuer for anything real)

  issuer   {iss}   (JWKS {iss}/jwks.json, mint tokens at {iss}/mint?scope=...&sub=...)
           its tokens carry aud {aud}, the audience the guard accepts
  upstream http://{echo}   (echoes the request it receives)
  guard    {base}   → upstream; rules: /public anonymous, GET /orders needs orders:read, POST /orders needs orders:write
  admin    http://{admin}   (/healthz /readyz /metrics)

Try:
  READ={reader}
  WRITE={writer}

  curl -i {base}/orders/42                                            # 401: no token
  curl -i -H "Authorization: Bearer $READ" {base}/orders/42           # 200: upstream sees x-auth-subject: alice
  curl -i -X POST -H "Authorization: Bearer $READ" {base}/orders      # 403: insufficient_scope (the token lacks a required scope: orders:write)
  curl -i -X POST -H "Authorization: Bearer $WRITE" {base}/orders     # 200
  curl -i -H "Authorization: Bearer ${{READ%.*}}.${{WRITE##*.}}" {base}/orders/42   # 401: invalid_token (signature does not verify: READ's claims, WRITE's signature)
  curl -i {base}/public/hello                                         # 200: anonymous rule
  curl -s http://{admin}/metrics | grep tokengate_auth                 # decisions by reason

Ctrl-C to stop.
"#,
        iss = issuer.issuer,
        aud = DEMO_AUDIENCE,
        echo = echo.addr,
        admin = app.admin_addr,
    );
    shutdown.cancelled().await;
    app.wait().await;
    Ok(())
}

/// The demo guard's config, validated by the same code as any file.
pub fn demo_config(issuer: &str, upstream: SocketAddr) -> String {
    format!(
        r#"
admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{upstream}"
  mode: strict
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: [{DEMO_AUDIENCE}]
      algorithms: [RS256]
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /orders, methods: [GET, HEAD], scopes: ["orders:read"] }}
    - {{ path: /orders, methods: [POST, PUT, DELETE], scopes: ["orders:write"] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject, scope: x-auth-scopes }}
    authorization: strip
"#
    )
}
