//! The request's shape, settled before any rule is matched, so that the
//! app behind the guard reads the request the way the rules did: a method in
//! the one spelling apps route by, one canonical host, and none of the headers
//! that would make an app see another client, host, method or path.

pub use crate::headers::Host;
use crate::headers::{canonical_host, is_proxy_owned, same_name};
use hyper::header::{HeaderMap, HeaderName, HOST};
use hyper::{Method, Uri, Version};

/// PURE: refuses a method with a lower-case letter (`post`, `Delete`, `purge`):
/// apps that upper-case the method (Symfony, Rails' Rack, many CGI stacks) would
/// run a POST or PURGE handler behind a rule written for `POST` or `PURGE`, while
/// rules (whose methods are upper-cased when loaded) never matched it. Real
/// methods, standard or extension (`PROPFIND`), are upper case. `CONNECT` asks
/// for a tunnel that no rule could look inside.
pub fn method_spelling(method: &Method) -> Result<(), &'static str> {
    if method == Method::CONNECT {
        return Err("CONNECT is not accepted");
    }
    match method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        true => Err("a method must be spelled in upper case"),
        false => Ok(()),
    }
}

/// PURE: the request's host, from its `Host` header and its target's authority
/// (absolute-form, or HTTP/2's `:authority`). `Ok(None)` when the request names
/// none (HTTP/1.0, an empty `Host`, HTTP/2 without `:authority`). Two `Host`
/// headers, a malformed host, or a header and a target naming different hosts
/// are refused: each has no one meaning. HTTP/1.1 requires a `Host` (RFC 9112 §3.2).
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Host>, &'static str> {
    let mut values = headers.get_all(HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err("more than one Host header");
    }
    let from_header = match header {
        Some(value) => canonical_host(value.as_bytes(), Some(value))?,
        None => None,
    };
    let from_target = match uri.authority() {
        Some(authority) => canonical_host(authority.as_str().as_bytes(), None)?,
        None => None,
    };
    match (from_header, from_target) {
        (Some(h), Some(t)) if h.name() != t.name() => {
            Err("the Host header and the request target name different hosts")
        }
        // RFC 9112 §3.2.2: an absolute-form target's authority wins over Host.
        (_, Some(target)) => Ok(Some(target)),
        (Some(host), None) => Ok(Some(host)),
        (None, None) if header.is_none() && version == Version::HTTP_11 => {
            Err("an HTTP/1.1 request must have a Host header")
        }
        (None, None) => Ok(None),
    }
}

/// Headers with which frameworks run another method than the request's
/// (Symfony, Laravel, Rails, ASP.NET, Google's APIs).
pub const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Headers with which frameworks route another path than the request's (IIS
/// rewrite, older Symfony and Zend).
pub const PATH_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Removes from `headers` what a caller may not send: the headers tokengate owns
/// ([`is_proxy_owned`]: `X-Forwarded-*`, `Forwarded`, client-address headers), the identity headers tokengate sets
/// from a verified token, and, unless `keep_overrides`, the method and path
/// override headers. Each also in the underscore spelling (`X_Forwarded_Host`)
/// that CGI-style servers read as the same name; kept overrides keep only
/// their own spelling, the one [`super::policy::overrides_agree`] checks. And
/// the underscore spelling of a framing header ([`FRAMING`]).
pub fn strip_caller_headers(
    headers: &mut HeaderMap,
    identity: &[HeaderName],
    keep_overrides: bool,
) {
    let mut found: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_reserved(name.as_str(), identity, keep_overrides) && !found.contains(name) {
            found.push(name.clone());
        }
    }
    for name in found {
        headers.remove(name);
    }
}

/// Message-framing names with a `-` in them. Their own spelling is hyper's to
/// frame the request by; the underscore spelling (`Transfer_Encoding`) is one a
/// CGI-style app reads as the same name, and would frame the body another way
/// than we did: on a shared upstream connection, a smuggled request.
const FRAMING: [&str; 4] = [
    "transfer-encoding",
    "content-length",
    "keep-alive",
    "proxy-connection",
];

