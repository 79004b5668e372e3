//! DPoP (RFC 9449) inbound, end to end: the real guard, the dev issuer
//! minting tokens bound to a client key (`cnf.jkt`), and proofs built by
//! an implementation nobody here wrote (jsonwebtoken's JWS encoder, its
//! RFC 7638 thumbprint for the binding). Requests go as raw bytes; what
//! counts is what the upstream received.

mod support;

use serde_json::json;
use std::net::SocketAddr;
use support::dpop::DpopClient;
use support::*;
use tokengate::demo::{unix_now, DevIssuer, Echo, KeyKind, SigningKey};

/// One request as raw bytes: `authorization` and any `DPoP` proofs.
async fn ask(addr: SocketAddr, line: &str, authorization: &str, proofs: &[&str]) -> RawAnswer {
    let mut headers = vec![("Authorization", authorization.to_string())];
    headers.extend(proofs.iter().map(|p| ("DPoP", p.to_string())));
    raw_request(addr, line, &addr.to_string(), &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_pass_with_a_fresh_proof_and_every_bad_one_is_refused() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
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
    - {{ path: /bound, require_binding: dpop }}
    - {{ path: /orders, scopes: ["orders:read"] }}
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
    let stack_addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let client = DpopClient::generate();
    let token = s
        .issuer
        .mint(json!({ "scope": "orders:read orders:write", "cnf": { "jkt": client.jkt() } }));
    let htu = format!("http://{stack_addr}/orders/1");
    let dpop = format!("DPoP {token}");

    // A good proof: forwarded, the token and proof as sent.
    let proof = client.proof("GET", &htu, &token, json!({}));
    let hits = s.echo.hits();
    let answer = ask(stack_addr, "GET /orders/1", &dpop, &[&proof]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(s.echo.hits(), hits + 1);
    let seen = s.echo.last_headers().unwrap();
    assert_eq!(seen["authorization"], dpop.as_str());
    assert_eq!(seen["dpop"], proof.as_str());

    // The same token with a fresh proof each time: its verification is
    // cached, the proof checked every time.
    let hits_before = s.metric("tokengate_verify_cache_hits_total").await;
    for _ in 0..3 {
        let proof = client.proof("GET", &htu, &token, json!({}));
        let answer = ask(stack_addr, "GET /orders/1", &dpop, &[&proof]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(
        s.metric("tokengate_verify_cache_hits_total").await,
        hits_before + 3.0
    );

    // Every bad presentation: 401 with a DPoP challenge naming what failed,
    // and nothing reaches the app, though the token's verification is cached.
    let other = DpopClient::generate();
    let bearer = format!("Bearer {token}");
    let post_htu = format!("http://{stack_addr}/orders/1");
    let cases: Vec<(&str, String, Vec<String>, &str, &str)> = vec![
        (
            "replayed",
            dpop.clone(),
            vec![proof.clone()],
            "invalid_dpop_proof",
            "used before",
        ),
        (
            "another method",
            dpop.clone(),
            vec![client.proof("POST", &post_htu, &token, json!({}))],
            "invalid_dpop_proof",
            "htm",
        ),
        (
            "another URI",
            dpop.clone(),
            vec![client.proof(
                "GET",
                &format!("http://{stack_addr}/orders/2"),
                &token,
                json!({}),
            )],
            "invalid_dpop_proof",
            "htu",
        ),
        (
            "an old iat",
            dpop.clone(),
            vec![client.proof("GET", &htu, &token, json!({ "iat": unix_now() - 3600 }))],
            "invalid_dpop_proof",
            "too old",
        ),
        (
            "no ath",
            dpop.clone(),
            vec![client.proof("GET", &htu, &token, json!({ "ath": null }))],
            "invalid_dpop_proof",
            "ath",
        ),
        (
            "another key",
            dpop.clone(),
            vec![other.proof("GET", &htu, &token, json!({}))],
            "invalid_token",
            "cnf.jkt",
        ),
        (
            "no proof",
            dpop.clone(),
            vec![],
            "invalid_dpop_proof",
            "DPoP proof header",
        ),
        (
            "two proofs",
            dpop.clone(),
            vec![
                client.proof("GET", &htu, &token, json!({})),
                client.proof("GET", &htu, &token, json!({})),
            ],
            "invalid_dpop_proof",
            "more than one",
        ),
        (
            "a bound token as Bearer",
            bearer.clone(),
            vec![],
            "invalid_token",
            "plain bearer token",
        ),
    ];
    for (name, authorization, proofs, error, says) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let hits = s.echo.hits();
        let answer = ask(stack_addr, "GET /orders/1", &authorization, &proofs).await;
        assert_eq!(answer.status, 401, "{name}: {answer:?}");
        // (The raw answer's head is read in lower case.)
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("dpop "), "{name}: {challenge}");
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{name}: {challenge}"
        );
        assert!(challenge.contains("algs=\""), "{name}: {challenge}");
        assert!(answer.body.contains(says), "{name}: {}", answer.body);
        assert_eq!(s.echo.hits(), hits, "{name}: nothing reaches the app");
    }
    let replays = "tokengate_auth_decisions_total{decision=\"deny\",reason=\"dpop_replay\"}";
    assert_eq!(s.metric(replays).await, 1.0);
    assert!(s.metric("tokengate_dpop_replay_cache_entries").await >= 4.0);

    // A route that takes only DPoP tokens: an unbound token is refused
    // however it comes; presented with DPoP, it is bound to no key.
    let unbound = s.issuer.mint(json!({ "scope": "orders:read" }));
    let bound_htu = format!("http://{stack_addr}/bound");
    let hits = s.echo.hits();
    let answer = ask(stack_addr, "GET /bound", &format!("Bearer {unbound}"), &[]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.body.contains("require_binding: dpop"),
        "{}",
        answer.body
    );
    let proof = client.proof("GET", &bound_htu, &unbound, json!({}));
    let answer = ask(
        stack_addr,
        "GET /bound",
        &format!("DPoP {unbound}"),
        &[&proof],
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.body.contains("must be bound"), "{}", answer.body);
    assert_eq!(s.echo.hits(), hits);
    let proof = client.proof("GET", &bound_htu, &token, json!({}));
    let answer = ask(stack_addr, "GET /bound", &dpop, &[&proof]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // An unbound token as a bearer token still passes where nothing is required.
    let answer = ask(
        stack_addr,
        "GET /orders/1",
        &format!("Bearer {unbound}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    s.stop().await;
}
