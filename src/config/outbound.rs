//! The `outbound` section: routes chosen by host, each naming an upstream and
//! a token source; token sources are an enum, so a source can only hold the
//! fields its kind uses. Its YAML shape, its validated types and their
//! validation (a token source's own in [`super::tokens`]).

use super::client_auth::{AssertionKey, OAuthClient, RawClient};
use super::raw::{RawClientTls, RawTimeouts};
use super::{Secret, Timeouts, UpstreamProtocol, Validator};
use crate::dpop_key::DpopKey;
use hyper::header::HeaderValue;
use hyper::Uri;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    pub listen: String,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub tokens: BTreeMap<String, RawTokenSource>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawOutboundLimits,
    pub tls: Option<RawClientTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: String,
    pub upstream: String,
    /// How to speak to `upstream`: http1, h2 or auto.
    pub protocol: Option<String>,
    /// Absent: a pass-through route (the request is forwarded as the app sent it).
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutboundLimits {
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_retry_body_bytes: Option<usize>,
}

/// One entry of `outbound.tokens`. Flat on purpose: which fields a `kind` uses is
/// checked during validation, with a message naming the kind. `Serialize` lists
/// the fields that were set ([`RawTokenSource::present`]), so that check needs
/// no hand-kept list of them.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    pub kind: String,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub extra_params: Option<BTreeMap<String, String>>,
    pub path: Option<String>,
    /// jwt_bearer: `sub` of a self-signed assertion (default: client_id).
    pub subject: Option<String>,
    /// jwt_bearer: read the assertion from this file instead of signing one.
    pub assertion_file: Option<String>,
    /// token_exchange: the subject token's file, and its type.
    pub subject_token_file: Option<String>,
    pub subject_token_type: Option<String>,
    /// login: HTTP method, JSON body template, JSON pointers into the answer.
    pub method: Option<String>,
    pub body: Option<serde_yaml::Value>,
    pub token_pointer: Option<String>,
    pub expires_in_pointer: Option<String>,
    /// login: claims of the self-signed service login token, and its lifetime.
    pub login_token_claims: Option<BTreeMap<String, serde_json::Value>>,
    pub login_token_ttl: Option<String>,
    pub renew_before: Option<String>,
    pub inject: Option<String>,
    pub retry_on: Option<Vec<u16>>,
    pub fetch_timeout: Option<String>,
    /// TLS to this source's token server (not `file`).
    pub tls: Option<RawClientTls>,
    /// OAuth kinds: the key its tokens are bound to (RFC 9449).
    pub dpop: Option<RawDpop>,
    /// OAuth kinds: its tokens are bound to the client certificate in `tls`
    /// (RFC 8705), so its routes present that certificate upstream too.
    pub certificate_bound: Option<bool>,
}

