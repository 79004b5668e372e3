//! PURE: the request a fronting proxy asks about, read from what it sends.
//!
//! Every naming of the original request's method, scheme, host or target is
//! read: each header of [`NAMINGS`] in any spelling (case, `-` or `_`), each of
//! its lines and list entries, `Forwarded`'s `host=` and `proto=`, and what
//! the authz request itself says ([`Asked`]). If two name different values,
//! or one is present but empty, there is no one original request: a 400
//! naming both. Never precedence: the app behind the fronting proxy may read
//! any of them (Django `X-Forwarded-Host`, Rack `X-Forwarded-Scheme`, Symfony
//! `X-Original-URL`, Laravel `X-HTTP-Method-Override`), and only a proxy in
//! the data path could strip them, which the authz listener is not.
//!
//! The contracts that name it:
//! - `X-Forwarded-Uri` + `X-Forwarded-Method/Host/Proto`: Traefik's
//!   `forwardAuth`, nginx `auth_request` with `proxy_set_header`;
//! - `X-Original-URL` + `X-Original-Method`: ingress-nginx's `auth-url`;
//!   `X-Original-URI`, nginx's own `auth_request` example, is read alike;
//! - `/authz/<original path>`: Envoy `ext_authz` HTTP mode (`path_prefix`).

use crate::error::ProxyError;
use crate::guard::decide::Connection;
use crate::headers::{host_name, same_name};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Uri, Version};
use std::borrow::Cow;
use std::fmt;

/// Where a fronting proxy asks; `/authz/<path>` asks about `<path>`.
pub const PREFIX: &str = "/authz";

/// How a header's value names a part of the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A method.
    Method,
    /// An origin-form target: path and query.
    Target,
    /// An absolute `http(s)` URL (scheme, host and target), or a target.
    Url,
    /// Hosts, comma-separated (one per proxy hop).
    Hosts,
    /// Schemes, comma-separated.
    Schemes,
    /// `on` (https) or `off` (http).
    Flag,
    /// RFC 7239: each element's `host=` and `proto=`.
    Forwarded,
}

/// Every header that names a part of the original request, in its own
/// spelling; the same names with `_` for `-` are read as these (CGI-style
/// servers do: PHP-FPM and other FastCGI apps behind Traefik).
const NAMINGS: [(&str, Form); 19] = [
    ("x-forwarded-method", Form::Method),
    ("x-original-method", Form::Method),
    // Method overrides: the app runs the method they name.
    ("x-http-method-override", Form::Method),
    ("x-http-method", Form::Method),
    ("x-method-override", Form::Method),
    ("x-forwarded-uri", Form::Target),
    ("x-original-url", Form::Url),
    ("x-original-uri", Form::Url),
    // A path override: IIS rewrite, older Symfony and Zend route by it.
    ("x-rewrite-url", Form::Target),
    ("x-forwarded-host", Form::Hosts),
    ("x-original-host", Form::Hosts),
    ("x-host", Form::Hosts),
    ("x-forwarded-proto", Form::Schemes),
    ("x-forwarded-scheme", Form::Schemes),
    ("x-scheme", Form::Schemes),
    ("x-url-scheme", Form::Schemes),
    ("x-forwarded-ssl", Form::Flag),
    ("front-end-https", Form::Flag),
    ("forwarded", Form::Forwarded),
];

/// The [`NAMINGS`] entry `name` is a spelling of.
fn naming(name: &str) -> Option<Form> {
    // Every naming starts with one of these: most headers need no more.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'f')) {
        return None;
    }
    NAMINGS
        .iter()
        .find(|(n, _)| same_name(name, n))
        .map(|(_, form)| *form)
}

/// What the authz request itself says about the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked<'a> {
    /// `/authz`: a subrequest. nginx and Traefik send it as GET whatever the
    /// original method was, so its method names nothing. Its `Host` is
    /// tokengate's own address (nginx by default, Traefik) or the original
    /// host (`proxy_set_header Host $host`): read only when no header names
    /// a host.
    Subrequest { host: Option<&'a [u8]> },
    /// The request itself, as the proxy describes it (`/authz/<path>` for
    /// Envoy's HTTP mode, a gRPC `CheckRequest`): its method, target and host
    /// are namings like the headers.
    Itself {
        method: &'a Method,
        target: Cow<'a, str>,
        host: Option<&'a [u8]>,
        face: Face,
    },
}

/// Which face of the listener was asked: how its own namings are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `/authz/<path>`.
    Http,
    /// Envoy's `CheckRequest`.
    Grpc,
}