fn is_reserved(name: &str, identity: &[HeaderName], keep_overrides: bool) -> bool {
    if identity.iter().any(|h| same_name(name, h.as_str())) || is_proxy_owned(name) {
        return true;
    }
    if FRAMING.iter().any(|f| name != *f && same_name(name, f)) {
        return true;
    }
    let is_override = |list: &[&str]| {
        list.iter()
            .any(|o| same_name(name, o) && !(keep_overrides && name == *o))
    };
    is_override(&METHOD_OVERRIDES) || is_override(&PATH_OVERRIDES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::BAD_HOST;
    use hyper::header::HeaderValue;

    #[test]
    fn method_spellings() {
        let cases = [
            ("GET", Ok(())),
            ("POST", Ok(())),
            ("PATCH", Ok(())),
            ("PROPFIND", Ok(())),
            ("purge", Err("a method must be spelled in upper case")),
            ("M-SEARCH", Ok(())),
            ("post", Err("a method must be spelled in upper case")),
            ("Post", Err("a method must be spelled in upper case")),
            ("delete", Err("a method must be spelled in upper case")),
            ("gEt", Err("a method must be spelled in upper case")),
            ("CONNECT", Err("CONNECT is not accepted")),
        ];
        for (method, want) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_spelling(&m), want, "{method}");
        }
    }

    /// The host found: its name and the value forwarded.
    type Found = Result<Option<(String, String)>, &'static str>;

    fn host_of(version: Version, target: &str, hosts: &[&str]) -> Found {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, HeaderValue::from_str(h).unwrap());
        }
        request_host(version, &uri, &headers).map(|h| {
            h.map(|h| {
                (
                    String::from_utf8(h.name().to_vec()).unwrap(),
                    h.value().to_str().unwrap().to_string(),
                )
            })
        })
    }

    #[test]
    fn hosts_have_one_canonical_spelling() {
        const H10: Version = Version::HTTP_10;
        const H11: Version = Version::HTTP_11;
        const H2: Version = Version::HTTP_2;
        let ok = |name: &str, value: &str| Ok(Some((name.to_string(), value.to_string())));
        let cases: Vec<(Version, &str, Vec<&str>, Found)> = vec![
            (H11, "/x", vec!["api.local"], ok("api.local", "api.local")),
            (
                H11,
                "/x",
                vec!["api.local:8443"],
                ok("api.local", "api.local:8443"),
            ),
            (H11, "/x", vec!["API.Local."], ok("api.local", "api.local")),
            (
                H11,
                "/x",
                vec!["api.local.:443"],
                ok("api.local", "api.local:443"),
            ),
            (
                H11,
                "/x",
                vec!["my_host-1.a"],
                ok("my_host-1.a", "my_host-1.a"),
            ),
            (H11, "/x", vec!["[::1]:80"], ok("[::1]", "[::1]:80")),
            (
                H11,
                "/x",
                vec!["127.0.0.1:80"],
                ok("127.0.0.1", "127.0.0.1:80"),
            ),
            (H11, "/x", vec!["api.local:"], ok("api.local", "api.local:")),
            (
                H11,
                "http://API.local./x",
                vec!["api.local"],
                ok("api.local", "api.local"),
            ),
            (
                H11,
                "http://api.local:81/x",
                vec![],
                ok("api.local", "api.local:81"),
            ),
            (
                H2,
                "http://Api.Local./x",
                vec![],
                ok("api.local", "api.local"),
            ),
            (H10, "/x", vec![], Ok(None)),
            (H2, "/x", vec![], Ok(None)),
            (H11, "/x", vec![""], Ok(None)),
            (
                H11,
                "/x",
                vec![],
                Err("an HTTP/1.1 request must have a Host header"),
            ),
            (H11, "/x", vec!["a", "b"], Err("more than one Host header")),
            (
                H11,
                "http://admin.internal/x",
                vec!["other"],
                Err("the Host header and the request target name different hosts"),
            ),
            (H11, "/x", vec!["admin.internal, other"], Err(BAD_HOST)),
            (H11, "/x", vec!["admin.internal,other"], Err(BAD_HOST)),
            (H11, "/x", vec!["admin.internal:443:443"], Err(BAD_HOST)),
            (H11, "/x", vec!["admin.internal.."], Err(BAD_HOST)),
            (H11, "/x", vec![".admin.internal"], Err(BAD_HOST)),
            (H11, "/x", vec!["."], Err(BAD_HOST)),
            (H11, "/x", vec![":80"], Err(BAD_HOST)),
            (H11, "/x", vec!["admin%2einternal"], Err(BAD_HOST)),
            (H11, "/x", vec!["user@admin.internal"], Err(BAD_HOST)),
            (H11, "/x", vec!["admin internal"], Err(BAD_HOST)),
            (H11, "/x", vec!["a:123456"], Err(BAD_HOST)),
            (H11, "/x", vec!["a:8x"], Err(BAD_HOST)),
            (H11, "/x", vec!["[::1]x"], Err(BAD_HOST)),
            (H11, "/x", vec!["[]"], Err(BAD_HOST)),
            (H11, "/x", vec!["[::1"], Err(BAD_HOST)),
        ];
        for (version, target, hosts, want) in cases {
            assert_eq!(
                host_of(version, target, &hosts),
                want,
                "{version:?} {target} {hosts:?}"
            );
        }
    }

    #[test]
    fn a_canonical_host_header_is_reused_as_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("api.local:80"));
        let host = request_host(Version::HTTP_11, &"/".parse().unwrap(), &headers)
            .unwrap()
            .unwrap();
        assert_eq!(host.value(), headers[HOST]);
        assert_eq!(host.name(), b"api.local");
    }

    #[test]
    fn callers_cannot_send_reserved_headers_in_any_spelling() {
        let identity = [
            HeaderName::from_static("x-auth-subject"),
            HeaderName::from_static("x-auth-roles"),
        ];
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-auth-subject", "a"),
            ("x_auth_subject", "b"),
            ("x_auth-roles", "c"),
            ("x-forwarded-for", "d"),
            ("x-forwarded-host", "e"),
            ("x_forwarded_host", "f"),
            ("x-forwarded-prefix", "g"),
            ("forwarded", "h"),
            ("x-real-ip", "i"),
            ("x-http-method-override", "j"),
            ("x_http_method", "k"),
            ("x-method-override", "l"),
            ("x-original-url", "m"),
            ("x_rewrite_url", "n"),
            ("x-forwarded", "o"),
            ("true-client-ip", "p"),
            ("X_Client_IP", "q"),
            ("cf-connecting-ip", "r"),
            ("x-host", "s"),
            ("transfer_encoding", "t"),
            ("Content_Length", "u"),
            ("content-length", "kept"),
            ("keep_alive", "v"),
            ("x_other", "kept"),
            ("x-auth-subjectx", "kept"),
            ("forwarded-x", "kept"),
            ("client-hints", "kept"),
            ("host", "kept"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let left = |keep_overrides: bool| {
            let mut h = h.clone();
            strip_caller_headers(&mut h, &identity, keep_overrides);
            let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
            left.sort();
            left
        };
        assert_eq!(
            left(false),
            [
                "client-hints",
                "content-length",
                "forwarded-x",
                "host",
                "x-auth-subjectx",
                "x_other"
            ]
        );
        // Kept overrides keep their own spelling only.
        assert_eq!(
            left(true),
            [
                "client-hints",
                "content-length",
                "forwarded-x",
                "host",
                "x-auth-subjectx",
                "x-http-method-override",
                "x-method-override",
                "x-original-url",
                "x_other"
            ]
        );
    }
}