/// `dpop:` of a token source: one of the two.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// A PEM private key (EC P-256, P-384 or Ed25519).
    pub key_file: Option<String>,
    /// A key made at start and held in memory: ES256, ES384 or EdDSA.
    pub generate: Option<String>,
}
impl RawTokenSource {
    /// Its client fields.
    pub(super) fn client(&self) -> RawClient<'_> {
        RawClient {
            client_id: self.client_id.as_ref(),
            client_auth: self.client_auth.as_deref(),
            client_secret: self.client_secret.as_ref(),
            client_secret_file: self.client_secret_file.as_ref(),
            private_key_file: self.private_key_file.as_ref(),
            key_id: self.key_id.as_ref(),
        }
    }

    /// The fields set in the file, by their YAML names (what serde parsed: a
    /// field added to the struct is listed without more code).
    pub fn present(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub listen: SocketAddr,
    pub routes: Vec<OutboundRoute>,
    pub tokens: Vec<TokenConfig>,
    pub timeouts: Timeouts,
    /// Total request header bytes; default 16 KiB.
    pub max_header_bytes: usize,
    /// Connections served at once; default 10 000.
    pub max_connections: usize,
    /// Largest request body buffered so it can be replayed after a `retry_on`
    /// answer; larger bodies stream and are not retried. Default 64 KiB.
    pub max_retry_body_bytes: usize,
    /// TLS to upstreams and token servers: extra CAs and a client certificate.
    /// `None`: the bundled web PKI roots, no client certificate.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// One entry of `outbound.routes`.
#[derive(Debug, Clone)]
pub struct OutboundRoute {
    /// Lower-case host without port; `None` is the `*` fallback.
    pub host: Option<String>,
    pub upstream: Uri,
    /// How tokengate speaks to `upstream`.
    pub protocol: UpstreamProtocol,
    /// Index into `OutboundConfig::tokens`; `None`: pass-through, nothing injected
    /// and the app's own `Authorization` kept.
    pub token: Option<usize>,
}

/// One entry of `outbound.tokens`.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub source: TokenSource,
    /// When to renew, before expiry; default 20%.
    pub renew_before: RenewBefore,
    /// How the token becomes the `Authorization` value; default `Bearer {token}`.
    pub inject: Inject,
    /// Upstream statuses that drop the token and retry once; default [401].
    pub retry_on: Vec<u16>,
    /// Per-fetch timeout; default 10s.
    pub fetch_timeout: Duration,
    /// TLS to this source's token server; `None`: `outbound.tls`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// A certificate-bound source (`certificate_bound: true`): the TLS its
    /// routes reach their upstreams with, presenting the certificate of
    /// `tls` and trusting what both `tls` and `outbound.tls` trust.
    pub upstream_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Where a token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// An OAuth 2.0 token endpoint grant.
    OAuth(Box<OAuthGrant>),
    /// A generic JSON login (DC/OS service login, GraphQL mutations, …).
    Login(Box<Login>),
    /// A token file, re-read when it changes (projected service-account token, Vault agent).
    File { path: PathBuf },
}

impl TokenSource {
    /// The `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenSource::OAuth(g) => match g.grant {
                Grant::ClientCredentials => "client_credentials",
                Grant::JwtBearer(_) => "jwt_bearer",
                Grant::TokenExchange { .. } => "token_exchange",
            },
            TokenSource::Login(_) => "login",
            TokenSource::File { .. } => "file",
        }
    }
}

/// A request to an OAuth 2.0 token endpoint.
#[derive(Debug, Clone)]
pub struct OAuthGrant {
    pub token_url: Uri,
    pub grant: Grant,
    /// Client authentication; required for client_credentials, optional otherwise.
    pub client: Option<OAuthClient>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Extra form parameters, sent as given.
    pub extra_params: Vec<(String, String)>,
    /// The key its tokens are bound to (RFC 9449): each token request and each
    /// forwarded request carries a proof signed with it.
    pub dpop: Option<std::sync::Arc<DpopKey>>,
}

#[derive(Debug, Clone)]
pub enum Grant {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 7523 §2.1: the JWT-bearer authorization grant.
    JwtBearer(Assertion),
    /// RFC 8693: exchange a subject token read from a file.
    TokenExchange {
        subject_token_file: PathBuf,
        subject_token_type: String,
    },
}

/// The assertion of a jwt_bearer grant.
#[derive(Debug, Clone)]
pub enum Assertion {
    /// Read from a file at every fetch (e.g. a projected service-account token).
    File(PathBuf),
    /// Signed by tokengate: iss = `issuer`, sub = `subject`, aud = the token URL.
    Signed {
        key: AssertionKey,
        issuer: String,
        subject: String,
    },
}

/// `kind: login`: send a JSON body built from a template, read the token (and
/// optionally its lifetime) out of the JSON answer by JSON pointer.
#[derive(Debug, Clone)]
pub struct Login {
    pub url: Uri,
    pub method: hyper::Method,
    /// Strings may contain `{client_id}`, `{client_secret}`, `{login_token}`.
    pub body: serde_json::Value,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// A freshly signed service login token, for `{login_token}`.
    pub login_token: Option<LoginToken>,
    /// Where the token is in the answer; default `/token`.
    pub token_pointer: String,
    /// Where its lifetime in seconds is; without one, the token's JWT `exp`.
    pub expires_in_pointer: Option<String>,
}

