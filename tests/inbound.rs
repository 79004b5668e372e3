//! Inbound guard end to end: real guard, real dev issuer (counting JWKS hits),
//! real echo upstream (counting requests), all on 127.0.0.1:0.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::{Method, StatusCode};
use serde_json::json;
use support::*;
use tokengate::demo::{sign_with_header, unix_now, DevIssuer, Echo, KeyKind, SigningKey};

#[tokio::test]
async fn no_token_is_401_with_a_bearer_challenge() {
    let s = Stack::rs256().await;
    s.ready().await;
    let (status, headers, body) = s.get("/orders/1", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"tokengate\"");
    assert_eq!(json(&body)["error"], "invalid_request");
    assert_eq!(s.echo.hits(), 0);
    s.stop().await;
}

#[tokio::test]
async fn valid_token_reaches_the_upstream_with_identity_and_no_spoofing() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "forward:\n  claims_to_headers: { sub: x-auth-subject, scope: x-auth-scopes, roles: x-auth-roles }\n  authorization: strip",
    )
    .await;
    s.ready().await;
    let token = s
        .issuer
        .mint(json!({ "sub": "alice", "scope": "orders:read", "roles": ["a", "b"] }));
    let (status, _, body) = send(
        Method::GET,
        &format!("{}/orders/42?x=1", s.base),
        &[
            ("authorization", format!("Bearer {token}")),
            ("x-auth-subject", "root".into()),
            ("x-auth-roles", "admin".into()),
            ("x-forwarded-for", "203.0.113.9".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = s.echo.last_headers().unwrap();
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(
        seen.get_all("x-auth-subject").iter().count(),
        1,
        "spoofed value must not survive beside the real one"
    );
    assert_eq!(seen["x-auth-scopes"], "orders:read");
    assert_eq!(seen["x-auth-roles"], "a,b");
    assert!(seen.get("authorization").is_none(), "authorization: strip");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "tokengate owns X-Forwarded-For: the caller's is replaced"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(
        seen["x-forwarded-host"],
        s.base.trim_start_matches("http://")
    );
    assert_eq!(json(&body)["echo"]["path"], "/orders/42?x=1");

    // A caller without a token on an anonymous route cannot smuggle identity either.
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/public/x", s.base),
        &[("x-auth-subject", "root".into())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(s
        .echo
        .last_headers()
        .unwrap()
        .get("x-auth-subject")
        .is_none());
    s.stop().await;
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope() {
    let s = Stack::rs256().await;
    s.ready().await;
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    let (status, headers, body) = send(
        Method::POST,
        &format!("{}/orders", s.base),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"tokengate\", error=\"insufficient_scope\", scope=\"orders:write\""
    );
    assert_eq!(json(&body)["error"], "insufficient_scope");
    assert_eq!(s.echo.hits(), 0);
    s.stop().await;
}

#[tokio::test]
async fn every_bad_token_is_401_and_never_reaches_the_upstream() {
    let s = Stack::rs256().await;
    s.ready().await;
    let key = s.issuer.signing_key();
    let now = unix_now();
    let claims = |extra: serde_json::Value| {
        let mut c = json!({ "iss": s.issuer.issuer, "aud": AUD, "sub": "x", "iat": now, "exp": now + 600, "scope": "orders:read" });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let good = key.sign_jwt(&claims(json!({})));
    let tampered = {
        let (input, sig) = good.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 0x80;
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw))
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(json!({})))
    );
    let rsa_public = key.jwk()["n"].as_str().unwrap().to_string();
    let hs256_with_public_key = sign_with_header(
        &json!({"alg": "HS256", "kid": "rs-1"}),
        &claims(json!({})),
        |m| {
            use aws_lc_rs::hmac;
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, rsa_public.as_bytes()), m)
                .as_ref()
                .to_vec()
        },
    );
    let cases = [
        ("tampered signature", tampered, "signature does not verify"),
        ("alg none", alg_none, "algorithm \"none\" is not allowed"),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
            "algorithm \"HS256\" is not allowed",
        ),
        (
            "wrong aud",
            key.sign_jwt(&claims(json!({"aud": "billing-api"}))),
            "audience does not match",
        ),
        (
            "wrong iss",
            key.sign_jwt(&claims(json!({"iss": "https://evil.example"}))),
            "is not trusted",
        ),
        (
            "expired",
            key.sign_jwt(&claims(json!({"exp": now - 60}))),
            "token expired at",
        ),
        (
            "nbf in the future",
            key.sign_jwt(&claims(json!({"nbf": now + 600}))),
            "not valid before",
        ),
        (
            "missing exp",
            key.sign_jwt(&claims(json!({"exp": null}))),
            "no exp claim",
        ),
        (
            "unknown kid",
            SigningKey::generate(KeyKind::Rs256, "rogue").sign_jwt(&claims(json!({}))),
            "no key with kid",
        ),
        ("garbage", "not-a-jwt".to_string(), "malformed token"),
        ("not ASCII", "ab\u{e9}c.d.e".to_string(), "not ASCII"),
    ];
    for (name, token, description) in cases {
        let (status, headers, body) = s.get("/orders/1", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"tokengate\", error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            json(&body)["error_description"]
                .as_str()
                .unwrap()
                .contains(description),
            "{name}: {body}"
        );
    }
    assert_eq!(
        s.echo.hits(),
        0,
        "no rejected request may reach the upstream"
    );
    let denied = s
        .metric("tokengate_auth_decisions_total{decision=\"deny\",reason=\"bad_signature\"}")
        .await;
    assert_eq!(denied, 1.0);
    s.stop().await;
}

