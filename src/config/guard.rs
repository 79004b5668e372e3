//! The `inbound` and `authz` sections' shared part, what decides a request:
//! `mode`, `forward`, `limits`, `token_cache`, `dpop` here, `issuers` and `rules` in
//! their own files. Its YAML shape, its validated types and their validation.

use super::issuers::{IssuerConfig, RawIssuer};
use super::rules::{ClaimName, RawRule, RouteRule};
use super::Validator;
use crate::headers::{is_hop_by_hop, is_set_by_proxy};
use hyper::header::HeaderName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The fields `inbound` and `authz` share: what decides a request.
pub struct RawGuard {
    pub mode: Option<String>,
    pub issuers: Vec<RawIssuer>,
    pub rules: Vec<RawRule>,
    pub forward: RawForward,
    pub limits: RawLimits,
    pub token_cache: RawTokenCache,
    pub dpop: RawDpop,
}

/// `dpop`: how DPoP proofs are judged. Every field has a default: proofs
/// are checked with no `dpop` block at all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    pub max_age: Option<String>,
    pub leeway: Option<String>,
    pub replay_cache_entries: Option<usize>,
    pub origin: Option<String>,
    pub require_nonce: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub override_headers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_token_bytes: Option<usize>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: Option<u64>,
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
    pub dpop: DpopConfig,
}

/// How DPoP proofs (RFC 9449) are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    /// A proof's `iat` may be this old; default 60s. Its `jti` is
    /// remembered as long (the replay cache).
    pub max_age: Duration,
    /// A proof's `iat` may be this far ahead of this clock; default 5s.
    pub leeway: Duration,
    /// Live proofs remembered at once; default 100 000. When all are live,
    /// a new proof is refused (503) rather than an old one forgotten.
    pub replay_cache_entries: usize,
    /// The scheme and authority callers reach the listener by, as a
    /// proof's `htu` names them, when a proxy in front changes them
    /// (`origin: https://api.example.com`); `None`: the listener's own
    /// scheme (https when it terminates TLS) and the request's host.
    pub origin: Option<(String, String)>,
    /// Proofs must carry a nonce this process issued (RFC 9449 §8): one
    /// without gets 401 `use_dpop_nonce` and a `DPoP-Nonce` to use. A
    /// nonce is good for one to two `max_age`s; default false.
    pub require_nonce: bool,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            max_age: Duration::from_secs(60),
            leeway: Duration::from_secs(5),
            replay_cache_entries: 100_000,
            origin: None,
            require_nonce: false,
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