/// A short-lived RS256/ES256/EdDSA JWT tokengate signs to log in (DC/OS's
/// service login token: `uid` and `exp`).
#[derive(Debug, Clone)]
pub struct LoginToken {
    pub key: AssertionKey,
    /// Claims; strings may use `{client_id}`. `exp` (and `iat`) are added.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Lifetime of each login token; default 5m.
    pub ttl: Duration,
}

/// When a token is renewed, counted back from its expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// This fraction of the lifetime (`20%` → 0.2).
    Fraction(f64),
    /// This long before expiry (`60s`).
    Ahead(Duration),
}

impl fmt::Display for RenewBefore {
    /// As written in the config: `20%`, `60s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewBefore::Fraction(x) => write!(f, "{}%", (x * 100.0).round()),
            RenewBefore::Ahead(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

/// `prefix{token}suffix`, e.g. `Bearer {token}` or DC/OS's `token={token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    prefix: String,
    suffix: String,
}

impl Inject {
    pub fn parse(template: &str) -> Result<Inject, String> {
        let (prefix, suffix) = template
            .split_once("{token}")
            .ok_or_else(|| format!("must contain {{token}}, got {template:?}"))?;
        if suffix.contains("{token}") {
            return Err("must contain {token} once".into());
        }
        if HeaderValue::from_str(&format!("{prefix}x{suffix}")).is_err() {
            return Err("must be printable ASCII".into());
        }
        Ok(Inject {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The header value for `token`, marked sensitive (never logged by hyper/h2).
    pub fn render(&self, token: &str) -> Option<HeaderValue> {
        let mut value =
            HeaderValue::from_str(&format!("{}{token}{}", self.prefix, self.suffix)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl Validator<'_> {
    pub(super) fn outbound(&mut self, raw: RawOutbound) -> Option<OutboundConfig> {
        let listen = self.socket_addr("outbound.listen", &raw.listen);
        let mut tokens = Vec::new();
        for (name, source) in raw.tokens {
            let path = format!("outbound.tokens.{name}");
            if let Some(t) = self.token(&path, &name, source, raw.tls.as_ref()) {
                tokens.push(t);
            }
        }
        if raw.routes.is_empty() {
            self.error("outbound.routes", "at least one route is required");
        }
        let mut routes: Vec<OutboundRoute> = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let path = format!("outbound.routes[{i}]");
            let host = match r.host.trim() {
                "*" => None,
                // Requests are matched on the host without port or trailing dot, exactly:
                // refuse spellings that could never match (and would silently fall back).
                h if h.is_empty() || h.contains(['/', ' ', ':', '*']) => {
                    self.error(
                        format!("{path}.host"),
                        format!(
                            "expected a host name without port or wildcard, or \"*\", got {h:?}"
                        ),
                    );
                    continue;
                }
                h => Some(h.trim_end_matches('.').to_ascii_lowercase()),
            };
            if routes.iter().any(|o| o.host == host) {
                self.error(format!("{path}.host"), "duplicate host");
            }
            let upstream = self.http_uri(&format!("{path}.upstream"), &r.upstream);
            let protocol = self.upstream_protocol(
                &format!("{path}.protocol"),
                r.protocol.as_ref(),
                upstream.as_ref(),
            );
            let token = match &r.token {
                None => Some(None),
                Some(name) => {
                    let index = tokens.iter().position(|t| &t.name == name);
                    if index.is_none()
                        && !self
                            .errors
                            .iter()
                            .any(|e| e.path.starts_with(&format!("outbound.tokens.{name}")))
                    {
                        self.error(
                            format!("{path}.token"),
                            format!("{name:?} is not a configured token"),
                        );
                    }
                    index.map(Some)
                }
            };
            if let (Some(upstream), Some(token)) = (upstream, token) {
                routes.push(OutboundRoute {
                    host,
                    upstream,
                    protocol,
                    token,
                });
            }
        }
        let timeouts = self.timeouts("outbound.timeouts", &raw.timeouts);
        let max_header_bytes = raw.limits.max_header_bytes.unwrap_or(16 * 1024);
        if max_header_bytes < 1024 {
            self.error("outbound.limits.max_header_bytes", "must be at least 1024");
        }
        let max_connections = raw.limits.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            self.error("outbound.limits.max_connections", "must be at least 1");
        }
        Some(OutboundConfig {
            listen: listen?,
            routes,
            tokens,
            timeouts,
            max_header_bytes,
            max_connections,
            max_retry_body_bytes: raw.limits.max_retry_body_bytes.unwrap_or(64 * 1024),
            tls: raw
                .tls
                .as_ref()
                .and_then(|t| self.client_tls("outbound.tls", t)),
        })
    }

    /// One token source; `upstreams`: `outbound.tls`, which a
    /// certificate-bound source's routes trust too.
    fn token(
        &mut self,
        path: &str,
        name: &str,
        raw: RawTokenSource,
        upstreams: Option<&RawClientTls>,
    ) -> Option<TokenConfig> {
        let renew_before = match raw.renew_before.as_deref().map(str::trim) {
            None => RenewBefore::Fraction(0.2),
            Some(text) => match text.strip_suffix('%') {
                Some(pct) => match pct.trim().parse::<f64>() {
                    Ok(p) if (1.0..=90.0).contains(&p) => RenewBefore::Fraction(p / 100.0),
                    _ => {
                        self.error(
                            format!("{path}.renew_before"),
                            format!("expected a percentage from 1% to 90%, got {text:?}"),
                        );
                        RenewBefore::Fraction(0.2)
                    }
                },
                None => RenewBefore::Ahead(self.duration(
                    &format!("{path}.renew_before"),
                    raw.renew_before.as_ref(),
                    Duration::from_secs(60),
                )),
            },
        };
        // A DPoP-bound token goes as `Authorization: DPoP …` beside its proof.
        let template = match (&raw.dpop, raw.inject.as_deref()) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{path}.inject"),
                    "a DPoP-bound token is sent as `DPoP {token}`; inject does not apply",
                );
                "DPoP {token}"
            }
            (Some(_), None) => "DPoP {token}",
            (None, template) => template.unwrap_or("Bearer {token}"),
        };
        let inject = match Inject::parse(template) {
            Ok(i) => i,
            Err(e) => {
                self.error(format!("{path}.inject"), e);
                return None;
            }
        };
        let retry_on = raw.retry_on.clone().unwrap_or_else(|| vec![401]);
        for (i, code) in retry_on.iter().enumerate() {
            if !(400..=599).contains(code) {
                self.error(
                    format!("{path}.retry_on[{i}]"),
                    format!("expected a 4xx or 5xx status, got {code}"),
                );
            }
        }
        let fetch_timeout = self.duration(
            &format!("{path}.fetch_timeout"),
            raw.fetch_timeout.as_ref(),
            Duration::from_secs(10),
        );
        let source = self.source(path, &raw);
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.client_tls(&format!("{path}.tls"), t));
        let upstream_tls = match (raw.certificate_bound, &raw.tls) {
            (Some(true), Some(own)) if own.cert_file.is_some() => {
                self.bound_tls(&format!("{path}.tls"), own, upstreams)
            }
            (Some(true), _) => {
                self.error(
                    format!("{path}.certificate_bound"),
                    "needs the client certificate its tokens are bound to: tls.cert_file and tls.key_file",
                );
                None
            }
            _ => None,
        };
        Some(TokenConfig {
            name: name.to_string(),
            source: source?,
            renew_before,
            inject,
            retry_on,
            fetch_timeout,
            tls,
            upstream_tls,
        })
    }
}
