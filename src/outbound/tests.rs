use super::*;

#[test]
fn routes_by_exact_host_then_fallback() {
    let client = crate::client::http_client(Duration::from_secs(1), None).unwrap();
    let metrics = Metrics::new();
    let route = |host: Option<&str>, token: Option<usize>| Route {
        host: host.map(str::to_string),
        counters: metrics.route("outbound", host.unwrap_or("*")),
        upstream: Upstream::new(
            client.clone(),
            &"http://127.0.0.1:1".parse().unwrap(),
            crate::config::UpstreamProtocol::Http1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Direction::Outbound,
        )
        .unwrap(),
        token,
        nonce: Nonce::default(),
    };
    let with_fallback = vec![
        route(Some("payments.internal"), Some(0)),
        route(Some("public.example"), None),
        route(None, Some(1)),
    ];
    let without = vec![route(Some("payments.internal"), Some(0))];
    let cases = [
        (
            &with_fallback,
            "payments.internal",
            Some("payments.internal"),
        ),
        (
            &with_fallback,
            "PAYMENTS.internal",
            Some("payments.internal"),
        ),
        (&with_fallback, "public.example", Some("public.example")),
        (&with_fallback, "other.internal", Some("*")),
        (&with_fallback, "", Some("*")),
        (&without, "payments.internal", Some("payments.internal")),
        (&without, "other.internal", None),
    ];
    for (routes, host, want) in cases {
        let label = find_route(routes, host).map(|r| r.counters.route.as_str());
        assert_eq!(label, want, "{host}");
    }
}

#[test]
fn host_from_absolute_form_or_header() {
    let req = |uri: &str, host: Option<&str>| {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    };
    let cases = [
        (
            req("http://API.example:8080/x", Some("ignored")),
            "API.example",
        ),
        (
            req("/x", Some("Payments.Internal:15001")),
            "Payments.Internal",
        ),
        (req("/x", Some("payments.internal.")), "payments.internal"),
        (req("/x", Some("[::1]:80")), "[::1]"),
        (req("/x", None), ""),
    ];
    for (r, want) in cases {
        assert_eq!(route_host(&r), want);
    }
}

#[test]
fn what_an_answer_asks_of_a_dpop_source() {
    let answer = |status: u16, challenge: Option<&'static str>, nonce: Option<&'static str>| {
        let mut r = Response::new(());
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        if let Some(c) = challenge {
            r.headers_mut()
                .append(WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(n) = nonce {
            r.headers_mut()
                .insert("dpop-nonce", HeaderValue::from_static(n));
        }
        r
    };
    let use_nonce = Some(
        r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
    );
    let bad_proof = Some(r#"DPoP error="invalid_dpop_proof", algs="ES256""#);
    let bad_token = Some(r#"DPoP error="invalid_token""#);
    use Outcome::*;
    // (answer, dpop, the nonce sent, what it asks)
    let cases = [
        (answer(401, use_nonce, Some("n2")), true, Some("n1"), Nonce),
        (answer(401, use_nonce, Some("n1")), true, None, Nonce),
        // The nonce sent, refused again: resending cannot help.
        (
            answer(401, use_nonce, Some("n1")),
            true,
            Some("n1"),
            ProofRefused,
        ),
        (answer(401, use_nonce, None), true, None, ProofRefused),
        (
            answer(401, use_nonce, Some("a b")),
            true,
            None,
            ProofRefused,
        ),
        (answer(401, bad_proof, None), true, None, ProofRefused),
        (answer(401, bad_token, None), true, None, TokenRefused),
        (answer(401, None, None), true, None, TokenRefused),
        (answer(400, use_nonce, Some("n2")), true, None, Answered),
        (answer(200, None, Some("n2")), true, None, Answered),
        // A bearer source reads challenges as it always did.
        (
            answer(401, use_nonce, Some("n2")),
            false,
            None,
            TokenRefused,
        ),
        (answer(401, bad_proof, None), false, None, TokenRefused),
    ];
    for (i, (answer, dpop, sent, want)) in cases.iter().enumerate() {
        assert_eq!(outcome(&[401], *dpop, *sent, answer), *want, "case {i}");
    }
}

#[test]
fn a_grpc_unauthenticated_refuses_the_token_like_a_401() {
    let answer = |status: u16, grpc: Option<&'static str>| {
        let mut r = Response::new(());
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        if let Some(code) = grpc {
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from_static(code));
        }
        r
    };
    let cases = [
        (&[401][..], answer(401, None), true),
        (&[401][..], answer(403, None), false),
        (&[401, 403][..], answer(403, None), true),
        (&[401][..], answer(200, Some("16")), true),
        (&[401][..], answer(200, Some("7")), false),
        (&[401][..], answer(200, Some("0")), false),
        (&[403][..], answer(200, Some("16")), false),
        (&[][..], answer(401, None), false),
    ];
    for (i, (retry_on, answer, want)) in cases.iter().enumerate() {
        assert_eq!(refuses_token(retry_on, answer), *want, "case {i}");
    }
}
