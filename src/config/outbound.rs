//! Validated `outbound` section: routes chosen by host, each naming an upstream
//! and a token source; token sources are an enum, so a source can only hold the
//! fields its kind uses.

use super::raw::{RawOutbound, RawTokenSource};
use super::{Secret, Timeouts, Validator};
use hyper::header::HeaderValue;
use hyper::Uri;
use jsonwebtoken::{Algorithm, EncodingKey};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

/// One entry of `outbound.routes`.
#[derive(Debug, Clone)]
pub struct OutboundRoute {
    /// Lower-case host without port; `None` is the `*` fallback.
    pub host: Option<String>,
    pub upstream: Uri,
    /// Index into `OutboundConfig::tokens`.
    pub token: usize,
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
}

/// Where a token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// OAuth 2.0 client_credentials (RFC 6749 §4.4).
    ClientCredentials(Box<ClientCredentials>),
    /// A token file, re-read when it changes (projected service-account token, Vault agent).
    File { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub token_url: Uri,
    pub client_id: String,
    pub auth: ClientAuth,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Extra form parameters, sent as given.
    pub extra_params: Vec<(String, String)>,
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    SecretBasic(Secret),
    SecretPost(Secret),
    /// RFC 7523 §2.2 client assertion signed with this key.
    PrivateKeyJwt(AssertionKey),
}

/// A private key that signs JWTs (client assertions).
#[derive(Clone)]
pub struct AssertionKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub key_id: Option<String>,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionKey({:?}, kid {:?})", self.alg, self.key_id)
    }
}

/// When a token is renewed, counted back from its expiry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// This fraction of the lifetime (`20%` → 0.2).
    Fraction(f64),
    /// This long before expiry (`60s`).
    Ahead(Duration),
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

const IMPLEMENTED_KINDS: &str = "client_credentials or file";