#[tokio::test]
async fn rules_match_path_prefixes_by_segment() {
    let s = Stack::rs256().await;
    s.ready().await;
    let token = s.issuer.mint(json!({ "scope": "items:read" }));
    for (path, want) in [
        ("/items", StatusCode::OK),
        ("/items/42", StatusCode::OK),
        ("/itemsx", StatusCode::FORBIDDEN),
        ("/nothing-here", StatusCode::FORBIDDEN),
    ] {
        let (status, _, body) = s.get(path, Some(&token)).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (_, _, body) = s.get("/itemsx", Some(&token)).await;
    assert_eq!(json(&body)["error"], "access_denied");
    assert_eq!(s.echo.hits(), 2);
    s.stop().await;
}

#[tokio::test]
async fn anonymous_rule_passes_without_a_token() {
    let s = Stack::rs256().await;
    s.ready().await;
    let (status, _, _) = s.get("/public/hello", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.echo.hits(), 1);
    s.stop().await;
}

#[tokio::test]
async fn rs256_es256_and_eddsa_all_verify() {
    let keys = vec![
        SigningKey::generate(KeyKind::Rs256, "rs"),
        SigningKey::generate(KeyKind::Es256, "es"),
        SigningKey::generate(KeyKind::EdDsa, "ed"),
    ];
    let s = Stack::start(keys, "", "").await;
    s.ready().await;
    for kid in ["rs", "es", "ed"] {
        let token = s
            .issuer
            .mint_with(kid, json!({ "scope": "orders:read" }))
            .unwrap();
        let (status, _, body) = s.get("/orders/1", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{kid}: {body}");
    }
    assert_eq!(s.echo.hits(), 3);
    s.stop().await;
}

#[tokio::test]
async fn a_repeated_token_is_verified_once_then_served_from_the_cache() {
    let s = Stack::rs256().await;
    s.ready().await;
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    for _ in 0..3 {
        assert_eq!(s.get("/orders/1", Some(&token)).await.0, StatusCode::OK);
    }
    assert_eq!(s.metric("tokengate_verify_cache_misses_total").await, 1.0);
    assert_eq!(s.metric("tokengate_verify_cache_hits_total").await, 2.0);
    // A hit still checks the route's scopes.
    let (status, _, _) = send(
        Method::POST,
        &format!("{}/orders", s.base),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.metric("tokengate_verify_cache_hits_total").await, 3.0);
    s.stop().await;
}

#[tokio::test]
async fn key_rotation_is_picked_up_without_restart_and_removed_keys_stop_verifying() {
    let s = Stack::rs256().await;
    s.ready().await;
    let old_token = s.issuer.mint(json!({ "scope": "orders:read" }));
    assert_eq!(s.get("/orders/1", Some(&old_token)).await.0, StatusCode::OK);
    let hits_before = s.issuer.jwks_hits();

    // The IdP rotates: only the new key is published from now on.
    s.issuer
        .set_keys(vec![SigningKey::generate(KeyKind::Rs256, "rs-2")]);
    let new_token = s.issuer.mint(json!({ "scope": "orders:read" }));
    let (status, _, body) = s.get("/orders/1", Some(&new_token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "new kid accepted after one refetch: {body}"
    );
    assert_eq!(s.issuer.jwks_hits(), hits_before + 1);

    // The old token was cached, but its key left the JWKS: it no longer passes.
    let (status, _, body) = s.get("/orders/1", Some(&old_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn a_burst_of_random_kids_causes_at_most_one_refetch() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "jwks_cache: { refetch_cooldown: 1h }",
        "",
    )
    .await;
    s.ready().await;
    let hits_before = s.issuer.jwks_hits();
    let rogue = SigningKey::generate(KeyKind::Es256, "unused");
    let now = unix_now();
    let mut requests = Vec::new();
    for i in 0..40 {
        let claims =
            json!({ "iss": s.issuer.issuer, "aud": AUD, "exp": now + 60, "scope": "orders:read" });
        let token = sign_with_header(
            &json!({"alg": "ES256", "kid": format!("random-{i}")}),
            &claims,
            |m| rogue.sign_raw(m),
        );
        let url = format!("{}/orders/1", s.base);
        requests.push(tokio::spawn(async move { get(&url, Some(&token)).await.0 }));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let refetches = s.issuer.jwks_hits() - hits_before;
    assert!(refetches <= 1, "{refetches} refetches for 40 random kids");
    // The same kid again is remembered as unknown: no new fetch even after the burst.
    let token = sign_with_header(
        &json!({"alg": "ES256", "kid": "random-0"}),
        &json!({ "iss": s.issuer.issuer, "aud": AUD, "exp": now + 60 }),
        |m| rogue.sign_raw(m),
    );
    assert_eq!(
        s.get("/orders/1", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.issuer.jwks_hits() - hits_before, refetches);
    assert_eq!(s.echo.hits(), 0);
    s.stop().await;
}

#[tokio::test]
async fn not_ready_until_the_jwks_loads() {
    let issuer =
        tokengate::demo::DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "rs-1")], AUD)
            .await
            .unwrap();
    issuer.set_failing(true);
    let echo = tokengate::demo::Echo::start().await.unwrap();
    let s = Stack::start_with(issuer, echo, "", "").await;
    // Give the first fetch time to fail.
    eventually(std::time::Duration::from_millis(1000), || async {
        s.issuer.jwks_hits() > 0
    })
    .await;
    let (status, _, _) = get(&format!("{}/readyz", s.admin), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, body) = s.get("/public/x", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(json(&body)["error"], "not_ready");
    assert_eq!(
        get(&format!("{}/healthz", s.admin), None).await.0,
        StatusCode::OK,
        "alive while not ready"
    );

    s.issuer.set_failing(false);
    s.ready().await; // the refresher retries with back-off (1s first)
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    assert_eq!(s.get("/orders/1", Some(&token)).await.0, StatusCode::OK);
    let failed = format!(
        "tokengate_jwks_refresh_total{{issuer=\"{}\",result=\"error\"}}",
        s.issuer.issuer
    );
    assert!(
        s.metric(&failed).await >= 1.0,
        "the failed start-up fetch is counted"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_idp_going_down_does_not_reject_valid_tokens_within_the_stale_bound() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        // Refresh every second (max-age clamped up to min_refresh) so failures happen during the test.
        "jwks_cache: { refresh_interval: 1s, min_refresh: 1s, stale_if_error: 1h }",
        "",
    )
    .await;
    s.ready().await;
    s.issuer.set_failing(true);
    let hits = s.issuer.jwks_hits();
    assert!(
        eventually(std::time::Duration::from_millis(6000), || async {
            s.issuer.jwks_hits() >= hits + 2
        })
        .await,
        "refreshes kept trying"
    );
    let series = format!(
        "tokengate_jwks_refresh_total{{issuer=\"{}\",result=\"error\"}}",
        s.issuer.issuer
    );
    assert!(
        s.metric(&series).await >= 1.0,
        "failed refreshes are counted"
    );
    // A token never seen before (so not cached) still verifies with the last good keys.
    let token = s
        .issuer
        .mint(json!({ "scope": "orders:read", "sub": "fresh" }));
    assert_eq!(s.get("/orders/1", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(
        get(&format!("{}/readyz", s.admin), None).await.0,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn keys_past_the_stale_bound_stop_serving() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "jwks_cache: { refresh_interval: 1s, min_refresh: 1s, stale_if_error: 1s }",
        "",
    )
    .await;
    s.ready().await;
    s.issuer.set_failing(true);
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    eventually(std::time::Duration::from_millis(5000), || async {
        s.get("/orders/1", Some(&token)).await.0 != StatusCode::OK
    })
    .await;
    let status = s.get("/orders/1", Some(&token)).await.0;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "keys older than stale_if_error are not trusted"
    );
    assert_eq!(
        get(&format!("{}/readyz", s.admin), None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Only that issuer's tokens are affected: anonymous routes keep serving.
    assert_eq!(s.get("/public/x", None).await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn metrics_expose_the_inbound_series() {
    let s = Stack::rs256().await;
    s.ready().await;
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    s.get("/orders/1", Some(&token)).await;
    s.get("/orders/1", None).await;
    let text = s.metrics().await;
    for name in [
        "tokengate_requests_total{direction=\"inbound\",route=\"/orders\",status=\"200\"} 1",
        "tokengate_requests_total{direction=\"inbound\",route=\"/orders\",status=\"401\"} 1",
        "tokengate_request_duration_seconds_count{direction=\"inbound\"} 2",
        "tokengate_auth_decisions_total{decision=\"allow\",reason=\"valid_token\"} 1",
        "tokengate_auth_decisions_total{decision=\"deny\",reason=\"missing_token\"} 1",
        "tokengate_jwks_keys{issuer=",
        "tokengate_jwks_refresh_total{issuer=",
        "tokengate_verify_cache_hits_total 0",
        "tokengate_verify_cache_misses_total 1",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    s.stop().await;
}

#[tokio::test]
async fn permissive_mode_lets_tokenless_requests_through_but_checks_presented_tokens() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "mode: permissive\nforward:\n  claims_to_headers: { sub: x-auth-subject }",
    )
    .await;
    s.ready().await;
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/orders/1", s.base),
        &[("x-auth-subject", "root".into())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(s
        .echo
        .last_headers()
        .unwrap()
        .get("x-auth-subject")
        .is_none());
    let expired = s
        .issuer
        .mint(json!({ "scope": "orders:read", "exp": unix_now() - 600 }));
    assert_eq!(
        s.get("/orders/1", Some(&expired)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let weak = s.issuer.mint(json!({ "scope": "other" }));
    assert_eq!(
        s.get("/orders/1", Some(&weak)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.echo.hits(), 1);
    s.stop().await;
}

#[tokio::test]
async fn audit_mode_rejects_nothing_but_counts_what_it_would_have_rejected() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "mode: audit",
    )
    .await;
    s.ready().await;
    assert_eq!(s.get("/orders/1", None).await.0, StatusCode::OK);
    assert_eq!(s.get("/orders/1", Some("garbage")).await.0, StatusCode::OK);
    assert_eq!(s.get("/unmatched", None).await.0, StatusCode::OK);
    assert_eq!(s.echo.hits(), 3);
    assert_eq!(
        s.metric("tokengate_auth_decisions_total{decision=\"audit\",reason=\"missing_token\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("tokengate_auth_decisions_total{decision=\"audit\",reason=\"malformed\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("tokengate_auth_decisions_total{decision=\"audit\",reason=\"no_rule\"}")
            .await,
        1.0
    );
    s.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "limits: { max_header_bytes: 4096 }",
    )
    .await;
    s.ready().await;
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/public/x", s.base),
        &[("x-big", "a".repeat(5000))],
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Far beyond hyper's read buffer: hyper itself answers 431 before parsing completes.
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/public/x", s.base),
        &[("x-huge", "a".repeat(100_000))],
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(s.echo.hits(), 0);
    s.stop().await;
}

#[tokio::test]
async fn oversized_token_is_rejected_unparsed() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "limits: { max_token_bytes: 1024 }",
    )
    .await;
    s.ready().await;
    let (status, _, body) = s.get("/orders/1", Some(&"a".repeat(2000))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("token exceeds 1024 bytes"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn path_and_header_tricks_cannot_bypass_rules_or_touch_identity() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "rs-1")],
        "",
        "forward:\n  claims_to_headers: { sub: x-auth-subject }",
    )
    .await;
    s.ready().await;
    // Paths an app may normalize into a protected route are refused outright.
    for path in [
        "/public/../orders/1",
        "/public/%2e%2e/orders/1",
        "/%6frders/1",
        "//orders/1",
        "/public;x/../orders",
    ] {
        let (status, _, body) = s.get(path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    assert_eq!(s.echo.hits(), 0);

    // `Connection` cannot name the injected identity header away…
    let token = s
        .issuer
        .mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/orders/1", s.base),
        &[
            ("authorization", format!("Bearer {token}")),
            ("connection", "x-auth-subject".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.echo.last_headers().unwrap()["x-auth-subject"], "alice");

    // …and an underscore spelling of it never reaches the app.
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/public/x", s.base),
        &[("x_auth_subject", "root".into())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(s
        .echo
        .last_headers()
        .unwrap()
        .get("x_auth_subject")
        .is_none());

    // Two Host headers are ambiguous: 400.
    let (status, _, _) = send(
        Method::GET,
        &format!("{}/public/x", s.base),
        &[("host", "a.example".into()), ("host", "b.example".into())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.echo.hits(), 2);
    s.stop().await;
}

#[tokio::test]
async fn background_refresh_follows_max_age_and_discovery_is_fetched_once() {
    let issuer =
        tokengate::demo::DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "rs-1")], AUD)
            .await
            .unwrap();
    // The IdP says max-age=1 (raised to min_refresh: 1s); without it the guard would wait an hour.
    issuer.set_max_age(Some(1));
    let echo = tokengate::demo::Echo::start().await.unwrap();
    let yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let yaml = Yaml::parse(&yaml)
        .remove("inbound.issuers[0].jwks_uri")
        .set("inbound.issuers[0].discovery", "true")
        .set(
            "inbound.issuers[0].jwks_cache",
            "{ refresh_interval: 1h, min_refresh: 1s }",
        )
        .text();
    let app = start_yaml(&yaml).await;
    eventually(std::time::Duration::from_millis(10_000), || async {
        issuer.jwks_hits() >= 3
    })
    .await;
    let refreshes = issuer.jwks_hits();
    assert!(
        refreshes >= 3,
        "max-age drives the refresh period ({refreshes} fetches)"
    );
    assert_eq!(
        issuer.discovery_hits(),
        1,
        "the jwks_uri from discovery is reused"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn readyz_names_the_issuer_that_is_not_ready_and_why() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "rs-1")], AUD)
        .await
        .unwrap();
    issuer.set_failing(true);
    let echo = Echo::start().await.unwrap();
    let s = Stack::start_with(
        issuer,
        echo,
        "jwks_cache: { refresh_interval: 1s, min_refresh: 1s, stale_if_error: 1s }",
        "",
    )
    .await;
    let readyz = format!("{}/readyz", s.admin);
    let (status, _, body) = get(&readyz, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains(&format!("issuer {}: keys not loaded yet", s.issuer.issuer)),
        "{body}"
    );
    s.issuer.set_failing(false);
    s.ready().await;
    assert_eq!(get(&readyz, None).await.2, "ready\n");
    s.issuer.set_failing(true);
    let body = readyz_saying(&s.admin, "stale bound").await;
    assert!(
        body.contains(&format!(
            "issuer {}: keys past their stale bound",
            s.issuer.issuer
        )),
        "{body}"
    );
    // ... and what the last fetch met.
    assert!(body.contains("cannot be fetched: HTTP status 5"), "{body}");
    s.stop().await;
}

/// Pod-to-pod identity with no IdP: a Kubernetes service-account token (its
/// identity nested under `kubernetes.io`) is allowed or denied by a rule on
/// JSON-pointer claims, and the nested namespace reaches the app as a header.
#[tokio::test]
async fn a_service_account_token_is_judged_by_its_nested_claims() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "sa-1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - {{ issuer: "{iss}", jwks_uri: "{iss}/jwks.json", audiences: [{AUD}] }}
  rules:
    - path: /orders
      claims:
        /kubernetes.io/namespace: orders
        /kubernetes.io/serviceaccount/name: checkout
  forward:
    claims_to_headers:
      /kubernetes.io/namespace: x-caller-namespace
      /kubernetes.io/serviceaccount/name: x-caller-service-account
"#,
        echo = echo.addr,
        iss = issuer.issuer,
    );
    let app = start_yaml(&yaml).await;
    let s = Stack {
        base: format!("http://{}", app.inbound_addr.unwrap()),
        admin: format!("http://{}", app.admin_addr),
        app: Some(app),
        issuer,
        echo,
    };
    s.ready().await;
    let sa = |namespace: &str, account: &str| {
        s.issuer.mint(json!({
            "sub": format!("system:serviceaccount:{namespace}:{account}"),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": { "name": account, "uid": "4a1e6c2e" },
                "pod": { "name": format!("{account}-7d9f"), "uid": "91be0c7a" }
            }
        }))
    };
    let (status, _, body) = s.get("/orders/1", Some(&sa("orders", "checkout"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = s.echo.last_headers().expect("reached the app");
    assert_eq!(seen["x-caller-namespace"], "orders");
    assert_eq!(seen["x-caller-service-account"], "checkout");

    // Another account, another namespace, or the claims at the top level
    // instead of nested: 403, and the app sees nothing.
    let flat = s
        .issuer
        .mint(json!({ "namespace": "orders", "serviceaccount": { "name": "checkout" } }));
    for token in [sa("orders", "billing"), sa("payments", "checkout"), flat] {
        let hits = s.echo.hits();
        let (status, _, body) = s.get("/orders/1", Some(&token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(json(&body)["error"], "access_denied");
        assert_eq!(s.echo.hits(), hits);
    }
    s.stop().await;
}

/// Issue 28, item 4's regex: one `{tenant}` pattern whose tenants a regex
/// takes, all signed by one key set (as Azure AD's common keys sign for every
/// tenant). Each tenant the regex takes passes, a rule may require one, and
/// any other issuer is refused; none of it costs a fetch beyond the one at
/// start, so made-up tenants cannot make tokengate fetch anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_pattern_admits_its_tenants_on_one_key_set_and_fetches_nothing_per_tenant() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "common")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let pattern = "https://login.example/{tenant}/v2.0";
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - match: {{ issuer: "{pattern}", regex: "[0-9a-f]{{8}}" }}
      jwks_uri: "{iss}/jwks.json"
      audiences: [{AUD}]
  rules:
    - {{ path: /only-one, claims: {{ iss: "https://login.example/0d3c8f2a/v2.0" }} }}
    - {{ path: /, issuers: ["{pattern}"] }}
  forward:
    claims_to_headers: {{ iss: x-caller-issuer }}
"#,
        echo = echo.addr,
        iss = issuer.issuer,
    );
    let app = start_yaml(&yaml).await;
    let s = Stack {
        base: format!("http://{}", app.inbound_addr.unwrap()),
        admin: format!("http://{}", app.admin_addr),
        app: Some(app),
        issuer,
        echo,
    };
    s.ready().await;
    let fetched_at_start = s.issuer.jwks_hits();
    assert_eq!(fetched_at_start, 1, "the pattern's one key set, at start");
    let from = |tenant: &str| {
        s.issuer
            .mint(json!({ "iss": format!("https://login.example/{tenant}/v2.0") }))
    };
    for tenant in ["0d3c8f2a", "7f1e0b9c"] {
        let (status, _, body) = s.get("/orders", Some(&from(tenant))).await;
        assert_eq!(status, StatusCode::OK, "{tenant}: {body}");
        let seen = s.echo.last_headers().expect("reached the app");
        assert_eq!(
            seen["x-caller-issuer"],
            format!("https://login.example/{tenant}/v2.0")
        );
    }
    let (status, _, _) = s.get("/only-one", Some(&from("0d3c8f2a"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = s.get("/only-one", Some(&from("7f1e0b9c"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Not a tenant the regex takes whole, or the pattern itself: refused,
    // well signed as each is, and nothing fetched for it.
    let hits = s.echo.hits();
    for tenant in ["0D3C8F2A", "0d3c8f2a0", "0d3c8f2", "0d3c8f2a/x", "{tenant}"] {
        let (status, _, body) = s.get("/orders", Some(&from(tenant))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{tenant}: {body}");
        assert!(body.contains("issuer"), "{tenant}: {body}");
    }
    assert_eq!(s.echo.hits(), hits, "nothing forwarded");
    assert_eq!(
        s.issuer.jwks_hits(),
        fetched_at_start,
        "no fetch per tenant"
    );

    // `verify` names the pattern and the tenant the regex took.
    let config = temp_file("regex-tenants.yaml", &yaml);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["verify", "--config"])
        .arg(&*config)
        .args(["--token", &from("7f1e0b9c"), "--path", "/orders"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("matched pattern {pattern} with tenant 7f1e0b9c")),
        "{stdout}"
    );
    s.stop().await;
}
