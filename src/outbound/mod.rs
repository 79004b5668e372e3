//! The outbound proxy. Each request runs these phases, each a method below:
//! route (limits; the route by host: absolute-form target or `Host`, `*`
//! fallback) → forward (hop-by-hop headers and the app's `Authorization` and
//! `DPoP` out; credentials: the route's current token in, with a fresh proof
//! of this request when the token is DPoP-bound) → on a `retry_on` status, one
//! replay with a newer token when the body was small enough to keep (a gRPC
//! UNAUTHENTICATED in the trailers, seen as the body passes, renews it for the
//! next request), or, when a DPoP upstream asks for its nonce, one replay with
//! it → complete (one point records every outcome).
//!
//! A certificate-bound source (`certificate_bound: true`) is bound by the
//! client certificate of its `tls`: its routes' upstreams are dialled with
//! it too.

pub mod renew;
pub mod schedule;
pub mod source;
pub mod token;

use crate::body::{full, streamed, watch_trailers, Body};
use crate::client::HttpClient;
use crate::clock::unix_now;
use crate::config::OutboundConfig;
use crate::config::TokenSource;
use crate::dpop_key::{DpopKey, ProofFor};
use crate::error::{Failure, ProxyError};
use crate::grpc::{self, Protocol};
use crate::headers::{header_bytes, strip_hop_by_hop, Hop};
use crate::metrics::{Metrics, RouteCounters};
use crate::respond::{complete, Exchange};
use crate::server::Downstream;
use crate::server::Handler;
use crate::upstream::{Direction, Upstream, UpstreamUrlError};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, Response, Uri};
use prometheus::Histogram;
use renew::spawn_renewal;
use source::Nonce;
use std::sync::Arc;
use std::time::Duration;
use token::{Token, TokenCell};
use tokio_util::sync::CancellationToken;

struct Route {
    /// Lower-case host; `None` for the `*` fallback.
    host: Option<String>,
    /// Request counters, labelled with the configured host (`*` for the fallback).
    counters: RouteCounters,
    upstream: Upstream,
    /// Index into `Outbound::sources`; `None`: pass-through.
    token: Option<usize>,
    /// The upstream's latest DPoP nonce (RFC 9449 §9), for a DPoP-bound token.
    nonce: Nonce,
}

/// Per token source: its cell and what the request path needs from its config.
struct Source {
    cell: Arc<TokenCell>,
    retry_on: Vec<u16>,
    fetch_timeout: Duration,
    /// The key a DPoP-bound token's proofs are signed with.
    dpop: Option<Arc<DpopKey>>,
}

/// What a token route's request carries: `Authorization`, and beside a
/// DPoP-bound token a fresh proof for this very request.
struct Credentials {
    authorization: HeaderValue,
    proof: Option<HeaderValue>,
    /// The upstream nonce the proof carries.
    nonce: Option<String>,
}

impl Credentials {
    /// Sets the headers; returns the nonce the proof carries.
    fn apply(self, headers: &mut HeaderMap) -> Option<String> {
        headers.insert(AUTHORIZATION, self.authorization);
        if let Some(proof) = self.proof {
            headers.insert(DPOP.clone(), proof);
        }
        self.nonce
    }
}

/// What an upstream's answer on a token route asks of tokengate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing: it goes back to the app.
    Answered,
    /// A DPoP upstream wants a proof with the nonce it now gives (RFC 9449 §9).
    Nonce,
    /// A DPoP upstream refused the proof itself: a newer token cannot help.
    ProofRefused,
    /// A `retry_on` status: the token is refused.
    TokenRefused,
}

/// Everything the outbound path needs, built once from the config.
pub struct Outbound {
    routes: Vec<Route>,
    sources: Vec<Source>,
    metrics: Arc<Metrics>,
    max_header_bytes: usize,
    max_retry_body_bytes: usize,
    /// Time allowed to receive a body kept for a retry: the request to replay,
    /// or the refusal read before replaying.
    body_timeout: Duration,
    duration: Histogram,
    /// Request counters for requests no route took.
    unrouted: RouteCounters,
}

