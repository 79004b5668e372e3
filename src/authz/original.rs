//! PURE: the request a fronting proxy asks about, read from what it sends.
//!
//! Three contracts name it, read in this order:
//! - `X-Forwarded-Uri` (+ `X-Forwarded-Method`, `X-Forwarded-Host`): Traefik's
//!   `forwardAuth`, nginx `auth_request` with `proxy_set_header`;
//! - `X-Original-URL` (+ `X-Original-Method`): ingress-nginx's `auth-url`;
//!   `X-Original-URI`, nginx's own `auth_request` example, is read alike;
//! - `/authz/<original path>`: Envoy `ext_authz` HTTP mode (`path_prefix`).
//!
//! A method not named is the request's own; a host not named is its own
//! `Host`. Every contract present must name the same request: a caller who
//! adds one the proxy does not set (an `X-Forwarded-Uri` through
//! ingress-nginx) cannot choose what is decided. An original request that
//! cannot be determined is refused (a 400), never allowed.

use crate::headers::{canonical_host, same_name};
use crate::inbound::shape::{METHOD_OVERRIDES, PATH_OVERRIDES};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Uri, Version};

/// Where a fronting proxy asks; `/authz/<path>` asks about `<path>`.
pub const PREFIX: &str = "/authz";

/// The headers that name the original request, removed once read.
pub const CONTRACT: [&str; 7] = [
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
];

/// The request a fronting proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// Origin form: path and query.
    pub target: Uri,
    pub host: Option<HeaderValue>,
}

/// Why no original request was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Not a path under [`PREFIX`]: a 404.
    NotHere,
    /// No one original request: a 400.
    Unknown(&'static str),
}

/// One contract's reading.
struct Reading<'a> {
    method: Option<&'a [u8]>,
    target: std::borrow::Cow<'a, str>,
    host: Option<&'a [u8]>,
}

/// PURE: the original request an authz request asks about, or why there is
/// none. `identity`: the headers tokengate answers with, whose underscore
/// spellings an app may read as theirs (refused: the fronting proxy replaces
/// the headers, not their other spellings).
pub fn read(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    identity: &[HeaderName],
) -> Result<Original, Unread> {
    let path = uri.path();
    let under_prefix = match path.strip_prefix(PREFIX) {
        Some("") => None,
        Some(rest) if rest.starts_with('/') => Some(rest),
        _ => return Err(Unread::NotHere),
    };
    let unknown = |why| Err(Unread::Unknown(why));
    other_spellings(headers, identity).map_err(Unread::Unknown)?;
    let forwarded_method = one(headers, "x-forwarded-method")?;
    let forwarded = match one(headers, "x-forwarded-uri")? {
        Some(target) => Some(Reading {
            method: forwarded_method,
            target: text(target, "X-Forwarded-Uri is not text")?.into(),
            host: one(headers, "x-forwarded-host")?,
        }),
        None if forwarded_method.is_some() => {
            return unknown("X-Forwarded-Method without X-Forwarded-Uri")
        }
        None => None,
    };
    let original_method = one(headers, "x-original-method")?;
    let original_url = one(headers, "x-original-url")?;
    let original_uri = one(headers, "x-original-uri")?;
    if original_method.is_some() && original_url.is_none() && original_uri.is_none() {
        return unknown("X-Original-Method without X-Original-URL");
    }
    let prefixed = under_prefix.map(|rest| Reading {
        method: None,
        target: match uri.query() {
            Some(query) => format!("{rest}?{query}").into(),
            None => rest.into(),
        },
        host: None,
    });
    let readings = [
        forwarded,
        original_url
            .map(|u| original(u, original_method))
            .transpose()?,
        original_uri
            .map(|u| original(u, original_method))
            .transpose()?,
        prefixed,
    ];
    let mut named = readings.iter().flatten();
    let Some(first) = named.next() else {
        return unknown("no original request named: send X-Forwarded-Uri or X-Original-URL, or ask at /authz/<path>");
    };
    let mut host = first.host;
    for reading in named {
        if reading.method != first.method || reading.target != first.target {
            return unknown("the original request is named twice, differently");
        }
        match (host, reading.host) {
            (None, named) => host = named,
            (Some(seen), Some(named)) if !same_host(seen, named) => {
                return unknown("the original host is named twice, differently")
            }
            _ => {}
        }
    }
    let method = match first.method {
        Some(named) => Method::from_bytes(named)
            .map_err(|_| Unread::Unknown("the original method is not a method"))?,
        None => method.clone(),
    };
    let target = origin_form(&first.target)?;
    let host = match host {
        Some(named) => Some(
            HeaderValue::from_bytes(named)
                .map_err(|_| Unread::Unknown("the original host is not a host"))?,
        ),
        None => own_host(uri, headers)?,
    };
    Ok(Original {
        method,
        target,
        host,
    })
}

