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

#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub auth: ClientAuth,
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: only `client_id` is sent.
    None,
    SecretBasic(Secret),
    SecretPost(Secret),
    /// RFC 7523 §2.2 client assertion signed with this key.
    PrivateKeyJwt(AssertionKey),
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
                .and_then(|t| self.client_tls(t))
                .map(std::sync::Arc::new),
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
        let source = self.source(path, &raw);
        Some(TokenConfig {
            name: name.to_string(),
            source: source?,
            renew_before,
            inject,
            retry_on,
            fetch_timeout,
        })
    }

    /// `outbound.tls`, loaded now so a bad file fails at start with its path.
    fn client_tls(&mut self, raw: &super::raw::RawClientTls) -> Option<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs =
            |this: &mut Self, field: &str, file: &String| -> Option<Vec<CertificateDer<'static>>> {
                let file = this.text(&format!("outbound.tls.{field}"), file)?;
                match CertificateDer::pem_file_iter(&file)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                {
                    Ok(c) if !c.is_empty() => Some(c),
                    Ok(_) => {
                        this.error(
                            format!("outbound.tls.{field}"),
                            format!("{file} holds no certificate"),
                        );
                        None
                    }
                    Err(e) => {
                        this.error(format!("outbound.tls.{field}"), format!("{file}: {e}"));
                        None
                    }
                }
            };
        let roots = match &raw.ca_file {
            Some(f) => certs(self, "ca_file", f)?,
            None => Vec::new(),
        };
        let identity = match (&raw.cert_file, &raw.key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let chain = certs(self, "cert_file", c)?;
                let k = self.text("outbound.tls.key_file", k)?;
                match PrivateKeyDer::from_pem_file(&k) {
                    Ok(key) => Some((chain, key)),
                    Err(e) => {
                        self.error("outbound.tls.key_file", format!("{k}: {e}"));
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    "outbound.tls.cert_file",
                    "set both cert_file and key_file for a client certificate",
                );
                return None;
            }
        };
        match crate::client::client_tls(&roots, identity) {
            Ok(config) => Some(config),
            Err(e) => {
                self.error("outbound.tls", e.to_string());
                None
            }
        }
    }

    /// The kind-specific part of a token source. Each kind lists the fields it
    /// uses; any other field that is set is reported, naming the kind.
    fn source(&mut self, path: &str, raw: &RawTokenSource) -> Option<TokenSource> {
        const OAUTH: &[&str] = &[
            "token_url",
            "client_id",
            "client_auth",
            "client_secret",
            "client_secret_file",
            "private_key_file",
            "key_id",
            "scopes",
            "audience",
            "resource",
            "extra_params",
        ];
        let allowed: Vec<&str> = match raw.kind.as_str() {
            "client_credentials" => OAUTH.to_vec(),
            "jwt_bearer" => [OAUTH, &["subject", "assertion_file"]].concat(),
            "token_exchange" => [OAUTH, &["subject_token_file", "subject_token_type"]].concat(),
            "login" => vec![
                "token_url",
                "client_id",
                "client_secret",
                "client_secret_file",
                "private_key_file",
                "key_id",
                "method",
                "body",
                "token_pointer",
                "expires_in_pointer",
                "login_token_claims",
                "login_token_ttl",
            ],
            "file" => vec!["path"],
            other => {
                self.error(
                    format!("{path}.kind"),
                    format!("expected client_credentials, jwt_bearer, token_exchange, login or file, got {other:?}"),
                );
                return None;
            }
        };
        // What every kind takes (validated in `token`).
        const COMMON: &[&str] = &[
            "kind",
            "renew_before",
            "inject",
            "retry_on",
            "fetch_timeout",
        ];
        for field in raw.present() {
            if !allowed.contains(&field.as_str()) && !COMMON.contains(&field.as_str()) {
                self.error(
                    format!("{path}.{field}"),
                    format!("not used by kind {}", raw.kind),
                );
            }
        }
        match raw.kind.as_str() {
            "file" => {
                let file = self.required(path, "path", raw.path.as_ref())?;
                Some(TokenSource::File {
                    path: PathBuf::from(file),
                })
            }
            "login" => self
                .login(path, raw)
                .map(|l| TokenSource::Login(Box::new(l))),
            _ => self
                .oauth(path, raw)
                .map(|g| TokenSource::OAuth(Box::new(g))),
        }
    }

    /// A required string field, interpolated.
    fn required(&mut self, path: &str, field: &str, value: Option<&String>) -> Option<String> {
        match value {
            Some(v) => self.text(&format!("{path}.{field}"), v),
            None => {
                self.error(format!("{path}.{field}"), "required for this kind");
                None
            }
        }
    }

    fn key(&mut self, path: &str, raw: &RawTokenSource) -> Option<AssertionKey> {
        let file = self.required(path, "private_key_file", raw.private_key_file.as_ref())?;
        match assertion_key(&file, raw.key_id.clone()) {
            Ok(k) => Some(k),
            Err(e) => {
                self.error(format!("{path}.private_key_file"), e);
                None
            }
        }
    }

    fn oauth(&mut self, path: &str, raw: &RawTokenSource) -> Option<OAuthGrant> {
        let token_url = self
            .required(path, "token_url", raw.token_url.as_ref())
            .and_then(|u| self.http_uri(&format!("{path}.token_url"), &u));
        let client_id = match &raw.client_id {
            Some(id) => self.text(&format!("{path}.client_id"), id),
            None => None,
        };
        let secret = self.secret(path, raw);
        let auth = self.client_auth(path, raw, secret)?;
        let client = match (client_id.clone(), auth) {
            (Some(id), auth) => Some(OAuthClient { id, auth }),
            (None, ClientAuth::None) => None,
            (None, _) => {
                self.error(
                    format!("{path}.client_id"),
                    "client authentication needs a client_id",
                );
                return None;
            }
        };
        let grant = self.grant(path, raw, client.as_ref(), client_id)?;
        Some(OAuthGrant {
            token_url: token_url?,
            grant,
            client,
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

    /// How the client authenticates to the token endpoint (`client_auth`,
    /// defaulting from what is configured).
    fn client_auth(
        &mut self,
        path: &str,
        raw: &RawTokenSource,
        secret: Option<Secret>,
    ) -> Option<ClientAuth> {
        let kind = raw.kind.as_str();
        // For jwt_bearer a private key signs the grant's assertion, not the client.
        let key_is_client_auth = kind != "jwt_bearer";
        let default_auth = if secret.is_some() {
            "client_secret_basic"
        } else if raw.private_key_file.is_some() && key_is_client_auth {
            "private_key_jwt"
        } else {
            "none"
        };
        Some(match raw.client_auth.as_deref().unwrap_or(default_auth) {
            "none" => ClientAuth::None,
            "client_secret_basic" | "client_secret_post" if secret.is_none() => {
                self.error(
                    format!("{path}.client_secret"),
                    "this client_auth needs client_secret or client_secret_file",
                );
                return None;
            }
            "client_secret_basic" => ClientAuth::SecretBasic(secret?),
            "client_secret_post" => ClientAuth::SecretPost(secret?),
            "private_key_jwt" if !key_is_client_auth => {
                self.error(format!("{path}.client_auth"), "jwt_bearer signs its assertion with private_key_file; use a client secret or none");
                return None;
            }
            "private_key_jwt" => {
                if secret.is_some() {
                    self.error(
                        format!("{path}.client_secret"),
                        "not used with client_auth private_key_jwt",
                    );
                }
                ClientAuth::PrivateKeyJwt(self.key(path, raw)?)
            }
            other => {
                self.error(
                    format!("{path}.client_auth"),
                    format!("expected client_secret_basic, client_secret_post, private_key_jwt or none, got {other:?}"),
                );
                return None;
            }
        })
    }

    /// The grant a token source of `raw.kind` asks for.
    fn grant(
        &mut self,
        path: &str,
        raw: &RawTokenSource,
        client: Option<&OAuthClient>,
        client_id: Option<String>,
    ) -> Option<Grant> {
        Some(match raw.kind.as_str() {
            "client_credentials" => {
                match client {
                    None => {
                        self.error(
                            format!("{path}.client_id"),
                            "client_credentials needs a client_id",
                        );
                        return None;
                    }
                    Some(OAuthClient {
                        auth: ClientAuth::None,
                        ..
                    }) => {
                        self.error(
                            format!("{path}.client_secret"),
                            "client_credentials needs client_secret, client_secret_file or private_key_file",
                        );
                        return None;
                    }
                    Some(_) => {}
                }
                Grant::ClientCredentials
            }
            "jwt_bearer" => match (&raw.assertion_file, &raw.private_key_file) {
                (Some(_), Some(_)) => {
                    self.error(
                        format!("{path}.assertion_file"),
                        "set assertion_file or private_key_file, not both",
                    );
                    return None;
                }
                (Some(file), None) => Grant::JwtBearer(Assertion::File(PathBuf::from(
                    self.text(&format!("{path}.assertion_file"), file)?,
                ))),
                (None, Some(_)) => {
                    let Some(issuer) = client_id.clone() else {
                        self.error(
                            format!("{path}.client_id"),
                            "a self-signed assertion needs client_id (its issuer)",
                        );
                        return None;
                    };
                    let subject = raw.subject.clone().unwrap_or_else(|| issuer.clone());
                    Grant::JwtBearer(Assertion::Signed {
                        key: self.key(path, raw)?,
                        issuer,
                        subject,
                    })
                }
                (None, None) => {
                    self.error(
                        format!("{path}.assertion_file"),
                        "jwt_bearer needs assertion_file or private_key_file",
                    );
                    return None;
                }
            },
            _ => Grant::TokenExchange {
                subject_token_file: PathBuf::from(self.required(
                    path,
                    "subject_token_file",
                    raw.subject_token_file.as_ref(),
                )?),
                subject_token_type: raw
                    .subject_token_type
                    .clone()
                    .unwrap_or_else(|| "urn:ietf:params:oauth:token-type:jwt".into()),
            },
        })
    }

    fn login(&mut self, path: &str, raw: &RawTokenSource) -> Option<Login> {
        let url = self
            .required(path, "token_url", raw.token_url.as_ref())
            .and_then(|u| self.http_uri(&format!("{path}.token_url"), &u));
        let method = self.login_method(path, raw.method.as_deref());
        let body = match &raw.body {
            Some(v) => match serde_json::to_value(v) {
                Ok(json) => json,
                Err(e) => {
                    self.error(
                        format!("{path}.body"),
                        format!("not representable as JSON: {e}"),
                    );
                    return None;
                }
            },
            None => {
                self.error(
                    format!("{path}.body"),
                    "required for kind login (a JSON body template)",
                );
                return None;
            }
        };
        let token_pointer = self
            .json_pointer(path, "token_pointer", &raw.token_pointer)
            .unwrap_or_else(|| "/token".into());
        let expires_in_pointer =
            self.json_pointer(path, "expires_in_pointer", &raw.expires_in_pointer);
        let client_id = match &raw.client_id {
            Some(id) => self.text(&format!("{path}.client_id"), id),
            None => None,
        };
        let client_secret = self.secret(path, raw);
        let login_token = self.login_token(path, raw)?;
        let text = body.to_string();
        for (placeholder, available, field) in [
            ("{client_id}", client_id.is_some(), "client_id"),
            ("{client_secret}", client_secret.is_some(), "client_secret"),
            ("{login_token}", login_token.is_some(), "private_key_file"),
        ] {
            if text.contains(placeholder) && !available {
                self.error(
                    format!("{path}.body"),
                    format!("uses {placeholder} but {field} is not set"),
                );
            }
        }
        Some(Login {
            url: url?,
            method,
            body,
            client_id,
            client_secret,
            login_token,
            token_pointer,
            expires_in_pointer,
        })
    }

    /// A login's HTTP method: POST (the default) or PUT.
    fn login_method(&mut self, path: &str, raw: Option<&str>) -> hyper::Method {
        match raw.unwrap_or("POST").to_ascii_uppercase().as_str() {
            "POST" => hyper::Method::POST,
            "PUT" => hyper::Method::PUT,
            other => {
                self.error(
                    format!("{path}.method"),
                    format!("expected POST or PUT, got {other:?}"),
                );
                hyper::Method::POST
            }
        }
    }

    /// A JSON pointer field (`/a/b`), when set.
    fn json_pointer(&mut self, path: &str, field: &str, value: &Option<String>) -> Option<String> {
        match value {
            Some(p) if !p.starts_with('/') => {
                self.error(
                    format!("{path}.{field}"),
                    format!("a JSON pointer starts with '/', got {p:?}"),
                );
                None
            }
            other => other.clone(),
        }
    }

    /// The self-signed service login token, when `private_key_file` is set
    /// (`None` inside: not asked for; outer `None`: invalid).
    fn login_token(&mut self, path: &str, raw: &RawTokenSource) -> Option<Option<LoginToken>> {
        match &raw.private_key_file {
            Some(_) => Some(Some(LoginToken {
                key: self.key(path, raw)?,
                claims: raw
                    .login_token_claims
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                ttl: self.duration(
                    &format!("{path}.login_token_ttl"),
                    raw.login_token_ttl.as_ref(),
                    Duration::from_secs(300),
                ),
            })),
            None => Some(None),
        }
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