impl Outbound {
    /// Builds the proxy and starts one renewal task per token source.
    pub fn start(
        config: &OutboundConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Outbound>, UpstreamUrlError> {
        let routes = config
            .routes
            .iter()
            .map(|r| {
                Ok(Route {
                    host: r.host.clone(),
                    counters: metrics.route("outbound", r.host.as_deref().unwrap_or("*")),
                    upstream: Upstream::new(
                        client.with_tls(bound_tls(config, r.token)),
                        &r.upstream,
                        r.protocol,
                        config.timeouts.upstream_response,
                        config.timeouts.tunnel_idle,
                        Direction::Outbound,
                    )?,
                    token: r.token,
                    nonce: Nonce::default(),
                })
            })
            .collect::<Result<_, UpstreamUrlError>>()?;
        // Renewal tasks start only once nothing else can fail.
        let sources = config
            .tokens
            .iter()
            .map(|t| {
                let cell = TokenCell::new(&t.name);
                spawn_renewal(
                    cell.clone(),
                    t.clone(),
                    client.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                );
                Source {
                    cell,
                    retry_on: t.retry_on.clone(),
                    fetch_timeout: t.fetch_timeout,
                    dpop: match &t.source {
                        TokenSource::OAuth(grant) => grant.dpop.clone(),
                        _ => None,
                    },
                }
            })
            .collect();
        Ok(Arc::new(Outbound {
            routes,
            sources,
            duration: metrics.duration_for("outbound"),
            unrouted: metrics.route("outbound", "none"),
            metrics,
            max_header_bytes: config.max_header_bytes,
            max_retry_body_bytes: config.max_retry_body_bytes,
            body_timeout: config.timeouts.upstream_response,
        }))
    }

    /// Resolves once every source has a valid token.
    pub async fn ready(&self) {
        for source in &self.sources {
            source.cell.ready().await;
        }
    }

    /// What keeps this from being ready: each token source without a valid token.
    pub fn not_ready(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| !s.cell.is_ready())
            .map(|s| {
                let why = s
                    .cell
                    .last_error()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                match s.cell.seconds_left() {
                    None => format!("token {}: not fetched yet{why}", s.cell.name),
                    Some(_) => format!(
                        "token {}: expired, and no new one could be fetched{why}",
                        s.cell.name
                    ),
                }
            })
            .collect()
    }

    /// Updates `tokengate_token_expiry_seconds` (called before a scrape).
    pub fn update_expiry_gauges(&self) {
        for s in &self.sources {
            if let Some(left) = s.cell.seconds_left() {
                self.metrics
                    .token_expiry
                    .with_label_values(&[&s.cell.name])
                    .set(left);
            }
        }
    }

