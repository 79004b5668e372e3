//! PURE: the request's shape, settled before any rule is matched, so that the
//! app behind the guard reads the request the way the rules did: a method in
//! the one spelling apps route by, one canonical host, and none of the headers
//! that would make an app see another client, host, method or path.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
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

/// The request's host in its one canonical spelling: lower case, without the
/// trailing dot of a fully qualified name, with the port as sent. Rules match
/// its name (no port); the app receives the whole of it as `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    value: HeaderValue,
    /// The name's length: `value` is the name, then `:port` if one was sent.
    name_len: usize,
}

impl Host {
    /// The host name without port, as rules match it (ASCII, lower case).
    pub fn name(&self) -> &[u8] {
        &self.value.as_bytes()[..self.name_len]
    }

    /// `name[:port]`, the `Host` the app receives.
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }

    pub fn into_value(self) -> HeaderValue {
        self.value
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

const BAD_HOST: &str = "malformed host";

/// PURE: `raw` (`name[:port]`, `[v6]:port`) in its canonical spelling; `None`
/// for an empty host. Names are labels of letters, digits, `-` and `_`
/// separated by single dots (percent-encoding, commas, spaces, user info and
/// anything else an app could read in more than one way are refused); a port
/// is up to five digits. `sent` is the header value `raw` came from, reused
/// when it is canonical already (no allocation on the common path). One pass
/// over the name: this runs for every request.
fn canonical_host(raw: &[u8], sent: Option<&HeaderValue>) -> Result<Option<Host>, &'static str> {
    let Some(&first) = raw.first() else {
        return Ok(None);
    };
    let mut upper = false;
    let name_end = if first == b'[' {
        let end = raw.iter().position(|&b| b == b']').ok_or(BAD_HOST)?;
        let literal = &raw[1..end];
        let v6 = |b: &u8| b.is_ascii_hexdigit() || *b == b':' || *b == b'.';
        if literal.is_empty() || !literal.iter().all(v6) {
            return Err(BAD_HOST);
        }
        upper = literal.iter().any(u8::is_ascii_uppercase);
        end + 1
    } else {
        let mut label = 0;
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            match b {
                b':' => break,
                b'.' if label == 0 => return Err(BAD_HOST),
                b'.' => label = 0,
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
                b'A'..=b'Z' => {
                    upper = true;
                    label += 1;
                }
                _ => return Err(BAD_HOST),
            }
            i += 1;
        }
        if i == 0 {
            return Err(BAD_HOST);
        }
        i
    };
    let port = &raw[name_end..];
    match port.split_first() {
        None => {}
        Some((b':', digits)) if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(BAD_HOST),
    }
    // A fully qualified name's trailing dot (the loop refused a dot after a dot).
    let name_len = match raw[name_end - 1] {
        b'.' => name_end - 1,
        _ => name_end,
    };
    let value = match sent {
        Some(sent) if !upper && name_len == name_end => sent.clone(),
        _ => {
            let mut bytes = Vec::with_capacity(name_len + port.len());
            bytes.extend(raw[..name_len].iter().map(u8::to_ascii_lowercase));
            bytes.extend_from_slice(port);
            HeaderValue::from_bytes(&bytes).map_err(|_| BAD_HOST)?
        }
    };
    Ok(Some(Host { value, name_len }))
}

/// Headers that tell an app who the client is or which host it asked for:
/// tokengate sets its own `X-Forwarded-*` and `Forwarded`, and no caller may
/// send these or any other `X-Forwarded-*` (apps and their middleware trust
/// them: Go's chi reads `True-Client-IP`, npm's request-ip `X-Client-IP`, Rails
/// `Client-IP`, CDN-aware apps `CF-Connecting-IP` and `Fastly-Client-IP`).
const OWNED: [&str; 12] = [
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-host",
    "x-host",
];
const FORWARDED_FAMILY: &str = "x-forwarded-";

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

/// PURE: removes what a caller may not send: any `X-Forwarded-*`, `Forwarded`
/// and the other client and host headers above (tokengate sets its own), the identity headers tokengate sets
/// from a verified token, and, unless `keep_overrides`, the method and path
/// override headers. Each also in the underscore spelling (`X_Forwarded_Host`)
/// that CGI-style servers read as the same name; kept overrides keep only
/// their own spelling, the one [`super::policy::overrides_agree`] checks.
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

fn is_reserved(name: &str, identity: &[HeaderName], keep_overrides: bool) -> bool {
    if identity.iter().any(|h| same_name(name, h.as_str())) {
        return true;
    }
    // Every other reserved name starts with one of these: most headers need no more.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'f' | b't' | b'c')) {
        return false;
    }
    let is_override = |list: &[&str]| {
        list.iter()
            .any(|o| same_name(name, o) && !(keep_overrides && name == *o))
    };
    name.get(..FORWARDED_FAMILY.len())
        .is_some_and(|start| same_name(start, FORWARDED_FAMILY))
        || OWNED.iter().any(|o| same_name(name, o))
        || is_override(&METHOD_OVERRIDES)
        || is_override(&PATH_OVERRIDES)
}

/// `name` is `reserved`, reading `_` as `-`.
fn same_name(name: &str, reserved: &str) -> bool {
    name.len() == reserved.len()
        && name
            .bytes()
            .zip(reserved.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
