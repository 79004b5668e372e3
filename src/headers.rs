//! Leaf: header rules shared by both directions and the config, with no
//! knowledge of either: hop-by-hop headers, the headers tokengate owns, and a
//! host's one canonical spelling.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one hop and never travel further (RFC 9110 §7.6.1),
/// then `Upgrade`, which goes on only when the message asks for an upgrade.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_AT: usize = 0;
const TE_AT: usize = 5;
const UPGRADE_AT: usize = 8;

/// `name`'s place in [`HOP_BY_HOP`]. A match on the text: this runs for every
/// header of every proxied message, and comparing `name` with each entry in turn
/// cost about three times as much.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => CONNECTION_AT,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => TE_AT,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => UPGRADE_AT,
        _ => return None,
    })
}

/// A header that describes one hop: the standard set and `Upgrade`.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_index(name).is_some()
}

/// What a message's hop-by-hop headers asked of this hop, once removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hop {
    /// The `Upgrade` value when the message asks for a protocol upgrade.
    pub upgrade: Option<HeaderValue>,
    /// `TE` lists `trailers`: the sender takes trailers (gRPC always says so).
    /// HTTP/2 allows this one `te` value, so an h2 upstream is told it again.
    pub te_trailers: bool,
}

/// Removes hop-by-hop headers, including those the `Connection` header names,
/// and says what they asked ([`Hop`]).
/// Runs twice per proxied request (request and response), so it first looks for
/// hop-by-hop names in one pass over the (few) header names, and only removes, by
/// hashed lookup, what is there.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Hop {
    let mut present = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return Hop::default();
    }
    let mut upgrade_requested = false;
    // Headers the client named beyond the standard set: almost always none, so
    // the common `Connection: keep-alive` costs no allocation.
    let mut named = Vec::new();
    if present[CONNECTION_AT] {
        let tokens = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for token in tokens {
            if token.eq_ignore_ascii_case("upgrade") {
                upgrade_requested = true;
            } else if !(token.is_empty()
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close"))
            {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
    }
    let upgrade = if present[UPGRADE_AT] {
        present[UPGRADE_AT] = false;
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    let te_trailers = present[TE_AT]
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let coding = t.split(';').next().unwrap_or_default();
                coding.trim().eq_ignore_ascii_case("trailers")
            });
    let standard = HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p);
    for name in named.iter().chain(standard.map(|(h, _)| h)) {
        headers.remove(name);
    }
    Hop {
        upgrade: upgrade.filter(|_| upgrade_requested),
        te_trailers,
    }
}

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The forwarding headers tokengate sets on every inbound request (so none
/// may carry identity: it would be overwritten).
pub fn is_set_by_proxy(name: &HeaderName) -> bool {
    [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &FORWARDED,
    ]
    .contains(&name)
}

/// Headers that tell an app who the client is or which host it asked for:
/// tokengate sets its own `X-Forwarded-*` and `Forwarded`, and no caller may
/// send these or any other `X-Forwarded-*` (apps and their middleware trust
/// them: Go's chi reads `True-Client-IP`, npm's request-ip `X-Client-IP`, Rails
/// `Client-IP`, CDN-aware apps `CF-Connecting-IP` and `Fastly-Client-IP`). Nor
/// the headers a TLS-terminating proxy passes a client certificate in
/// (ingress-nginx's `ssl-client-*`, RFC 9440's `Client-Cert`, `X-SSL-Client-*`,
/// Envoy's `X-Forwarded-Client-Cert` among the `X-Forwarded-*`): an app must
/// not take a caller's word for its certificate.
const OWNED: [&str; 24] = [
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
    "ssl-client-cert",
    "ssl-client-verify",
    "ssl-client-subject-dn",
    "ssl-client-issuer-dn",
    "client-cert",
    "client-cert-chain",
    "x-client-cert",
    "x-ssl-cert",
    "x-ssl-client-cert",
    "x-ssl-client-verify",
    "x-ssl-client-dn",
    "x-ssl-client-s-dn",
];
const FORWARDED_FAMILY: &str = "x-forwarded-";

/// PURE: a header only tokengate may set, in any spelling with `_` for `-`
/// (CGI-style servers read both as one name): callers' are removed, and none
/// may carry identity.
pub fn is_proxy_owned(name: &str) -> bool {
    // Every owned name starts with one of these: most headers need no more.
    if !matches!(
        name.as_bytes().first(),
        Some(b'x' | b'f' | b't' | b'c' | b's')
    ) {
        return false;
    }
    name.get(..FORWARDED_FAMILY.len())
        .is_some_and(|start| same_name(start, FORWARDED_FAMILY))
        || OWNED.iter().any(|o| same_name(name, o))
}

/// `name` is `reserved`, reading `_` as `-`.
pub fn same_name(name: &str, reserved: &str) -> bool {
    name.len() == reserved.len()
        && name
            .bytes()
            .zip(reserved.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
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

pub const BAD_HOST: &str = "malformed host";

/// Where a valid host's parts end: its name (with any trailing dot), the
/// name without it, and whether the name has upper case.
struct HostParts {
    name_end: usize,
    name_len: usize,
    upper: bool,
}

/// PURE: `raw` (`name[:port]`, `[v6]:port`) checked; `None` for an empty host.
/// Names are labels of letters, digits, `-` and `_` separated by single dots
/// (percent-encoding, commas, spaces, user info and anything else an app could
/// read in more than one way are refused); a port is up to five digits. One
/// pass over the name: this runs for every request.
fn host_parts(raw: &[u8]) -> Result<Option<HostParts>, &'static str> {
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
    match raw[name_end..].split_first() {
        None => {}
        Some((b':', digits)) if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(BAD_HOST),
    }
    // A fully qualified name's trailing dot (the loop refused a dot after a dot).
    let name_len = match raw[name_end - 1] {
        b'.' => name_end - 1,
        _ => name_end,
    };
    Ok(Some(HostParts {
        name_end,
        name_len,
        upper,
    }))
}

/// PURE: the name `raw` names (no port, no trailing dot, case as sent), if it
/// is a host ([`canonical_host`]'s rules); `None` for an empty one. Allocates
/// nothing: for comparing hosts named in several places.
pub fn host_name(raw: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    Ok(host_parts(raw)?.map(|p| &raw[..p.name_len]))
}

/// PURE: `raw` in its canonical spelling ([`host_parts`]' rules); `None` for
/// an empty host. `sent` is the header value `raw` came from, reused when it
/// is canonical already (no allocation on the common path).
pub fn canonical_host(
    raw: &[u8],
    sent: Option<&HeaderValue>,
) -> Result<Option<Host>, &'static str> {
    let Some(HostParts {
        name_end,
        name_len,
        upper,
    }) = host_parts(raw)?
    else {
        return Ok(None);
    };
    let port = &raw[name_end..];
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

/// Total bytes of header names and values, the measure `max_header_bytes` limits.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for name in [
            "host",
            "authorization",
            "x-connection",
            "trailers",
            "upgrade-insecure-requests",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(hop_by_hop_index(&name), None, "{name}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        assert_eq!(
            strip_hop_by_hop(&mut h),
            Hop {
                upgrade: None,
                te_trailers: true
            },
            "upgrade without Connection: upgrade is not an upgrade"
        );
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let before = h.clone();
        assert_eq!(strip_hop_by_hop(&mut h), Hop::default());
        assert_eq!(h, before);
        // Only the Connection header itself: removed, nothing else touched.
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(strip_hop_by_hop(&mut h), Hop::default());
        assert_eq!(h, before);
    }

    #[test]
    fn upgrade_is_reported_when_connection_asks_for_it() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(
            strip_hop_by_hop(&mut h).upgrade,
            Some(HeaderValue::from_static("websocket"))
        );
        assert!(h.is_empty());
    }

    #[test]
    fn te_trailers_is_noted_in_any_spelling() {
        let cases = [
            ("trailers", true),
            ("Trailers", true),
            ("gzip, trailers", true),
            ("trailers;q=1", true),
            ("deflate", false),
            ("trailersx", false),
            ("", false),
        ];
        for (te, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::TE, HeaderValue::from_static(te));
            assert_eq!(strip_hop_by_hop(&mut h).te_trailers, want, "{te:?}");
            assert!(h.is_empty());
        }
    }

    #[test]
    fn proxy_owned_headers_in_any_spelling() {
        for name in [
            "x-forwarded-for",
            "x_forwarded_prefix",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x_client_ip",
            "cf-connecting-ip",
            "x-host",
            "x-forwarded",
            "ssl-client-cert",
            "ssl_client_verify",
            "client-cert",
            "x-ssl-client-cert",
            "x-forwarded-client-cert",
        ] {
            assert!(is_proxy_owned(name), "{name}");
        }
        for name in [
            "host",
            "forwarded-x",
            "x-forwardedx",
            "client-hints",
            "x-auth-subject",
            "x_other",
            "sec-fetch-mode",
            "client-certs",
        ] {
            assert!(!is_proxy_owned(name), "{name}");
        }
    }
}
