//! Validated inbound rules: plain data, built once from the config. How a
//! request is matched against them is `inbound::policy`'s job.

use hyper::Method;

/// One entry of `inbound.rules`, validated.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// Label for metrics and logs (the rule's `name`, else its path).
    pub name: String,
    /// Path prefix without a trailing slash (`/` stays `/`).
    pub(crate) prefix: String,
    pub(crate) methods: Option<Vec<Method>>,
    /// Canonical host name (lower case, no trailing dot), matched without port.
    pub(crate) host: Option<String>,
    pub access: Access,
    /// The prefix has upper-case letters: case-folded readings must be checked.
    pub(crate) prefix_has_upper: bool,
}

/// What a matching request needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Passes without a token; no verification happens.
    Anonymous,
    /// A valid token meeting these requirements.
    Token(Requirements),
}

/// An issuer's place in `inbound.issuers`: keys, policies, rules and verified
/// tokens name their issuer by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssuerId(usize);

impl IssuerId {
    pub const fn new(index: usize) -> IssuerId {
        IssuerId(index)
    }

    /// Its index into `inbound.issuers` (and everything built in that order).
    pub const fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// Every one of these scopes must be granted.
    pub scopes: Vec<String>,
    /// The issuers accepted; `None` = any configured issuer.
    pub issuers: Option<Vec<IssuerId>>,
    /// Claims that must equal these values.
    pub claims: Vec<(String, serde_json::Value)>,
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
            prefix_has_upper: trimmed.bytes().any(|b| b.is_ascii_uppercase()),
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
}
