//! Validated configuration: `RawConfig` (serde mirror) → `Config`, reporting every
//! problem at once with its field path.
//!
//! Strings may use `${ENV_VAR}` interpolation (`$$` is a literal `$`); secrets may
//! come from `*_file`. Durations (`250ms`, `30s`, `5m`, `1h`, `1d`) are parsed here,
//! once, so nothing downstream handles text.

mod inbound;
mod outbound;
mod parse;
pub mod raw;
mod rules;
mod tls;
mod tokens;

pub use outbound::{
    Assertion, AssertionKey, ClientAuth, Grant, Inject, Login, LoginToken, OAuthClient, OAuthGrant,
    OutboundConfig, OutboundRoute, RenewBefore, TokenConfig, TokenSource,
};
pub use parse::{interpolate, parse_duration};
pub use rules::{Access, ClaimName, IssuerId, Requirements, RouteRule};
pub use tokens::assertion_key;

use hyper::header::HeaderName;
use hyper::Uri;
use jsonwebtoken::Algorithm;
use raw::{RawConfig, RawTimeouts};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub admin: AdminConfig,
    pub inbound: Option<InboundConfig>,
    pub authz: Option<AuthzConfig>,
    pub outbound: Option<OutboundConfig>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Default `127.0.0.1:9901`.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub upstream: Uri,
    /// How tokengate speaks to `upstream` (`protocol:` in the file).
    pub upstream_protocol: UpstreamProtocol,
    pub timeouts: Timeouts,
    pub guard: GuardConfig,
}

/// The `authz` section: a listener that answers "may this request pass?" for
/// a fronting proxy (nginx `auth_request`, Traefik `forwardAuth`, Envoy
/// `ext_authz`) and forwards nothing.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    /// Default `127.0.0.1:9191`: only the fronting proxy may reach it, since
    /// it trusts the `X-Forwarded-*` / `X-Original-*` headers it is sent.
    pub listen: SocketAddr,
    /// Envoy's `ext_authz` gRPC service (`Authorization/Check`), on its own
    /// port; off unless set.
    pub grpc_listen: Option<SocketAddr>,
    /// `header_read` and `drain` apply; the upstream ones keep their defaults
    /// (the connect timeout is that of JWKS fetches).
    pub timeouts: Timeouts,
    pub guard: GuardConfig,
}

/// What decides a request, shared by the inbound guard (which forwards what it
/// allows) and the authz listener (which answers for another proxy).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub mode: Mode,
    pub issuers: Vec<IssuerConfig>,
    pub rules: Vec<RouteRule>,
    pub forward: ForwardConfig,
    pub limits: Limits,
    /// Verified-token cache capacity in entries; default 10 000, 0 disables it.
    pub token_cache_entries: u64,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How tokengate speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, a pool of connections with one request each at a time; the
    /// default for `http://`.
    Http1,
    /// HTTP/2, requests multiplexed on one connection: h2c with prior
    /// knowledge on `http://`, h2 by ALPN on `https://`.
    H2,
    /// ALPN offers h2 and http/1.1 and the upstream picks; `https://` only,
    /// and its default.
    Auto,
}

impl UpstreamProtocol {
    /// What an upstream speaks when its `protocol:` is not written: `auto`
    /// for `https://`, `http1` otherwise.
    pub fn default_for(url: &Uri) -> UpstreamProtocol {
        match url.scheme_str() {
            Some("https") => UpstreamProtocol::Auto,
            _ => UpstreamProtocol::Http1,
        }
    }

    /// As the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::Auto => "auto",
        }
    }
}