/// The request a fronting proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// `None`: nothing named it (see [`crate::guard::decide::MethodUnnamed`]).
    pub method: Option<Method>,
    /// Origin form: path and query.
    pub target: Uri,
    pub host: Option<HeaderValue>,
    /// A naming said `https` (what a DPoP proof's `htu` then holds).
    pub https: bool,
}

/// Why no original request was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Not a path under [`PREFIX`]: a 404.
    NotHere,
    /// No one original request: a 400, saying why.
    Unknown(Cow<'static, str>),
}

impl From<Unread> for ProxyError {
    fn from(unread: Unread) -> ProxyError {
        match unread {
            Unread::NotHere => ProxyError::NotFound(PREFIX),
            Unread::Unknown(why) => ProxyError::BadRequest(why),
        }
    }
}

fn unknown<T>(why: &'static str) -> Result<T, Unread> {
    Err(Unread::Unknown(why.into()))
}

/// PURE: what an HTTP request to the authz listener asks about, from its
/// method, target and `Host`.
pub fn asked<'a>(
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Result<Asked<'a>, Unread> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next().map(HeaderValue::as_bytes);
    if hosts.next().is_some() {
        return unknown("more than one Host header");
    }
    // HTTP/2 names its host in the target's authority.
    let host = host.or_else(|| uri.authority().map(|a| a.as_str().as_bytes()));
    match uri.path().strip_prefix(PREFIX) {
        Some("") => Ok(Asked::Subrequest { host }),
        Some(rest) if rest.starts_with('/') => Ok(Asked::Itself {
            method,
            target: match uri.query() {
                Some(query) => format!("{rest}?{query}").into(),
                None => rest.into(),
            },
            host,
            face: Face::Http,
        }),
        _ => Err(Unread::NotHere),
    }
}

/// Where a naming came from, for the 400 that names two disagreeing ones.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// A header, by its name as sent.
    Header(&'a str),
    /// The authz request's own method, target or host.
    Own(&'static str),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header(name) => f.write_str(name),
            Source::Own(what) => f.write_str(what),
        }
    }
}

/// A part of the original request, as named so far: the first naming, which
/// every other must agree with.
struct Part<'a> {
    what: &'static str,
    first: Option<(&'a [u8], Source<'a>)>,
    same: fn(&[u8], &[u8]) -> bool,
}

impl<'a> Part<'a> {
    fn new(what: &'static str, same: fn(&[u8], &[u8]) -> bool) -> Part<'a> {
        Part {
            what,
            first: None,
            same,
        }
    }

    /// One more naming: the first, or one that agrees with it.
    fn named(&mut self, value: &'a [u8], source: Source<'a>) -> Result<(), Unread> {
        let value = value.trim_ascii();
        if value.is_empty() {
            return Err(Unread::Unknown(
                format!("{source} names an empty {}", self.what).into(),
            ));
        }
        match self.first {
            None => self.first = Some((value, source)),
            Some((first, by)) if !(self.same)(first, value) => {
                return Err(Unread::Unknown(
                    format!(
                        "the original {} is named differently by {by} and {source}",
                        self.what
                    )
                    .into(),
                ))
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn value(&self) -> Option<&'a [u8]> {
        self.first.map(|(value, _)| value)
    }
}

/// The four parts, as named by everything read so far.
struct Namings<'a> {
    method: Part<'a>,
    scheme: Part<'a>,
    host: Part<'a>,
    target: Part<'a>,
}

/// Two host namings name the same host (ports aside: rules match names);
/// each was checked to be a host when read.
fn same_host(a: &[u8], b: &[u8]) -> bool {
    matches!((host_name(a), host_name(b)), (Ok(Some(a)), Ok(Some(b))) if a.eq_ignore_ascii_case(b))
}

impl<'a> Namings<'a> {
    fn new() -> Namings<'a> {
        Namings {
            method: Part::new("method", |a, b| a == b),
            scheme: Part::new("scheme", <[u8]>::eq_ignore_ascii_case),
            host: Part::new("host", same_host),
            target: Part::new("request target", |a, b| a == b),
        }
    }

    fn host(&mut self, value: &'a [u8], source: Source<'a>) -> Result<(), Unread> {
        if host_name(value.trim_ascii()).is_err() {
            return Err(Unread::Unknown(
                format!("{source} does not name a host").into(),
            ));
        }
        self.host.named(value, source)
    }

    /// What `value`, a header of this `form`, names.
    fn header(&mut self, form: Form, value: &'a [u8], source: Source<'a>) -> Result<(), Unread> {
        match form {
            Form::Method => self.method.named(value, source),
            Form::Target => self.target.named(value, source),
            Form::Url => self.url(value, source),
            // One entry per proxy hop: each is a naming.
            Form::Hosts => entries(value).try_for_each(|host| self.host(host, source)),
            Form::Schemes => entries(value).try_for_each(|s| self.scheme.named(s, source)),
            Form::Flag => match value.trim_ascii() {
                v if v.eq_ignore_ascii_case(b"on") => self.scheme.named(b"https", source),
                v if v.eq_ignore_ascii_case(b"off") => self.scheme.named(b"http", source),
                b"" => self.scheme.named(b"", source),
                _ => Err(Unread::Unknown(
                    format!("{source} is neither on nor off").into(),
                )),
            },
            Form::Forwarded => self.forwarded(value, source),
        }
    }

    /// `X-Original-URL` (or `-URI`): ingress-nginx sends
    /// `$scheme://$http_host$request_uri`; a bare target is read too.
    fn url(&mut self, value: &'a [u8], source: Source<'a>) -> Result<(), Unread> {
        let url = value.trim_ascii();
        if url.is_empty() || url.starts_with(b"/") {
            return self.target.named(url, source);
        }
        let not_a_url =
            || Unread::Unknown(format!("{source} is not an http(s) URL or a path").into());
        let text = std::str::from_utf8(url).map_err(|_| not_a_url())?;
        let (scheme, rest) = text.split_once("://").ok_or_else(not_a_url)?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return Err(not_a_url());
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') || text.parse::<Uri>().is_err() {
            return Err(not_a_url());
        }
        self.scheme.named(scheme.as_bytes(), source)?;
        self.host(authority.as_bytes(), source)?;
        let target = match target {
            "" => "/",
            t if t.starts_with('/') => t,
            // `https://h?q`: the path is empty, read as `/` by every parser.
            _ => return Err(not_a_url()),
        };
        self.target.named(target.as_bytes(), source)
    }