impl Validator<'_> {
    pub(super) fn outbound(&mut self, raw: RawOutbound) -> Option<OutboundConfig> {
        let listen = self.socket_addr("outbound.listen", &raw.listen);
        let mut tokens = Vec::new();
        for (name, source) in raw.tokens {
            let path = format!("outbound.tokens.{name}");
            if let Some(t) = self.token(&path, &name, source) {
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
                h if h.is_empty() || h.contains(['/', ' ']) => {
                    self.error(
                        format!("{path}.host"),
                        format!("expected a host name or \"*\", got {h:?}"),
                    );
                    continue;
                }
                h => Some(h.to_ascii_lowercase()),
            };
            if routes.iter().any(|o| o.host == host) {
                self.error(format!("{path}.host"), "duplicate host");
            }
            let upstream = self.http_uri(&format!("{path}.upstream"), &r.upstream);
            let token = tokens.iter().position(|t| t.name == r.token);
            if token.is_none()
                && !self
                    .errors
                    .iter()
                    .any(|e| e.path.starts_with(&format!("outbound.tokens.{}", r.token)))
            {
                self.error(
                    format!("{path}.token"),
                    format!("{:?} is not a configured token", r.token),
                );
            }
            if let (Some(upstream), Some(token)) = (upstream, token) {
                routes.push(OutboundRoute {
                    host,
                    upstream,
                    token,
                });
            }
        }
        let defaults = Timeouts::default();
        let t = &raw.timeouts;
        let timeouts = Timeouts {
            header_read: self.duration(
                "outbound.timeouts.header_read",
                t.header_read.as_ref(),
                defaults.header_read,
            ),
            upstream_connect: self.duration(
                "outbound.timeouts.upstream_connect",
                t.upstream_connect.as_ref(),
                defaults.upstream_connect,
            ),
            upstream_response: self.duration(
                "outbound.timeouts.upstream_response",
                t.upstream_response.as_ref(),
                defaults.upstream_response,
            ),
            drain: self.duration("outbound.timeouts.drain", t.drain.as_ref(), defaults.drain),
        };
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
        })
    }

    fn token(&mut self, path: &str, name: &str, raw: RawTokenSource) -> Option<TokenConfig> {
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
        let inject = match Inject::parse(raw.inject.as_deref().unwrap_or("Bearer {token}")) {
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
        let source = match raw.kind.as_str() {
            "client_credentials" => self
                .client_credentials(path, &raw)
                .map(|c| TokenSource::ClientCredentials(Box::new(c))),
            "file" => {
                self.unused(
                    path,
                    "file",
                    &[
                        ("token_url", raw.token_url.is_some()),
                        ("client_id", raw.client_id.is_some()),
                        ("client_auth", raw.client_auth.is_some()),
                        ("client_secret", raw.client_secret.is_some()),
                        ("client_secret_file", raw.client_secret_file.is_some()),
                        ("private_key_file", raw.private_key_file.is_some()),
                        ("scopes", raw.scopes.is_some()),
                        ("audience", raw.audience.is_some()),
                        ("resource", raw.resource.is_some()),
                        ("extra_params", raw.extra_params.is_some()),
                    ],
                );
                match &raw.path {
                    Some(p) => self
                        .text(&format!("{path}.path"), p)
                        .map(|p| TokenSource::File {
                            path: PathBuf::from(p),
                        }),
                    None => {
                        self.error(format!("{path}.path"), "kind file needs a path");
                        None
                    }
                }
            }
            "jwt_bearer" | "token_exchange" | "login" => {
                self.error(
                    format!("{path}.kind"),
                    format!(
                        "kind {} is not implemented yet; use {IMPLEMENTED_KINDS}",
                        raw.kind
                    ),
                );
                None
            }
            other => {
                self.error(
                    format!("{path}.kind"),
                    format!("expected {IMPLEMENTED_KINDS}, got {other:?}"),
                );
                None
            }
        };
        Some(TokenConfig {
            name: name.to_string(),
            source: source?,
            renew_before,
            inject,
            retry_on,
            fetch_timeout,
        })
    }

    fn unused(&mut self, path: &str, kind: &str, fields: &[(&str, bool)]) {
        for (field, present) in fields {
            if *present {
                self.error(
                    format!("{path}.{field}"),
                    format!("not used by kind {kind}"),
                );
            }
        }
    }

    fn client_credentials(
        &mut self,
        path: &str,
        raw: &RawTokenSource,
    ) -> Option<ClientCredentials> {
        self.unused(path, "client_credentials", &[("path", raw.path.is_some())]);
        let token_url = match &raw.token_url {
            Some(u) => self.http_uri(&format!("{path}.token_url"), u),
            None => {
                self.error(
                    format!("{path}.token_url"),
                    "kind client_credentials needs a token_url",
                );
                None
            }
        };
        let client_id = match &raw.client_id {
            Some(c) => self.text(&format!("{path}.client_id"), c),
            None => {
                self.error(
                    format!("{path}.client_id"),
                    "kind client_credentials needs a client_id",
                );
                None
            }
        };
        let secret = self.secret(path, raw);
        let auth = match raw.client_auth.as_deref().unwrap_or("client_secret_basic") {
            method @ ("client_secret_basic" | "client_secret_post") => {
                if raw.private_key_file.is_some() || raw.key_id.is_some() {
                    self.error(
                        format!("{path}.private_key_file"),
                        format!("not used with client_auth {method}"),
                    );
                }
                let Some(secret) = secret else {
                    self.error(
                        format!("{path}.client_secret"),
                        format!("client_auth {method} needs client_secret or client_secret_file"),
                    );
                    return None;
                };
                if method == "client_secret_basic" {
                    ClientAuth::SecretBasic(secret)
                } else {
                    ClientAuth::SecretPost(secret)
                }
            }
            "private_key_jwt" => {
                if secret.is_some() {
                    self.error(
                        format!("{path}.client_secret"),
                        "not used with client_auth private_key_jwt",
                    );
                }
                let Some(file) = &raw.private_key_file else {
                    self.error(
                        format!("{path}.private_key_file"),
                        "client_auth private_key_jwt needs private_key_file",
                    );
                    return None;
                };
                let file = self.text(&format!("{path}.private_key_file"), file)?;
                match assertion_key(&file, raw.key_id.clone()) {
                    Ok(key) => ClientAuth::PrivateKeyJwt(key),
                    Err(e) => {
                        self.error(format!("{path}.private_key_file"), e);
                        return None;
                    }
                }
            }
            other => {
                self.error(
                    format!("{path}.client_auth"),
                    format!("expected client_secret_basic, client_secret_post or private_key_jwt, got {other:?}"),
                );
                return None;
            }
        };
        Some(ClientCredentials {
            token_url: token_url?,
            client_id: client_id?,
            auth,
            scopes: raw.scopes.clone().unwrap_or_default(),
            audience: raw.audience.clone(),
            resource: raw.resource.clone(),
            extra_params: raw
                .extra_params
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    fn secret(&mut self, path: &str, raw: &RawTokenSource) -> Option<Secret> {
        match (&raw.client_secret, &raw.client_secret_file) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{path}.client_secret"),
                    "set client_secret or client_secret_file, not both",
                );
                None
            }
            (Some(s), None) => self
                .text(&format!("{path}.client_secret"), s)
                .map(|s| Secret::new(s.into_bytes())),
            (None, Some(f)) => {
                let p = format!("{path}.client_secret_file");
                let f = self.text(&p, f)?;
                match std::fs::read(&f) {
                    Ok(bytes) => Some(Secret::new(super::trim_newline(bytes))),
                    Err(e) => {
                        self.error(p, format!("cannot read {f}: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }
}

/// Loads a PEM private key (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA).
pub fn assertion_key(file: &str, key_id: Option<String>) -> Result<AssertionKey, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let (key, alg) = EncodingKey::from_rsa_pem(&pem)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| EncodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
        .or_else(|_| EncodingKey::from_ed_pem(&pem).map(|k| (k, Algorithm::EdDSA)))
        .map_err(|_| {
            format!(
                "{file} is not a PEM RSA, EC P-256 or Ed25519 private key \
                 (EC and Ed25519 keys must be PKCS#8: openssl pkcs8 -topk8 -nocrypt)"
            )
        })?;
    Ok(AssertionKey { key, alg, key_id })
}
