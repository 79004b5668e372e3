//! The inbound guard. Each request runs these phases in order:
//! ready? → limits and shape (header size; method spelling, one canonical host,
//! canonical path) → strip hop-by-hop headers, then every header a caller may not
//! send (identity, `X-Forwarded-*`, `Forwarded`, method and path overrides) →
//! match rule (every common reading of the request agreeing) → extract token →
//! verify (cache, then the pure verifier, refetching keys once for an unknown
//! kid) → authorize → set identity headers and the canonical Host → forward →
//! record.

pub mod cache;
pub mod jwks;
pub mod keys;
pub mod policy;
pub mod shape;
pub mod verify;

use crate::config::{Access, InboundConfig, Mode, Requirements, RouteRule};
use crate::error::{Denial, Failure, ProxyError};
use crate::headers::strip_hop_by_hop;
use crate::metrics::{Metrics, RouteCounters};
use crate::respond::complete;
use crate::server::Handler;
use crate::upstream::{header_bytes, streamed, Body, Direction, Downstream, HttpClient, Upstream};
use cache::TokenCache;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, AUTHORIZATION};
use hyper::{Request, Response};
use jwks::{unix_now, Jwks};
use keys::KeySnapshot;
use policy::{canonical_path, find_rule, overrides_agree, Shortfall};
use prometheus::{Histogram, IntCounter};
use shape::{method_spelling, request_host, strip_caller_headers, Host};
use std::sync::Arc;
use std::time::Instant;
use verify::{Reject, VerifiedToken, Verifier};

/// Everything the inbound path needs, built once from the config.
pub struct Inbound {
    verifier: Verifier,
    rules: Vec<RouteRule>,
    mode: Mode,
    cache: TokenCache,
    jwks: Arc<Jwks>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// Identity headers, removed from every incoming request (with the other
    /// headers a caller may not send, [`strip_caller_headers`]).
    identity_headers: Vec<HeaderName>,
    keep_authorization: bool,
    /// `forward.override_headers: keep`: method and path override headers go on,
    /// and the rules must agree on every reading they give a request.
    keep_override_headers: bool,
    max_header_bytes: usize,
    duration: Histogram,
    /// Request counters per rule (same order as `rules`), and for requests no rule took.
    rule_counters: Vec<RouteCounters>,
    unrouted: RouteCounters,
    /// `allow` decisions, indexed by `Allowed`, resolved once.
    allowed: [IntCounter; 3],
    cache_hits: IntCounter,
    cache_misses: IntCounter,
}

/// Why a request was allowed: the `reason` label of its `allow` decision.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    Anonymous,
    ValidToken,
    NoTokenPermissive,
}

impl Allowed {
    const ALL: [Allowed; 3] = [
        Allowed::Anonymous,
        Allowed::ValidToken,
        Allowed::NoTokenPermissive,
    ];

    fn label(self) -> &'static str {
        match self {
            Allowed::Anonymous => "anonymous",
            Allowed::ValidToken => "valid_token",
            Allowed::NoTokenPermissive => "no_token_permissive",
        }
    }
}

/// What the auth phases decided for a request that may proceed.
enum Admit {
    /// Forward without identity (anonymous rule, permissive without a token, audit).
    Plain,
    /// Forward with the verified identity.
    Identified(Arc<VerifiedToken>),
}

