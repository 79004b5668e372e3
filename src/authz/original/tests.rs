//! What each fronting proxy's request is read as, and what is refused: every
//! pair of namings of each part, in every spelling.

use super::*;
use crate::guard::shape::{METHOD_OVERRIDES, PATH_OVERRIDES};

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
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let uri: Uri = target.parse().unwrap();
    asked(&method, &uri, &map).and_then(|asked| read(&asked, &map, &identity))
}

fn is(method: Option<&str>, target: &str, host: &str) -> Result<Original, Unread> {
    Ok(Original {
        method: method.map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        target: target.parse().unwrap(),
        host: Some(HeaderValue::from_str(host).unwrap()),
        https: false,
    })
}

fn unknown(why: &str) -> Result<Original, Unread> {
    Err(Unread::Unknown(why.to_string().into()))
}

fn check(cases: Vec<Case>) {
    for (method, target, headers, want) in cases {
        // The scheme is its own test's (`the_scheme_named_is_read`).
        let got = ask(method, target, &headers).map(|o| Original { https: false, ..o });
        assert_eq!(got, want, "{method} {target} {headers:?}");
    }
}

#[test]
fn the_scheme_named_is_read() {
    // (namings, whether https; `None`: namings that disagree, refused)
    type Namings<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Namings, Option<bool>); 6] = [
        (&[], Some(false)),
        (&[("x-forwarded-proto", "https")], Some(true)),
        (&[("x-forwarded-proto", "HTTPS")], Some(true)),
        (&[("x-forwarded-proto", "http")], Some(false)),
        (&[("forwarded", "proto=https")], Some(true)),
        (
            &[("x-forwarded-proto", "https"), ("forwarded", "proto=http")],
            None,
        ),
    ];
    for (extra, want) in cases {
        let mut headers = vec![("x-forwarded-uri", "/orders"), ("x-forwarded-host", "api")];
        headers.extend_from_slice(extra);
        let got = ask("GET", "/authz", &headers).map(|o| o.https);
        assert_eq!(got.ok(), want, "{extra:?}");
    }
}

#[test]
fn each_contract_names_the_original_request() {
    check(vec![
        // Traefik forwardAuth, nginx auth_request with proxy_set_header.
        (
            "GET",
            "/authz",
            TRAEFIK.to_vec(),
            is(Some("POST"), "/orders/7?full=1", "api.example.com"),
        ),
        // A subrequest's own method names nothing (nginx and Traefik send GET);
        // no host named: its own Host.
        (
            "DELETE",
            "/authz",
            vec![("x-forwarded-uri", "/orders")],
            is(None, "/orders", "tokengate:9191"),
        ),
        // nginx's own example: X-Original-URI, and the host beside it.
        (
            "GET",
            "/authz",
            vec![
                ("x-original-uri", "/admin/x"),
                ("x-forwarded-host", "admin.internal"),
            ],
            is(None, "/admin/x", "admin.internal"),
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
            is(Some("PUT"), "/admin/x?y=1", "Shop.example.com:8443"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "http://shop.example.com")],
            is(None, "/", "shop.example.com"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "/plain?q")],
            is(None, "/plain?q", "tokengate:9191"),
        ),
        // Envoy ext_authz HTTP mode: the request itself, with the query.
        (
            "PATCH",
            "/authz/admin/users?id=3",
            vec![],
            is(Some("PATCH"), "/admin/users?id=3", "tokengate:9191"),
        ),
        (
            "GET",
            "/authz/",
            vec![],
            is(Some("GET"), "/", "tokengate:9191"),
        ),
        // Namings that agree, however many.
        (
            "GET",
            "/authz",
            vec![
                ("x-forwarded-uri", "/a?b"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-host", "Example.com., example.com:443"),
                ("x-forwarded-proto", "https"),
                ("x-original-url", "HTTPS://example.com/a?b"),
                ("x-original-method", "GET"),
                ("x-http-method-override", "GET"),
                ("x_forwarded_uri", "/a?b"),
                (
                    "forwarded",
                    "for=1.2.3.4;host=\"example.com\";proto=HTTPS, for=5.6.7.8",
                ),
                ("x-forwarded-ssl", "on"),
            ],
            is(Some("GET"), "/a?b", "Example.com."),
        ),
        (
            "GET",
            "/authz/a",
            vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GET")],
            is(Some("GET"), "/a", "tokengate:9191"),
        ),
        // The path is decided later, as the inbound guard decides it (400s there).
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a/../admin")],
            is(None, "/a/../admin", "tokengate:9191"),
        ),
    ]);
}