    /// Phase route: limits, then the route for the request's host.
    fn route<B>(&self, req: &Request<B>) -> Result<&Route, Failure> {
        if header_bytes(req.headers()) > self.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge.into());
        }
        let host = route_host(req);
        find_route(&self.routes, host).ok_or_else(|| ProxyError::NoRoute(host.to_string()).into())
    }

    /// Phase forward: hop-by-hop headers out; on a token route, the app's
    /// `Authorization` replaced by the route's token, with one replay when the
    /// upstream refuses it and the body was kept. `protocol`: what the app
    /// speaks, as the exchange read it.
    async fn forward(
        &self,
        route: &Route,
        mut req: Request<Incoming>,
        from: &Downstream,
        protocol: Protocol,
    ) -> Result<Response<Body>, Failure> {
        let hop = strip_hop_by_hop(req.headers_mut());
        let Some(source) = route.token.map(|i| &self.sources[i]) else {
            // A pass-through route: forwarded as the app sent it.
            return route
                .upstream
                .forward(req.map(streamed), from, hop, None)
                .await
                .map_err(Failure::from);
        };
        // The app's own credentials never travel beside the injected one.
        req.headers_mut().remove(AUTHORIZATION);
        req.headers_mut().remove(&DPOP);
        let token = self.token(source).await?;
        let sent =
            credentials(route, source, &token, req.method(), req.uri())?.apply(req.headers_mut());
        let replayable = (!source.retry_on.is_empty() || source.dpop.is_some())
            && hop.upgrade.is_none()
            && req
                .body()
                .size_hint()
                .upper()
                .is_some_and(|n| n <= self.max_retry_body_bytes as u64);
        // A gRPC answer may refuse the token after its head, in its trailers.
        let grpc = protocol == Protocol::Grpc && source.retry_on.contains(&401);
        let mut answer = if replayable {
            self.forward_replayable(route, source, &token, sent.as_deref(), req, from, hop)
                .await?
        } else {
            let answer = route
                .upstream
                .forward(req.map(streamed), from, hop, None)
                .await?;
            // Cannot replay this body, but the app's own retry should get a
            // new token (or, from a DPoP upstream, the nonce now kept).
            if judge(route, source, sent.as_deref(), &answer) == Outcome::TokenRefused {
                source.cell.request_renewal(token.generation);
            }
            answer
        };
        if grpc {
            let (cell, generation) = (source.cell.clone(), token.generation);
            watch_trailers(answer.body_mut(), move |trailers| {
                if grpc::unauthenticated(trailers) {
                    cell.request_renewal(generation);
                }
            });
        }
        Ok(answer)
    }

    /// Phase token: the source's current token; only before the first one, or
    /// after expiry while the token server is down, a bounded, counted wait.
    async fn token(&self, source: &Source) -> Result<Arc<Token>, Failure> {
        if let Some(token) = source.cell.usable() {
            return Ok(token);
        }
        self.metrics
            .token_waits
            .with_label_values(&[&source.cell.name])
            .inc();
        // Boxed, as the retry: rare, and inline its state would add to every
        // request's future.
        Box::pin(source.cell.newer_than(0, source.fetch_timeout))
            .await
            .ok_or_else(|| ProxyError::TokenUnavailable(source.cell.name.clone()).into())
    }

    /// A token route's request whose body is small enough to keep: sent, and
    /// replayed once with a newer token on a `retry_on` status, or with a
    /// fresh proof when a DPoP upstream asks for its nonce.
    #[allow(clippy::too_many_arguments)]
    async fn forward_replayable(
        &self,
        route: &Route,
        source: &Source,
        token: &Token,
        sent: Option<&str>,
        req: Request<Incoming>,
        from: &Downstream,
        hop: Hop,
    ) -> Result<Response<Body>, Failure> {
        let (parts, body) = req.into_parts();
        // Most requests a token route sees (GET, HEAD) have no body: nothing to wait for.
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            self.read_kept(body).await.ok_or(ProxyError::BadRequest(
                "request body ended early, was larger than announced, or stalled".into(),
            ))?
        };
        // The first attempt sends the request itself; a copy is kept for the
        // replay. Sending the copy instead cost 4% more per request: a cloned
        // header map has no room for the headers forwarding adds, so it grew
        // (reallocated) every time.
        let replay = {
            let (method, uri, version) = (parts.method.clone(), parts.uri.clone(), parts.version);
            let (headers, body, hop) = (parts.headers.clone(), body.clone(), hop.clone());
            move || {
                let mut r = Request::new(full(body.clone()));
                *r.method_mut() = method.clone();
                *r.uri_mut() = uri.clone();
                *r.version_mut() = version;
                *r.headers_mut() = headers.clone();
                (r, hop.clone())
            }
        };
        let first = route
            .upstream
            .forward(
                Request::from_parts(parts, full(body)),
                from,
                hop.clone(),
                None,
            )
            .await?;
        match judge(route, source, sent, &first) {
            Outcome::Nonce => {
                // Read, if small, so its connection can carry the replay.
                drop(self.read_small(first).await);
                Box::pin(self.resend(route, source, token, replay, from)).await
            }
            Outcome::TokenRefused => {
                Box::pin(self.retry(route, source, token, first, replay, from)).await
            }
            Outcome::Answered | Outcome::ProofRefused => Ok(first),
        }
    }

    /// Post-expiration renewal: the upstream refused `rejected`; get a newer token
    /// (one fetch however many requests ask) and replay once. If none comes in
    /// time, the upstream's answer goes back to the app.
    async fn retry(
        &self,
        route: &Route,
        source: &Source,
        rejected: &Token,
        answer: Response<Body>,
        replay: impl Fn() -> (Request<Body>, Hop),
        from: &Downstream,
    ) -> Result<Response<Body>, Failure> {
        let status = answer.status().as_u16();
        let answer = self.read_small(answer).await;
        match source
            .cell
            .newer_than(rejected.generation, source.fetch_timeout)
            .await
        {
            Some(fresh) => {
                tracing::info!(token = %source.cell.name, status, "upstream refused the token; retrying once with a new one");
                drop(answer);
                self.resend(route, source, &fresh, replay, from).await
            }
            None => answer.map_err(Failure::from),
        }
    }

    /// Sends the kept request again with `token` (and a fresh proof), once;
    /// its answer is read like the first (a nonce kept, a refused token
    /// renewed for the next request) but never sent a third time.
    async fn resend(
        &self,
        route: &Route,
        source: &Source,
        token: &Token,
        replay: impl Fn() -> (Request<Body>, Hop),
        from: &Downstream,
    ) -> Result<Response<Body>, Failure> {
        let (mut req, hop) = replay();
        let sent =
            credentials(route, source, token, req.method(), req.uri())?.apply(req.headers_mut());
        let answer = route.upstream.forward(req, from, hop, None).await?;
        if judge(route, source, sent.as_deref(), &answer) == Outcome::TokenRefused {
            source.cell.request_renewal(token.generation);
        }
        Ok(answer)
    }

    /// A refusal whose body is announced small enough to keep, read to its end:
    /// its connection then goes back to the pool (the replay may take it) instead
    /// of closing with the body unread. Other answers are left as they are.
    async fn read_small(&self, answer: Response<Body>) -> Result<Response<Body>, ProxyError> {
        let small = answer
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= self.max_retry_body_bytes as u64);
        if !small {
            return Ok(answer);
        }
        let (parts, body) = answer.into_parts();
        match self.read_kept(body).await {
            Some(body) => Ok(Response::from_parts(parts, full(body))),
            None => Err(ProxyError::UpstreamFailed(
                "the refusal's body ended early or stalled".into(),
            )),
        }
    }

    /// A body kept in memory for a retry, read to its end: `None` when it
    /// fails, outgrows `max_retry_body_bytes` or stalls past `body_timeout`.
    async fn read_kept<B>(&self, body: B) -> Option<Bytes>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let read = Limited::new(body, self.max_retry_body_bytes).collect();
        match tokio::time::timeout(self.body_timeout, read).await {
            Ok(Ok(body)) => Some(body.to_bytes()),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl Handler for Outbound {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, from: Downstream) -> Response<Body> {
        let exchange = Exchange::of(&req);
        let (counters, result) = match self.route(&req) {
            Ok(route) => {
                let answer = self.forward(route, req, &from, exchange.protocol).await;
                (&route.counters, answer)
            }
            Err(failure) => (&self.unrouted, Err(failure)),
        };
        complete(counters, result, exchange, "-", &self.duration)
    }
}

