use super::*;
use crate::config::ClientAuth;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::BodyExt;

fn jwt(exp: u64) -> String {
    format!(
        "e30.{}.sig",
        URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"))
    )
}

#[test]
fn token_answers() {
    let now = 1_000;
    let ok = |token: &str, secs: Option<u64>| {
        Ok(Fetched {
            token: token.into(),
            lifetime: secs.map(Duration::from_secs),
        })
    };
    let cases: Vec<(u16, String, Result<Fetched, SourceError>)> = vec![
        (
            200,
            r#"{"access_token":"t","expires_in":300,"token_type":"Bearer"}"#.into(),
            ok("t", Some(300)),
        ),
        (
            200,
            r#"{"access_token":"t","expires_in":"60"}"#.into(),
            ok("t", Some(60)),
        ),
        (
            200,
            format!(r#"{{"access_token":"{}"}}"#, jwt(1_600)),
            ok(&jwt(1_600), Some(600)),
        ),
        (
            200,
            r#"{"access_token":"opaque"}"#.into(),
            ok("opaque", None),
        ),
        (
            200,
            r#"{"token_type":"Bearer"}"#.into(),
            Err(SourceError::Invalid("no access_token".into())),
        ),
        (
            200,
            r#"{"access_token":""}"#.into(),
            Err(SourceError::Invalid("no access_token".into())),
        ),
        (
            200,
            "<html>".into(),
            Err(SourceError::Invalid("not JSON".into())),
        ),
        (
            200,
            r#"{"access_token":"t","expires_in":[1]}"#.into(),
            Err(SourceError::Invalid("expires_in is not a number".into())),
        ),
        (
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
                .into(),
            Err(SourceError::Rejected {
                status: 401,
                error: "invalid_client".into(),
                description: Some("client authentication failed".into()),
            }),
        ),
        (
            503,
            "upstream down".into(),
            Err(SourceError::Rejected {
                status: 503,
                error: "no OAuth error code".into(),
                description: None,
            }),
        ),
    ];
    for (status, body, want) in cases {
        assert_eq!(
            parse_token_answer(status, body.as_bytes(), now),
            want,
            "{status} {body}"
        );
    }
}

#[test]
fn errors_read_well_and_have_bounded_labels() {
    let e = SourceError::Rejected {
        status: 400,
        error: "invalid_scope".into(),
        description: Some("nope".into()),
    };
    assert_eq!(
        e.to_string(),
        "token endpoint refused (400): invalid_scope (nope)"
    );
    assert_eq!(e.label(), "rejected");
    assert_eq!(SourceError::Timeout.label(), "unreachable");
}

use crate::config::{OAuthClient, Secret};

fn rsa_key() -> crate::config::AssertionKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    use aws_lc_rs::encoding::AsDer;
    let der = pair.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der.as_ref())
    );
    // Each call its own file: tests run in parallel.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem).unwrap();
    let path = file.path().to_str().unwrap();
    crate::config::assertion_key(path, Some("k1".into())).unwrap()
}

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// The Authorization header and form fields of the token request for `grant`.
async fn sent(
    grant_type: Grant,
    auth: Option<ClientAuth>,
    now: u64,
) -> (Option<String>, std::collections::HashMap<String, String>) {
    let req = oauth_request(&grant(grant_type, auth), now).await.unwrap();
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    (auth, form_urlencoded::parse(&body).into_owned().collect())
}

fn grant(grant: Grant, auth: Option<ClientAuth>) -> OAuthGrant {
    OAuthGrant {
        dpop: None,
        token_url: "https://idp.test/token".parse().unwrap(),
        grant,
        client: auth.map(|auth| OAuthClient {
            id: "svc a".into(),
            auth,
        }),
        scopes: vec!["a".into(), "b".into()],
        audience: Some("api".into()),
        resource: None,
        extra_params: vec![("tenant".into(), "acme".into())],
    }
}

