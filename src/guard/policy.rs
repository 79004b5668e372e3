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
            && self.methods.as_deref().is_none_or(|ms| takes(ms, method))
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.as_bytes().eq_ignore_ascii_case(host))
    }
}

/// A rule's `methods` take `method`. A rule for GET takes HEAD too: apps answer
/// HEAD with the GET handler (Express, Flask, Rails, Django, Spring), so HEAD is
/// judged by the GET rule unless an earlier rule names HEAD itself.
fn takes(methods: &[Method], method: &Method) -> bool {
    methods.contains(method) || (method == Method::HEAD && methods.contains(&Method::GET))
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
/// - with its ASCII case folded (Express and ASP.NET by default).
///
/// (HEAD needs no reading of its own: a rule for GET takes it, [`takes`].)
/// A reading, or a combination of them, that selects a rule with other
/// requirements would let a spelling choose the weaker rule, so the request is
/// refused instead (`Err`, a 400). A plain request (no `%`, no `.` in its last
/// segment, no upper case anywhere) costs one pass over the rules.
pub fn find_rule<'a>(
    rules: &'a [RouteRule],
    method: &Method,
    host: &[u8],
    path: &str,
) -> Result<Option<(usize, &'a RouteRule)>, &'static str> {
    let first = |path: &str, case: Case| {
        rules
            .iter()
            .position(|r| r.matches_as(method, host, path, case))
    };
    let exact = first(path, Case::Exact);
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
    let case_matters =
        path.bytes().any(|b| b.is_ascii_uppercase()) || rules.iter().any(|r| r.prefix_has_upper);
    let cases = [
        (Some(Case::Exact), Reading::AsSent),
        (case_matters.then_some(Case::Folded), Reading::CaseFolded),
    ];
    for (p, path_reading) in paths {
        let Some(p) = p else { continue };
        for (case, case_reading) in cases {
            let Some(case) = case else { continue };
            if (path_reading, case_reading) == (Reading::AsSent, Reading::AsSent) {
                continue; // `exact` itself
            }
            if !same_requirements(rules, exact, first(p, case)) {
                // Name the reading that differs, the most specific first.
                return Err(path_reading.max(case_reading).disagreement());
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
    Decoded,
    FormatSuffix,
}

impl Reading {
    fn disagreement(self) -> &'static str {
        match self {
            Reading::AsSent => "the request falls under another rule",
            Reading::CaseFolded => "the path falls under another rule when its case is ignored",
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

/// PURE: a request whose method nobody named (a forward-auth subrequest,
/// which nginx and Traefik send as GET whatever the original method was) is
/// decided only if its method cannot matter: every method in `methods` (each
/// one a rule names, and one none names) falls under rules asking what
/// `found`, the rule taking it as GET, asks.
pub fn any_method_agrees(
    rules: &[RouteRule],
    methods: &[Method],
    found: Option<usize>,
    host: &[u8],
    path: &str,
) -> Result<(), &'static str> {
    for method in methods {
        let reading = find_rule(rules, method, host, path)?.map(|(i, _)| i);
        if !same_requirements(rules, found, reading) {
            return Err("the original method is not named and rules differ by method here: send X-Forwarded-Method or X-Original-Method");
        }
    }
    Ok(())
}

/// Every method `rules` name, and one they do not: enough to read a request
/// under each method ([`any_method_agrees`]), since a rule takes a method by name.
pub fn representative_methods(rules: &[RouteRule]) -> Vec<Method> {
    let mut methods: Vec<Method> = Vec::new();
    for named in rules.iter().filter_map(|r| r.methods.as_deref()).flatten() {
        if !methods.contains(named) {
            methods.push(named.clone());
        }
    }
    let unnamed = (0..)
        .filter_map(|n| Method::from_bytes(format!("UNNAMED-{n}").as_bytes()).ok())
        .find(|m| !methods.contains(m));
    methods.extend(unnamed);
    methods
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
            if token.claim(name.as_str()) != Some(want) {
                return Err(Shortfall::Claim(name.to_string()));
            }
        }
        if !self.scopes.iter().all(|s| token.has_scope(s)) {
            return Err(Shortfall::Scope(self.scopes.join(" ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