#[test]
fn an_original_request_that_cannot_be_determined_is_refused() {
    let none = "no original request named: send X-Forwarded-Uri or X-Original-URL, or ask at /authz/<path>";
    let not_a_path = "the original request target is not a path";
    check(vec![
        ("GET", "/authz", vec![], unknown(none)),
        ("GET", "/authz?x=/admin", vec![], unknown(none)),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-method", "DELETE")],
            unknown(none),
        ),
        ("GET", "/other", TRAEFIK.to_vec(), Err(Unread::NotHere)),
        ("GET", "/authzadmin", vec![], Err(Unread::NotHere)),
        ("GET", "/", vec![], Err(Unread::NotHere)),
        // Not a request target.
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "admin")],
            unknown(not_a_path),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "http://evil/admin")],
            unknown(not_a_path),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a#frag")],
            unknown(not_a_path),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a b")],
            unknown(not_a_path),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "ftp://h/a")],
            unknown("x-original-url is not an http(s) URL or a path"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "https://user@h/a")],
            unknown("x-original-url is not an http(s) URL or a path"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "admin")],
            unknown("x-original-url is not an http(s) URL or a path"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-uri", "https://h?q")],
            unknown("x-original-uri is not an http(s) URL or a path"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "https://h%2e/a")],
            unknown("x-original-url is not an http(s) URL or a path"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-original-url", "https://h..x/a")],
            unknown("x-original-url does not name a host"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("x-forwarded-method", "GE T")],
            unknown("the original method is not a method"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("x-forwarded-host", "a b")],
            unknown("x-forwarded-host does not name a host"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("forwarded", "host=[::1")],
            unknown("forwarded does not name a host"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("forwarded", "for")],
            unknown("forwarded is not a Forwarded value every parser reads alike"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("forwarded", "host=\"a")],
            unknown("forwarded is not a Forwarded value every parser reads alike"),
        ),
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("x-forwarded-ssl", "1")],
            unknown("x-forwarded-ssl is neither on nor off"),
        ),
        // Two Host headers name no one fallback.
        (
            "GET",
            "/authz",
            vec![("host", "b"), ("x-forwarded-uri", "/a")],
            unknown("more than one Host header"),
        ),
        // Spellings an app may read as an identity header.
        (
            "GET",
            "/authz",
            vec![("x-forwarded-uri", "/a"), ("x_user", "admin")],
            unknown("a header an app may read as an identity header"),
        ),
    ]);
}

/// Every header that names `part` (plus, for a target, the `/authz/<path>`
/// suffix and `X-Original-URL`'s forms): each gives (name, value) naming
/// `which` of two different originals, `a` or `b`.
type Namer = fn(bool) -> (&'static str, &'static str);

fn namers(part: &str) -> Vec<Namer> {
    match part {
        "method" => vec![
            |a| ("x-forwarded-method", if a { "GET" } else { "DELETE" }),
            |a| ("x-original-method", if a { "GET" } else { "DELETE" }),
            |a| ("x-http-method-override", if a { "GET" } else { "DELETE" }),
            |a| ("x-http-method", if a { "GET" } else { "DELETE" }),
            |a| ("x-method-override", if a { "GET" } else { "DELETE" }),
        ],
        "scheme" => vec![
            |a| ("x-forwarded-proto", if a { "https" } else { "http" }),
            |a| ("x-forwarded-scheme", if a { "https" } else { "http" }),
            |a| ("x-scheme", if a { "HTTPS" } else { "http" }),
            |a| ("x-url-scheme", if a { "https" } else { "http" }),
            |a| ("x-forwarded-ssl", if a { "on" } else { "off" }),
            |a| ("front-end-https", if a { "On" } else { "off" }),
            |a| {
                (
                    "forwarded",
                    if a { "proto=https" } else { "for=x;proto=http" },
                )
            },
            |a| {
                (
                    "x-original-url",
                    if a {
                        "https://h.example/a"
                    } else {
                        "http://h.example/a"
                    },
                )
            },
        ],
        "host" => vec![
            |a| {
                (
                    "x-forwarded-host",
                    if a { "h.example" } else { "admin.internal" },
                )
            },
            |a| {
                (
                    "x-original-host",
                    if a { "h.example:80" } else { "admin.internal" },
                )
            },
            |a| ("x-host", if a { "H.example." } else { "admin.internal" }),
            |a| {
                (
                    "forwarded",
                    if a {
                        "host=h.example"
                    } else {
                        "for=x;host=\"admin.internal\""
                    },
                )
            },
            |a| {
                (
                    "x-original-url",
                    if a {
                        "https://h.example/a"
                    } else {
                        "https://admin.internal/a"
                    },
                )
            },
            |a| {
                (
                    "x-original-uri",
                    if a {
                        "https://h.example:8080/a"
                    } else {
                        "https://admin.internal/a"
                    },
                )
            },
        ],
        "request target" => vec![
            |a| ("x-forwarded-uri", if a { "/a" } else { "/admin" }),
            |a| {
                (
                    "x-original-url",
                    if a { "/a" } else { "https://h.example/admin" },
                )
            },
            |a| {
                (
                    "x-original-uri",
                    if a { "https://h.example/a" } else { "/admin" },
                )
            },
            |a| ("x-rewrite-url", if a { "/a" } else { "/admin" }),
        ],
        _ => unreachable!(),
    }
}