/// What happens to a request whose token is missing or fails a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every non-anonymous rule needs a valid token (default).
    Strict,
    /// A request without a token passes without identity; a presented token must be valid.
    Permissive,
    /// Nothing is rejected; would-be rejections are logged and counted.
    Audit,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on exp/nbf/iat; default 30s.
    pub leeway: Duration,
    /// Claim holding scopes: `scope` (space-separated) by default; arrays are read too.
    pub scope_claim: String,
    pub require_typ: Option<String>,
    pub max_token_age: Option<Duration>,
    /// HMAC secret for HS256/384/512; only when such an algorithm is allowed.
    pub shared_secret: Option<Secret>,
    pub jwks_cache: JwksCachePolicy,
    /// TLS for discovery and JWKS fetches (a private CA, a client
    /// certificate); `None`: the trusted roots, no client certificate.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Discovery and JWKS requests carry `Authorization: Bearer` with this
    /// file's content, read at each fetch (a rotated service-account token).
    pub jwks_bearer_token_file: Option<PathBuf>,
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(Uri),
    /// `{issuer}/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery(Uri),
    /// Shared-secret only issuer: no JWKS.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksCachePolicy {
    /// Refresh period when the answer has no `Cache-Control: max-age`; default 5m.
    pub refresh_interval: Duration,
    /// Lower bound on `max-age`; default 30s.
    pub min_refresh: Duration,
    /// Upper bound on `max-age`; default 1h.
    pub max_refresh: Duration,
    /// How long the last good key set keeps serving once a refresh is due and the IdP
    /// cannot be reached; default 6h.
    pub stale_if_error: Duration,
    /// At most one unknown-kid refetch per this period; default 5s.
    pub refetch_cooldown: Duration,
    /// How long a kid that was still unknown after a refetch is remembered (cleared by
    /// any successful fetch); default 60s.
    pub unknown_kid_ttl: Duration,
    /// Per-fetch timeout; default 5s.
    pub fetch_timeout: Duration,
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        JwksCachePolicy {
            refresh_interval: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            stale_if_error: Duration::from_secs(6 * 3600),
            refetch_cooldown: Duration::from_secs(5),
            unknown_kid_ttl: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ForwardConfig {
    /// claim (or JSON pointer) → header name, in file order.
    pub claims_to_headers: Vec<(ClaimName, HeaderName)>,
    /// Forward the caller's `Authorization` header; default true (`keep`).
    pub keep_authorization: bool,
    /// Forward method and path override headers (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, …); default false (`strip`). Dangerous: kept, they are
    /// another way to name a request, and the rules must then agree on every
    /// reading they give it.
    pub keep_override_headers: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Time allowed for a client to send request headers; default 10s.
    pub header_read: Duration,
    /// Upstream TCP connect; default 2s.
    pub upstream_connect: Duration,
    /// Upstream response headers after the request is sent; default 30s.
    pub upstream_response: Duration,
    /// In-flight drain on SIGTERM; default 20s.
    pub drain: Duration,
    /// An upgraded (WebSocket) connection with no traffic either way for this
    /// long is closed; default 5m (Envoy's stream idle timeout).
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(2),
            upstream_response: Duration::from_secs(30),
            drain: Duration::from_secs(20),
            tunnel_idle: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total request header bytes (names + values); default 16 KiB, larger gets 431.
    pub max_header_bytes: usize,
    /// Longest bearer token accepted; default 8 KiB (or max_header_bytes if smaller).
    pub max_token_bytes: usize,
    /// Connections served at once; default 10 000. Further ones wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_token_bytes: 8 * 1024,
            max_connections: 10_000,
        }
    }
}

/// Secret bytes whose `Debug` shows only a fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", crate::fingerprint(&self.0))
    }
}

/// One problem in the file, with the path of the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Everything wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} error(s)", self.file, self.errors.len())?;
        for e in &self.errors {
            if e.path.is_empty() {
                write!(f, "\n  {}", e.message)?;
            } else {
                write!(f, "\n  {}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// All errors on one line, for log records.
    pub fn one_line(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        format!("{}: {}", self.file, errors.join("; "))
    }
}

/// How validation takes a file the config names that does not exist here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsentFiles {
    /// An error at its field: the config is loaded to run.
    Refuse,
    /// Stood in for (an empty secret, no key, no extra certificates):
    /// `tokengate check` offline, on a machine without the pod's mounted
    /// Secrets. A config loaded so is only ever printed, never served.
    StandIn,
}

/// PURE: `expected a, b or c, got "x"`.
fn expected(names: &[&str], got: &str) -> String {
    let listed = match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    };
    format!("expected {listed}, got {got:?}")
}

/// Whether nothing exists at `file` (unlike an unreadable file, which is there).
pub fn is_absent(file: &Path) -> bool {
    std::fs::metadata(file).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, AbsentFiles::Refuse)
    }

    /// [`Config::load`], taking absent files as `absent` says.
    pub fn load_with(path: &Path, absent: AbsentFiles) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            errors: vec![FieldError {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::validate(&text, &file, &|k| std::env::var(k).ok(), absent)
    }

    /// Parses and validates YAML text; `env` resolves `${VAR}` (injected for tests).
    pub fn from_yaml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::validate(text, file, env, AbsentFiles::Refuse)
    }

    fn validate(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
        absent: AbsentFiles,
    ) -> Result<Config, ConfigError> {
        let (raw, unknown_fields) = parse::parse_raw(text).map_err(|errors| ConfigError {
            file: file.to_string(),
            errors,
        })?;
        let mut v = Validator {
            errors: Vec::new(),
            env,
            absent,
        };
        let config = v.config(raw);
        v.errors.splice(0..0, unknown_fields);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: file.to_string(),
                errors: v.errors,
            })
        }
    }
}

struct Validator<'a> {
    errors: Vec<FieldError>,
    env: &'a dyn Fn(&str) -> Option<String>,
    absent: AbsentFiles,
}