impl Inbound {
    pub fn new(
        config: &InboundConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Inbound>, String> {
        let rule_claims = config
            .rules
            .iter()
            .filter_map(|r| match &r.access {
                Access::Token(req) => Some(req.claims.iter().map(|(name, _)| name.clone())),
                Access::Anonymous => None,
            })
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let verifier = Verifier::new(
            &config.issuers,
            config.limits.max_token_bytes,
            config.forward.claims_to_headers.clone(),
            rule_claims,
        );
        let jwks = Jwks::new(&config.issuers, client.clone(), metrics.clone());
        let upstream = Upstream::new(
            client,
            &config.upstream,
            config.timeouts.upstream_response,
            config.timeouts.tunnel_idle,
            Direction::Inbound,
        )?;
        Ok(Arc::new(Inbound {
            verifier,
            rules: config.rules.clone(),
            mode: config.mode,
            cache: TokenCache::new(config.token_cache_entries),
            jwks,
            upstream,
            identity_headers: config
                .forward
                .claims_to_headers
                .iter()
                .map(|(_, h)| h.clone())
                .collect(),
            keep_authorization: config.forward.keep_authorization,
            keep_override_headers: config.forward.keep_override_headers,
            max_header_bytes: config.limits.max_header_bytes,
            duration: metrics.duration_for("inbound"),
            rule_counters: config
                .rules
                .iter()
                .map(|r| metrics.route("inbound", &r.name))
                .collect(),
            unrouted: metrics.route("inbound", "none"),
            allowed: Allowed::ALL.map(|a| {
                metrics
                    .auth_decisions
                    .with_label_values(&["allow", a.label()])
            }),
            cache_hits: metrics.verify_cache_hits.clone(),
            cache_misses: metrics.verify_cache_misses.clone(),
            metrics,
        }))
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub fn is_ready(&self) -> bool {
        self.jwks.is_ready()
    }

    /// Runs the phases up to and including forwarding. Returns the matched rule's name.
    async fn process(
        &self,
        mut req: Request<Incoming>,
        from: Downstream,
    ) -> (&RouteCounters, Result<Response<Body>, Failure>) {
        // One key snapshot per request serves the readiness gate and verification.
        // Until keys first load nothing is served; after that, keys past their stale
        // bound fail only their own issuer's tokens (503 from the verifier).
        let keys = self.jwks.snapshot();
        if !keys.is_loaded() {
            return (&self.unrouted, Err(ProxyError::NotReady.into()));
        }
        if header_bytes(req.headers()) > self.max_header_bytes {
            return (&self.unrouted, Err(ProxyError::HeadersTooLarge.into()));
        }
        let host = match shape(&req) {
            Ok(host) => host,
            Err(why) => return (&self.unrouted, Err(ProxyError::BadRequest(why).into())),
        };
        // Hop-by-hop first: nothing added below can then be named away by `Connection`.
        let upgrade = strip_hop_by_hop(req.headers_mut());
        strip_caller_headers(
            req.headers_mut(),
            &self.identity_headers,
            self.keep_override_headers,
        );
        let (method, host_name, path) = (
            req.method(),
            host.as_ref().map_or(&b""[..], Host::name),
            req.uri().path(),
        );
        let found = find_rule(&self.rules, method, host_name, path).and_then(|found| {
            if self.keep_override_headers {
                let own = found.map(|(i, _)| i);
                overrides_agree(&self.rules, (method, host_name, path), own, req.headers())?;
            }
            Ok(found)
        });
        let found = match found {
            Ok(found) => found,
            Err(why) => return (&self.unrouted, Err(ProxyError::BadRequest(why).into())),
        };
        // What the app will read as Host: the host the rules matched, in its one
        // spelling (or, when the caller named none, the upstream's own).
        let host = host.map(Host::into_value);
        let rule = found.map(|(_, r)| r);
        let counters = found.map_or(&self.unrouted, |(i, _)| &self.rule_counters[i]);
        let route = counters.route.as_str();
        let decision = match rule {
            None => Err(Denial::NoRule),
            Some(r) => self.authorize(&r.access, req.headers(), &keys).await,
        };
        let admit = match decision {
            Ok((admit, why)) => {
                self.allowed[why as usize].inc();
                admit
            }
            Err(denial) if self.mode == Mode::Audit => {
                self.metrics
                    .auth_decisions
                    .with_label_values(&["audit", denial.reason()])
                    .inc();
                tracing::info!(route, reason = denial.reason(), detail = %denial, "audit: request would have been rejected");
                Admit::Plain
            }
            Err(denial) => {
                self.metrics
                    .auth_decisions
                    .with_label_values(&["deny", denial.reason()])
                    .inc();
                // debug: rejections are counted in metrics; logging each at info would
                // let any caller flood the logs.
                tracing::debug!(route, reason = denial.reason(), detail = %denial, "request rejected");
                return (counters, Err(denial.into()));
            }
        };
        if let Admit::Identified(token) = &admit {
            for (name, value) in token.identity.iter() {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        if !self.keep_authorization {
            req.headers_mut().remove(AUTHORIZATION);
        }
        (
            counters,
            self.upstream
                .forward(req.map(streamed), &from, upgrade, host)
                .await
                .map_err(Failure::from),
        )
    }

    /// Decides whether a request matching `access` may proceed, and why (a metric label).
    async fn authorize(
        &self,
        access: &Access,
        headers: &HeaderMap,
        keys: &KeySnapshot,
    ) -> Result<(Admit, Allowed), Denial> {
        let Access::Token(requirements) = access else {
            return Ok((Admit::Plain, Allowed::Anonymous));
        };
        let token = match bearer_token(headers)? {
            Some(token) => token,
            None if self.mode == Mode::Permissive => {
                return Ok((Admit::Plain, Allowed::NoTokenPermissive))
            }
            None => return Err(Denial::MissingToken),
        };
        let verified = self.verified(token, keys).await?;
        check(requirements, &verified)?;
        Ok((Admit::Identified(verified), Allowed::ValidToken))
    }

    /// A verification of `token`: from the cache, else the pure verifier (after one
    /// key refetch if it names an unknown kid).
    async fn verified(
        &self,
        token: &[u8],
        keys: &KeySnapshot,
    ) -> Result<Arc<VerifiedToken>, Reject> {
        let now = unix_now();
        if let Some(hit) = self.cache.get(token, keys, now) {
            self.cache_hits.inc();
            return Ok(hit);
        }
        self.cache_misses.inc();
        let text = token_text(token)?;
        let verified = match self.verifier.verify(text, keys, now) {
            Err(Reject::UnknownKid { issuer, kid }) => {
                if !self.jwks.refresh_for_unknown_kid(issuer, &kid).await {
                    return Err(Reject::UnknownKid { issuer, kid });
                }
                self.verifier
                    .verify(text, &self.jwks.snapshot(), unix_now())?
            }
            other => other?,
        };
        let verified = Arc::new(verified);
        self.cache.insert(token, verified.clone());
        Ok(verified)
    }
}

impl Handler for Inbound {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, from: Downstream) -> Response<Body> {
        let started = Instant::now();
        let (route, result) = self.process(req, from).await;
        complete(route, result, started, &self.duration)
    }
}

/// PURE: the request's shape, or why it has no one meaning (a 400): the
/// method's spelling, its one canonical host, and its path.
fn shape<B>(req: &Request<B>) -> Result<Option<Host>, &'static str> {
    method_spelling(req.method())?;
    let host = request_host(req.version(), req.uri(), req.headers())?;
    canonical_path(req.uri().path())?;
    Ok(host)
}

/// PURE: maps a rule's shortfall to the denial the caller sees.
fn check(requirements: &Requirements, token: &VerifiedToken) -> Result<(), Denial> {
    requirements.check(token).map_err(|s| match s {
        Shortfall::Scope(scopes) => Denial::InsufficientScope(scopes),
        Shortfall::Issuer | Shortfall::Claim(_) => Denial::Forbidden,
    })
}

/// PURE: the bearer token of a request, as the header's bytes: a cache hit
/// needs nothing more (see [`token_text`]). `Ok(None)` when there is no
/// `Authorization` header or it uses another scheme; several `Authorization`
/// headers are malformed. A value an app could read as a bearer token is one,
/// verified or refused, however its scheme is spelled or separated: anything
/// starting with `bearer` in any case must go on with white space (space or
/// tab) and a token, or it is malformed (`Bearer:x`, `Bearer=x`, `Bearerx`).
/// Otherwise permissive mode, which lets a request without a token through,
/// would carry a token nobody verified to an app that reads it.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&[u8]>, Reject> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reject::Malformed("more than one Authorization header"));
    }
    let value = value.as_bytes();
    match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => {}
        _ => return Ok(None),
    }
    let after_scheme = &value[6..];
    let token = after_scheme.trim_ascii_start();
    if token.len() == after_scheme.len() && !token.is_empty() {
        return Err(Reject::Malformed(
            "the Bearer scheme must be followed by white space",
        ));
    }
    let token = token.trim_ascii_end();
    if token.is_empty() {
        return Err(Reject::Malformed("empty bearer token"));
    }
    Ok(Some(token))
}