/// The TLS of a certificate-bound source: the routes that inject its tokens
/// reach their upstream with it, so the upstream sees the certificate the
/// tokens are bound to (RFC 8705 §3).
fn bound_tls(config: &OutboundConfig, token: Option<usize>) -> Option<&rustls::ClientConfig> {
    config.tokens.get(token?)?.upstream_tls.as_deref()
}

/// The DPoP proof header (RFC 9449 §4.1).
static DPOP: HeaderName = HeaderName::from_static("dpop");

/// The request's credentials from `token`: its `Authorization` value and,
/// for a DPoP-bound token, a proof of this method and upstream URL carrying
/// the upstream's latest nonce.
fn credentials(
    route: &Route,
    source: &Source,
    token: &Token,
    method: &Method,
    uri: &Uri,
) -> Result<Credentials, Failure> {
    let unavailable = |why: &str| {
        tracing::error!(token = %source.cell.name, error = why, "cannot make a DPoP proof");
        Failure::from(ProxyError::TokenUnavailable(source.cell.name.clone()))
    };
    let (proof, nonce) = match &source.dpop {
        None => (None, None),
        Some(key) => {
            let (htu, nonce) = (route.upstream.url_of(uri.path()), route.nonce.get());
            let what = ProofFor {
                htm: method.as_str(),
                htu: &htu,
                ath: token.ath.as_deref(),
                nonce: nonce.as_deref(),
            };
            let proof = key.proof(what, unix_now()).map_err(|e| unavailable(&e))?;
            let mut proof =
                HeaderValue::try_from(proof).map_err(|e| unavailable(&e.to_string()))?;
            proof.set_sensitive(true);
            (Some(proof), nonce)
        }
    };
    Ok(Credentials {
        authorization: token.header.clone(),
        proof,
        nonce,
    })
}

