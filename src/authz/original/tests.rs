//! What each fronting proxy's request is read as, and what is refused.

use super::*;

const TRAEFIK: &[(&str, &str)] = &[
    ("x-forwarded-method", "POST"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "api.example.com"),
    ("x-forwarded-uri", "/orders/7?full=1"),
];

/// Method and target of the authz request, its headers, and what is read.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Result<Original, Unread>,
);

fn ask(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Original, Unread> {
    let mut map = HeaderMap::new();
    map.insert(HOST, HeaderValue::from_static("tokengate:9191"));
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let identity = [HeaderName::from_static("x-user")];
    read(
        &Method::from_bytes(method.as_bytes()).unwrap(),
        &target.parse().unwrap(),
        &map,
        &identity,
    )
}

fn is(method: &str, target: &str, host: &str) -> Result<Original, Unread> {
    Ok(Original {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        target: target.parse().unwrap(),
        host: Some(HeaderValue::from_str(host).unwrap()),
    })
}

fn unknown(why: &'static str) -> Result<Original, Unread> {
    Err(Unread::Unknown(why))
}

#[test]
fn each_contract_names_the_original_request() {
    let cases: Vec<Case> = vec![
        // Traefik forwardAuth, nginx auth_request with proxy_set_header.
        (
            "GET",
            "/authz",
            TRAEFIK.to_vec(),
            is("POST", "/orders/7?full=1", "api.example.com"),
        ),
        // No method named: the request's own; no host named: its own Host.
        (
            "DELETE",
            "/authz",
            vec![("x-forwarded-uri", "/orders")],
            is("DELETE", "/orders", "tokengate:9191"),
        ),
        // ingress-nginx: an absolute URL, and the method.
        (
            "GET",
            "/authz",
            vec![
                (
                    "x-original-url",
                    "https://Shop.example.com:8443/admin/x?y=1",
                ),
                ("x-original-method", "PUT"),
            ],
            is("PUT", "/admin/x?y=1", "Shop.example.com:8443"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "http://shop.example.com")],
            is("GET", "/", "shop.example.com"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "/plain?q")],
            is("GET", "/plain?q", "tokengate:9191"),
        ),
        // Envoy ext_authz HTTP mode: the path after the prefix, with the query.
        (
            "PATCH",
            "/authz/admin/users?id=3",
            vec![],
            is("PATCH", "/admin/users?id=3", "tokengate:9191"),
        ),
        ("GET", "/authz/", vec![], is("GET", "/", "tokengate:9191")),
        // Two contracts naming the same request agree.
        (
            "GET",
            "/authz",
            vec![
                ("x-forwarded-uri", "/a?b"),
                ("x-forwarded-method", "GET"),
                ("x-original-url", "https://example.com/a?b"),
                ("x-original-method", "GET"),
            ],
            is("GET", "/a?b", "example.com"),
        ),
        (
            "GET",
            "/authz/a",
            vec![("x-forwarded-uri", "/a")],
            is("GET", "/a", "tokengate:9191"),
        ),
        // The path is decided later, as the inbound guard decides it (400s there).
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a/../admin")],
            is("GET", "/a/../admin", "tokengate:9191"),
        ),
    ];
    for (method, target, headers, want) in cases {
        assert_eq!(
            ask(method, target, &headers),
            want,
            "{method} {target} {headers:?}"
        );
    }
}

#[test]
fn an_original_request_that_cannot_be_determined_is_refused() {
    let twice = "the original request is named twice, differently";
    let cases: Vec<Case> = vec![
        ("GET", "/authz", vec![], unknown("no original request named: send X-Forwarded-Uri or X-Original-URL, or ask at /authz/<path>")),
        ("GET", "/authz?x=/admin", vec![], unknown("no original request named: send X-Forwarded-Uri or X-Original-URL, or ask at /authz/<path>")),
        ("GET", "/other", TRAEFIK.to_vec(), Err(Unread::NotHere)),
        ("GET", "/authzadmin", vec![], Err(Unread::NotHere)),
        ("GET", "/", vec![], Err(Unread::NotHere)),
        // A caller's extra contract header, disagreeing with the proxy's.
        ("GET", "/authz", vec![("x-forwarded-uri", "/public"), ("x-original-url", "https://h/admin")], unknown(twice)),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GET"), ("x-original-url", "/a"), ("x-original-method", "DELETE")], unknown(twice)),
        ("GET", "/authz/public", vec![("x-forwarded-uri", "/admin")], unknown(twice)),
        ("GET", "/authz", vec![("x-original-uri", "/admin"), ("x-forwarded-uri", "/public")], unknown(twice)),
        ("GET", "/authz", vec![("x-original-uri", "/admin"), ("x-original-url", "/public")], unknown(twice)),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x-forwarded-host", "a.example"), ("x-original-url", "https://b.example/a")], unknown("the original host is named twice, differently")),
        // Sent twice: no one value.
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/admin")], unknown("a header naming the original request is sent twice")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GET"), ("x-forwarded-method", "DELETE")], unknown("a header naming the original request is sent twice")),
        // Half a contract.
        ("GET", "/authz", vec![("x-forwarded-method", "DELETE")], unknown("X-Forwarded-Method without X-Forwarded-Uri")),
        ("GET", "/authz/a", vec![("x-original-method", "DELETE")], unknown("X-Original-Method without X-Original-URL")),
        // Not a request target.
        ("GET", "/authz", vec![("x-forwarded-uri", "admin")], unknown("the original request target is not a path")),
        ("GET", "/authz", vec![("x-forwarded-uri", "http://evil/admin")], unknown("the original request target is not a path")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a#frag")], unknown("the original request target is not a path")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a b")], unknown("the original request target is not a path")),
        ("GET", "/authz", vec![("x-original-url", "ftp://h/a")], unknown("X-Original-URL is not an http(s) URL")),
        ("GET", "/authz", vec![("x-original-url", "https://user@h/a")], unknown("X-Original-URL is not an http(s) URL")),
        ("GET", "/authz", vec![("x-original-url", "admin")], unknown("X-Original-URL is not an http(s) URL")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GE T")], unknown("the original method is not a method")),
        // Spellings an app may read as an override or identity header.
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x_http_method_override", "DELETE")], unknown("a header an app may read as an override or identity header")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x_original_url", "/admin")], unknown("a header an app may read as an override or identity header")),
        ("GET", "/authz", vec![("x-forwarded-uri", "/a"), ("x_user", "admin")], unknown("a header an app may read as an override or identity header")),
    ];
    for (method, target, headers, want) in cases {
        assert_eq!(
            ask(method, target, &headers),
            want,
            "{method} {target} {headers:?}"
        );
    }
}

#[test]
fn the_authz_request_becomes_the_original() {
    let mut req = Request::builder()
        .method("GET")
        .uri("/authz")
        .header(HOST, "tokengate:9191")
        .header("authorization", "Bearer t")
        .header("x-forwarded-uri", "/orders")
        .header("x-forwarded-method", "POST")
        .header("x-original-method", "POST")
        .header("x-original-url", "/orders")
        .body(())
        .unwrap();
    let original = read(req.method(), req.uri(), req.headers(), &[]).unwrap();
    into_original(&mut req, original);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri(), "/orders");
    assert_eq!(req.headers()[HOST], "tokengate:9191");
    assert_eq!(req.headers()["authorization"], "Bearer t");
    for name in CONTRACT {
        assert!(req.headers().get(name).is_none(), "{name}");
    }
}