#[tokio::test]
async fn oauth_requests_for_each_grant_and_client_auth() {
    let now = 1_000;
    let secret = || Secret::new(b"p@ss:word".to_vec());
    let (auth, form) = sent(
        Grant::ClientCredentials,
        Some(ClientAuth::SecretBasic(secret())),
        now,
    )
    .await;
    // RFC 6749 §2.3.1: id and secret form-encoded before base64.
    assert_eq!(
        auth.unwrap(),
        format!("Basic {}", STANDARD.encode("svc+a:p%40ss%3Aword"))
    );
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "a b");
    assert_eq!(form["audience"], "api");
    assert_eq!(form["tenant"], "acme");
    assert!(!form.contains_key("client_secret"));

    let (auth, form) = sent(
        Grant::ClientCredentials,
        Some(ClientAuth::SecretPost(secret())),
        now,
    )
    .await;
    assert!(auth.is_none());
    assert_eq!(
        (form["client_id"].as_str(), form["client_secret"].as_str()),
        ("svc a", "p@ss:word")
    );

    let (_, form) = sent(
        Grant::ClientCredentials,
        Some(ClientAuth::PrivateKeyJwt(rsa_key())),
        now,
    )
    .await;
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let c = claims_of(&form["client_assertion"]);
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
        (Some("svc a"), Some("svc a"), Some("https://idp.test/token"))
    );
    assert_eq!(
        (c["iat"].as_u64(), c["exp"].as_u64()),
        (Some(now), Some(now + 60))
    );
    let (_, again) = sent(
        Grant::ClientCredentials,
        Some(ClientAuth::PrivateKeyJwt(rsa_key())),
        now,
    )
    .await;
    assert_ne!(
        claims_of(&again["client_assertion"])["jti"],
        c["jti"],
        "every assertion has a fresh jti"
    );

    let signed = Assertion::Signed {
        key: rsa_key(),
        issuer: "svc".into(),
        subject: "user-7".into(),
    };
    let (auth, form) = sent(Grant::JwtBearer(signed), None, now).await;
    assert!(auth.is_none());
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let c = claims_of(&form["assertion"]);
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str()),
        (Some("svc"), Some("user-7"))
    );

    let dir = std::env::temp_dir();
    let file = dir.join(format!("tokengate-{}-subject", std::process::id()));
    std::fs::write(&file, "subject.jwt.value\n").unwrap();
    let (_, form) = sent(
        Grant::JwtBearer(Assertion::File(file.clone())),
        Some(ClientAuth::None),
        now,
    )
    .await;
    assert_eq!(form["assertion"], "subject.jwt.value");
    assert_eq!(
        form["client_id"], "svc a",
        "a public client sends only its id"
    );
    let exchange = Grant::TokenExchange {
        subject_token_file: file.clone(),
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
    };
    let (_, form) = sent(exchange, None, now).await;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(form["subject_token"], "subject.jwt.value");
    assert_eq!(
        form["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    std::fs::remove_file(&file).unwrap();
    let missing = Grant::TokenExchange {
        subject_token_file: file,
        subject_token_type: "x".into(),
    };
    assert!(matches!(
        oauth_request(&grant(missing, None), now).await,
        Err(SourceError::File(_))
    ));
}

fn login(
    body: Value,
    token_pointer: &str,
    expires_in_pointer: Option<&str>,
    key: Option<crate::config::AssertionKey>,
) -> Login {
    Login {
        url: "https://cluster/acs/api/v1/auth/login".parse().unwrap(),
        method: Method::POST,
        body,
        client_id: Some("svc-orders".into()),
        client_secret: Some(Secret::new(b"s\"ecret".to_vec())),
        login_token: key.map(|key| crate::config::LoginToken {
            key,
            claims: serde_json::json!({ "uid": "{client_id}" })
                .as_object()
                .unwrap()
                .clone(),
            ttl: Duration::from_secs(300),
        }),
        token_pointer: token_pointer.into(),
        expires_in_pointer: expires_in_pointer.map(str::to_string),
    }
}

#[tokio::test]
async fn dcos_service_login_request_and_answer() {
    let l = login(
        serde_json::json!({ "uid": "{client_id}", "token": "{login_token}" }),
        "/token",
        None,
        Some(rsa_key()),
    );
    let req = login_request(&l, 1_000).unwrap();
    assert_eq!(req.uri(), "https://cluster/acs/api/v1/auth/login");
    let body: Value =
        serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["uid"], "svc-orders");
    let login_token = claims_of(body["token"].as_str().unwrap());
    assert_eq!(login_token["uid"], "svc-orders");
    assert_eq!(login_token["exp"], 1_300);
    // The answer is {"token": <JWT>}; the lifetime comes from the JWT's exp.
    let auth_token = format!(
        "e30.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"uid":"svc-orders","exp":5000}"#)
    );
    let answer = serde_json::json!({ "token": auth_token }).to_string();
    let got = parse_login_answer(&l, 200, answer.as_bytes(), 1_000).unwrap();
    assert_eq!(
        got,
        Fetched {
            token: auth_token,
            lifetime: Some(Duration::from_secs(4_000))
        }
    );
    let refused = br#"{"title":"Invalid authentication credentials","description":"Login token has expired","code":"ERR_INVALID_CREDENTIALS"}"#;
    assert_eq!(
        parse_login_answer(&l, 401, refused, 1_000),
        Err(SourceError::Rejected {
            status: 401,
            error: "ERR_INVALID_CREDENTIALS".into(),
            description: Some("Login token has expired".into())
        })
    );
}