/// The authz request becomes the original request, to be decided as the
/// inbound guard decides one: its method, target and host, without the
/// headers that named it.
pub fn into_original<B>(req: &mut Request<B>, original: Original) {
    *req.method_mut() = original.method;
    *req.uri_mut() = original.target;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    for name in CONTRACT {
        headers.remove(name);
    }
    match original.host {
        Some(host) => headers.insert(HOST, host),
        None => headers.remove(HOST),
    };
}

/// Two host values naming the same host (ports aside); one that is no host names none.
fn same_host(a: &[u8], b: &[u8]) -> bool {
    match (canonical_host(a, None), canonical_host(b, None)) {
        (Ok(Some(a)), Ok(Some(b))) => a.name() == b.name(),
        _ => false,
    }
}

/// The value of `name`, if sent once; sent twice, it names no one thing.
fn one<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a [u8]>, Unread> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(Unread::Unknown(
            "a header naming the original request is sent twice",
        )),
        None => Ok(first.map(HeaderValue::as_bytes)),
    }
}

fn text<'a>(bytes: &'a [u8], why: &'static str) -> Result<&'a str, Unread> {
    std::str::from_utf8(bytes).map_err(|_| Unread::Unknown(why))
}

/// `X-Original-URL` (or `-URI`): ingress-nginx sends
/// `$scheme://$http_host$request_uri`; a bare path is read too.
fn original<'a>(url: &'a [u8], method: Option<&'a [u8]>) -> Result<Reading<'a>, Unread> {
    let url = text(url, "X-Original-URL is not text")?;
    if url.starts_with('/') {
        return Ok(Reading {
            method,
            target: url.into(),
            host: None,
        });
    }
    let not_a_url = Unread::Unknown("X-Original-URL is not an http(s) URL");
    let parsed: Uri = url.parse().map_err(|_| not_a_url)?;
    let authority = parsed.authority().ok_or(not_a_url)?.as_str();
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || authority.contains('@') {
        return Err(not_a_url);
    }
    // The target as sent: what follows the authority (`Uri` would add a `/`).
    let start = url
        .find(authority)
        .map_or(url.len(), |i| i + authority.len());
    let target = match &url[start..] {
        "" => "/",
        rest => rest,
    };
    Ok(Reading {
        method,
        target: target.into(),
        host: Some(&url.as_bytes()[start - authority.len()..start]),
    })
}

/// An origin-form target: a path and an optional query, nothing else.
fn origin_form(target: &str) -> Result<Uri, Unread> {
    let not_a_path = Unread::Unknown("the original request target is not a path");
    if !target.starts_with('/') || target.contains('#') {
        return Err(not_a_path);
    }
    let uri: Uri = target.parse().map_err(|_| not_a_path)?;
    match uri.scheme().is_none() && uri.authority().is_none() {
        true => Ok(uri),
        false => Err(not_a_path),
    }
}

/// The authz request's own host: its `Host`, else its target's authority (h2).
fn own_host(uri: &Uri, headers: &HeaderMap) -> Result<Option<HeaderValue>, Unread> {
    if let Some(host) = headers.get(HOST) {
        return Ok(Some(host.clone()));
    }
    uri.authority()
        .map(|a| HeaderValue::from_str(a.as_str()))
        .transpose()
        .map_err(|_| Unread::Unknown("the original host is not a host"))
}

/// The inbound guard strips the underscore spellings of override and identity
/// headers (`X_HTTP_Method_Override`), which CGI-style apps read as the
/// names; a fronting proxy passes them on, so they are refused here.
pub fn other_spellings(headers: &HeaderMap, identity: &[HeaderName]) -> Result<(), &'static str> {
    let guarded = METHOD_OVERRIDES
        .iter()
        .chain(PATH_OVERRIDES.iter())
        .copied()
        .chain(identity.iter().map(HeaderName::as_str));
    for name in headers.keys().map(HeaderName::as_str) {
        if name.contains('_') && guarded.clone().any(|g| name != g && same_name(name, g)) {
            return Err("a header an app may read as an override or identity header");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
