//! The one place a failure becomes its HTTP answer (status, `WWW-Authenticate`,
//! small JSON body), and the one completion point that records every request.

use crate::body::{full, Body};
use crate::error::{Denial, Failure, ProxyError};
use crate::grpc::{grpc_message, grpc_status, Protocol, GRPC_MESSAGE, GRPC_STATUS};
use crate::guard::reject::Reject;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use std::time::Instant;

const REALM: &str = "tokengate";

/// The header a `use_dpop_nonce` answer gives the nonce in.
static DPOP_NONCE: hyper::header::HeaderName = hyper::header::HeaderName::from_static("dpop-nonce");

/// What the access log says of a request, taken before the request moves on:
/// the method and target only when the access log is on (else nothing is
/// copied per request).
pub struct Exchange {
    pub started: Instant,
    /// The method and the target as received; only its path is logged (a
    /// query may hold secrets).
    pub asked: Option<(Method, Uri)>,
    /// How a failure is answered: plain HTTP, or gRPC's own way.
    pub protocol: Protocol,
    /// A response that is not a failure came from an upstream (the access
    /// log's `upstream_status`), not from tokengate itself.
    pub upstream: bool,
}

impl Exchange {
    /// A request to be forwarded, answered as it speaks.
    pub fn of<B>(req: &Request<B>) -> Exchange {
        let logged = crate::access_log::sink().is_some();
        Exchange {
            started: Instant::now(),
            asked: logged.then(|| (req.method().clone(), req.uri().clone())),
            protocol: Protocol::of(req.method(), req.headers()),
            upstream: true,
        }
    }

    /// A request tokengate answers itself, started at `started`: always in
    /// plain HTTP, whatever it speaks (a fronting proxy asking the authz
    /// listener reads the status, and a gRPC-style refusal is a 200).
    pub fn answered<B>(req: &Request<B>, started: Instant) -> Exchange {
        Exchange {
            started,
            protocol: Protocol::Http,
            upstream: false,
            ..Exchange::of(req)
        }
    }
}

/// The one completion point of both directions, on success and on failure: turns
/// a failure into its response, logs proxy-side failures (auth denials are logged
/// where they are decided), records the request metrics, and writes the access
/// log line. `reason` is why the request went on (or `-`); a failure gives its own.
pub fn complete(
    route: &crate::metrics::RouteCounters,
    result: Result<Response<Body>, Failure>,
    exchange: Exchange,
    reason: &'static str,
    duration: &prometheus::Histogram,
) -> Response<Body> {
    let (resp, reason, forwarded) = match result {
        Ok(resp) => (resp, reason, exchange.upstream),
        Err(failure) => {
            if let Failure::Proxy(e) = &failure {
                tracing::warn!(direction = route.direction, route = %route.route, error = %e, "request failed");
            }
            // A denial says why (`bad_signature`); a proxy failure, what (`upstream_timeout`).
            let why = match &failure {
                Failure::Denied(denial) => denial.reason(),
                Failure::Proxy(_) => classify(&failure).1,
            };
            (error_response(&failure, exchange.protocol), why, false)
        }
    };
    let elapsed = exchange.started.elapsed();
    route.inc(resp.status());
    duration.observe(elapsed.as_secs_f64());
    if let (Some((method, uri)), Some(log)) = (&exchange.asked, crate::access_log::sink()) {
        log.record(&crate::access_log::Line {
            direction: route.direction,
            route: &route.route,
            method: method.as_str(),
            path: uri.path(),
            status: resp.status().as_u16(),
            reason,
            upstream_status: forwarded.then(|| resp.status().as_u16()),
            duration: elapsed,
        });
    }
    resp
}

/// The status and the `error` label a failure is answered with (what
/// `tokengate verify` prints as its decision).
pub fn status_and_label(failure: &Failure) -> (StatusCode, &'static str) {
    let (status, error, _) = classify(failure);
    (status, error)
}

