//! DEVELOPMENT ONLY: the dev issuer (JWKS, discovery, `/mint`, an OAuth token
//! endpoint) on loopback.

use super::keys::SigningKey;
use super::{json_response, spawn_dev_server};
use crate::body::{full, Body};
use crate::clock::unix_now;
use crate::server::Downstream;
use crate::server::Handler;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A development issuer on loopback. Counts its hits and can be told to fail,
/// to rotate keys or to send a `Cache-Control: max-age`.
pub struct DevIssuer {
    pub addr: SocketAddr,
    pub issuer: String,
    pub(super) state: Arc<IssuerState>,
    pub(super) shutdown: CancellationToken,
}

pub(super) struct IssuerState {
    pub(super) issuer: String,
    /// Published keys; the first one signs.
    pub(super) keys: RwLock<Vec<Arc<SigningKey>>>,
    pub(super) jwks_hits: AtomicU64,
    pub(super) discovery_hits: AtomicU64,
    pub(super) failing: AtomicBool,
    pub(super) max_age: Mutex<Option<u64>>,
    pub(super) default_audience: String,
    pub(super) token_endpoint: TokenEndpoint,
}

/// The dev issuer's OAuth token endpoint: client_credentials for one client.
pub(super) struct TokenEndpoint {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    /// Lifetime of issued tokens, seconds.
    pub(super) ttl: AtomicU64,
    pub(super) failing: AtomicBool,
    /// Answer this much later (a slow token server).
    pub(super) delay_ms: AtomicU64,
    /// When each token request arrived.
    /// Recorded for the test fixtures only (it grows with every request).
    #[cfg(feature = "test-fixtures")]
    pub(super) calls: Mutex<Vec<std::time::Instant>>,
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
                #[cfg(feature = "test-fixtures")]
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

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl IssuerState {
    pub(super) fn signing_key(&self) -> Arc<SigningKey> {
        self.keys
            .read()
            .map(|k| k[0].clone())
            .expect("issuer keys lock")
    }

    /// iss, aud, sub, iat, exp (1h) merged with `extra`; a `null` removes a claim.
    pub(super) fn claims(&self, extra: Value) -> Value {
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
        #[cfg(feature = "test-fixtures")]
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
            let claims = crate::unverified::claims(jwt)?;
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
                    .map(|k| k.iter().map(|k| k.jwk().clone()).collect())
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