impl Validator<'_> {
    /// What decides a request, for `section` (`inbound` or `authz`).
    pub(super) fn guard(&mut self, section: &str, raw: RawGuard) -> GuardConfig {
        let modes = [
            ("strict", Mode::Strict),
            ("permissive", Mode::Permissive),
            ("audit", Mode::Audit),
        ];
        let mode = match raw.mode.as_deref() {
            None => Mode::Strict,
            Some(mode) => self
                .one_of(&format!("{section}.mode"), mode, &modes)
                .unwrap_or(Mode::Strict),
        };
        if raw.issuers.is_empty() {
            self.error(
                format!("{section}.issuers"),
                "at least one issuer is required",
            );
        }
        let mut issuers: Vec<IssuerConfig> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in raw.issuers.iter().enumerate() {
            let path = format!("{section}.issuers[{i}]");
            for issuer in self.issuers(&path, raw) {
                if !seen.insert(issuer.issuer.clone()) {
                    let field = if raw.matches.is_some() {
                        "match"
                    } else {
                        "issuer"
                    };
                    self.error(
                        format!("{path}.{field}"),
                        format!("duplicate issuer {:?}", issuer.issuer),
                    );
                }
                issuers.push(issuer);
            }
        }
        if raw.rules.is_empty() {
            self.error(
                format!("{section}.rules"),
                "at least one rule is required (no match = deny)",
            );
        }
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.rule(&format!("{section}.rules[{i}]"), r, &issuers))
            .collect();
        let forward = self.forward(section, raw.forward);
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
            self.error(
                format!("{section}.limits.max_connections"),
                "must be at least 1",
            );
        }
        if limits.max_header_bytes < 1024 {
            self.error(
                format!("{section}.limits.max_header_bytes"),
                "must be at least 1024",
            );
        }
        if limits.max_token_bytes < 64 || limits.max_token_bytes > limits.max_header_bytes {
            self.error(
                format!("{section}.limits.max_token_bytes"),
                "must be at least 64 and no more than max_header_bytes",
            );
        }
        GuardConfig {
            mode,
            issuers,
            rules,
            forward,
            limits,
            token_cache_entries: raw.token_cache.max_entries.unwrap_or(10_000),
            dpop: self.dpop(&format!("{section}.dpop"), &raw.dpop),
        }
    }

    /// `dpop`: the proof window, the replay cache's size, the origin.
    fn dpop(&mut self, path: &str, raw: &RawDpop) -> DpopConfig {
        let d = DpopConfig::default();
        let max_age = self.duration(&format!("{path}.max_age"), raw.max_age.as_ref(), d.max_age);
        let leeway = self.duration(&format!("{path}.leeway"), raw.leeway.as_ref(), d.leeway);
        if max_age.is_zero() || max_age > Duration::from_secs(3600) {
            self.error(
                format!("{path}.max_age"),
                "must be more than 0s and at most 1h",
            );
        }
        if leeway > Duration::from_secs(300) {
            self.error(format!("{path}.leeway"), "must be at most 5m");
        }
        let replay_cache_entries = raw.replay_cache_entries.unwrap_or(d.replay_cache_entries);
        if replay_cache_entries == 0 {
            self.error(
                format!("{path}.replay_cache_entries"),
                "must be at least 1: a proof that cannot be remembered could be replayed",
            );
        }
        let origin = raw.origin.as_ref().and_then(|o| {
            let at = format!("{path}.origin");
            let text = self.text(&at, o)?;
            let uri = text.parse::<hyper::Uri>().ok();
            let parts = uri.as_ref().and_then(|u| {
                let scheme = u.scheme_str().filter(|s| ["http", "https"].contains(s))?;
                let authority = u.authority().filter(|a| !a.as_str().contains('@'))?;
                let bare = matches!(u.path(), "" | "/") && u.query().is_none();
                bare.then(|| (scheme.to_string(), authority.as_str().to_ascii_lowercase()))
            });
            if parts.is_none() {
                self.error(
                    at,
                    format!("{text:?}: an http(s) scheme and host, nothing after (https://api.example.com)"),
                );
            }
            parts
        });
        DpopConfig {
            max_age,
            leeway,
            replay_cache_entries,
            origin,
            require_nonce: raw.require_nonce.unwrap_or(false),
        }
    }

    /// A `strip | keep` field: whether to keep, `keep_by_default` when absent.
    fn strip_or_keep(&mut self, path: &str, value: Option<String>, keep_by_default: bool) -> bool {
        match value.as_deref() {
            None => keep_by_default,
            Some(value) => self
                .one_of(path, value, &[("strip", false), ("keep", true)])
                .unwrap_or(keep_by_default),
        }
    }

    fn forward(&mut self, section: &str, raw: RawForward) -> ForwardConfig {
        let claims_to_headers = raw
            .claims_to_headers
            .into_iter()
            .filter_map(|(claim, header)| {
                let claim = match ClaimName::parse(&claim) {
                    Ok(claim) => claim,
                    Err(e) => {
                        self.error(format!("{section}.forward.claims_to_headers"), e);
                        return None;
                    }
                };
                match HeaderName::from_bytes(header.as_bytes()) {
                    // CGI-style servers read `_` and `-` alike; the guard strips
                    // callers' spellings of `-` names in both forms.
                    Ok(h) if h.as_str().contains('_') => {
                        self.error(
                            format!("{section}.forward.claims_to_headers.{claim}"),
                            format!("{h}: write identity header names with '-', not '_'"),
                        );
                        None
                    }
                    Ok(h) if !is_reserved_header(&h) => Some((claim, h)),
                    Ok(h) => {
                        self.error(
                            format!("{section}.forward.claims_to_headers.{claim}"),
                            format!("{h} cannot carry identity"),
                        );
                        None
                    }
                    Err(_) => {
                        self.error(
                            format!("{section}.forward.claims_to_headers.{claim}"),
                            format!("not a valid header name: {header:?}"),
                        );
                        None
                    }
                }
            })
            .collect();
        let keep_authorization = self.strip_or_keep(
            &format!("{section}.forward.authorization"),
            raw.authorization,
            true,
        );
        let keep_override_headers = self.strip_or_keep(
            &format!("{section}.forward.override_headers"),
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

/// Headers that the proxy itself owns (Host, the forwarding headers it sets),
/// or that never reach the app (hop-by-hop), and so cannot carry claims.
fn is_reserved_header(h: &HeaderName) -> bool {
    use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST};
    is_hop_by_hop(h)
        || is_set_by_proxy(h)
        || [AUTHORIZATION, HOST, CONTENT_LENGTH, COOKIE].contains(h)
}
