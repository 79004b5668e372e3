//! The decision as a table: request and verification in, verdict out.

use super::*;
use crate::config::Config;
use crate::config::IssuerId;
use hyper::header::{AUTHORIZATION, HOST};

fn policy(mode: &str, extra: &str) -> Policy {
    let yaml = format!(
        r#"
inbound:
  listen: 127.0.0.1:8443
  upstream: http://127.0.0.1:8081
  mode: {mode}
  issuers:
    - issuer: https://idp
      jwks_uri: https://idp/jwks
      audiences: [api]
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /orders, methods: [GET], scopes: [orders:read] }}
    - {{ path: /admin, host: admin.internal, scopes: [admin] }}
{extra}"#
    );
    let config = Config::from_yaml(&yaml, "test.yaml", &|_| None).expect("test config");
    Policy::new(&config.inbound.expect("inbound").guard)
}

fn request(method: &str, target: &str, host: Option<&str>, auth: Option<&str>) -> Request<()> {
    let mut req = Request::builder().method(method).uri(target);
    if let Some(host) = host {
        req = req.header(HOST, host);
    }
    if let Some(auth) = auth {
        req = req.header(AUTHORIZATION, auth);
    }
    req.body(()).expect("test request")
}

fn token(scopes: &[&str]) -> Result<Arc<VerifiedToken>, Reject> {
    Ok(Arc::new(VerifiedToken::for_tests(0, scopes, &[])))
}

/// What the table compares: the verdict in a line, and the rule taken.
fn summary(decision: &Decision) -> (String, Option<usize>) {
    let verdict = match &decision.verdict {
        Verdict::Allow(a) => format!("allow {}", Allowed::LABELS[a.index()]),
        Verdict::Audit(d) => format!("audit {}", d.reason()),
        Verdict::Deny(d) => format!("deny {}", d.reason()),
        Verdict::Refuse(e) => format!("refuse {e}"),
    };
    (verdict, decision.rule)
}

/// Decides `req`, verifying (if asked) with `verified`; also returns whether
/// verification was asked for, and the token it was asked about.
fn decide(
    policy: &Policy,
    mut req: Request<()>,
    ready: bool,
    verified: Result<Arc<VerifiedToken>, Reject>,
) -> (Decision, Option<Vec<u8>>) {
    match policy.decide(&mut req, Connection::default(), ready) {
        Step::Done(d) => (d, None),
        Step::Verify(p) => {
            let token = p.token.to_vec();
            (p.finish(verified), Some(token))
        }
    }
}