/// PURE: a token to verify as text: visible ASCII, as `HeaderValue::to_str`
/// requires. Checked only on a cache miss; the cache holds only tokens that
/// passed it.
pub fn token_text(token: &[u8]) -> Result<&str, Reject> {
    let visible = |b: &u8| *b == b'\t' || (b' '..=b'~').contains(b);
    match std::str::from_utf8(token) {
        Ok(text) if token.iter().all(visible) => Ok(text),
        _ => Err(Reject::Malformed("Authorization header is not ASCII")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn allowed_reasons_index_their_counters() {
        for (i, why) in super::Allowed::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "{}", why.label());
        }
    }

    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn bearer_token_extraction() {
        type Case = (Vec<&'static str>, Result<Option<&'static [u8]>, Reject>);
        let cases: Vec<Case> = vec![
            (vec![], Ok(None)),
            (vec!["Bearer abc.def.ghi"], Ok(Some(b"abc.def.ghi"))),
            (vec!["bearer abc"], Ok(Some(b"abc"))),
            (vec!["BEARER   abc  "], Ok(Some(b"abc"))),
            (vec!["Bearer\tabc"], Ok(Some(b"abc"))),
            (vec!["bearer \t abc"], Ok(Some(b"abc"))),
            (vec!["Basic dXNlcjpwYXNz"], Ok(None)),
            (vec!["Token abc"], Ok(None)),
            (vec!["Beare abc"], Ok(None)),
            (
                vec!["Bearer:abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearer=abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["bearer,abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearerabc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearer: abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (vec!["Bearer"], Err(Reject::Malformed("empty bearer token"))),
            (
                vec!["Bearer   "],
                Err(Reject::Malformed("empty bearer token")),
            ),
            (
                vec!["Bearer a", "Bearer b"],
                Err(Reject::Malformed("more than one Authorization header")),
            ),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in &values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(bearer_token(&h), want, "{values:?}");
        }
    }

    #[test]
    fn tokens_are_verified_only_as_visible_ascii() {
        let not_ascii = Err(Reject::Malformed("Authorization header is not ASCII"));
        let cases: [(&[u8], _); 4] = [
            (b"abc.def.ghi", Ok("abc.def.ghi")),
            (b"ab c\td", Ok("ab c\td")),
            (b"ab\xffc", not_ascii.clone()),
            ("ab\u{e9}c".as_bytes(), not_ascii.clone()),
        ];
        for (token, want) in cases {
            assert_eq!(token_text(token), want, "{token:?}");
        }
        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer ab\xffc").unwrap(),
        );
        let token = bearer_token(&h).unwrap().unwrap();
        assert_eq!(token_text(token), not_ascii);
    }
}