impl Validator<'_> {
    /// Whether `file` is to be stood in for: it does not exist, and this
    /// validation stands in for absent files ([`AbsentFiles::StandIn`]).
    fn stand_in(&self, file: &str) -> bool {
        self.absent == AbsentFiles::StandIn && is_absent(Path::new(file))
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A field that takes one of `choices`: the value named, or `None` with
    /// an error at `path` naming every choice (`expected a, b or c, got "x"`).
    fn one_of<T: Copy>(&mut self, path: &str, value: &str, choices: &[(&str, T)]) -> Option<T> {
        let found = choices.iter().find(|(name, _)| *name == value);
        if found.is_none() {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            self.error(path, expected(&names, value));
        }
        found.map(|(_, v)| *v)
    }

    /// Interpolates a string field, recording a failure under `path`.
    fn text(&mut self, path: &str, value: &str) -> Option<String> {
        match interpolate(value, self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn duration(&mut self, path: &str, value: Option<&String>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let Some(value) = self.text(path, value) else {
            return default;
        };
        match parse_duration(&value) {
            Ok(d) => d,
            Err(e) => {
                self.error(path, e);
                default
            }
        }
    }

    /// A `timeouts` block under `prefix` (inbound and outbound share the shape).
    /// A secret given inline as `{field}` or read from `{field}_file` (at most
    /// one; the file's trailing newline dropped), for issuers and token sources.
    fn secret_or_file(
        &mut self,
        path: &str,
        field: &str,
        inline: Option<&String>,
        file: Option<&String>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{path}.{field}"),
                    format!("set {field} or {field}_file, not both"),
                );
                None
            }
            (Some(s), None) => self
                .text(&format!("{path}.{field}"), s)
                .map(|s| Secret::new(s.into_bytes())),
            (None, Some(f)) => {
                let p = format!("{path}.{field}_file");
                let f = self.text(&p, f)?;
                if self.stand_in(&f) {
                    return Some(Secret::new(Vec::new()));
                }
                match std::fs::read(&f) {
                    Ok(bytes) => Some(Secret::new(trim_newline(bytes))),
                    Err(e) => {
                        self.error(p, format!("cannot read {f}: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn timeouts(&mut self, prefix: &str, raw: &RawTimeouts) -> Timeouts {
        let d = Timeouts::default();
        let mut field = |name: &str, value: &Option<String>, default| {
            self.duration(&format!("{prefix}.{name}"), value.as_ref(), default)
        };
        let timeouts = Timeouts {
            header_read: field("header_read", &raw.header_read, d.header_read),
            upstream_connect: field(
                "upstream_connect",
                &raw.upstream_connect,
                d.upstream_connect,
            ),
            upstream_response: field(
                "upstream_response",
                &raw.upstream_response,
                d.upstream_response,
            ),
            drain: field("drain", &raw.drain, d.drain),
            tunnel_idle: field("tunnel_idle", &raw.tunnel_idle, d.tunnel_idle),
        };
        if timeouts.tunnel_idle.is_zero() {
            self.error(format!("{prefix}.tunnel_idle"), "must be greater than zero");
        }
        timeouts
    }

    fn socket_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        let value = self.text(path, value)?;
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("expected host:port with an IP address, got {value:?}"),
                );
                None
            }
        }
    }

    fn http_uri(&mut self, path: &str, value: &str) -> Option<Uri> {
        let value = self.text(path, value)?;
        match value.parse::<Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() =>
            {
                Some(u)
            }
            _ => {
                self.error(
                    path,
                    format!("expected an http:// or https:// URL, got {value:?}"),
                );
                None
            }
        }
    }

    /// `protocol` beside an upstream URL: `http1` by default for `http://`,
    /// `auto` for `https://`; `auto` needs TLS to negotiate.
    fn upstream_protocol(
        &mut self,
        path: &str,
        raw: Option<&String>,
        url: Option<&Uri>,
    ) -> UpstreamProtocol {
        let tls = url.is_some_and(|u| u.scheme_str() == Some("https"));
        let Some(raw) = raw else {
            return url.map_or(UpstreamProtocol::Http1, UpstreamProtocol::default_for);
        };
        let choices = [
            ("http1", UpstreamProtocol::Http1),
            ("h2", UpstreamProtocol::H2),
            ("auto", UpstreamProtocol::Auto),
        ];
        match self.one_of(path, raw, &choices) {
            Some(UpstreamProtocol::Auto) if !tls && url.is_some() => {
                self.error(
                    path,
                    "auto negotiates by ALPN, which needs an https:// upstream; for h2c write h2",
                );
                UpstreamProtocol::Http1
            }
            Some(protocol) => protocol,
            None => UpstreamProtocol::Http1,
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let admin_listen = raw
            .admin
            .and_then(|a| a.listen)
            .and_then(|l| self.socket_addr("admin.listen", &l))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901)));
        let inbound = raw.inbound.and_then(|i| self.inbound(i));
        let authz = raw.authz.and_then(|a| self.authz(a));
        let outbound = raw.outbound.and_then(|o| self.outbound(o));
        Config {
            admin: AdminConfig {
                listen: admin_listen,
            },
            inbound,
            authz,
            outbound,
        }
    }
}

pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests;
