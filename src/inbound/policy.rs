//! PURE: compiled route rules. `RuleSet::find` picks the first rule matching
//! method, host and path (prefix by segment); `Requirements::check` decides whether
//! a verified token satisfies it.

use super::verify::VerifiedToken;
use hyper::Method;

/// One entry of `inbound.rules`, validated.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// Label for metrics and logs (the rule's `name`, else its path).
    pub name: String,
    /// Path prefix without a trailing slash (`/` stays `/`).
    prefix: String,
    methods: Option<Vec<Method>>,
    host: Option<String>,
    pub access: Access,
}

/// What a matching request needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Passes without a token; no verification happens.
    Anonymous,
    /// A valid token meeting these requirements.
    Token(Requirements),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// Every one of these scopes must be granted.
    pub scopes: Vec<String>,
    /// Indexes into the configured issuers; `None` = any configured issuer.
    pub issuers: Option<Vec<usize>>,
    /// Claims that must equal these values.
    pub claims: Vec<(String, serde_json::Value)>,
}

/// Why a verified token is not enough for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// Missing scopes; the value lists every scope the rule requires (RFC 6750 `scope=`).
    Scope(String),
    Issuer,
    Claim(String),
}

impl RouteRule {
    pub fn new(
        name: String,
        prefix: &str,
        methods: Option<Vec<Method>>,
        host: Option<String>,
        access: Access,
    ) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        RouteRule {
            name,
            prefix: if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            },
            methods,
            host,
            access,
        }
    }

    /// `host` is the request authority without port (compared case-insensitively).
    pub fn matches(&self, method: &Method, host: &str, path: &str) -> bool {
        path_has_prefix(path, &self.prefix)
            && self.methods.as_ref().is_none_or(|ms| ms.contains(method))
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host))
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

/// PURE: accepts only paths whose meaning cannot differ between tokengate and
/// the app behind it, so a rule cannot be sidestepped by spelling: no dot
/// segments, no empty segments (`//`), no `\\` or `;` (path parameters), no
/// percent-encoded unreserved characters, slashes, backslashes or NUL.
pub fn canonical_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("request target is not an absolute path");
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("backslash in path"),
            b';' => return Err("path parameters (;) are not accepted"),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) else {
                    return Err("bad percent-encoding in path");
                };
                let decoded = (hi * 16 + lo) as u8;
                if decoded.is_ascii_alphanumeric() || b"-._~/\\\0".contains(&decoded) {
                    return Err("percent-encoded character that must be sent literally (or never)");
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment == "." || segment == ".." {
            return Err("dot segment in path");
        }
        // Only the last segment may be empty (a trailing slash).
        if segment.is_empty() && segments.peek().is_some() {
            return Err("empty path segment (//)");
        }
    }
    Ok(())
}

/// First rule that matches, or `None` (deny).
pub fn find_rule<'a>(
    rules: &'a [RouteRule],
    method: &Method,
    host: &str,
    path: &str,
) -> Option<(usize, &'a RouteRule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(method, host, path))
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
                r.matches(&Method::GET, "h", path),
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
        ];
        for path in bad {
            assert!(canonical_path(path).is_err(), "{path} must be rejected");
        }
    }

    #[test]
    fn methods_and_host_narrow_a_rule() {
        let r = rule("/orders", Some(&["GET", "HEAD"]), Some("api.local"));
        assert!(r.matches(&Method::GET, "api.local", "/orders"));
        assert!(r.matches(&Method::HEAD, "api.local", "/orders/1"));
        assert!(!r.matches(&Method::POST, "api.local", "/orders"));
        assert!(!r.matches(&Method::GET, "other.local", "/orders"));
    }

    #[test]
    fn first_match_wins_and_no_match_is_none() {
        let rules = vec![
            rule("/orders", Some(&["GET"]), None),
            rule("/orders", None, None),
            rule("/health", None, None),
        ];
        assert_eq!(
            find_rule(&rules, &Method::GET, "h", "/orders/1").map(|r| r.0),
            Some(0)
        );
        assert_eq!(
            find_rule(&rules, &Method::POST, "h", "/orders/1").map(|r| r.0),
            Some(1)
        );
        assert_eq!(
            find_rule(&rules, &Method::GET, "h", "/healthz").map(|r| r.0),
            None
        );
        assert_eq!(find_rule(&rules, &Method::GET, "h", "/").map(|r| r.0), None);
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
