//! Validated configuration: `RawConfig` (serde mirror) → `Config`, reporting every
//! problem at once with its field path.
//!
//! Each section is one file holding its YAML shape, its validated types and
//! their validation: `inbound.rs` (inbound, authz), `guard.rs` (what both
//! decide with) with `issuers.rs` and `rules.rs`, `outbound.rs` with
//! `tokens.rs`; `raw.rs` and `tls.rs` hold what several share. Here: the top
//! level, the shared types, and the `Validator` core every file extends.
//!
//! Strings may use `${ENV_VAR}` interpolation (`$$` is a literal `$`); secrets may
//! come from `*_file`. Durations (`250ms`, `30s`, `5m`, `1h`, `1d`) are parsed here,
//! once, so nothing downstream handles text.

mod client_auth;
mod guard;
mod inbound;
mod introspection;
mod issuers;
mod outbound;
mod parse;
mod raw;
mod rules;
mod tls;
mod tokens;

pub use client_auth::{assertion_key, AssertionKey, ClientAuth, OAuthClient};
pub use guard::{DpopConfig, ForwardConfig, GuardConfig, Limits, Mode};
pub use inbound::{AuthzConfig, CertHeader, ClientCerts, InboundConfig, TlsFiles};
pub use introspection::{IntrospectionConfig, IntrospectionEndpoint};
pub use issuers::{IssuerConfig, JwksCachePolicy, KeySource, Matched, OpenPattern, RequireBinding};
pub use outbound::{
    Assertion, Grant, Inject, Login, LoginToken, OAuthGrant, OutboundConfig, OutboundRoute,
    RenewBefore, TokenConfig, TokenSource,
};
pub use parse::{interpolate, parse_duration};
pub use rules::{Access, ClaimName, IssuerId, Requirements, RouteRule};

use hyper::Uri;
use inbound::{RawAuthz, RawInbound};
use jsonwebtoken::Algorithm;
use outbound::RawOutbound;
use raw::RawTimeouts;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use std::time::Duration;

/// The YAML file's top level (serde mirror; each section's shape is in its file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    pub inbound: Option<RawInbound>,
    pub authz: Option<RawAuthz>,
    pub outbound: Option<RawOutbound>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

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

    /// Records an error once: an issuers entry with a `match` is checked once
    /// per issuer it allows, and says what is wrong with it once.
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let error = FieldError {
            path: path.into(),
            message: message.into(),
        };
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
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
