use super::*;
use crate::config::Access;
use crate::config::IssuerId;
use serde_json::json;

fn rule(prefix: &str, methods: Option<&[&str]>, host: Option<&str>) -> RouteRule {
    RouteRule::new(
        prefix.into(),
        prefix,
        methods.map(|ms| {
            ms.iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect()
        }),
        host.map(str::to_string),
        Access::Anonymous,
    )
}

#[test]
fn prefix_matches_by_segment() {
    let cases = [
        ("/items", "/items", true),
        ("/items", "/items/", true),
        ("/items", "/items/42", true),
        ("/items", "/items/42/parts", true),
        ("/items", "/itemsx", false),
        ("/items", "/item", false),
        ("/items", "/", false),
        ("/items/", "/items/42", true),
        ("/items/", "/itemsx", false),
        ("/", "/anything", true),
        ("/", "/", true),
        ("/a/b", "/a/b/c", true),
        ("/a/b", "/a/bc", false),
    ];
    for (prefix, path, want) in cases {
        let r = rule(prefix, None, None);
        assert_eq!(
            r.matches(&Method::GET, b"h", path),
            want,
            "prefix {prefix} path {path}"
        );
    }
}

#[test]
fn only_canonical_paths_are_matched() {
    let ok = [
        "/",
        "/items",
        "/items/",
        "/items/42",
        "/a%20b",
        "/q%3Ax",
        "/caf%C3%A9",
        "/.well-known/x",
        "/a..b",
        "/v1.2/x",
        "/50%25",
        "/a%25zz",
        "/%E2%82%AC",
        "/\u{20ac}",
        "/\u{e9}t\u{e9}",
        "/ADMIN/x",
        "/a%20b/c",
    ];
    for path in ok {
        assert_eq!(canonical_path(path), Ok(()), "{path}");
    }
    let bad = [
        "",
        "*",
        "items",
        "/healthz/../orders",
        "/healthz/..",
        "/./orders",
        "/orders/.",
        "//admin",
        "/a//b",
        "/%61dmin",
        "/healthz/%2e%2e/orders",
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%00",
        "/a%7e",
        "/admin;x",
        "/a\\b",
        "/a%",
        "/a%4",
        "/a%zz",
        // Spellings apps fold onto another path.
        "/admin.",
        "/admin./x",
        "/admin%20",
        "/admin%20/x",
        "/admin%09",
        "/admin%0a",
        "/admin%7f",
        "/admin%3fx",
        "/admin%3Fx",
        "/admin%23x",
        "/%252e%252e/admin",
        "/%2561dmin",
        "/%25%32%65",
        "/%c0%ae%c0%ae/admin",
        "/%e0%80%ae",
        "/%ff",
        "/%c3",
        "/%ef%bc%8e%ef%bc%8e/admin",
        "/\u{ff0e}\u{ff0e}/admin",
        "/%ef%bd%81dmin",
        "/..%ef%bc%8fadmin",
        "/\u{212a}ey",
        "/adm\u{131}n",
        "/\u{17f}ecret",
        "/\u{fb01}le",
        "/a%c2%a0",
        "/admin%3bx",
        "/admin%3B/x",
    ];
    for path in bad {
        assert!(canonical_path(path).is_err(), "{path} must be rejected");
    }
}

#[test]
fn methods_and_host_narrow_a_rule() {
    let r = rule("/orders", Some(&["GET", "HEAD"]), Some("api.local"));
    assert!(r.matches(&Method::GET, b"api.local", "/orders"));
    assert!(r.matches(&Method::HEAD, b"API.local", "/orders/1"));
    assert!(!r.matches(&Method::POST, b"api.local", "/orders"));
    assert!(!r.matches(&Method::GET, b"other.local", "/orders"));
}