#[tokio::test]
async fn graphql_service_account_mutation_request_and_answer() {
    let query = "mutation($id: String!, $secret: String!) { authenticateServiceAccount(input: {clientId: $id, clientSecret: $secret}) { accessToken expiresInSeconds tokenType } }";
    let l = login(
        serde_json::json!({ "query": query, "variables": { "id": "{client_id}", "secret": "{client_secret}" } }),
        "/data/authenticateServiceAccount/accessToken",
        Some("/data/authenticateServiceAccount/expiresInSeconds"),
        None,
    );
    let body: Value = serde_json::from_slice(
        &login_request(&l, 1_000)
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(body["query"], query);
    assert_eq!(
        body["variables"]["secret"], "s\"ecret",
        "JSON escaping stays correct"
    );
    let answer = br#"{"data":{"authenticateServiceAccount":{"accessToken":"opaque-123","expiresInSeconds":3600,"tokenType":"Bearer"}}}"#;
    assert_eq!(
        parse_login_answer(&l, 200, answer, 1_000),
        Ok(Fetched {
            token: "opaque-123".into(),
            lifetime: Some(Duration::from_secs(3600))
        })
    );
    let error = br#"{"data":null,"errors":[{"message":"Invalid client credentials"}]}"#;
    assert_eq!(
        parse_login_answer(&l, 200, error, 1_000),
        Err(SourceError::Rejected {
            status: 200,
            error: "graphql_error".into(),
            description: Some("Invalid client credentials".into())
        })
    );
    assert_eq!(
        parse_login_answer(&l, 200, br#"{"data":{}}"#, 1_000),
        Err(SourceError::Invalid(
            "no token at /data/authenticateServiceAccount/accessToken".into()
        ))
    );
}

#[test]
fn absurd_lifetimes_are_bounded_not_panics() {
    let cases: Vec<(&str, Option<Duration>)> = vec![
        (
            r#"{"access_token":"t","expires_in":1e30}"#,
            Some(MAX_LIFETIME),
        ),
        (
            r#"{"access_token":"t","expires_in":"99999999999999999999"}"#,
            Some(MAX_LIFETIME),
        ),
        (r#"{"access_token":"t","expires_in":-5}"#, None),
        (r#"{"access_token":"t","expires_in":"soon"}"#, None),
        (
            r#"{"access_token":"t","expires_in":0.5}"#,
            Some(Duration::from_millis(500)),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse_token_answer(200, body.as_bytes(), 0).map(|f| f.lifetime),
            Ok(want),
            "{body}"
        );
    }
    assert_eq!(jwt_lifetime(&jwt(u64::MAX), 0), Some(MAX_LIFETIME));
}

#[test]
fn jwt_lifetime_reads_exp() {
    assert_eq!(
        jwt_lifetime(&jwt(1_300), 1_000),
        Some(Duration::from_secs(300))
    );
    assert_eq!(jwt_lifetime(&jwt(900), 1_000), Some(Duration::ZERO));
    assert_eq!(jwt_lifetime("opaque-token", 1_000), None);
    assert_eq!(jwt_lifetime("a.!!.c", 1_000), None);
}

#[test]
fn a_dpop_token_request_takes_only_a_dpop_token() {
    let now = 1_000;
    let cases: Vec<(u16, &str, Result<&str, &str>)> = vec![
        (
            200,
            r#"{"access_token":"t","token_type":"DPoP","expires_in":60}"#,
            Ok("t"),
        ),
        (200, r#"{"access_token":"t","token_type":"dpop"}"#, Ok("t")),
        (
            200,
            r#"{"access_token":"t","token_type":"Bearer"}"#,
            Err("bad token endpoint answer: asked for a DPoP-bound token, got token_type \"Bearer\""),
        ),
        (
            200,
            r#"{"access_token":"t"}"#,
            Err("bad token endpoint answer: asked for a DPoP-bound token, got no token_type"),
        ),
        (
            400,
            r#"{"error":"invalid_dpop_proof","error_description":"htu mismatch"}"#,
            Err("token endpoint refused (400): invalid_dpop_proof (htu mismatch)"),
        ),
    ];
    for (status, body, want) in cases {
        let got = parse_bound_answer(status, body.as_bytes(), now)
            .map(|f| f.token)
            .map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map(str::to_string).map_err(str::to_string),
            "{body}"
        );
    }
}

#[test]
fn a_token_endpoint_asks_for_a_nonce_only_with_use_dpop_nonce() {
    let cases = [
        (400, r#"{"error":"use_dpop_nonce"}"#, true),
        (400, r#"{"error":"invalid_dpop_proof"}"#, false),
        (401, r#"{"error":"use_dpop_nonce"}"#, false),
        (400, "use_dpop_nonce", false),
    ];
    for (status, body, want) in cases {
        assert_eq!(
            asks_for_nonce(status, body.as_bytes()),
            want,
            "{status} {body}"
        );
    }
}

#[test]
fn a_nonce_is_kept_until_another_is_given() {
    let nonce = Nonce::default();
    let with = |v: Option<&'static str>| {
        let mut h = hyper::HeaderMap::new();
        if let Some(v) = v {
            h.insert("dpop-nonce", HeaderValue::from_static(v));
        }
        h
    };
    assert_eq!(nonce.get(), None);
    assert!(nonce.keep(&with(Some("n1"))), "a first nonce is new");
    assert!(!nonce.keep(&with(Some("n1"))), "the same one is not");
    assert!(!nonce.keep(&with(None)), "an answer without one keeps it");
    assert_eq!(nonce.get().as_deref(), Some("n1"));
    assert!(nonce.keep(&with(Some("n2"))));
    assert_eq!(nonce.get().as_deref(), Some("n2"));
    // Not an RFC 9449 nonce (empty, a space, a quote, a backslash): ignored.
    for bad in ["", "a b", "a\"b", "a\\b"] {
        assert!(!nonce.keep(&with(Some(bad))), "{bad:?}");
    }
    let long: &'static str = Box::leak("n".repeat(513).into_boxed_str());
    assert!(!nonce.keep(&with(Some(long))));
    assert_eq!(nonce.get().as_deref(), Some("n2"));
}
