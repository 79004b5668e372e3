//! PURE: compiled route rules. [`find_rule`] picks the first rule matching
//! method, host and path (prefix by segment), checking that the readings apps
//! commonly give a request agree; [`canonical_path`] refuses the path spellings
//! an app could read as another path; `Requirements::check` decides whether a
//! verified token satisfies a rule.

use super::shape::{method_spelling, METHOD_OVERRIDES, PATH_OVERRIDES};
use super::verify::VerifiedToken;
use crate::config::{Requirements, RouteRule};
use hyper::header::HeaderMap;
use hyper::http::uri::PathAndQuery;
use hyper::Method;
use unicode_normalization::UnicodeNormalization;

/// Why a verified token is not enough for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// Missing scopes; the value lists every scope the rule requires (RFC 6750 `scope=`).
    Scope(String),
    Issuer,
    Claim(String),
}

impl RouteRule {
    /// `host` is the request's host name without port (compared case-insensitively).
    pub fn matches(&self, method: &Method, host: &[u8], path: &str) -> bool {
        self.matches_as(method, host, path, Case::Exact)
    }

    fn matches_as(&self, method: &Method, host: &[u8], path: &str, case: Case) -> bool {
        let prefix = match case {
            Case::Exact => path_has_prefix(path, &self.prefix),
            Case::Folded => path_has_prefix_folded(path, &self.prefix),
        };
        prefix
            && self.methods.as_ref().is_none_or(|ms| ms.contains(method))
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.as_bytes().eq_ignore_ascii_case(host))
    }
}

/// `/items` matches `/items`, `/items/` and `/items/42`, never `/itemsx`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// [`path_has_prefix`], ignoring ASCII case.
fn path_has_prefix_folded(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let (path, prefix) = (path.as_bytes(), prefix.as_bytes());
    path.len() >= prefix.len()
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
        && path.get(prefix.len()).is_none_or(|&b| b == b'/')
}

/// How a path is compared with a rule's prefix.
#[derive(Debug, Clone, Copy)]
enum Case {
    Exact,
    /// As apps that route case-insensitively read it (Express and ASP.NET by
    /// default, IIS, anything on a case-insensitive file system).
    Folded,
}

/// PURE: accepts only paths whose meaning cannot differ between tokengate and
/// the app behind it, so a rule cannot be sidestepped by spelling. Refused:
/// - dot segments and empty segments (`//`), `\\` and `;` (path parameters),
///   also percent-encoded (`%3B`: decoded, Spring strips what follows);
/// - percent-encoded unreserved characters, slashes, backslashes, `?`, `#`,
///   control characters, and a `%25` that starts another escape (`%252e`:
///   decoded twice, a dot);
/// - a segment ending in a dot or encoded white space (`/admin.`, `/admin%20`:
///   IIS and Windows drop them);
/// - encoded bytes that are not UTF-8 (`%c0%ae`, an overlong dot), and
///   characters apps fold to ASCII (fullwidth `．` and `ａ`, the Kelvin sign,
///   `ı`, ligatures: anything with an ASCII compatibility decomposition or case
///   mapping).
///
/// ASCII case is left to [`find_rule`], which checks the folded reading.
pub fn canonical_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("request target is not an absolute path");
    }
    // One pass: bytes, escapes and each segment as its end is reached.
    let bytes = path.as_bytes();
    let mut beyond_ascii = false;
    let mut segment_start = 1;
    let mut i = 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            segment(&bytes[segment_start..], true)?;
            break;
        };
        match b {
            b'/' => {
                segment(&bytes[segment_start..i], false)?;
                segment_start = i + 1;
            }
            b'\\' => return Err("backslash in path"),
            b';' => return Err("path parameters (;) are not accepted"),
            b'%' => {
                let decoded = percent_decoded(bytes, i).ok_or("bad percent-encoding in path")?;
                if decoded.is_ascii_alphanumeric() || b"-._~/\\".contains(&decoded) {
                    return Err("percent-encoded character that must be sent literally (or never)");
                }
                if decoded.is_ascii_control() {
                    return Err("percent-encoded control character in path");
                }
                if decoded == b'?' || decoded == b'#' {
                    return Err("percent-encoded ? or # in path");
                }
                if decoded == b';' {
                    return Err("path parameters (;) are not accepted");
                }
                let hex_at = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if decoded == b'%' && hex_at(i + 3) && hex_at(i + 4) {
                    return Err("double percent-encoding in path");
                }
                beyond_ascii |= !decoded.is_ascii();
                i += 3;
                continue;
            }
            b => beyond_ascii |= !b.is_ascii(),
        }
        i += 1;
    }
    if beyond_ascii {
        no_ascii_lookalikes(path)?;
    }
    Ok(())
}