#[test]
fn decisions() {
    let bad = || Err(Reject::BadSignature);
    let stale = || {
        Err(Reject::KeysUnavailable {
            issuer: IssuerId::new(0),
        })
    };
    let h = Some("api.internal");
    let bearer = Some("Bearer abc");
    type Case = (
        &'static str,
        Request<()>,
        Result<Arc<VerifiedToken>, Reject>,
        &'static str,
        Option<usize>,
    );
    let cases: Vec<(&str, Case)> = vec![
        ("strict", ("anonymous route, no token", request("GET", "/public/x", h, None), bad(), "allow anonymous", Some(0))),
        ("strict", ("anonymous route, garbage token: never verified", request("GET", "/public/x", h, Some("Bearer garbage")), bad(), "allow anonymous", Some(0))),
        ("strict", ("valid token with the scope", request("GET", "/orders/1", h, bearer), token(&["orders:read"]), "allow valid_token", Some(1))),
        ("strict", ("missing scope", request("GET", "/orders/1", h, bearer), token(&["other"]), "deny insufficient_scope", Some(1))),
        ("strict", ("bad signature", request("GET", "/orders/1", h, bearer), bad(), "deny bad_signature", Some(1))),
        ("strict", ("keys past their stale bound", request("GET", "/orders/1", h, bearer), stale(), "deny keys_unavailable", Some(1))),
        ("strict", ("no token", request("GET", "/orders/1", h, None), bad(), "deny missing_token", Some(1))),
        ("strict", ("malformed Authorization", request("GET", "/orders/1", h, Some("Bearer:abc")), token(&["orders:read"]), "deny malformed", Some(1))),
        ("strict", ("no rule", request("GET", "/nowhere", h, bearer), token(&["orders:read"]), "deny no_rule", None)),
        ("strict", ("method the rule does not list", request("POST", "/orders/1", h, bearer), token(&["orders:read"]), "deny no_rule", None)),
        ("strict", ("non-canonical path", request("GET", "/public/../orders/1", h, None), bad(), "refuse bad request: dot segment in path", None)),
        ("strict", ("lower-case method", request("get", "/orders/1", h, bearer), token(&["orders:read"]), "refuse bad request: a method must be spelled in upper case", None)),
        ("strict", ("host rule, trailing dot", request("GET", "/admin/x", Some("Admin.Internal."), bearer), token(&["admin"]), "allow valid_token", Some(2))),
        ("strict", ("host rule, missing scope", request("GET", "/admin/x", Some("admin.internal"), bearer), token(&["orders:read"]), "deny insufficient_scope", Some(2))),
        ("permissive", ("no token", request("GET", "/orders/1", h, None), bad(), "allow no_token_permissive", Some(1))),
        ("permissive", ("a bad token still fails", request("GET", "/orders/1", h, bearer), bad(), "deny bad_signature", Some(1))),
        ("permissive", ("a token without white space is malformed", request("GET", "/orders/1", h, Some("Bearer:abc")), bad(), "deny malformed", Some(1))),
        ("audit", ("bad token forwarded", request("GET", "/orders/1", h, bearer), bad(), "audit bad_signature", Some(1))),
        ("audit", ("no rule forwarded", request("GET", "/nowhere", h, None), bad(), "audit no_rule", None)),
        ("audit", ("shape refusals are not audited", request("GET", "/a/%2e%2e/orders", h, None), bad(), "refuse bad request: percent-encoded character that must be sent literally (or never)", None)),
    ];
    for (mode, (name, req, verified, want, rule)) in cases {
        let (decision, _) = decide(&policy(mode, ""), req, true, verified);
        assert_eq!(
            summary(&decision),
            (want.to_string(), rule),
            "{mode}: {name}"
        );
    }
}

#[test]
fn nothing_is_served_before_keys_load() {
    let req = request("GET", "/public/x", Some("h"), None);
    let (decision, asked) = decide(&policy("audit", ""), req, false, token(&[]));
    assert_eq!(summary(&decision).0, "refuse tokengate is not ready yet");
    assert_eq!(asked, None);
}

#[test]
fn the_token_verified_is_the_bearer_token_sent() {
    let req = request(
        "GET",
        "/orders/1",
        Some("h"),
        Some("bearer \t abc.def.ghi  "),
    );
    let (_, asked) = decide(&policy("strict", ""), req, true, token(&[]));
    assert_eq!(asked.as_deref(), Some(&b"abc.def.ghi"[..]));
}

#[test]
fn what_is_forwarded_is_what_was_decided_on() {
    let p = policy("strict", "");
    let mut req = request("GET", "/public/x", Some("API.internal.:8443"), None);
    req.headers_mut()
        .insert("x-forwarded-host", "admin.internal".parse().unwrap());
    req.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    req.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    let Step::Done(decision) = p.decide(&mut req, Connection::default(), true) else {
        panic!("an anonymous route needs no verification");
    };
    assert_eq!(
        decision.host.as_ref().map(|h| h.as_bytes()),
        Some(&b"api.internal:8443"[..])
    );
    assert_eq!(
        decision.hop.upgrade.as_ref().map(|h| h.as_bytes()),
        Some(&b"websocket"[..])
    );
    for gone in ["x-forwarded-host", "connection", "upgrade"] {
        assert!(!req.headers().contains_key(gone), "{gone} reached the app");
    }
}

#[test]
fn oversized_headers_are_refused_before_anything_else() {
    let p = policy("audit", "  limits: { max_header_bytes: 1024 }");
    let mut req = request("get", "/public", Some("h"), None);
    req.headers_mut()
        .insert("x-big", "a".repeat(1100).parse().unwrap());
    let (decision, _) = decide(&p, req, true, token(&[]));
    assert_eq!(summary(&decision).0, "refuse request headers are too large");
}

#[test]
fn allowed_reasons_index_their_labels() {
    let cases = [
        (Allowed::Anonymous, "anonymous"),
        (Allowed::ValidToken(token(&[]).unwrap()), "valid_token"),
        (Allowed::NoTokenPermissive, "no_token_permissive"),
    ];
    for (allowed, label) in cases {
        assert_eq!(Allowed::LABELS[allowed.index()], label);
    }
}