/// The one mapping from failure to response. A gRPC caller (`protocol`) gets
/// a trailers-only gRPC answer instead: HTTP 200 and no body, the status as
/// `grpc-status` and `grpc-message` (what Envoy's jwt_authn sends), and the
/// same `WWW-Authenticate`.
pub fn error_response(failure: &Failure, protocol: Protocol) -> Response<Body> {
    let (status, error, challenge) = classify(failure);
    // Upstream error details stay in the logs; callers get the category.
    let description = match failure {
        Failure::Proxy(ProxyError::UpstreamUnreachable(_)) => "upstream unreachable".to_string(),
        Failure::Proxy(ProxyError::UpstreamFailed(_)) => "upstream failed".to_string(),
        other => other.to_string(),
    };
    let mut resp = match protocol.grpc_content_type() {
        None => {
            let body = serde_json::json!({ "error": error, "error_description": description });
            let mut resp = Response::new(full(body.to_string()));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Some(content_type) => {
            // An empty body ends the stream with the headers: trailers-only.
            let mut resp = Response::new(full(bytes::Bytes::new()));
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(&GRPC_STATUS, HeaderValue::from(grpc_status(status)));
            if let Ok(message) =
                HeaderValue::try_from(grpc_message(&format!("{error}: {description}")))
            {
                headers.insert(&GRPC_MESSAGE, message);
            }
            resp
        }
    };
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // RFC 9449 §8: the nonce the proof must carry.
    if let Failure::Denied(Denial::Dpop(Reject::UseNonce(nonce))) = failure {
        if let Ok(value) = HeaderValue::from_str(nonce) {
            headers.insert(&DPOP_NONCE, value);
        }
    }
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    resp
}

/// PURE: a failure's status, `error` label and `WWW-Authenticate` challenge.
fn classify(failure: &Failure) -> (StatusCode, &'static str, Option<String>) {
    match failure {
        Failure::Denied(Denial::MissingToken) => (
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            Some(format!("Bearer realm=\"{REALM}\"")),
        ),
        Failure::Denied(
            Denial::InvalidToken(Reject::KeysUnavailable { .. })
            | Denial::Dpop(Reject::KeysUnavailable { .. }),
        ) => (StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable", None),
        Failure::Denied(
            Denial::InvalidToken(Reject::IntrospectionUnavailable { .. })
            | Denial::Dpop(Reject::IntrospectionUnavailable { .. }),
        ) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "introspection_unavailable",
            None,
        ),
        Failure::Denied(Denial::Dpop(Reject::ReplayCacheFull)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "replay_cache_full", None)
        }
        // RFC 9449 §7.1: a DPoP challenge, naming the proof algorithms taken.
        Failure::Denied(Denial::Dpop(r)) => {
            let error = match r {
                Reject::BadProof(_) | Reject::ProofReplayed => "invalid_dpop_proof",
                Reject::UseNonce(_) => "use_dpop_nonce",
                _ => "invalid_token",
            };
            (
                StatusCode::UNAUTHORIZED,
                error,
                Some(format!(
                    "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
                    quoted_safe(&r.to_string()),
                    crate::guard::dpop::ALGS
                )),
            )
        }
        Failure::Denied(Denial::InvalidToken(r)) => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                quoted_safe(&r.to_string())
            )),
        ),
        Failure::Denied(Denial::InsufficientScope(scope)) => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                quoted_safe(scope)
            )),
        ),
        Failure::Denied(Denial::Forbidden | Denial::NoRule) => {
            (StatusCode::FORBIDDEN, "access_denied", None)
        }
        Failure::Proxy(ProxyError::NotReady) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not_ready", None)
        }
        Failure::Proxy(ProxyError::HeadersTooLarge) => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            None,
        ),
        Failure::Proxy(ProxyError::BadRequest(_)) => (StatusCode::BAD_REQUEST, "bad_request", None),
        Failure::Proxy(ProxyError::UpstreamUnreachable(_) | ProxyError::UpstreamFailed(_)) => {
            (StatusCode::BAD_GATEWAY, "upstream_unavailable", None)
        }
        Failure::Proxy(ProxyError::UpstreamTimeout) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", None)
        }
        Failure::Proxy(ProxyError::NoRoute(_)) => (StatusCode::NOT_FOUND, "no_route", None),
        Failure::Proxy(ProxyError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found", None),
        Failure::Proxy(ProxyError::TokenUnavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "token_unavailable", None)
        }
    }
}

