//! Validation of the `inbound` and `authz` sections: issuers, rules, forwarding.

use super::raw::{RawAuthz, RawForward, RawGuard, RawInbound, RawIssuer, RawJwksCache, RawRule};
use super::rules::{Access, ClaimName, IssuerId, Requirements, RouteRule};
use super::{
    is_hmac, AuthzConfig, ForwardConfig, GuardConfig, InboundConfig, IssuerConfig, JwksCachePolicy,
    KeySource, Limits, Mode, Secret, TlsFiles, Validator,
};
use crate::headers::{canonical_host, is_hop_by_hop, is_set_by_proxy};
use hyper::header::HeaderName;
use hyper::{Method, Uri};
use jsonwebtoken::Algorithm;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn inbound(&mut self, raw: RawInbound) -> Option<InboundConfig> {
        let listen = self.socket_addr("inbound.listen", &raw.listen);
        let upstream = self.http_uri("inbound.upstream", &raw.upstream);
        let upstream_protocol =
            self.upstream_protocol("inbound.protocol", raw.protocol.as_ref(), upstream.as_ref());
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
        let timeouts = self.timeouts("inbound.timeouts", &raw.timeouts);
        let guard = self.guard(
            "inbound",
            RawGuard {
                mode: raw.mode,
                issuers: raw.issuers,
                rules: raw.rules,
                forward: raw.forward,
                limits: raw.limits,
                token_cache: raw.token_cache,
            },
        );
        Some(InboundConfig {
            listen: listen?,
            tls,
            upstream: upstream?,
            upstream_protocol,
            timeouts,
            guard,
        })
    }

    /// The `authz` section: `inbound` without forwarding. What the inbound
    /// guard strips before forwarding reaches the app through the fronting
    /// proxy instead, so override headers are always checked, never
    /// stripped: the listener reads them as namings of the original request,
    /// which must agree with it (`authz::original`), and its guard keeps them.
    pub(super) fn authz(&mut self, raw: RawAuthz) -> Option<AuthzConfig> {
        let listen = match &raw.listen {
            Some(l) => self.socket_addr("authz.listen", l),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9191))),
        };
        let grpc_listen = raw
            .grpc_listen
            .as_ref()
            .and_then(|l| self.socket_addr("authz.grpc_listen", l));
        let timeouts = self.timeouts("authz.timeouts", &raw.timeouts);
        let forwarding = [
            ("upstream_connect", raw.timeouts.upstream_connect.is_some()),
            (
                "upstream_response",
                raw.timeouts.upstream_response.is_some(),
            ),
            ("tunnel_idle", raw.timeouts.tunnel_idle.is_some()),
        ];
        for (field, _) in forwarding.iter().filter(|(_, set)| *set) {
            self.error(
                format!("authz.timeouts.{field}"),
                "authz forwards nothing: only header_read and drain apply",
            );
        }
        if raw.forward.authorization.is_some() {
            self.error(
                "authz.forward.authorization",
                "authz forwards nothing: the fronting proxy decides what the app gets",
            );
        }
        if raw.forward.override_headers.is_some() {
            self.error(
                "authz.forward.override_headers",
                "authz cannot strip headers from what the app gets: override headers are always checked",
            );
        }
        let mut guard = self.guard(
            "authz",
            RawGuard {
                mode: raw.mode,
                issuers: raw.issuers,
                rules: raw.rules,
                forward: raw.forward,
                limits: raw.limits,
                token_cache: raw.token_cache,
            },
        );
        guard.forward.keep_override_headers = true;
        Some(AuthzConfig {
            listen: listen?,
            grpc_listen,
            timeouts,
            guard,
        })
    }

    /// What decides a request, for `section` (`inbound` or `authz`).
    fn guard(&mut self, section: &str, raw: RawGuard) -> GuardConfig {
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
        let issuers: Vec<IssuerConfig> = raw
            .issuers
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.issuer(&format!("{section}.issuers[{i}]"), r))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (i, iss) in issuers.iter().enumerate() {
            if !seen.insert(iss.issuer.clone()) {
                self.error(format!("{section}.issuers[{i}].issuer"), "duplicate issuer");
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
        }
    }

    fn issuer(&mut self, path: &str, raw: RawIssuer) -> Option<IssuerConfig> {
        let issuer = self.text(&format!("{path}.issuer"), &raw.issuer)?;
        if issuer.is_empty() {
            self.error(format!("{path}.issuer"), "must not be empty");
        }
        let algorithms = self.algorithms(path, raw.algorithms.as_deref());
        let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
        let wants_public = algorithms.iter().any(|a| !is_hmac(*a));
        let shared_secret = self.shared_secret(path, &raw);
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
        let keys = self.key_source(path, &raw, &issuer, wants_public);
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
        if keys == KeySource::None {
            let set = [
                ("tls", raw.tls.is_some()),
                (
                    "jwks_bearer_token_file",
                    raw.jwks_bearer_token_file.is_some(),
                ),
            ];
            for (field, _) in set.iter().filter(|(_, set)| *set) {
                self.error(
                    format!("{path}.{field}"),
                    "applies to JWKS fetches, and this issuer has no JWKS",
                );
            }
        }
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.client_tls(&format!("{path}.tls"), t));
        let jwks_bearer_token_file = raw.jwks_bearer_token_file.as_ref().and_then(|f| {
            self.text(&format!("{path}.jwks_bearer_token_file"), f)
                .map(PathBuf::from)
        });
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
            tls,
            jwks_bearer_token_file,
        })
    }

    /// `algorithms`: RS256 when unset; never empty, never `none`.
    fn algorithms(&mut self, path: &str, raw: Option<&[String]>) -> Vec<Algorithm> {
        match raw {
            None => vec![Algorithm::RS256],
            Some([]) => {
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
        }
    }

    /// `shared_secret` or `shared_secret_file` (at most one).
    fn shared_secret(&mut self, path: &str, raw: &RawIssuer) -> Option<Secret> {
        let (inline, file) = (raw.shared_secret.as_ref(), raw.shared_secret_file.as_ref());
        self.secret_or_file(path, "shared_secret", inline, file)
    }

    /// Where the issuer's public keys come from: `jwks_uri`, discovery, or
    /// nowhere (only when no public-key algorithm is allowed).
    fn key_source(
        &mut self,
        path: &str,
        raw: &RawIssuer,
        issuer: &str,
        wants_public: bool,
    ) -> KeySource {
        match (&raw.jwks_uri, raw.discovery.unwrap_or(false)) {
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
        }
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
        let methods = raw.methods.as_deref().map(|ms| self.rule_methods(path, ms));
        let access = self.access(path, &raw, issuers)?;
        let host = raw.host.as_deref().and_then(|h| self.rule_host(path, h));
        Some(RouteRule::new(
            raw.name.unwrap_or_else(|| prefix.clone()),
            &prefix,
            methods,
            host,
            access,
        ))
    }

    fn rule_methods(&mut self, path: &str, methods: &[String]) -> Vec<Method> {
        methods
            .iter()
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
    }

    /// `allow`: anonymous, or a token meeting the rule's requirements.
    fn access(&mut self, path: &str, raw: &RawRule, issuers: &[IssuerConfig]) -> Option<Access> {
        let wants_token = raw.scopes.is_some() || raw.issuers.is_some() || raw.claims.is_some();
        let anonymous = match raw.allow.as_deref() {
            None => false,
            Some(allow) => self.one_of(
                &format!("{path}.allow"),
                allow,
                &[("anonymous", true), ("authenticated", false)],
            )?,
        };
        match (anonymous, wants_token) {
            (true, true) => {
                self.error(
                    format!("{path}.allow"),
                    "an anonymous rule cannot also require scopes, issuers or claims",
                );
                None
            }
            (true, false) => Some(Access::Anonymous),
            (false, _) => Some(Access::Token(self.requirements(path, raw, issuers))),
        }
    }

    /// What a token must carry: scopes, one of the named issuers, claims.
    fn requirements(
        &mut self,
        path: &str,
        raw: &RawRule,
        issuers: &[IssuerConfig],
    ) -> Requirements {
        let issuer_idx = raw.issuers.as_ref().map(|names| {
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
        let claims = raw
            .claims
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, want)| match ClaimName::parse(&name) {
                Ok(name) => Some((name, want)),
                Err(e) => {
                    self.error(format!("{path}.claims"), e);
                    None
                }
            })
            .collect();
        Requirements {
            scopes: raw.scopes.clone().unwrap_or_default(),
            issuers: issuer_idx,
            claims,
        }
    }

    /// A rule's `host`: matched on the request's canonical host, so it must
    /// be one (a name without port).
    fn rule_host(&mut self, path: &str, host: &str) -> Option<String> {
        match canonical_host(host.as_bytes(), None) {
            Ok(Some(canonical)) if canonical.name().len() == canonical.value().len() => {
                Some(String::from_utf8_lossy(canonical.name()).into_owned())
            }
            _ => {
                self.error(
                    format!("{path}.host"),
                    format!("expected a host name without port, got {host:?}"),
                );
                None
            }
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
