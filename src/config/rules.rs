//! Validated inbound rules: plain data, built once from the config. How a
//! request is matched against them is `guard::policy`'s job.

use hyper::Method;
use std::fmt;

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
    pub claims: Vec<(ClaimName, serde_json::Value)>,
}

/// A claim a rule compares or `claims_to_headers` forwards: a top-level name
/// (`sub`), or, written with a leading `/`, a JSON pointer (RFC 6901) into
/// nested claims (`/kubernetes.io/namespace`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimName {
    /// As written in the config: how logs, denials and `verify` name it.
    written: String,
    /// The top-level claim it reads (the pointer's first segment, unescaped).
    top: String,
    /// The pointer below that claim (`/namespace`); `None`: the claim itself.
    below: Option<String>,
}

impl ClaimName {
    /// `text` as a claim name; a pointer must name a top-level claim and may
    /// escape only `~0` (`~`) and `~1` (`/`).
    pub fn parse(text: &str) -> Result<ClaimName, String> {
        let Some(pointer) = text.strip_prefix('/') else {
            if text.is_empty() {
                return Err("a claim name must not be empty".into());
            }
            return Ok(ClaimName {
                written: text.into(),
                top: text.into(),
                below: None,
            });
        };
        let mut escapes = pointer.split('~').skip(1);
        if escapes.any(|after| !after.starts_with(['0', '1'])) {
            return Err(format!(
                "{text:?}: in a JSON pointer '~' is written ~0 and '/' is written ~1"
            ));
        }
        let (first, below) = match pointer.split_once('/') {
            Some((first, rest)) => (first, Some(format!("/{rest}"))),
            None => (pointer, None),
        };
        if first.is_empty() {
            return Err(format!(
                "{text:?}: a JSON pointer starts with a claim name, as in /kubernetes.io/namespace"
            ));
        }
        Ok(ClaimName {
            written: text.into(),
            top: first.replace("~1", "/").replace("~0", "~"),
            below,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The top-level claim holding the value.
    pub fn top(&self) -> &str {
        &self.top
    }

    /// The JSON pointer into the top-level claim's value, if nested.
    pub fn below(&self) -> Option<&str> {
        self.below.as_deref()
    }
}

/// A claim name equals the text it was written as.
impl PartialEq<str> for ClaimName {
    fn eq(&self, other: &str) -> bool {
        self.written == other
    }
}

impl PartialEq<&str> for ClaimName {
    fn eq(&self, other: &&str) -> bool {
        self.written == *other
    }
}

impl fmt::Display for ClaimName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
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

#[cfg(test)]
mod tests {
    use super::ClaimName;

    #[test]
    fn claim_names_and_json_pointers() {
        /// The top-level claim and the pointer below it, or part of the error.
        type Want = Result<(&'static str, Option<&'static str>), &'static str>;
        let cases: &[(&str, Want)] = &[
            ("sub", Ok(("sub", None))),
            ("kubernetes.io", Ok(("kubernetes.io", None))),
            ("/sub", Ok(("sub", None))),
            (
                "/kubernetes.io/namespace",
                Ok(("kubernetes.io", Some("/namespace"))),
            ),
            (
                "/kubernetes.io/serviceaccount/name",
                Ok(("kubernetes.io", Some("/serviceaccount/name"))),
            ),
            ("/groups/0", Ok(("groups", Some("/0")))),
            ("/a~1b/c~0d", Ok(("a/b", Some("/c~0d")))),
            ("/~01", Ok(("~1", None))),
            ("", Err("must not be empty")),
            ("/", Err("starts with a claim name")),
            ("//namespace", Err("starts with a claim name")),
            ("/a~2b", Err("~0")),
            ("/a/b~", Err("~0")),
        ];
        for (written, want) in cases {
            let got = ClaimName::parse(written);
            match (want, &got) {
                (Ok((top, below)), Ok(name)) => {
                    assert_eq!((name.top(), name.below()), (*top, *below), "{written}");
                    assert_eq!(name, written);
                }
                (Err(part), Err(message)) => {
                    assert!(message.contains(part), "{written}: {message}")
                }
                _ => panic!("{written}: got {got:?}, want {want:?}"),
            }
        }
    }
}