/// Text safe inside a quoted-string: printable ASCII without `"` and `\`, bounded.
fn quoted_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IssuerId;
    use hyper::HeaderMap;

    fn render(f: Failure) -> (u16, Option<String>, serde_json::Value) {
        let resp = error_response(&f, Protocol::Http);
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body = match resp.into_body() {
            http_body_util::Either::Right(full) => {
                let bytes = futures_body(full);
                serde_json::from_slice(&bytes).unwrap()
            }
            http_body_util::Either::Left(_) => panic!("local answers have a full body"),
        };
        (resp_status(&f), challenge, body)
    }

    fn resp_status(f: &Failure) -> u16 {
        error_response(f, Protocol::Http).status().as_u16()
    }

    /// A gRPC caller's answer: its HTTP status, headers and body.
    fn render_grpc(f: &Failure, protocol: Protocol) -> (u16, HeaderMap, bytes::Bytes) {
        let (parts, body) = error_response(f, protocol).into_parts();
        let body = match body {
            http_body_util::Either::Right(full) => futures_body(full),
            http_body_util::Either::Left(_) => panic!("local answers have a full body"),
        };
        (parts.status.as_u16(), parts.headers, body)
    }

    fn futures_body(full: http_body_util::Full<bytes::Bytes>) -> bytes::Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(full.collect()).unwrap().to_bytes()
    }

    #[test]
    fn every_failure_maps_to_its_pinned_response() {
        let realm = "Bearer realm=\"tokengate\"";
        let algs = "ES256 ES384 EdDSA PS256 RS256";
        // (failure, HTTP status, challenge, error label, grpc-status)
        let cases: Vec<(Failure, u16, Option<String>, &str, u16)> = vec![
            (Denial::MissingToken.into(), 401, Some(realm.into()), "invalid_request", 16),
            (
                Denial::InvalidToken(Reject::BadSignature).into(),
                401,
                Some(format!("{realm}, error=\"invalid_token\", error_description=\"signature does not verify\"")),
                "invalid_token",
                16,
            ),
            (
                Denial::InvalidToken(Reject::Expired { exp: 10, now: 20 }).into(),
                401,
                Some(format!("{realm}, error=\"invalid_token\", error_description=\"token expired at 10 (now 20)\"")),
                "invalid_token",
                16,
            ),
            (
                Denial::InvalidToken(Reject::UnknownIssuer("evil\"\n".into())).into(),
                401,
                Some(format!("{realm}, error=\"invalid_token\", error_description=\"issuer ?evil??? is not trusted\"")),
                "invalid_token",
                16,
            ),
            (Denial::InvalidToken(Reject::KeysUnavailable { issuer: IssuerId::new(0) }).into(), 503, None, "keys_unavailable", 14),
            (Denial::InvalidToken(Reject::IntrospectionUnavailable { issuer: IssuerId::new(0) }).into(), 503, None, "introspection_unavailable", 14),
            (
                Denial::InvalidToken(Reject::NotAccessToken("refresh_token".into())).into(),
                401,
                Some(format!("{realm}, error=\"invalid_token\", error_description=\"the token is a ?refresh_token? token, not an access token\"")),
                "invalid_token",
                16,
            ),
            (
                Denial::InvalidToken(Reject::Inactive).into(),
                401,
                Some(format!("{realm}, error=\"invalid_token\", error_description=\"token is not active\"")),
                "invalid_token",
                16,
            ),
            (
                Denial::Dpop(Reject::ProofReplayed).into(),
                401,
                Some(format!("DPoP error=\"invalid_dpop_proof\", error_description=\"invalid DPoP proof: it was used before (jti)\", algs=\"{algs}\"")),
                "invalid_dpop_proof",
                16,
            ),
            (
                Denial::Dpop(Reject::BadProof("htm is not the request's method")).into(),
                401,
                Some(format!("DPoP error=\"invalid_dpop_proof\", error_description=\"invalid DPoP proof: htm is not the request's method\", algs=\"{algs}\"")),
                "invalid_dpop_proof",
                16,
            ),
            (
                Denial::Dpop(Reject::Bound).into(),
                401,
                Some(format!("DPoP error=\"invalid_token\", error_description=\"the token is bound to a key (cnf) and was presented as a plain bearer token\", algs=\"{algs}\"")),
                "invalid_token",
                16,
            ),
            (Denial::Dpop(Reject::ReplayCacheFull).into(), 503, None, "replay_cache_full", 14),
            (
                Denial::Dpop(Reject::UseNonce("n0nce".into())).into(),
                401,
                Some(format!("DPoP error=\"use_dpop_nonce\", error_description=\"the DPoP proof must carry a nonce this server issued (DPoP-Nonce)\", algs=\"{algs}\"")),
                "use_dpop_nonce",
                16,
            ),
            (Denial::Dpop(Reject::KeysUnavailable { issuer: IssuerId::new(0) }).into(), 503, None, "keys_unavailable", 14),
            (
                Denial::InsufficientScope("orders:write".into()).into(),
                403,
                Some(format!("{realm}, error=\"insufficient_scope\", scope=\"orders:write\"")),
                "insufficient_scope",
                7,
            ),
            (Denial::Forbidden.into(), 403, None, "access_denied", 7),
            (Denial::NoRule.into(), 403, None, "access_denied", 7),
            (ProxyError::NotReady.into(), 503, None, "not_ready", 14),
            (ProxyError::HeadersTooLarge.into(), 431, None, "headers_too_large", 8),
            (ProxyError::BadRequest("x".into()).into(), 400, None, "bad_request", 13),
            (ProxyError::UpstreamUnreachable("refused".into()).into(), 502, None, "upstream_unavailable", 14),
            (ProxyError::UpstreamFailed("reset".into()).into(), 502, None, "upstream_unavailable", 14),
            (ProxyError::UpstreamTimeout.into(), 504, None, "upstream_timeout", 4),
            (ProxyError::NoRoute("x.example".into()).into(), 404, None, "no_route", 12),
            (ProxyError::TokenUnavailable("default".into()).into(), 503, None, "token_unavailable", 14),
        ];
        for (failure, status, challenge, error, grpc) in cases {
            let label = format!("{failure:?}");
            for (protocol, content_type) in [
                (Protocol::Grpc, "application/grpc"),
                (Protocol::GrpcWeb, "application/grpc-web"),
                (Protocol::GrpcWebText, "application/grpc-web-text"),
            ] {
                // Trailers-only: 200, no body, the status in the headers.
                let (got_status, headers, body) = render_grpc(&failure, protocol);
                assert_eq!(got_status, 200, "{label}");
                assert!(body.is_empty(), "{label}");
                assert_eq!(headers[CONTENT_TYPE], content_type, "{label}");
                assert_eq!(headers["grpc-status"], grpc.to_string().as_str(), "{label}");
                let message = headers["grpc-message"].to_str().unwrap();
                assert!(
                    message.starts_with(&format!("{error}: ")),
                    "{label}: {message}"
                );
                let got_challenge = headers
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap().to_string());
                assert_eq!(got_challenge, challenge, "{label}");
            }
            let (got_status, got_challenge, body) = render(failure);
            assert_eq!(got_status, status, "{label}");
            assert_eq!(got_challenge, challenge, "{label}");
            assert_eq!(body["error"], error, "{label}");
            assert!(body["error_description"].is_string(), "{label}");
        }
    }

    #[test]
    fn use_dpop_nonce_gives_the_nonce_to_use() {
        let failure: Failure = Denial::Dpop(Reject::UseNonce("n0nce".into())).into();
        let resp = error_response(&failure, Protocol::Http);
        assert_eq!(resp.headers()["dpop-nonce"], "n0nce");
        let other: Failure = Denial::Dpop(Reject::ProofReplayed).into();
        let resp = error_response(&other, Protocol::Http);
        assert!(resp.headers().get("dpop-nonce").is_none());
    }

    #[test]
    fn upstream_details_are_not_shown_to_callers() {
        let (_, _, body) =
            render(ProxyError::UpstreamUnreachable("10.0.0.7:8080 refused".into()).into());
        assert_eq!(body["error_description"], "upstream unreachable");
    }
}
