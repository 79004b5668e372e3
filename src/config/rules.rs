//! The guard's `rules`: their YAML shape, the validated rules (plain data,
//! built once from the config) and their validation. How a request is matched
//! against them is `guard::policy`'s job.

use super::issuers::{IssuerConfig, RequireBinding};
use super::Validator;
use crate::headers::canonical_host;
use hyper::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub path: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub allow: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub issuers: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
    /// `dpop | mtls | any`: only sender-constrained tokens pass.
    pub require_binding: Option<String>,
}

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
    /// The issuer whose introspection endpoint judges the rule's opaque
    /// tokens; `None`: opaque tokens are refused here.
    pub introspect: Option<IssuerId>,
    /// Only tokens bound to a key the caller proves pass (`require_binding`).
    pub binding: Option<RequireBinding>,
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

impl Validator<'_> {
    pub(super) fn rule(
        &mut self,
        path: &str,
        raw: RawRule,
        issuers: &[IssuerConfig],
    ) -> Option<RouteRule> {
        let prefix = self.text(&format!("{path}.path"), &raw.path)?;
        if !prefix.starts_with('/') {
            self.error(
                format!("{path}.path"),
                format!("must start with '/', got {prefix:?}"),
            );
        }
        let methods = raw.methods.as_deref().map(|ms| self.rule_methods(path, ms));
        let access = self.access(path, &raw, issuers)?;
        let host = raw.host.as_deref().and_then(|h| self.rule_host(path, h));
        Some(RouteRule::new(
            raw.name.unwrap_or_else(|| prefix.clone()),
            &prefix,
            methods,
            host,
            access,
        ))
    }

    fn rule_methods(&mut self, path: &str, methods: &[String]) -> Vec<Method> {
        methods
            .iter()
            .enumerate()
            .filter_map(
                |(i, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        self.error(
                            format!("{path}.methods[{i}]"),
                            format!("not an HTTP method: {m:?}"),
                        );
                        None
                    }
                },
            )
            .collect()
    }

    /// `allow`: anonymous, or a token meeting the rule's requirements.
    fn access(&mut self, path: &str, raw: &RawRule, issuers: &[IssuerConfig]) -> Option<Access> {
        let wants_token = raw.scopes.is_some()
            || raw.issuers.is_some()
            || raw.claims.is_some()
            || raw.require_binding.is_some();
        let anonymous = match raw.allow.as_deref() {
            None => false,
            Some(allow) => self.one_of(
                &format!("{path}.allow"),
                allow,
                &[("anonymous", true), ("authenticated", false)],
            )?,
        };
        match (anonymous, wants_token) {
            (true, true) => {
                self.error(
                    format!("{path}.allow"),
                    "an anonymous rule cannot also require scopes, issuers, claims or a binding",
                );
                None
            }
            (true, false) => Some(Access::Anonymous),
            (false, _) => Some(Access::Token(self.requirements(path, raw, issuers))),
        }
    }

    /// What a token must carry: scopes, one of the named issuers, claims.
    fn requirements(
        &mut self,
        path: &str,
        raw: &RawRule,
        issuers: &[IssuerConfig],
    ) -> Requirements {
        // A name is an issuer, or a `match` pattern: every issuer it matched.
        let issuer_idx = raw.issuers.as_ref().map(|names| {
            let mut ids = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let named = issuers
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.issuer == *n || c.pattern() == Some(n))
                    .map(|(idx, _)| IssuerId::new(idx));
                let before = ids.len();
                ids.extend(named);
                if ids.len() == before {
                    self.error(
                        format!("{path}.issuers[{i}]"),
                        format!("{n:?} is not a configured issuer"),
                    );
                }
            }
            ids
        });
        let claims = raw
            .claims
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, want)| match ClaimName::parse(&name) {
                Ok(name) => Some((name, want)),
                Err(e) => {
                    self.error(format!("{path}.claims"), e);
                    None
                }
            })
            .collect();
        let introspect = self.opaque_issuer(path, issuer_idx.as_deref(), issuers);
        let binding = self.require_binding(path, raw.require_binding.as_deref());
        Requirements {
            scopes: raw.scopes.clone().unwrap_or_default(),
            issuers: issuer_idx,
            claims,
            introspect,
            binding,
        }
    }

    /// The issuer a rule's opaque tokens are introspected by: an opaque token
    /// names no issuer, so at most one issuer the rule accepts may introspect
    /// (a token is never shown to two introspection endpoints).
    fn opaque_issuer(
        &mut self,
        path: &str,
        accepted: Option<&[IssuerId]>,
        issuers: &[IssuerConfig],
    ) -> Option<IssuerId> {
        let all: Vec<IssuerId> = (0..issuers.len()).map(IssuerId::new).collect();
        let introspecting: Vec<IssuerId> = accepted
            .unwrap_or(&all)
            .iter()
            .copied()
            .filter(|id| issuers[id.index()].introspection.is_some())
            .collect();
        match introspecting[..] {
            [] => None,
            [one] => Some(one),
            _ => {
                let names: Vec<&str> = introspecting
                    .iter()
                    .map(|id| issuers[id.index()].issuer.as_str())
                    .collect();
                self.error(
                    format!("{path}.issuers"),
                    format!(
                        "an opaque token names no issuer, and this rule accepts {} that introspect ({}): name the one its opaque tokens go to",
                        names.len(),
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// A rule's `host`: matched on the request's canonical host, so it must
    /// be one (a name without port).
    fn rule_host(&mut self, path: &str, host: &str) -> Option<String> {
        match canonical_host(host.as_bytes(), None) {
            Ok(Some(canonical)) if canonical.name().len() == canonical.value().len() => {
                Some(String::from_utf8_lossy(canonical.name()).into_owned())
            }
            _ => {
                self.error(
                    format!("{path}.host"),
                    format!("expected a host name without port, got {host:?}"),
                );
                None
            }
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