/// `name` as a CGI-style app would also read it: `_` for `-`.
fn underscored(name: &str) -> String {
    name.replace('-', "_")
}

#[test]
fn every_two_namings_of_a_part_must_agree_in_every_spelling() {
    let mut checked = 0;
    for part in ["method", "scheme", "host", "request target"] {
        let namers = namers(part);
        for (i, first) in namers.iter().enumerate() {
            for second in &namers[i..] {
                for (spell_a, spell_b) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let spell = |name: &str, under: bool| match under {
                        true => underscored(name),
                        false => name.to_string(),
                    };
                    let (na, va) = first(true);
                    let (nb, vb) = second(false);
                    let (na, nb) = (spell(na, spell_a), spell(nb, spell_b));
                    // Every case names a target and a host, so that only `part` differs.
                    let base = [("x-forwarded-uri", "/a"), ("x-forwarded-host", "h.example")];
                    let base = match part {
                        "request target" => &base[1..],
                        "host" => &base[..1],
                        _ => &base[..],
                    };
                    let with = |second: &str| {
                        let mut h: Vec<(&str, &str)> = base.to_vec();
                        h.push((na.as_str(), va));
                        h.push((nb.as_str(), second));
                        ask("GET", "/authz", &h)
                    };
                    let differ = with(vb);
                    let Err(Unread::Unknown(why)) = &differ else {
                        panic!("{na}: {va} and {nb}: {vb} must be refused: {differ:?}");
                    };
                    assert!(
                        why.starts_with(&format!("the original {part} is named differently by ")),
                        "{na}: {va} and {nb}: {vb}: {why}"
                    );
                    // The same header twice names it twice, too.
                    let (_, same_value) = second(true);
                    let agree = with(same_value);
                    assert!(
                        agree.is_ok(),
                        "{na}: {va} and {nb}: {same_value} agree: {agree:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "{checked} pairs");
}

#[test]
fn the_authz_path_and_the_check_request_are_namings_too() {
    let differ = |why: &str| unknown(why);
    check(vec![
        ("GET", "/authz/public", vec![("x-forwarded-uri", "/admin")], differ("the original request target is named differently by the /authz/ path and x-forwarded-uri")),
        ("GET", "/authz/public", vec![("x_original_url", "/admin")], differ("the original request target is named differently by the /authz/ path and x_original_url")),
        ("GET", "/authz/a", vec![("x-forwarded-method", "POST")], differ("the original method is named differently by the authz request's method and x-forwarded-method")),
        ("GET", "/authz/a", vec![("x-http-method-override", "DELETE")], differ("the original method is named differently by the authz request's method and x-http-method-override")),
        ("GET", "/authz/a", vec![("x-forwarded-host", "admin.internal")], differ("the original host is named differently by Host and x-forwarded-host")),
        ("GET", "/authz/a", vec![("forwarded", "host=admin.internal")], differ("the original host is named differently by Host and forwarded")),
        ("GET", "/authz/a", vec![("x-forwarded-host", "tokengate")], is(Some("GET"), "/a", "tokengate:9191")),
    ]);
    let method = Method::POST;
    let check_request = Asked::Itself {
        method: &method,
        target: "/orders".into(),
        host: Some(b"api.example.com"),
        face: Face::Grpc,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-host",
        HeaderValue::from_static("admin.internal"),
    );
    assert_eq!(
        read(&check_request, &headers, &[]),
        unknown("the original host is named differently by the CheckRequest's host and x-forwarded-host")
    );
    headers.insert(
        "x-forwarded-host",
        HeaderValue::from_static("API.example.com"),
    );
    headers.insert("x-original-method", HeaderValue::from_static("GET"));
    assert_eq!(
        read(&check_request, &headers, &[]),
        unknown("the original method is named differently by the CheckRequest's method and x-original-method")
    );
    headers.remove("x-original-method");
    assert_eq!(
        read(&check_request, &headers, &[]),
        is(Some("POST"), "/orders", "api.example.com")
    );
}

#[test]
fn an_empty_naming_is_refused_in_every_form() {
    let base = ("x-forwarded-uri", "/a");
    for (name, value, part) in [
        ("x-forwarded-host", "", "host"),
        ("x-forwarded-host", " ", "host"),
        ("x_forwarded_host", "", "host"),
        ("x-forwarded-host", "h.example,", "host"),
        ("x-forwarded-host", ", h.example", "host"),
        ("x-original-host", "", "host"),
        ("x-host", "", "host"),
        ("forwarded", "for=x;host=", "host"),
        ("forwarded", "host=\"\"", "host"),
        ("forwarded", "proto=", "scheme"),
        ("x-forwarded-proto", "", "scheme"),
        ("x-forwarded-proto", "https,", "scheme"),
        ("x-forwarded-ssl", "", "scheme"),
        ("x-forwarded-method", "", "method"),
        ("x-original-method", "", "method"),
        ("X_HTTP_Method_Override", "", "method"),
        ("x-original-url", "", "request target"),
        ("x-original-uri", "", "request target"),
        ("x_forwarded_uri", "", "request target"),
        ("x-rewrite-url", "", "request target"),
    ] {
        let got = ask("GET", "/authz", &[base, (name, value)]);
        let name = name.to_ascii_lowercase();
        assert_eq!(
            got,
            unknown(&format!("{name} names an empty {part}")),
            "{name}: {value:?}"
        );
    }
    assert_eq!(
        ask("GET", "/authz", &[base, ("forwarded", " ")]),
        unknown("forwarded is empty")
    );
    // Alone, too: an empty X-Original-URL names no target rather than none.
    assert_eq!(
        ask("GET", "/authz", &[("x-original-url", "")]),
        unknown("x-original-url names an empty request target")
    );
}

#[test]
fn every_override_the_inbound_guard_strips_is_a_naming() {
    for name in METHOD_OVERRIDES.iter().chain(PATH_OVERRIDES.iter()) {
        assert!(naming(name).is_some(), "{name}");
        assert!(naming(&underscored(name)).is_some(), "{name}");
    }
    for other in [
        "x-forwarded-for",
        "x-forwarded-prefix",
        "authorization",
        "x_user",
        "host",
    ] {
        assert!(naming(other).is_none(), "{other}");
    }
}

#[test]
fn forwarded_is_read_only_in_the_form_every_parser_reads_alike() {
    let read = |value: &str| {
        ask(
            "GET",
            "/authz",
            &[("x-forwarded-uri", "/a"), ("forwarded", value)],
        )
        .map(|o| Original { https: false, ..o })
    };
    let host = |h: &str| is(None, "/a", h);
    assert_eq!(
        read("for=\"[2001:db8::1]:80\";host=a.example"),
        host("a.example")
    );
    assert_eq!(
        read("for=x;host=\"a.example\";proto=https"),
        host("a.example")
    );
    assert_eq!(
        read("host=a.example, host=a.example:443,"),
        host("a.example")
    );
    assert_eq!(read("For=x;Host=a.example;BY=y"), host("a.example"));
    assert!(read("host=a.example, host=b.example").is_err());
    assert!(read("host=a.example;host=b.example").is_err());
    assert!(read("proto=https, proto=http").is_err());
    // Rack splits on `,` and `;` whatever the quotes and takes the last host;
    // Spring searches for `host=`: each would read evil.example.
    let not_alike = unknown("forwarded is not a Forwarded value every parser reads alike");
    for value in [
        "host=good.example;for=\"x,host=evil.example\"",
        "for=\"x;host=evil.example\";host=good.example",
        "x-host=evil.example;host=good.example",
        "for=ahost=evil.example;host=good.example",
        "for=\"x,y\";host=good.example",
        "by=\"\\\"q\";host=good.example",
        "host=\"good.example",
    ] {
        assert_eq!(read(value), not_alike, "{value}");
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
        .header("x_forwarded_host", "shop.example")
        .header("x-original-method", "POST")
        .header("x-original-url", "/orders")
        .header("x-http-method-override", "POST")
        .body(())
        .unwrap();
    let what = asked(req.method(), req.uri(), req.headers()).unwrap();
    let original = read(&what, req.headers(), &[]).unwrap();
    into_original(&mut req, original);
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri(), "/orders");
    assert_eq!(req.headers()[HOST], "shop.example");
    assert_eq!(req.headers()["authorization"], "Bearer t");
    assert_eq!(req.headers().len(), 2, "{:?}", req.headers());
    assert!(req
        .extensions()
        .get::<crate::guard::decide::MethodUnnamed>()
        .is_none());
    // No method named: decided as GET, marked so every method is checked.
    let mut req = Request::builder()
        .method("DELETE")
        .uri("/authz")
        .header(HOST, "tokengate:9191")
        .header("x-original-uri", "/orders")
        .body(())
        .unwrap();
    let what = asked(req.method(), req.uri(), req.headers()).unwrap();
    let original = read(&what, req.headers(), &[]).unwrap();
    into_original(&mut req, original);
    assert_eq!(req.method(), Method::GET);
    assert!(req
        .extensions()
        .get::<crate::guard::decide::MethodUnnamed>()
        .is_some());
}
