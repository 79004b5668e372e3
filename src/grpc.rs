//! gRPC over HTTP/2 as far as a proxy reads it: which protocol a caller
//! speaks, the `grpc-status` and `grpc-message` of an answer, and a
//! `grpc-timeout`. A leaf: the forwarders and the response layer use it.

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use std::time::Duration;

/// What the caller speaks, as far as tokengate's own answers go: a gRPC
/// client cannot read an HTTP 401, only a `grpc-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// `application/grpc`, `application/grpc+proto`, …
    Grpc,
    /// `application/grpc-web`, `application/grpc-web+proto`, …
    GrpcWeb,
    /// `application/grpc-web-text`, base64-framed.
    GrpcWebText,
}

impl Protocol {
    /// PURE: the protocol a request's `Content-Type` names (case-insensitive,
    /// with a `+codec` suffix or parameters allowed). Every gRPC call is a
    /// POST, so no other request pays for the lookup.
    pub fn of(method: &Method, headers: &HeaderMap) -> Protocol {
        if method != Method::POST {
            return Protocol::Http;
        }
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Protocol::Http;
        };
        let value = value.as_bytes();
        let media = value
            .iter()
            .position(|b| matches!(b, b'+' | b';' | b' ' | b'\t'))
            .map_or(value, |end| &value[..end]);
        let is = |name: &str| media.eq_ignore_ascii_case(name.as_bytes());
        if is("application/grpc") {
            Protocol::Grpc
        } else if is("application/grpc-web") {
            Protocol::GrpcWeb
        } else if is("application/grpc-web-text") {
            Protocol::GrpcWebText
        } else {
            Protocol::Http
        }
    }

    /// The `Content-Type` of a gRPC answer; `None` for plain HTTP.
    pub fn grpc_content_type(self) -> Option<&'static str> {
        match self {
            Protocol::Http => None,
            Protocol::Grpc => Some("application/grpc"),
            Protocol::GrpcWeb => Some("application/grpc-web"),
            Protocol::GrpcWebText => Some("application/grpc-web-text"),
        }
    }
}

pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// PURE: the gRPC status code for an HTTP status tokengate answers with, as
/// gRPC's HTTP mapping and Envoy have it.
pub fn grpc_status(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,       // INTERNAL
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 12,       // UNIMPLEMENTED
        429 | 431 => 8,  // RESOURCE_EXHAUSTED
        502 | 503 => 14, // UNAVAILABLE
        504 => 4,        // DEADLINE_EXCEEDED
        _ => 2,          // UNKNOWN
    }
}

/// PURE: `text` as a `grpc-message` value: percent-encoded UTF-8, every byte
/// outside printable ASCII and `%` itself written `%XX` (gRPC over HTTP/2).
pub fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes().iter().take(512) {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// PURE: a `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits and a
/// unit, `H` `M` `S` `m` `u` `n`) as a duration; `None` when malformed.
pub fn grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let value = value.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// PURE: headers or trailers saying gRPC UNAUTHENTICATED (`grpc-status: 16`).
pub fn unauthenticated(headers: &HeaderMap) -> bool {
    headers.get(&GRPC_STATUS).is_some_and(|code| code == "16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_callers_are_told_apart_by_content_type() {
        // A gRPC content type on anything but a POST is not a gRPC call.
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        assert_eq!(Protocol::of(&Method::GET, &headers), Protocol::Http);
        let cases = [
            (None, Protocol::Http),
            (Some("application/json"), Protocol::Http),
            (Some("application/grpc"), Protocol::Grpc),
            (Some("application/grpc+proto"), Protocol::Grpc),
            (Some("Application/GRPC+json"), Protocol::Grpc),
            (Some("application/grpc; charset=utf-8"), Protocol::Grpc),
            (Some("application/grpc-web"), Protocol::GrpcWeb),
            (Some("application/grpc-web+proto"), Protocol::GrpcWeb),
            (Some("application/grpc-web-text"), Protocol::GrpcWebText),
            (
                Some("application/grpc-web-text+proto"),
                Protocol::GrpcWebText,
            ),
            (Some("application/grpcx"), Protocol::Http),
            (Some("application/grpc-webby"), Protocol::Http),
            (Some("text/application/grpc"), Protocol::Http),
        ];
        for (content_type, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(v) = content_type {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            }
            assert_eq!(
                Protocol::of(&Method::POST, &headers),
                want,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        let cases = [
            ("plain text", "plain text"),
            ("100% sure", "100%25 sure"),
            ("line\nbreak", "line%0Abreak"),
            ("caf\u{e9}", "caf%C3%A9"),
        ];
        for (text, want) in cases {
            assert_eq!(grpc_message(text), want);
        }
    }

    #[test]
    fn grpc_timeouts() {
        let cases = [
            ("1S", Some(Duration::from_secs(1))),
            ("250m", Some(Duration::from_millis(250))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789S", None),
            ("S", None),
            ("1s", None),
            ("-1S", None),
            ("1.5S", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                grpc_timeout(&HeaderValue::from_static(text)),
                want,
                "{text:?}"
            );
        }
    }
}
