//! Validated configuration: `RawConfig` (serde mirror) → `Config`, reporting every
//! problem at once with its field path.
//!
//! Strings may use `${ENV_VAR}` interpolation (`$$` is a literal `$`); secrets may
//! come from `*_file`. Durations (`250ms`, `30s`, `5m`, `1h`, `1d`) are parsed here,
//! once, so nothing downstream handles text.

mod outbound;
pub mod raw;
mod rules;

pub use outbound::*;
pub use rules::{Access, IssuerId, Requirements, RouteRule};

use crate::headers::{canonical_host, is_hop_by_hop, is_set_by_proxy};
use hyper::header::HeaderName;
use hyper::{Method, Uri};
use jsonwebtoken::Algorithm;
use raw::*;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub admin: AdminConfig,
    pub inbound: Option<InboundConfig>,
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
    pub mode: Mode,
    pub issuers: Vec<IssuerConfig>,
    pub rules: Vec<RouteRule>,
    pub forward: ForwardConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Verified-token cache capacity in entries; default 10 000, 0 disables it.
    pub token_cache_entries: u64,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
    /// claim name → header name, in file order.
    pub claims_to_headers: Vec<(String, HeaderName)>,
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

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            errors: vec![FieldError {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::from_yaml(&text, &file, &|k| std::env::var(k).ok())
    }

    /// Parses and validates YAML text; `env` resolves `${VAR}` (injected for tests).
    pub fn from_yaml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (raw, unknown_fields) = parse_raw(text).map_err(|errors| ConfigError {
            file: file.to_string(),
            errors,
        })?;
        let mut v = Validator {
            errors: Vec::new(),
            env,
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

/// Deserializes the raw mirror. Unknown fields (typos) are collected rather than
/// fatal: each is removed and parsing repeated, so one run reports every typo and
/// then every semantic error. Any other structural error stops here.
fn parse_raw(text: &str) -> Result<(RawConfig, Vec<FieldError>), Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut current = text.to_string();
    // Bounded: each round removes one key.
    for round in 0..64 {
        let err = match serde_yaml::from_str::<RawConfig>(&current) {
            Ok(raw) => return Ok((raw, unknown)),
            Err(e) => e,
        };
        let mut field = serde_error(&err);
        if round > 0 {
            // Positions after the first round refer to re-serialized text, not the file.
            if let Some(i) = field.message.find(" at line ") {
                field.message.truncate(i);
            }
        }
        let is_unknown = field.message.starts_with("unknown field `");
        unknown.push(field);
        if !is_unknown {
            return Err(unknown);
        }
        let removed = serde_yaml::from_str::<serde_yaml::Value>(&current)
            .ok()
            .and_then(|mut doc| {
                remove_at(&mut doc, &unknown[unknown.len() - 1].path).then_some(doc)
            })
            .and_then(|doc| serde_yaml::to_string(&doc).ok());
        match removed {
            Some(next) => current = next,
            None => return Err(unknown),
        }
    }
    Err(unknown)
}

/// Removes the mapping entry at a serde path such as `inbound.issuers[0].leeway_x`.
fn remove_at(doc: &mut serde_yaml::Value, path: &str) -> bool {
    let mut steps: Vec<PathStep> = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            steps.push(PathStep::Key(name.to_string()));
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => steps.push(PathStep::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some(PathStep::Key(last)) = steps.pop() else {
        return false;
    };
    let mut node = doc;
    for step in steps {
        let next = match step {
            PathStep::Key(k) => node.get_mut(k.as_str()),
            PathStep::Index(i) => node.get_mut(i),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_mapping_mut()
        .and_then(|m| m.remove(last.as_str()))
        .is_some()
}

/// One step of a serde field path.
enum PathStep {
    Key(String),
    Index(usize),
}

/// serde_yaml reports `path: message at line L column C`; split off the path.
fn serde_error(e: &serde_yaml::Error) -> FieldError {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && path != "." => {
            // "unknown field `x`" is about the field itself: name it in the path.
            let field = msg
                .strip_prefix("unknown field `")
                .and_then(|m| m.split_once('`'))
                .map(|(f, _)| f);
            FieldError {
                path: field.map_or_else(|| path.to_string(), |f| format!("{path}.{f}")),
                message: msg.to_string(),
            }
        }
        _ => FieldError {
            path: String::new(),
            message: text,
        },
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 5m, 1h; got {text:?}"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "expected a duration such as 30s, 5m, 1h; got {text:?}"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Expands `${VAR}`; `$$` is a literal `$`.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${…} reference".to_string())?;
            let name = &body[..end];
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

struct Validator<'a> {
    errors: Vec<FieldError>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
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

    fn config(&mut self, raw: RawConfig) -> Config {
        let admin_listen = raw
            .admin
            .and_then(|a| a.listen)
            .and_then(|l| self.socket_addr("admin.listen", &l))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901)));
        let inbound = raw.inbound.and_then(|i| self.inbound(i));
        let outbound = raw.outbound.and_then(|o| self.outbound(o));
        Config {
            admin: AdminConfig {
                listen: admin_listen,
            },
            inbound,
            outbound,
        }
    }

    fn inbound(&mut self, raw: RawInbound) -> Option<InboundConfig> {
        let listen = self.socket_addr("inbound.listen", &raw.listen);
        let upstream = self.http_uri("inbound.upstream", &raw.upstream);
        let mode = match raw.mode.as_deref() {
            None | Some("strict") => Mode::Strict,
            Some("permissive") => Mode::Permissive,
            Some("audit") => Mode::Audit,
            Some(other) => {
                self.error(
                    "inbound.mode",
                    format!("expected strict, permissive or audit, got {other:?}"),
                );
                Mode::Strict
            }
        };
        let tls = raw.tls.map(|t| TlsFiles {
            cert_file: PathBuf::from(
                self.text("inbound.tls.cert_file", &t.cert_file)
                    .unwrap_or_default(),
            ),
            key_file: PathBuf::from(
                self.text("inbound.tls.key_file", &t.key_file)
                    .unwrap_or_default(),
            ),
        });
        if raw.issuers.is_empty() {
            self.error("inbound.issuers", "at least one issuer is required");
        }
        let issuers: Vec<IssuerConfig> = raw
            .issuers
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.issuer(&format!("inbound.issuers[{i}]"), r))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (i, iss) in issuers.iter().enumerate() {
            if !seen.insert(iss.issuer.clone()) {
                self.error(format!("inbound.issuers[{i}].issuer"), "duplicate issuer");
            }
        }
        if raw.rules.is_empty() {
            self.error(
                "inbound.rules",
                "at least one rule is required (no match = deny)",
            );
        }
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.rule(&format!("inbound.rules[{i}]"), r, &issuers))
            .collect();
        let forward = self.forward(raw.forward);
        let timeouts = self.timeouts("inbound.timeouts", &raw.timeouts);
        let d = Limits::default();
        let limits = Limits {
            max_header_bytes: raw.limits.max_header_bytes.unwrap_or(d.max_header_bytes),
            max_token_bytes: raw.limits.max_token_bytes.unwrap_or(
                d.max_token_bytes
                    .min(raw.limits.max_header_bytes.unwrap_or(d.max_header_bytes)),
            ),
            max_connections: raw.limits.max_connections.unwrap_or(d.max_connections),
        };
        if limits.max_connections == 0 {
            self.error("inbound.limits.max_connections", "must be at least 1");
        }
        if limits.max_header_bytes < 1024 {
            self.error("inbound.limits.max_header_bytes", "must be at least 1024");
        }
        if limits.max_token_bytes < 64 || limits.max_token_bytes > limits.max_header_bytes {
            self.error(
                "inbound.limits.max_token_bytes",
                "must be at least 64 and no more than max_header_bytes",
            );
        }
        Some(InboundConfig {
            listen: listen?,
            tls,
            upstream: upstream?,
            mode,
            issuers,
            rules,
            forward,
            timeouts,
            limits,
            token_cache_entries: raw.token_cache.max_entries.unwrap_or(10_000),
        })
    }

    fn issuer(&mut self, path: &str, raw: RawIssuer) -> Option<IssuerConfig> {
        let issuer = self.text(&format!("{path}.issuer"), &raw.issuer)?;
        if issuer.is_empty() {
            self.error(format!("{path}.issuer"), "must not be empty");
        }
        let algorithms: Vec<Algorithm> = match &raw.algorithms {
            None => vec![Algorithm::RS256],
            Some(list) if list.is_empty() => {
                self.error(format!("{path}.algorithms"), "must name at least one algorithm");
                Vec::new()
            }
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match Algorithm::from_str(a) {
                    Ok(alg) => Some(alg),
                    Err(_) => {
                        self.error(
                            format!("{path}.algorithms[{i}]"),
                            format!("unsupported algorithm {a:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512; never none)"),
                        );
                        None
                    }
                })
                .collect(),
        };
        let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
        let wants_public = algorithms.iter().any(|a| !is_hmac(*a));
        let shared_secret = match (&raw.shared_secret, &raw.shared_secret_file) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{path}.shared_secret"),
                    "set shared_secret or shared_secret_file, not both",
                );
                None
            }
            (Some(s), None) => self
                .text(&format!("{path}.shared_secret"), s)
                .map(|s| Secret::new(s.into_bytes())),
            (None, Some(f)) => {
                let p = format!("{path}.shared_secret_file");
                self.text(&p, f).and_then(|f| match std::fs::read(&f) {
                    Ok(bytes) => Some(Secret::new(trim_newline(bytes))),
                    Err(e) => {
                        self.error(p, format!("cannot read {f}: {e}"));
                        None
                    }
                })
            }
            (None, None) => None,
        };
        if wants_hmac && shared_secret.is_none() {
            self.error(
                format!("{path}.shared_secret"),
                "an HS* algorithm is allowed but no shared secret is configured",
            );
        }
        if !wants_hmac && shared_secret.is_some() {
            self.error(
                format!("{path}.algorithms"),
                "a shared secret is configured but no HS* algorithm is allowed",
            );
        }
        if let Some(s) = &shared_secret {
            if s.expose().len() < 32 {
                self.error(format!("{path}.shared_secret"), "must be at least 32 bytes");
            }
        }
        let keys = match (&raw.jwks_uri, raw.discovery.unwrap_or(false)) {
            (Some(_), true) => {
                self.error(
                    format!("{path}.discovery"),
                    "set jwks_uri or discovery: true, not both",
                );
                KeySource::None
            }
            (Some(u), false) => self
                .http_uri(&format!("{path}.jwks_uri"), u)
                .map(KeySource::Jwks)
                .unwrap_or(KeySource::None),
            (None, true) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                match url.parse::<Uri>() {
                    Ok(u) if u.scheme_str().is_some() => KeySource::Discovery(u),
                    _ => {
                        self.error(
                            format!("{path}.issuer"),
                            "discovery needs the issuer to be an http(s) URL",
                        );
                        KeySource::None
                    }
                }
            }
            (None, false) => {
                if wants_public {
                    self.error(
                        format!("{path}.jwks_uri"),
                        "a public-key algorithm is allowed: set jwks_uri or discovery: true",
                    );
                }
                KeySource::None
            }
        };
        if raw.audiences.is_empty() {
            self.error(
                format!("{path}.audiences"),
                "at least one audience is required",
            );
        }
        let leeway = self.duration(
            &format!("{path}.leeway"),
            raw.leeway.as_ref(),
            Duration::from_secs(30),
        );
        let max_token_age = raw
            .max_token_age
            .as_ref()
            .map(|v| self.duration(&format!("{path}.max_token_age"), Some(v), Duration::ZERO));
        let jwks_cache = self.jwks_cache(&format!("{path}.jwks_cache"), &raw.jwks_cache);
        Some(IssuerConfig {
            issuer,
            keys,
            audiences: raw.audiences,
            algorithms,
            leeway,
            scope_claim: raw.scope_claim.unwrap_or_else(|| "scope".to_string()),
            require_typ: raw.require_typ,
            max_token_age,
            shared_secret,
            jwks_cache,
        })
    }

    fn jwks_cache(&mut self, path: &str, raw: &RawJwksCache) -> JwksCachePolicy {
        let d = JwksCachePolicy::default();
        let p = JwksCachePolicy {
            refresh_interval: self.duration(
                &format!("{path}.refresh_interval"),
                raw.refresh_interval.as_ref(),
                d.refresh_interval,
            ),
            min_refresh: self.duration(
                &format!("{path}.min_refresh"),
                raw.min_refresh.as_ref(),
                d.min_refresh,
            ),
            max_refresh: self.duration(
                &format!("{path}.max_refresh"),
                raw.max_refresh.as_ref(),
                d.max_refresh,
            ),
            stale_if_error: self.duration(
                &format!("{path}.stale_if_error"),
                raw.stale_if_error.as_ref(),
                d.stale_if_error,
            ),
            refetch_cooldown: self.duration(
                &format!("{path}.refetch_cooldown"),
                raw.refetch_cooldown.as_ref(),
                d.refetch_cooldown,
            ),
            unknown_kid_ttl: self.duration(
                &format!("{path}.unknown_kid_ttl"),
                raw.unknown_kid_ttl.as_ref(),
                d.unknown_kid_ttl,
            ),
            fetch_timeout: self.duration(
                &format!("{path}.fetch_timeout"),
                raw.fetch_timeout.as_ref(),
                d.fetch_timeout,
            ),
        };
        if p.min_refresh > p.max_refresh {
            self.error(format!("{path}.min_refresh"), "must not exceed max_refresh");
        }
        if p.fetch_timeout.is_zero() {
            self.error(format!("{path}.fetch_timeout"), "must be greater than zero");
        }
        p
    }

    fn rule(&mut self, path: &str, raw: RawRule, issuers: &[IssuerConfig]) -> Option<RouteRule> {
        let prefix = self.text(&format!("{path}.path"), &raw.path)?;
        if !prefix.starts_with('/') {
            self.error(
                format!("{path}.path"),
                format!("must start with '/', got {prefix:?}"),
            );
        }
        let methods = raw.methods.map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(
                    |(i, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.error(
                                format!("{path}.methods[{i}]"),
                                format!("not an HTTP method: {m:?}"),
                            );
                            None
                        }
                    },
                )
                .collect()
        });
        let wants_token = raw.scopes.is_some() || raw.issuers.is_some() || raw.claims.is_some();
        let access = match raw.allow.as_deref() {
            Some("anonymous") if wants_token => {
                self.error(
                    format!("{path}.allow"),
                    "an anonymous rule cannot also require scopes, issuers or claims",
                );
                return None;
            }
            Some("anonymous") => Access::Anonymous,
            Some("authenticated") | None => {
                let issuer_idx = raw.issuers.map(|names| {
                    names
                        .iter()
                        .enumerate()
                        .filter_map(|(i, n)| match issuers.iter().position(|c| &c.issuer == n) {
                            Some(idx) => Some(IssuerId::new(idx)),
                            None => {
                                self.error(
                                    format!("{path}.issuers[{i}]"),
                                    format!("{n:?} is not a configured issuer"),
                                );
                                None
                            }
                        })
                        .collect()
                });
                Access::Token(Requirements {
                    scopes: raw.scopes.unwrap_or_default(),
                    issuers: issuer_idx,
                    claims: raw.claims.unwrap_or_default().into_iter().collect(),
                })
            }
            Some(other) => {
                self.error(
                    format!("{path}.allow"),
                    format!("expected anonymous or authenticated, got {other:?}"),
                );
                return None;
            }
        };
        // Requests are matched on their canonical host: compare like with like.
        let host = raw
            .host
            .and_then(|h| match canonical_host(h.as_bytes(), None) {
                Ok(Some(host)) if host.name().len() == host.value().len() => {
                    Some(String::from_utf8_lossy(host.name()).into_owned())
                }
                _ => {
                    self.error(
                        format!("{path}.host"),
                        format!("expected a host name without port, got {h:?}"),
                    );
                    None
                }
            });
        Some(RouteRule::new(
            raw.name.unwrap_or_else(|| prefix.clone()),
            &prefix,
            methods,
            host,
            access,
        ))
    }

    /// A `strip | keep` field: whether to keep, `keep_by_default` when absent.
    fn strip_or_keep(&mut self, path: &str, value: Option<String>, keep_by_default: bool) -> bool {
        match value.as_deref() {
            None => keep_by_default,
            Some("keep") => true,
            Some("strip") => false,
            Some(other) => {
                self.error(path, format!("expected strip or keep, got {other:?}"));
                keep_by_default
            }
        }
    }

    fn forward(&mut self, raw: RawForward) -> ForwardConfig {
        let claims_to_headers = raw
            .claims_to_headers
            .into_iter()
            .filter_map(
                |(claim, header)| match HeaderName::from_bytes(header.as_bytes()) {
                    // CGI-style servers read `_` and `-` alike; the guard strips
                    // callers' spellings of `-` names in both forms.
                    Ok(h) if h.as_str().contains('_') => {
                        self.error(
                            format!("inbound.forward.claims_to_headers.{claim}"),
                            format!("{h}: write identity header names with '-', not '_'"),
                        );
                        None
                    }
                    Ok(h) if !is_reserved_header(&h) => Some((claim, h)),
                    Ok(h) => {
                        self.error(
                            format!("inbound.forward.claims_to_headers.{claim}"),
                            format!("{h} cannot carry identity"),
                        );
                        None
                    }
                    Err(_) => {
                        self.error(
                            format!("inbound.forward.claims_to_headers.{claim}"),
                            format!("not a valid header name: {header:?}"),
                        );
                        None
                    }
                },
            )
            .collect();
        let keep_authorization =
            self.strip_or_keep("inbound.forward.authorization", raw.authorization, true);
        let keep_override_headers = self.strip_or_keep(
            "inbound.forward.override_headers",
            raw.override_headers,
            false,
        );
        ForwardConfig {
            claims_to_headers,
            keep_authorization,
            keep_override_headers,
        }
    }
}

pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Headers that the proxy itself owns (Host, the forwarding headers it sets),
/// or that never reach the app (hop-by-hop), and so cannot carry claims.
fn is_reserved_header(h: &HeaderName) -> bool {
    use hyper::header::*;
    is_hop_by_hop(h)
        || is_set_by_proxy(h)
        || [AUTHORIZATION, HOST, CONTENT_LENGTH, COOKIE].contains(h)
}

fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests;
