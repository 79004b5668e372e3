//! Sender-constrained tokens inbound, end to end: the real guard, the dev
//! issuer minting tokens bound to a client key (`cnf.jkt`, RFC 9449 DPoP)
//! or a client certificate (`cnf.x5t#S256`, RFC 8705), proofs built by an
//! implementation nobody here wrote (jsonwebtoken's JWS encoder, its RFC
//! 7638 thumbprint for the binding), certificates by rcgen and presented by
//! rustls. Requests go as raw bytes; what counts is what the upstream
//! received.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use std::net::SocketAddr;
use support::dpop::DpopClient;
use support::mtls::{client_cert, escaped_pem, tls_request, ClientCert, ServerCert};
use support::*;
use tokengate::demo::{unix_now, DevIssuer, Echo, KeyKind, SigningKey};

/// One request as raw bytes: `authorization` and any `DPoP` proofs.
async fn ask(addr: SocketAddr, line: &str, authorization: &str, proofs: &[&str]) -> RawAnswer {
    let mut headers = vec![("Authorization", authorization.to_string())];
    headers.extend(proofs.iter().map(|p| ("DPoP", p.to_string())));
    raw_request(addr, line, &addr.to_string(), &headers).await
}

/// The dev issuer and an echo app, for a guard in front of it.
async fn issuer_and_app() -> (DevIssuer, Echo) {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    (issuer, Echo::start().await.unwrap())
}

/// A config guarding `echo` with `issuer`'s tokens; `inbound` is YAML under
/// `inbound:` (the rules, and what else the test turns on).
fn config(issuer: &DevIssuer, echo: &Echo, inbound: &str) -> String {
    format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - {{ issuer: "{iss}", jwks_uri: "{iss}/jwks.json", audiences: [{AUD}] }}
{inbound}"#,
        echo = echo.addr,
        iss = issuer.issuer,
        inbound = indent(inbound, 2),
    )
}