    /// RFC 7239 `Forwarded`: every `host=` and `proto=` of every element.
    /// Read only in the form every parser reads alike: apps split it on `,`
    /// and `;` without regard to quotes (Rack), or search it for `host=`
    /// (Spring), so a value holding `, ; = " \` inside quotes, a bare value
    /// holding `=`, or a parameter RFC 7239 does not define (`x-host=`) is
    /// refused, not read one way of several.
    fn forwarded(&mut self, value: &'a [u8], source: Source<'a>) -> Result<(), Unread> {
        if value.trim_ascii().is_empty() {
            return Err(Unread::Unknown(format!("{source} is empty").into()));
        }
        let malformed = || {
            Unread::Unknown(
                format!("{source} is not a Forwarded value every parser reads alike").into(),
            )
        };
        for pair in value.split(|&b| b == b',' || b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue; // an empty list element names nothing (RFC 9110 §5.6.1)
            }
            let at = pair.iter().position(|&b| b == b'=').ok_or_else(malformed)?;
            let (key, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
            let value = match value {
                [b'"', inner @ .., b'"'] => inner,
                v => v,
            };
            if value.iter().any(|b| b",;=\"\\".contains(b)) {
                return Err(malformed());
            }
            let is = |name: &[u8]| key.eq_ignore_ascii_case(name);
            if is(b"host") {
                self.host(value, source)?;
            } else if is(b"proto") {
                self.scheme.named(value, source)?;
            } else if !(is(b"for") || is(b"by")) {
                return Err(malformed());
            }
        }
        Ok(())
    }
}

/// The comma-separated entries of a list value.
fn entries(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',')
}

