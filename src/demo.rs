//! DEVELOPMENT ONLY: a built-in issuer with ephemeral keys (JWKS, discovery and a
//! `/mint` endpoint) and an echo upstream, for `tokengate demo` and for tests.
//! Never started by `tokengate run`.

use crate::server::{serve, Handler, ServeOptions};
use crate::upstream::{full, Body, Downstream};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Signature algorithms the dev issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rs256,
    Es256,
    EdDsa,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// An ephemeral signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub kind: KeyKind,
    signer: Signer,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn generate(kind: KeyKind, kid: &str) -> SigningKey {
        // Key generation only fails if the system RNG does; the dev issuer cannot run without it.
        let (signer, jwk) = match kind {
            KeyKind::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                });
                (Signer::Rsa(pair), jwk)
            }
            KeyKind::Es256 => {
                let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("EC key generation");
                let point = pair.public_key().as_ref().to_vec();
                let jwk = json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                });
                (Signer::Ec(pair), jwk)
            }
            KeyKind::EdDsa => {
                let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
                let jwk = json!({
                    "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
                    "x": b64(pair.public_key().as_ref()),
                });
                (Signer::Ed(pair), jwk)
            }
        };
        SigningKey {
            kid: kid.to_string(),
            kind,
            signer,
            jwk,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.kind {
            KeyKind::Rs256 => "RS256",
            KeyKind::Es256 => "ES256",
            KeyKind::EdDsa => "EdDSA",
        }
    }

    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as a PEM `PUBLIC KEY` (X.509 SubjectPublicKeyInfo), the form
    /// other verifiers such as HAProxy's `jwt_verify` load.
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        // Encoding a key aws-lc generated itself only fails on allocation failure.
        let der = match &self.signer {
            Signer::Rsa(pair) => pair.public_key().as_der(),
            Signer::Ec(pair) => pair.public_key().as_der(),
            Signer::Ed(pair) => pair.public_key().as_der(),
        }
        .expect("public key DER");
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// Signs arbitrary bytes with this key's algorithm.
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("RSA signing");
                sig
            }
            Signer::Ec(pair) => pair
                .sign(&rng, message)
                .expect("EC signing")
                .as_ref()
                .to_vec(),
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims` with header `{alg, kid, typ}`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg(), "kid": self.kid, "typ": "at+jwt" });
        sign_with_header(&header, claims, |m| self.sign_raw(m))
    }
}

/// `b64(header).b64(claims).b64(sign(...))` for any header and signer.
pub fn sign_with_header(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A development issuer on loopback. Counts its hits and can be told to fail,
/// to rotate keys or to send a `Cache-Control: max-age`.
pub struct DevIssuer {
    pub addr: SocketAddr,
    pub issuer: String,
    state: Arc<IssuerState>,
    shutdown: CancellationToken,
}

struct IssuerState {
    issuer: String,
    /// Published keys; the first one signs.
    keys: RwLock<Vec<Arc<SigningKey>>>,
    jwks_hits: AtomicU64,
    discovery_hits: AtomicU64,
    failing: AtomicBool,
    max_age: Mutex<Option<u64>>,
    default_audience: String,
    token_endpoint: TokenEndpoint,
}

/// The dev issuer's OAuth token endpoint: client_credentials for one client.
struct TokenEndpoint {
    client_id: String,
    client_secret: String,
    /// Lifetime of issued tokens, seconds.
    ttl: AtomicU64,
    failing: AtomicBool,
    /// Answer this much later (a slow token server).
    delay_ms: AtomicU64,
    /// When each token request arrived.
    calls: Mutex<Vec<std::time::Instant>>,
}

/// The client the dev issuer's token endpoint accepts.
pub const DEV_CLIENT_ID: &str = "demo-app";
/// Its secret (development only).
pub const DEV_CLIENT_SECRET: &str = "demo-app-secret";

impl DevIssuer {
    /// Starts on `127.0.0.1:0` with the given keys (the first signs).
    pub async fn start(
        keys: Vec<SigningKey>,
        default_audience: &str,
    ) -> std::io::Result<DevIssuer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let state = Arc::new(IssuerState {
            issuer: issuer.clone(),
            keys: RwLock::new(keys.into_iter().map(Arc::new).collect()),
            jwks_hits: AtomicU64::new(0),
            discovery_hits: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            max_age: Mutex::new(None),
            default_audience: default_audience.to_string(),
            token_endpoint: TokenEndpoint {
                client_id: DEV_CLIENT_ID.into(),
                client_secret: DEV_CLIENT_SECRET.into(),
                ttl: AtomicU64::new(3600),
                failing: AtomicBool::new(false),
                delay_ms: AtomicU64::new(0),
                calls: Mutex::new(Vec::new()),
            },
        });
        let shutdown = spawn_dev_server(listener, state.clone());
        Ok(DevIssuer {
            addr,
            issuer,
            state,
            shutdown,
        })
    }

    /// Mints a token with standard claims (iss, aud, iat, exp in 1h, sub) merged
    /// with `extra` (a `null` removes a claim), signed by the current signing key.
    pub fn mint(&self, extra: Value) -> String {
        self.state.mint(extra)
    }

    /// `mint`, signed by the published key `kid`.
    pub fn mint_with(&self, kid: &str, extra: Value) -> Option<String> {
        let key = self
            .state
            .keys
            .read()
            .ok()?
            .iter()
            .find(|k| k.kid == kid)?
            .clone();
        Some(key.sign_jwt(&self.state.claims(extra)))
    }

    /// The key that currently signs.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.state.signing_key()
    }

    /// Replaces the published key set (the first key signs from now on).
    pub fn set_keys(&self, keys: Vec<SigningKey>) {
        *self.state.keys.write().expect("issuer keys lock") =
            keys.into_iter().map(Arc::new).collect();
    }

    /// While failing, JWKS and discovery answer 503.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_max_age(&self, secs: Option<u64>) {
        *self.state.max_age.lock().expect("max_age lock") = secs;
    }

    pub fn jwks_hits(&self) -> u64 {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// Lifetime of tokens from `/token`.
    pub fn set_token_ttl(&self, secs: u64) {
        self.state.token_endpoint.ttl.store(secs, Ordering::SeqCst);
    }

    /// While failing, `/token` answers 503.
    pub fn set_token_failing(&self, failing: bool) {
        self.state
            .token_endpoint
            .failing
            .store(failing, Ordering::SeqCst);
    }

    /// `/token` answers this much later.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state
            .token_endpoint
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When each `/token` request arrived.
    pub fn token_calls(&self) -> Vec<std::time::Instant> {
        self.state
            .token_endpoint
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn discovery_hits(&self) -> u64 {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

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

impl IssuerState {
    fn signing_key(&self) -> Arc<SigningKey> {
        self.keys
            .read()
            .map(|k| k[0].clone())
            .expect("issuer keys lock")
    }

    /// iss, aud, sub, iat, exp (1h) merged with `extra`; a `null` removes a claim.
    fn claims(&self, extra: Value) -> Value {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.issuer, "aud": self.default_audience, "sub": "demo-user",
            "iat": now, "exp": now + 3600,
        });
        if let (Some(base), Value::Object(more)) = (claims.as_object_mut(), extra) {
            for (k, v) in more {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    base.insert(k, v);
                }
            }
        }
        claims
    }

    fn mint(&self, extra: Value) -> String {
        self.signing_key().sign_jwt(&self.claims(extra))
    }
}

impl IssuerState {
    /// `POST /token`: client_credentials with client_secret_basic or _post.
    async fn token(&self, req: Request<Incoming>) -> Response<Body> {
        let endpoint = &self.token_endpoint;
        if let Ok(mut calls) = endpoint.calls.lock() {
            calls.push(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(
            endpoint.delay_ms.load(Ordering::SeqCst),
        ))
        .await;
        let oauth_error = |status: StatusCode, error: &str| {
            json_response(status, json!({ "error": error }).to_string())
        };
        if endpoint.failing.load(Ordering::SeqCst) {
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        }
        let basic = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let Ok(body) = http_body_util::BodyExt::collect(req.into_body()).await else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&body.to_bytes())
                .into_owned()
                .collect();
        let (id, secret) = match (&basic, form.get("client_id"), form.get("client_secret")) {
            (Some(pair), _, _) => pair
                .split_once(':')
                .map(|(i, s)| (i.to_string(), s.to_string()))
                .unwrap_or_default(),
            (None, Some(i), Some(s)) => (i.clone(), s.clone()),
            _ => Default::default(),
        };
        let authenticated = id == endpoint.client_id && secret == endpoint.client_secret;
        // The subject: the client itself, or (dev only: unverified) the `sub` of the
        // presented assertion / subject token.
        let presented_sub = |jwt: &str| -> Option<String> {
            let payload = jwt.split('.').nth(1)?;
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
            claims.get("sub")?.as_str().map(str::to_string)
        };
        let subject = match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") if authenticated => id.clone(),
            Some("client_credentials") => {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client")
            }
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                match form.get("assertion").and_then(|a| presented_sub(a)) {
                    Some(sub) => sub,
                    None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                }
            }
            Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
                match form.get("subject_token").and_then(|t| presented_sub(t)) {
                    Some(sub) => sub,
                    None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
                }
            }
            _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        };
        let ttl = endpoint.ttl.load(Ordering::SeqCst);
        let mut claims = json!({ "sub": subject, "client_id": id, "exp": unix_now() + ttl });
        if let Some(scope) = form.get("scope") {
            claims["scope"] = json!(scope);
        }
        if let Some(aud) = form.get("audience").or(form.get("resource")) {
            claims["aud"] = json!(aud);
        }
        let answer =
            json!({ "access_token": self.mint(claims), "token_type": "Bearer", "expires_in": ttl });
        json_response(StatusCode::OK, answer.to_string())
    }
}

impl Handler for IssuerState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, _: Downstream) -> Response<Body> {
        let path = req.uri().path();
        let failing = self.failing.load(Ordering::SeqCst);
        match path {
            "/.well-known/openid-configuration" => {
                self.discovery_hits.fetch_add(1, Ordering::SeqCst);
                if failing {
                    return json_response(StatusCode::SERVICE_UNAVAILABLE, "{}".into());
                }
                let doc = json!({
                    "issuer": self.issuer,
                    "jwks_uri": format!("{}/jwks.json", self.issuer),
                    "token_endpoint": format!("{}/mint", self.issuer),
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                });
                json_response(StatusCode::OK, doc.to_string())
            }
            "/jwks.json" => {
                self.jwks_hits.fetch_add(1, Ordering::SeqCst);
                if failing {
                    return json_response(StatusCode::SERVICE_UNAVAILABLE, "{}".into());
                }
                let keys: Vec<Value> = self
                    .keys
                    .read()
                    .map(|k| k.iter().map(|k| k.jwk.clone()).collect())
                    .unwrap_or_default();
                let mut resp = json_response(StatusCode::OK, json!({ "keys": keys }).to_string());
                if let Some(secs) = *self.max_age.lock().expect("max_age lock") {
                    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={secs}")) {
                        resp.headers_mut().insert(CACHE_CONTROL, v);
                    }
                }
                resp
            }
            "/token" => self.token(req).await,
            "/mint" => {
                // Query: scope, sub, aud, ttl (seconds).
                let mut claims = json!({});
                for (k, v) in req
                    .uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                {
                    let v = v.replace('+', " ").replace("%20", " ").replace("%3A", ":");
                    match k {
                        "scope" | "sub" | "aud" => claims[k] = Value::String(v),
                        "ttl" => {
                            let ttl: u64 = v.parse().unwrap_or(3600);
                            claims["exp"] = json!(unix_now() + ttl);
                        }
                        _ => {}
                    }
                }
                let mut resp = Response::new(full(self.mint(claims) + "\n"));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                resp
            }
            _ => json_response(StatusCode::NOT_FOUND, "{}".into()),
        }
    }
}

/// An upstream that answers every request with a JSON echo of what it received,
/// and remembers the headers of the last request.
pub struct Echo {
    pub addr: SocketAddr,
    state: Arc<EchoState>,
    shutdown: CancellationToken,
}

const RECENT_PEERS: usize = 16;

#[derive(Default)]
struct EchoState {
    hits: AtomicU64,
    last: Mutex<Option<hyper::HeaderMap>>,
    /// The peers of the latest requests, oldest first (at most `RECENT_PEERS`:
    /// the demo's echo runs for as long as anyone likes).
    peers: Mutex<VecDeque<SocketAddr>>,
    /// `Authorization` values answered with 401.
    refused: Mutex<Vec<HeaderValue>>,
}

impl Echo {
    pub async fn start() -> std::io::Result<Echo> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(EchoState::default());
        let shutdown = spawn_dev_server(listener, state.clone());
        Ok(Echo {
            addr,
            state,
            shutdown,
        })
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// From now on, answer requests bearing this `Authorization` value with 401.
    pub fn refuse(&self, authorization: HeaderValue) {
        if let Ok(mut r) = self.state.refused.lock() {
            r.push(authorization);
        }
    }

    /// The peer addresses of the latest requests, oldest first:
    /// requests that came on one connection share it.
    pub fn recent_peers(&self) -> Vec<SocketAddr> {
        self.state
            .peers
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Headers of the last request received.
    pub fn last_headers(&self) -> Option<hyper::HeaderMap> {
        self.state.last.lock().ok().and_then(|l| l.clone())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Handler for EchoState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, from: Downstream) -> Response<Body> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut peers) = self.peers.lock() {
            if peers.len() == RECENT_PEERS {
                peers.pop_front();
            }
            peers.push_back(from.peer);
        }
        let refused = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|a| self.refused.lock().is_ok_and(|r| r.contains(a)));
        if refused {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(req.headers().clone());
            }
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_token" }).to_string(),
            );
        }
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str() != "authorization")
            .map(|(n, v)| (n.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
            .collect();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(req.headers().clone());
        }
        // `?delay_ms=N` (at most 10s) answers slowly, for timeout and drain tests.
        let delay = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.min(10_000)));
        let method = req.method().to_string();
        let path = req.uri().to_string();
        let body_bytes = match http_body_util::BodyExt::collect(req.into_body()).await {
            Ok(b) => b.to_bytes().len(),
            Err(_) => 0,
        };
        tokio::time::sleep(delay).await;
        let body = json!({ "echo": { "method": method, "path": path, "headers": headers, "body_bytes": body_bytes } });
        json_response(
            StatusCode::OK,
            serde_json::to_string_pretty(&body).unwrap_or_default() + "\n",
        )
    }
}

/// `tokengate demo`: issuer + echo upstream + guard, all on loopback; prints curl commands.
pub async fn run_demo(shutdown: CancellationToken) -> Result<(), String> {
    let issuer = DevIssuer::start(
        vec![SigningKey::generate(KeyKind::Rs256, "demo-rs256")],
        "demo-api",
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
    for _ in 0..100 {
        if guard.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://{}", app.inbound_addr.ok_or("no inbound address")?);
    let reader = issuer.mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let writer = issuer.mint(json!({ "sub": "bob", "scope": "orders:read orders:write" }));
    println!(
        r#"
tokengate demo — DEVELOPMENT ONLY (ephemeral keys; never use this issuer for anything real)

  issuer   {iss}   (JWKS {iss}/jwks.json, mint tokens at {iss}/mint?scope=...&sub=...)
  upstream http://{echo}   (echoes the request it receives)
  guard    {base}   → upstream; rules: /public anonymous, GET /orders needs orders:read, POST /orders needs orders:write
  admin    http://{admin}   (/healthz /readyz /metrics)

Try:
  READ={reader}
  WRITE={writer}

  curl -i {base}/orders/42                                            # 401: no token
  curl -i -H "Authorization: Bearer $READ" {base}/orders/42           # 200: upstream sees x-auth-subject: alice
  curl -i -X POST -H "Authorization: Bearer $READ" {base}/orders      # 403: insufficient_scope (needs orders:write)
  curl -i -X POST -H "Authorization: Bearer $WRITE" {base}/orders     # 200
  curl -i -H "Authorization: Bearer ${{READ}}x" {base}/orders/42       # 401: invalid_token (bad signature)
  curl -i {base}/public/hello                                         # 200: anonymous rule
  curl -s http://{admin}/metrics | grep tokengate_auth                 # decisions by reason

Ctrl-C to stop.
"#,
        iss = issuer.issuer,
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
      audiences: [demo-api]
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