/// The app for `yaml`, ready.
async fn serve(yaml: &str) -> tokengate::App {
    let app = start_yaml(yaml).await;
    ready_at(&format!("http://{}", app.admin_addr)).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_pass_with_a_fresh_proof_and_every_bad_one_is_refused() {
    let (issuer, echo) = issuer_and_app().await;
    let yaml = config(
        &issuer,
        &echo,
        "rules:\n  - { path: /bound, require_binding: dpop }\n  - { path: /orders, scopes: [\"orders:read\"] }\n",
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

    // `tokengate verify --dpop` checks a proof as the proxy does: a good
    // one, then one for another method.
    let config = temp_file("dpop.yaml", &yaml);
    let verify = |proof: String| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["verify", "--config"])
            .arg(&*config)
            .args(["--token", &token, "--dpop", &proof])
            .args(["--path", "/orders/1", "--host", "api.test"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let htu = "http://api.test/orders/1";
    let stdout = verify(client.proof("GET", htu, &token, json!({})));
    assert!(
        stdout.contains(&format!("DPoP proof by key {}", client.jkt())),
        "{stdout}"
    );
    assert!(stdout.ends_with("decision: 200 forward\n"), "{stdout}");
    let stdout = verify(client.proof("POST", htu, &token, json!({})));
    assert!(
        stdout.contains("htm is not the request's method"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("decision: 401 invalid_dpop_proof\n"),
        "{stdout}"
    );
    s.stop().await;
}

/// RFC 8705: a token bound to a client certificate passes only over a TLS
/// connection presenting that certificate (self-signed ones taken, as
/// `client_certificates: optional` without a CA takes any whose key the
/// client holds); a caller's own client-certificate headers never reach
/// the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_tokens_pass_only_over_their_certificates_connection() {
    let server = ServerCert::generate();
    let (issuer, echo) = issuer_and_app().await;
    let yaml = config(
        &issuer,
        &echo,
        &format!(
            "tls: {}\nrules:\n  - {{ path: /bound, require_binding: mtls }}\n  - {{ path: /orders, scopes: [\"orders:read\"] }}\n",
            server.tls_yaml("client_certificates: optional")
        ),
    );
    let app = serve(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    let (mine, theirs) = (client_cert("orders.client"), client_cert("other.client"));
    let bound = issuer.mint(json!({ "scope": "orders:read", "cnf": { "x5t#S256": mine.x5t } }));
    let unbound = issuer.mint(json!({ "scope": "orders:read" }));
    let request = |path: &str, token: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             X-SSL-Client-Cert: forged\r\nssl-client-cert: forged\r\nConnection: close\r\n\r\n"
        )
    };
    let server_der = server.cert.clone();

    let answer = tls_request(
        addr,
        &server_der,
        Some(&mine),
        &request("/orders/1", &bound),
    )
    .await;
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    let seen = echo.last_headers().unwrap();
    assert!(seen.get("x-ssl-client-cert").is_none() && seen.get("ssl-client-cert").is_none());
    let answer = tls_request(addr, &server_der, Some(&mine), &request("/bound", &bound)).await;
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");

    let hits = echo.hits();
    let refused = [
        (Some(&theirs), "/orders/1", &bound, "presented another"),
        (None, "/orders/1", &bound, "presented none"),
        (Some(&mine), "/bound", &unbound, "require_binding: mtls"),
    ];
    for (cert, path, token, says) in refused {
        let answer = tls_request(addr, &server_der, cert, &request(path, token)).await;
        let (status, body) = answer.unwrap();
        assert_eq!(status, 401, "{says}: {body}");
        assert!(body.contains(says), "{says}: {body}");
    }
    assert_eq!(echo.hits(), hits, "nothing refused reaches the app");
    // An unbound token needs no certificate where nothing is required.
    let answer = tls_request(addr, &server_der, None, &request("/orders/1", &unbound)).await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    app.shutdown().await;

    // With a CA and `required`: only that CA's certificates get a
    // connection at all, and the token is checked against the one shown.
    let pki = pki();
    let from_ca = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let der = CertificateDer::from_pem_file(&pki.client_cert).unwrap();
        let x5t =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
        ClientCert {
            chain: vec![der],
            key: PrivateKeyDer::from_pem_file(&pki.client_key).unwrap(),
            x5t,
        }
    };
    let yaml = yaml.replace(
        "client_certificates: optional",
        &format!(
            "client_certificates: required, client_ca_file: \"{}\"",
            pki.ca.display()
        ),
    );
    let app = serve(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    let bound = issuer.mint(json!({ "scope": "orders:read", "cnf": { "x5t#S256": from_ca.x5t } }));
    let answer = tls_request(
        addr,
        &server_der,
        Some(&from_ca),
        &request("/bound", &bound),
    )
    .await;
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    let hits = echo.hits();
    for cert in [Some(&mine), None] {
        let answer = tls_request(addr, &server_der, cert, &request("/bound", &bound)).await;
        assert_eq!(
            answer, None,
            "no connection without a certificate from the CA"
        );
    }
    assert_eq!(echo.hits(), hits);
    app.shutdown().await;

    // `tokengate verify --client-cert` decides as if the connection
    // presented the file's certificate.
    let config = temp_file("mtls.yaml", &yaml);
    let verify = |cert: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(["verify", "--config"])
            .arg(&*config)
            .args(["--token", &bound, "--path", "/bound", "--client-cert"])
            .arg(cert)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = verify(&pki.client_cert);
    assert!(stdout.ends_with("decision: 200 forward\n"), "{stdout}");
    let stdout = verify(&pki.ca);
    assert!(stdout.contains("presented another"), "{stdout}");
    assert!(
        stdout.ends_with("decision: 401 invalid_token\n"),
        "{stdout}"
    );
}

/// RFC 9449 §8: with `dpop.require_nonce`, a proof without a nonce this
/// server issued gets 401 `use_dpop_nonce` and a `DPoP-Nonce`; the retry
/// carrying it passes, and a nonce of tokengate's own making is the only
/// kind taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nonces_required_a_proof_must_carry_a_fresh_server_nonce() {
    let (issuer, echo) = issuer_and_app().await;
    let app = serve(&config(
        &issuer,
        &echo,
        "rules: [{ path: /orders, scopes: [\"orders:read\"] }]\ndpop: { require_nonce: true }\n",
    ))
    .await;
    let addr = app.inbound_addr.unwrap();
    let client = DpopClient::generate();
    let token = issuer.mint(json!({ "scope": "orders:read", "cnf": { "jkt": client.jkt() } }));
    let htu = format!("http://{addr}/orders/1");
    let dpop = format!("DPoP {token}");
    // (A client library here: the nonce is case-sensitive, and the raw
    // reader lower-cases heads.)
    let ask = |proof: String| {
        let headers = vec![("authorization", dpop.clone()), ("dpop", proof)];
        let url = htu.clone();
        async move { send(hyper::Method::GET, &url, &headers).await }
    };

    let hits = echo.hits();
    let mut nonces = Vec::new();
    for changes in [json!({}), json!({ "nonce": "made-up" })] {
        let (status, headers, body) = ask(client.proof("GET", &htu, &token, changes)).await;
        assert_eq!(status, 401, "{body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"use_dpop_nonce\""),
            "{challenge}"
        );
        nonces.push(headers["dpop-nonce"].to_str().unwrap().to_string());
    }
    assert_eq!(echo.hits(), hits, "nothing reaches the app without a nonce");
    let (status, _, body) =
        ask(client.proof("GET", &htu, &token, json!({ "nonce": nonces[0] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echo.hits(), hits + 1);
    app.shutdown().await;
}

/// RFC 8705 behind a TLS-terminating ingress: the certificate comes in the
/// header the config names, and only from the peers it trusts; from anyone
/// else the header counts for nothing, and it never reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_ingress_the_certificate_comes_from_a_trusted_header_only() {
    let (issuer, echo) = issuer_and_app().await;
    let made = rcgen::generate_simple_self_signed(vec!["orders.client".to_string()]).unwrap();
    let mine = support::mtls::ClientCert::of(&made);
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    let token = issuer.mint(json!({ "scope": "orders:read", "cnf": { "x5t#S256": mine.x5t } }));
    for (trusted, passes) in [("127.0.0.1", true), ("10.0.0.0/8", false)] {
        let app = serve(&config(
            &issuer,
            &echo,
            &format!(
                "client_certificate_header: {{ name: ssl-client-cert, trusted_peers: [\"{trusted}\"] }}\nrules: [{{ path: /orders, scopes: [\"orders:read\"] }}]\n"
            ),
        ))
        .await;
        let addr = app.inbound_addr.unwrap();
        let ask = |pem: String| {
            let headers = vec![
                ("Authorization", format!("Bearer {token}")),
                ("ssl-client-cert", escaped_pem(&pem)),
            ];
            async move { raw_request(addr, "GET /orders/1", &addr.to_string(), &headers).await }
        };
        let hits = echo.hits();
        let answer = ask(made.cert.pem()).await;
        if passes {
            assert_eq!(answer.status, 200, "{answer:?}");
            let seen = echo.last_headers().unwrap();
            assert!(
                seen.get("ssl-client-cert").is_none(),
                "the app never sees it"
            );
            let answer = ask(other.cert.pem()).await;
            assert_eq!(answer.status, 401, "{answer:?}");
            assert!(answer.body.contains("presented another"), "{}", answer.body);
            assert_eq!(echo.hits(), hits + 1);
        } else {
            assert_eq!(answer.status, 401, "{answer:?}");
            assert!(answer.body.contains("presented none"), "{}", answer.body);
            assert_eq!(echo.hits(), hits);
        }
        app.shutdown().await;
    }
}