/// One path segment: not a dot segment, empty only as the last (a trailing
/// slash), and not ending in a dot or encoded white space.
fn segment(segment: &[u8], last: bool) -> Result<(), &'static str> {
    match segment {
        b"." | b".." => Err("dot segment in path"),
        b"" if !last => Err("empty path segment (//)"),
        [.., b'.'] => Err("path segment ending in a dot or white space"),
        _ if segment.ends_with(b"%20") || segment.ends_with(b"%09") => {
            Err("path segment ending in a dot or white space")
        }
        _ => Ok(()),
    }
}

/// The byte `%XY` at `at` encodes, if `bytes[at..]` starts with one.
fn percent_decoded(bytes: &[u8], at: usize) -> Option<u8> {
    let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
    match bytes.get(at) {
        Some(b'%') => Some((hex(at + 1)? * 16 + hex(at + 2)?) as u8),
        _ => None,
    }
}

/// The decoded path is UTF-8 with no character that an app could fold into
/// ASCII: by compatibility normalisation (NFKC, as Python's and Java's
/// normalisers do) or by Unicode case mapping (`ı` upper-cases to `I`).
/// Only paths with non-ASCII bytes get here, so the decode's allocation is rare.
fn no_ascii_lookalikes(path: &str) -> Result<(), &'static str> {
    let text = percent_decoded_text(path).ok_or("percent-encoded bytes that are not UTF-8")?;
    let folds_to_ascii = |c: char| {
        std::iter::once(c).nfkc().any(|d| d.is_ascii())
            || c.to_lowercase().any(|d| d.is_ascii())
            || c.to_uppercase().any(|d| d.is_ascii())
    };
    match text.chars().filter(|c| !c.is_ascii()).any(folds_to_ascii) {
        true => {
            Err("character in path that apps may read as ASCII (fullwidth or compatibility form)")
        }
        false => Ok(()),
    }
}

/// PURE: the first rule that matches, or `None` (deny), once the other common
/// readings of the request agree with it. Apps route:
/// - the path percent-decoded (`/v1/reports%3Aexport` is `/v1/reports:export`);
/// - without a format suffix on its last segment (Rails' `(.:format)`, Spring's
///   suffix match: `/admin.json` is `/admin`);
/// - with its ASCII case folded (Express and ASP.NET by default);
/// - for `HEAD`, as `GET` (frameworks answer HEAD with the GET handler).
///
/// A reading, or a combination of them, that selects a rule with other
/// requirements would let a spelling choose the weaker rule, so the request is
/// refused instead (`Err`, a 400). A plain request (no `%`, no `.` in its last
/// segment, no upper case anywhere, not HEAD) costs one pass over the rules.
pub fn find_rule<'a>(
    rules: &'a [RouteRule],
    method: &Method,
    host: &[u8],
    path: &str,
) -> Result<Option<(usize, &'a RouteRule)>, &'static str> {
    let first = |method: &Method, path: &str, case: Case| {
        rules
            .iter()
            .position(|r| r.matches_as(method, host, path, case))
    };
    let exact = first(method, path, Case::Exact);
    let decoded = path
        .contains('%')
        .then(|| percent_decoded_text(path))
        .flatten();
    // A rule that names the suffixed spelling itself (`/favicon.ico`,
    // `/openapi.json`) has spoken for it: the stem is not another reading of it.
    let named = exact.map_or(0, |e| rules[e].prefix.len());
    let paths = [
        (Some(path), Reading::AsSent),
        (decoded.as_deref(), Reading::Decoded),
        (without_format_suffix(path, named), Reading::FormatSuffix),
        (
            decoded
                .as_deref()
                .and_then(|d| without_format_suffix(d, named)),
            Reading::FormatSuffix,
        ),
    ];
    let methods = [
        (Some(method), Reading::AsSent),
        (
            (method == Method::HEAD).then_some(&Method::GET),
            Reading::HeadAsGet,
        ),
    ];
    let case_matters =
        path.bytes().any(|b| b.is_ascii_uppercase()) || rules.iter().any(|r| r.prefix_has_upper);
    let cases = [
        (Some(Case::Exact), Reading::AsSent),
        (case_matters.then_some(Case::Folded), Reading::CaseFolded),
    ];
    for (p, path_reading) in paths {
        let Some(p) = p else { continue };
        for (m, method_reading) in methods {
            let Some(m) = m else { continue };
            for (case, case_reading) in cases {
                let Some(case) = case else { continue };
                let readings = [path_reading, method_reading, case_reading];
                if readings.iter().all(|r| *r == Reading::AsSent) {
                    continue; // `exact` itself
                }
                if !same_requirements(rules, exact, first(m, p, case)) {
                    // Name the reading that differs, the most specific first.
                    let why = readings.into_iter().max().unwrap_or(Reading::AsSent);
                    return Err(why.disagreement());
                }
            }
        }
    }
    Ok(exact.map(|i| (i, &rules[i])))
}

/// A way apps read a request that [`find_rule`] checks; ordered from the least
/// to the most specific, for naming the one a refused request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reading {
    AsSent,
    CaseFolded,
    HeadAsGet,
    Decoded,
    FormatSuffix,
}