/// Reads an upstream's answer on a token route: keeps a DPoP upstream's
/// nonce, and says what the answer asks for (`sent`: the nonce the request's
/// proof carried).
fn judge<B>(route: &Route, source: &Source, sent: Option<&str>, answer: &Response<B>) -> Outcome {
    let dpop = source.dpop.is_some();
    if dpop {
        route.nonce.keep(answer.headers());
    }
    let outcome = outcome(&source.retry_on, dpop, sent, answer);
    if outcome == Outcome::ProofRefused {
        tracing::warn!(token = %source.cell.name, route = %route.counters.route, "the upstream refused tokengate's DPoP proof");
    }
    outcome
}

/// PURE: what an answer asks of tokengate. From a DPoP upstream, a 401
/// challenge naming `use_dpop_nonce` with a nonce other than the one sent
/// wants the request again with it (RFC 9449 §9); one naming a proof error
/// (that, or `invalid_dpop_proof`) is no fault of the token. Otherwise a
/// `retry_on` status refuses the token.
fn outcome<B>(retry_on: &[u16], dpop: bool, sent: Option<&str>, answer: &Response<B>) -> Outcome {
    let challenge_says = |error: &[u8]| {
        answer.status() == hyper::StatusCode::UNAUTHORIZED
            && answer
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .any(|v| memchr::memmem::find(v.as_bytes(), error).is_some())
    };
    if dpop && challenge_says(b"use_dpop_nonce") {
        return match source::given_nonce(answer.headers()) {
            Some(given) if Some(given) != sent => Outcome::Nonce,
            _ => Outcome::ProofRefused,
        };
    }
    if dpop && challenge_says(b"invalid_dpop_proof") {
        return Outcome::ProofRefused;
    }
    if refuses_token(retry_on, answer) {
        Outcome::TokenRefused
    } else {
        Outcome::Answered
    }
}

/// PURE: exact host first, then the `*` fallback.
fn find_route<'a>(routes: &'a [Route], host: &str) -> Option<&'a Route> {
    routes
        .iter()
        .find(|r| {
            r.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
        .or_else(|| routes.iter().find(|r| r.host.is_none()))
}

/// PURE: the host an outbound request is routed by, without port: from an
/// absolute-form target (as `HTTP_PROXY` clients send), else the `Host` header.
/// Lenient where the inbound guard's `request_host` refuses (the app behind us
/// is trusted; an odd host only falls to the `*` route): its case is kept for
/// a case-insensitive match, a conflicting `Host` is ignored, none is "".
fn route_host<B>(req: &Request<B>) -> &str {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.host())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let host = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| &raw[..h.len() + 1])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    // Matched case-insensitively by `find_route`: no lower-cased copy per request.
    host.trim_end_matches('.')
}

/// PURE: the upstream's answer refuses the token, by a `retry_on` status. A
/// gRPC UNAUTHENTICATED (a trailers-only answer: HTTP 200 with
/// `grpc-status: 16` in the headers) counts as a 401; so does one in the
/// trailers after a head, which only the body shows (`watch_trailers`).
fn refuses_token<B>(retry_on: &[u16], answer: &Response<B>) -> bool {
    let status = answer.status().as_u16();
    retry_on.contains(&status)
        || status == 200 && retry_on.contains(&401) && grpc::unauthenticated(answer.headers())
}

#[cfg(test)]
mod tests;