#[test]
fn first_match_wins_and_no_match_is_none() {
    let rules = vec![
        rule("/orders", Some(&["GET"]), None),
        rule("/orders", None, None),
        rule("/health", None, None),
    ];
    let found = |method: Method, path: &str| {
        find_rule(&rules, &method, b"h", path).map(|r| r.map(|(i, _)| i))
    };
    assert_eq!(found(Method::GET, "/orders/1"), Ok(Some(0)));
    assert_eq!(found(Method::POST, "/orders/1"), Ok(Some(1)));
    assert_eq!(found(Method::GET, "/healthz"), Ok(None));
    assert_eq!(found(Method::GET, "/"), Ok(None));
}

fn token_rule(prefix: &str, methods: Option<&[&str]>, scope: &str) -> RouteRule {
    let mut r = rule(prefix, methods, None);
    r.access = Access::Token(Requirements {
        scopes: vec![scope.to_string()],
        ..Requirements::default()
    });
    r
}

#[test]
fn readings_apps_give_a_request_must_select_the_same_requirements() {
    let rules = vec![
        rule("/public", None, None),
        token_rule("/admin", None, "admin"),
        token_rule("/reports", Some(&["GET"]), "admin"),
        token_rule("/Docs", None, "read"),
        rule("/openapi.json", None, None),
        token_rule("/", None, "read"),
    ];
    let folded = Err("the path falls under another rule when its case is ignored");
    let suffix = Err("the path falls under another rule without its format suffix");
    let decoded = Err("the path falls under another rule once percent-decoded");
    let cases = [
        (Method::GET, "/admin/x", Ok(Some(1))),
        (Method::GET, "/items/ABC", Ok(Some(5))),
        // Folded, `/ADMIN` is `/admin`: a case-insensitive app serves it as admin.
        (Method::GET, "/ADMIN/x", folded),
        (Method::GET, "/Admin", folded),
        (Method::GET, "/adminx", Ok(Some(5))),
        // Folded, `/PUBLIC` is anonymous while exactly it needs `read`.
        (Method::GET, "/PUBLIC/x", folded),
        // A different rule, with the same requirements: no matter.
        (Method::GET, "/docs/x", Ok(Some(5))),
        (Method::GET, "/DOCS", Ok(Some(5))),
        (Method::GET, "/Docs/x", Ok(Some(3))),
        // HEAD is served by GET's handler: the GET rule takes it.
        (Method::HEAD, "/reports/1", Ok(Some(2))),
        (Method::HEAD, "/REPORTS/1", folded),
        (Method::HEAD, "/admin/x", Ok(Some(1))),
        (Method::HEAD, "/items", Ok(Some(5))),
        (Method::GET, "/reports/1", Ok(Some(2))),
        (Method::POST, "/reports/1", Ok(Some(5))),
        // Format suffixes: `/admin.json` is `/admin` to Rails.
        (Method::GET, "/admin.json", suffix),
        (Method::GET, "/Admin.json", suffix),
        (Method::GET, "/admin/x.json", Ok(Some(1))),
        (Method::GET, "/items/42.json", Ok(Some(5))),
        (Method::GET, "/public.json", suffix),
        (Method::GET, "/.well-known/x", Ok(Some(5))),
        (Method::GET, "/v1.2/x", Ok(Some(5))),
        // Percent-decoded: `%61` is refused by canonical_path, but these are read too.
        (Method::GET, "/ad%6Din", decoded),
        (Method::GET, "/items/a%3Ab", Ok(Some(5))),
        (Method::GET, "/caf%C3%A9", Ok(Some(5))),
        // A rule naming the suffixed spelling has spoken for it.
        (Method::GET, "/openapi.json", Ok(Some(4))),
        (Method::GET, "/openapi.yaml", Ok(Some(5))),
        (Method::GET, "/openapi", Ok(Some(5))),
    ];
    for (method, path, want) in cases {
        let got = find_rule(&rules, &method, b"h", path).map(|r| r.map(|(i, _)| i));
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn a_rule_for_get_takes_head_unless_an_earlier_rule_names_head() {
    let rules = vec![
        rule("/health", Some(&["HEAD"]), None),
        token_rule("/health", Some(&["GET"]), "ops"),
        token_rule("/reports", Some(&["GET"]), "admin"),
        token_rule("/reports", Some(&["HEAD"]), "never"),
        token_rule("/orders", Some(&["POST"]), "orders:write"),
        rule("/", None, None),
    ];
    let cases = [
        // No rule names HEAD before the GET rule: it is a GET without the body.
        (Method::HEAD, "/reports/1", Some(2)),
        (Method::GET, "/reports/1", Some(2)),
        // Named first, HEAD has its own rule.
        (Method::HEAD, "/health", Some(0)),
        (Method::GET, "/health", Some(1)),
        // POST's rule is POST's only.
        (Method::HEAD, "/orders", Some(5)),
        (Method::HEAD, "/", Some(5)),
    ];
    for (method, path, want) in cases {
        let got = find_rule(&rules, &method, b"h", path).map(|r| r.map(|(i, _)| i));
        assert_eq!(got, Ok(want), "{method} {path}");
    }
}

#[test]
fn an_unnamed_method_is_decided_only_where_no_method_matters() {
    let rules = vec![
        rule("/public", None, None),
        token_rule("/admin", None, "admin"),
        token_rule("/orders", Some(&["GET"]), "orders:read"),
        token_rule("/orders", Some(&["POST"]), "orders:write"),
        token_rule("/items", Some(&["GET", "PUT"]), "items"),
        token_rule("/items", None, "items"),
        token_rule("/feeds", Some(&["GET"]), "feeds"),
        rule("/", Some(&["GET"]), Some("www.example")),
    ];
    let methods = representative_methods(&rules);
    assert_eq!(methods.len(), 4, "{methods:?}");
    let differ = Err("the original method is not named and rules differ by method here: send X-Forwarded-Method or X-Original-Method");
    let cases = [
        ("h", "/public/x", Ok(())),
        ("h", "/admin", Ok(())),
        ("h", "/orders/1", differ),
        // Two rules, one requirement: no method can matter.
        ("h", "/items", Ok(())),
        // GET's rule, or no rule at all (a deny) for every other method.
        ("h", "/feeds", differ),
        ("www.example", "/x", differ),
        ("h", "/x", Ok(())),
    ];
    for (host, path, want) in cases {
        let found = find_rule(&rules, &Method::GET, host.as_bytes(), path)
            .unwrap()
            .map(|(i, _)| i);
        let got = any_method_agrees(&rules, &methods, found, host.as_bytes(), path);
        assert_eq!(got, want, "{host} {path}");
    }
}

#[test]
fn kept_overrides_must_name_requests_under_the_same_requirements() {
    use hyper::header::HeaderValue;
    let rules = vec![
        rule("/public", None, None),
        token_rule("/admin", None, "admin"),
        token_rule("/orders", Some(&["DELETE"]), "orders:admin"),
        token_rule("/orders", Some(&["POST", "PUT"]), "orders:write"),
        token_rule("/", None, "read"),
    ];
    let other = Err("an override header names a request under another rule");
    type Headers = Vec<(&'static str, &'static str)>;
    let cases: Vec<(Method, &str, Headers, Result<(), &str>)> = vec![
        (Method::POST, "/orders/1", vec![], Ok(())),
        (
            Method::POST,
            "/orders/1",
            vec![("x-http-method-override", "PUT")],
            Ok(()),
        ),
        (
            Method::POST,
            "/orders/1",
            vec![("x-http-method-override", "DELETE")],
            other,
        ),
        (
            Method::POST,
            "/orders/1",
            vec![("x-http-method", "DELETE")],
            other,
        ),
        (
            Method::POST,
            "/orders/1",
            vec![("x-method-override", "GET")],
            other,
        ),
        (
            Method::POST,
            "/orders/1",
            vec![("x-http-method-override", "delete")],
            Err("a method must be spelled in upper case"),
        ),
        (
            Method::POST,
            "/orders/1",
            vec![("x-http-method-override", "PU T")],
            Err("a method override header does not name a method"),
        ),
        (
            Method::GET,
            "/items",
            vec![("x-original-url", "/other?q=1")],
            Ok(()),
        ),
        (
            Method::GET,
            "/items",
            vec![("x-original-url", "/admin")],
            other,
        ),
        (
            Method::GET,
            "/public/x",
            vec![("x-rewrite-url", "/items")],
            other,
        ),
        (
            Method::GET,
            "/items",
            vec![("x-original-url", "/ADMIN")],
            Err("the path falls under another rule when its case is ignored"),
        ),
        (
            Method::GET,
            "/items",
            vec![("x-original-url", "/public/../admin")],
            Err("dot segment in path"),
        ),
        (
            Method::GET,
            "/items",
            vec![("x-original-url", "http://h/admin")],
            Err("a path override header is not a request target"),
        ),
        // Method and path together.
        (
            Method::POST,
            "/orders/1",
            vec![
                ("x-http-method-override", "PUT"),
                ("x-original-url", "/orders/2"),
            ],
            Ok(()),
        ),
        (
            Method::PUT,
            "/orders/1",
            vec![
                ("x-http-method-override", "POST"),
                ("x-original-url", "/items"),
            ],
            other,
        ),
    ];
    for (method, path, overrides, want) in cases {
        let mut headers = HeaderMap::new();
        for (name, value) in &overrides {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let found = find_rule(&rules, &method, b"h", path)
            .unwrap()
            .map(|(i, _)| i);
        assert_eq!(
            overrides_agree(&rules, (&method, b"h", path), found, &headers),
            want,
            "{method} {path} {overrides:?}"
        );
    }
}

#[test]
fn folded_prefix_matches_by_segment() {
    for (prefix, path, want) in [
        ("/admin", "/ADMIN", true),
        ("/admin", "/Admin/x", true),
        ("/admin", "/ADMINX", false),
        ("/Admin", "/admin/", true),
        ("/", "/X", true),
        ("/admin", "/adm", false),
    ] {
        assert_eq!(
            path_has_prefix_folded(path, prefix),
            want,
            "{prefix} {path}"
        );
    }
}

#[test]
fn requirements_check_scopes_issuers_claims() {
    let token = VerifiedToken::for_tests(
        1,
        &["orders:read", "orders:write"],
        &[("tenant", json!("acme"))],
    );
    let req = |scopes: &[&str],
               issuers: Option<Vec<usize>>,
               claims: Vec<(&str, serde_json::Value)>| Requirements {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        issuers: issuers.map(|ids: Vec<usize>| ids.into_iter().map(IssuerId::new).collect()),
        claims: claims
            .into_iter()
            .map(|(k, v)| (crate::config::ClaimName::parse(k).unwrap(), v))
            .collect(),
        introspect: None,
        binding: None,
    };
    let cases: Vec<(Requirements, Result<(), Shortfall>)> = vec![
        (req(&[], None, vec![]), Ok(())),
        (req(&["orders:read"], None, vec![]), Ok(())),
        (req(&["orders:read", "orders:write"], None, vec![]), Ok(())),
        (
            req(&["orders:admin"], None, vec![]),
            Err(Shortfall::Scope("orders:admin".into())),
        ),
        (
            req(&["orders:read", "orders:admin"], None, vec![]),
            Err(Shortfall::Scope("orders:read orders:admin".into())),
        ),
        (req(&[], Some(vec![1]), vec![]), Ok(())),
        (req(&[], Some(vec![0]), vec![]), Err(Shortfall::Issuer)),
        (req(&[], None, vec![("tenant", json!("acme"))]), Ok(())),
        (
            req(&[], None, vec![("tenant", json!("evil"))]),
            Err(Shortfall::Claim("tenant".into())),
        ),
        (
            req(&[], None, vec![("missing", json!("x"))]),
            Err(Shortfall::Claim("missing".into())),
        ),
    ];
    for (i, (r, want)) in cases.into_iter().enumerate() {
        assert_eq!(r.check(&token), want, "case {i}");
    }
}