/// PURE: the original request `asked` about, read with every naming in
/// `headers`, or why there is none. `identity`: the headers tokengate answers
/// with, whose underscore spellings an app may read as theirs (refused: the
/// fronting proxy replaces the headers, not their other spellings).
pub fn read<'a>(
    asked: &'a Asked<'a>,
    headers: &'a HeaderMap,
    identity: &[HeaderName],
) -> Result<Original, Unread> {
    identity_spellings(headers, identity).map_err(|why| Unread::Unknown(why.into()))?;
    let mut named = Namings::new();
    if let Asked::Itself {
        method,
        target,
        host,
        face,
    } = asked
    {
        let [own_method, own_target, own_host] = match face {
            Face::Http => ["the authz request's method", "the /authz/ path", "Host"],
            Face::Grpc => [
                "the CheckRequest's method",
                "the CheckRequest's path",
                "the CheckRequest's host",
            ],
        };
        named
            .method
            .named(method.as_str().as_bytes(), Source::Own(own_method))?;
        named
            .target
            .named(target.as_bytes(), Source::Own(own_target))?;
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            named.host(host, Source::Own(own_host))?;
        }
    }
    for (name, value) in headers {
        if let Some(form) = naming(name.as_str()) {
            named.header(form, value.as_bytes(), Source::Header(name.as_str()))?;
        }
    }
    let method = named
        .method
        .value()
        .map(|m| {
            Method::from_bytes(m)
                .map_err(|_| Unread::Unknown("the original method is not a method".into()))
        })
        .transpose()?;
    let Some(target) = named.target.value() else {
        return unknown("no original request named: send X-Forwarded-Uri or X-Original-URL, or ask at /authz/<path>");
    };
    let host = match (named.host.value(), asked) {
        (Some(host), _) => Some(host),
        (None, Asked::Subrequest { host }) => host.filter(|h| !h.is_empty()),
        (None, Asked::Itself { .. }) => None,
    };
    let https = named
        .scheme
        .value()
        .is_some_and(|s| s.eq_ignore_ascii_case(b"https"));
    Ok(Original {
        method,
        https,
        target: origin_form(target)?,
        host: host
            .map(HeaderValue::from_bytes)
            .transpose()
            .map_err(|_| Unread::Unknown("the original host is not a host".into()))?,
    })
}

/// PURE: refuses a target naming with a comma in `headers` whose lines of
/// one name were joined with `,` (Envoy's `CheckRequest.headers` map): two
/// lines, `/admin` and `x`, arrive as `/admin,x`, which may equal the path
/// while an app reading the first line routes `/admin`. Host and scheme
/// namings are read entry by entry anyway; a method holds no comma.
pub fn unjoined_targets(headers: &HeaderMap) -> Result<(), Unread> {
    for (name, value) in headers {
        let is_target = matches!(naming(name.as_str()), Some(Form::Target | Form::Url));
        if is_target && value.as_bytes().contains(&b',') {
            return Err(Unread::Unknown(
                format!("{name} holds a comma: in a CheckRequest's headers map it may be two lines joined").into(),
            ));
        }
    }
    Ok(())
}

/// The authz request becomes the original request, to be decided as the
/// inbound guard decides one: its method (GET, marked [`MethodUnnamed`], when
/// none was named), target and host, without the headers that named them.
///
/// [`MethodUnnamed`]: crate::guard::decide::MethodUnnamed
/// Returns the connection the original request came over, as far as the
/// fronting proxy says (its scheme; a client certificate is not said).
pub fn into_original<B>(req: &mut Request<B>, original: Original) -> Connection<'static> {
    let connection = Connection {
        https: original.https,
        certificate: None,
    };
    match original.method {
        Some(method) => *req.method_mut() = method,
        None => {
            *req.method_mut() = Method::GET;
            req.extensions_mut()
                .insert(crate::guard::decide::MethodUnnamed);
        }
    }
    *req.uri_mut() = original.target;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    let read: Vec<HeaderName> = headers
        .keys()
        .filter(|n| naming(n.as_str()).is_some())
        .cloned()
        .collect();
    for name in read {
        headers.remove(name);
    }
    match original.host {
        Some(host) => headers.insert(HOST, host),
        None => headers.remove(HOST),
    };
    connection
}

/// An origin-form target: a path and an optional query, nothing else.
fn origin_form(target: &[u8]) -> Result<Uri, Unread> {
    let not_a_path = || unknown("the original request target is not a path");
    if !target.starts_with(b"/") || target.contains(&b'#') {
        return not_a_path();
    }
    match Uri::try_from(target) {
        Ok(uri) if uri.scheme().is_none() && uri.authority().is_none() => Ok(uri),
        _ => not_a_path(),
    }
}

/// The inbound guard strips the underscore spellings of identity headers
/// (`X_Auth_Subject`), which CGI-style apps read as the names; a fronting
/// proxy replaces the identity headers but passes those on, so they are
/// refused here.
fn identity_spellings(headers: &HeaderMap, identity: &[HeaderName]) -> Result<(), &'static str> {
    for name in headers.keys().map(HeaderName::as_str) {
        if name.contains('_') && identity.iter().any(|g| same_name(name, g.as_str())) {
            return Err("a header an app may read as an identity header");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