impl Reading {
    fn disagreement(self) -> &'static str {
        match self {
            Reading::AsSent => "the request falls under another rule",
            Reading::CaseFolded => "the path falls under another rule when its case is ignored",
            Reading::HeadAsGet => "HEAD falls under another rule than GET",
            Reading::Decoded => "the path falls under another rule once percent-decoded",
            Reading::FormatSuffix => "the path falls under another rule without its format suffix",
        }
    }
}

/// `path` percent-decoded, if that is UTF-8 ([`canonical_path`] has refused
/// anything else by the time rules are matched).
fn percent_decoded_text(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match percent_decoded(bytes, i) {
            Some(d) => {
                decoded.push(d);
                i += 3;
            }
            None => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// `path` without the format suffix of its last segment (`/a/b.json` → `/a/b`,
/// `/b.tar.gz` → `/b`); `None` when that segment has none (`/.well-known` is a
/// name, not a suffix) or when the first `named` bytes of the path, a matching
/// rule's prefix, already include the suffix.
fn without_format_suffix(path: &str, named: usize) -> Option<&str> {
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[last..].find('.').filter(|&d| d > 0)?;
    Some(&path[..last + dot]).filter(|stem| stem.len() >= named)
}

/// Two rule choices (indexes into `rules`; `None` is a deny) ask the same of a request.
fn same_requirements(rules: &[RouteRule], a: Option<usize>, b: Option<usize>) -> bool {
    match (a, b) {
        (a, b) if a == b => true,
        (Some(a), Some(b)) => rules[a].access == rules[b].access,
        _ => false,
    }
}

/// PURE: with `forward.override_headers: keep`, an app may run the method an
/// override header names or route the path one names instead of the request's
/// own. Every such reading (each override method and path, alone and together)
/// must fall under rules asking what `found`, the request's own rule, asks;
/// otherwise the request is refused, as are override values that are not an
/// upper-case method or a canonical path.
pub fn overrides_agree(
    rules: &[RouteRule],
    request: (&Method, &[u8], &str),
    found: Option<usize>,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let (method, host, path) = request;
    let values =
        |names: &'static [&'static str]| names.iter().flat_map(|n| headers.get_all(*n).iter());
    let mut methods = vec![method.clone()];
    for value in values(&METHOD_OVERRIDES) {
        let named = Method::from_bytes(value.as_bytes().trim_ascii())
            .map_err(|_| "a method override header does not name a method")?;
        method_spelling(&named)?;
        methods.push(named);
    }
    let mut paths = vec![path];
    for value in values(&PATH_OVERRIDES) {
        // An app parses the value as a URL: a fragment or a character a
        // request target cannot hold has no one meaning.
        let target = value
            .to_str()
            .ok()
            .filter(|t| !t.contains('#'))
            .and_then(|t| PathAndQuery::try_from(t).ok().map(|_| t))
            .ok_or("a path override header is not a request target")?;
        let named = target.split_once('?').map_or(target, |(p, _)| p);
        canonical_path(named)?;
        paths.push(named);
    }
    for m in &methods {
        for p in &paths {
            let reading = find_rule(rules, m, host, p)?.map(|(i, _)| i);
            if !same_requirements(rules, found, reading) {
                return Err("an override header names a request under another rule");
            }
        }
    }
    Ok(())
}

impl Requirements {
    pub fn check(&self, token: &VerifiedToken) -> Result<(), Shortfall> {
        if let Some(allowed) = &self.issuers {
            if !allowed.contains(&token.issuer) {
                return Err(Shortfall::Issuer);
            }
        }
        for (name, want) in &self.claims {
            if token.claim(name) != Some(want) {
                return Err(Shortfall::Claim(name.clone()));
            }
        }
        if !self.scopes.iter().all(|s| token.has_scope(s)) {
            return Err(Shortfall::Scope(self.scopes.join(" ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Access;
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
        let head = Err("HEAD falls under another rule than GET");
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
            // HEAD is served by GET's handler.
            (Method::HEAD, "/reports/1", head),
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
            issuers,
            claims: claims
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
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
}
