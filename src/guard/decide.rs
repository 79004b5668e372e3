//! The inbound decision, shared by the proxy and `tokengate verify`: what the
//! guard does with a request. No I/O and no clock: verifying a token is the one
//! step handed back to the caller ([`Step::Verify`]), which the proxy runs
//! through its cache (refetching keys once for an unknown kid) and the CLI runs
//! check by check, printing each; both then call [`Pending::finish`].
//!
//! The phases, in order: ready → limits → shape (method spelling, one canonical
//! host, canonical path; hop-by-hop headers and every header a caller may not
//! send removed) → rule (every common reading agreeing) → credential (the
//! token and its scheme, or none) → verify (the caller's) → bind (the DPoP
//! proof, and the token's binding against how it came: [`Pending::bind`]) →
//! authorize (the rule's requirements) → mode (audit forwards what it would
//! refuse).

use super::bearer::{presented_token, Scheme};
use super::bind;
use super::dpop::{self, Proven, Window};
use super::policy::{
    any_method_agrees, canonical_path, find_rule, overrides_agree, representative_methods,
    Shortfall,
};
use super::reject::Reject;
use super::shape::{method_spelling, request_host, strip_caller_headers, Host};
use super::verify::{VerifiedToken, Verifier};
use crate::config::{Access, DpopConfig, GuardConfig, IssuerId, Mode, Requirements, RouteRule};
use crate::error::{Denial, Failure, ProxyError};
use crate::headers::{header_bytes, strip_hop_by_hop, Hop};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use std::sync::Arc;

/// The decision rules, compiled once from the config.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<RouteRule>,
    mode: Mode,
    /// Identity headers, removed from every incoming request (with the other
    /// headers a caller may not send, [`strip_caller_headers`]).
    identity_headers: Vec<HeaderName>,
    /// `forward.override_headers: keep`: method and path override headers go on,
    /// and the rules must agree on every reading they give a request.
    keep_override_headers: bool,
    max_header_bytes: usize,
    /// Each method the rules name, and one they do not ([`MethodUnnamed`]).
    methods: Vec<Method>,
    dpop: DpopConfig,
}

/// What the guard knows of the caller's connection, beside the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connection<'a> {
    /// The caller reached tokengate over TLS: a DPoP proof's `htu` is `https`.
    pub https: bool,
    /// The base64url SHA-256 of the client certificate's DER, when the
    /// caller presented one (`cnf.x5t#S256` is compared with it).
    pub certificate: Option<&'a str>,
}

/// Marks a request whose method nobody named: the authz listener's reading of
/// a subrequest that names none (nginx and Traefik send theirs as GET). Such a
/// request is decided as GET, and only if every method would be decided alike.
#[derive(Debug, Clone, Copy)]
pub struct MethodUnnamed;

/// Why a request was allowed: the `reason` label of its `allow` decision.
#[derive(Debug, Clone)]
pub enum Allowed {
    /// The rule asks for no token.
    Anonymous,
    /// A token passed verification and the rule's requirements.
    ValidToken(Arc<VerifiedToken>),
    /// Permissive mode, and the request carries no token.
    NoTokenPermissive,
}

impl Allowed {
    /// Every label, in the order of [`Allowed::index`].
    pub const LABELS: [&'static str; 3] = ["anonymous", "valid_token", "no_token_permissive"];

    pub fn index(&self) -> usize {
        match self {
            Allowed::Anonymous => 0,
            Allowed::ValidToken(_) => 1,
            Allowed::NoTokenPermissive => 2,
        }
    }

    /// The verified identity to forward, if any.
    pub fn identity(&self) -> Option<&VerifiedToken> {
        match self {
            Allowed::ValidToken(token) => Some(token),
            Allowed::Anonymous | Allowed::NoTokenPermissive => None,
        }
    }
}

/// What the guard does with a request.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it (with the verified identity, if there is one).
    Allow(Allowed),
    /// Audit mode: it would have been denied; forwarded without identity.
    Audit(Denial),
    /// Refuse it: the auth decision said no.
    Deny(Denial),
    /// Refuse it before any rule: not ready, too large, or no one meaning.
    Refuse(ProxyError),
}

impl Verdict {
    /// Why: the `allow` reason, or the denial's (a refusal's own label is the
    /// answer's `error`, which the access log takes from the failure).
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Allow(allowed) => Allowed::LABELS[allowed.index()],
            Verdict::Audit(denial) | Verdict::Deny(denial) => denial.reason(),
            Verdict::Refuse(_) => "-",
        }
    }

    /// The failure the caller is answered with, or `None` when forwarded.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Verdict::Allow(_) | Verdict::Audit(_) => None,
            Verdict::Deny(denial) => Some(denial.clone().into()),
            Verdict::Refuse(e) => Some(e.clone().into()),
        }
    }
}

/// A decided request: the verdict, the rule that took it, and what the
/// forward phase needs from the shape phase.
#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    /// Index of the rule that took the request, if one did.
    pub rule: Option<usize>,
    /// What the app will read as Host: the host the rules matched, in its one
    /// spelling (`None`: the caller named none, so the upstream's own).
    pub host: Option<HeaderValue>,
    /// What the caller's hop-by-hop headers asked for (an `Upgrade`, trailers);
    /// they are removed from the request.
    pub hop: Hop,
}

/// The decision so far: final, or waiting on a token's verification.
#[derive(Debug)]
pub enum Step<'a> {
    Done(Decision),
    Verify(Pending<'a>),
}

/// A decision that needs `token` verified; [`Pending::bind`] then checks
/// how it was presented, and [`Pending::finish`] completes it.
#[derive(Debug)]
pub struct Pending<'a> {
    /// The token, as the header's bytes.
    pub token: &'a [u8],
    /// How it came: `Bearer`, or `DPoP` with its proof.
    pub scheme: Scheme<'a>,
    requirements: &'a Requirements,
    mode: Mode,
    decision: Decision,
    /// What a DPoP proof must describe.
    method: &'a Method,
    path: &'a str,
    connection: Connection<'a>,
    dpop: &'a DpopConfig,
}

impl Pending<'_> {
    /// Index of the rule that asks for the token.
    pub fn rule(&self) -> Option<usize> {
        self.decision.rule
    }

    /// The issuer whose introspection endpoint judges this token, if one
    /// does ([`Verifier::introspector`]), among the issuers the rule accepts.
    pub fn introspector(&self, verifier: &Verifier) -> Option<IssuerId> {
        let accepted = self.requirements.issuers.as_deref();
        verifier.introspector(self.token, self.requirements.introspect, accepted)
    }

    /// The proof window, as [`dpop::check`] takes it.
    pub fn window(&self) -> Window {
        Window {
            max_age: self.dpop.max_age.as_secs(),
            leeway: self.dpop.leeway.as_secs(),
        }
    }

    /// Phase bind (PURE, at unix time `now`): a DPoP token's proof checked
    /// against this request, and the verified token's binding against how
    /// it came and what the issuer and rule require. Per request, cached
    /// verification or not. The proof that checked out is returned for the
    /// replay cache, which takes each once.
    pub fn bind(&self, token: &VerifiedToken, now: u64) -> Result<Option<Proven>, Reject> {
        let proof = match self.scheme {
            Scheme::Bearer => None,
            Scheme::Dpop(proof) => {
                let (scheme, authority) = match &self.dpop.origin {
                    Some((scheme, authority)) => (scheme.as_str(), authority.as_str()),
                    None => (
                        if self.connection.https {
                            "https"
                        } else {
                            "http"
                        },
                        self.decision
                            .host
                            .as_ref()
                            .and_then(|h| h.to_str().ok())
                            .ok_or(Reject::BadProof("the request names no host for htu"))?,
                    ),
                };
                let expected = dpop::Expected {
                    method: self.method.as_str(),
                    scheme,
                    authority,
                    path: self.path,
                    token: self.token,
                };
                Some(dpop::check(proof, &expected, self.window(), now)?)
            }
        };
        let required = [token.requires, self.requirements.binding];
        bind::check(
            &token.confirmation,
            self.scheme,
            proof.as_ref(),
            self.connection.certificate,
            required,
        )?;
        Ok(proof)
    }

    /// The decision, given the token's verification (and binding).
    pub fn finish(self, verified: Result<Arc<VerifiedToken>, Reject>) -> Decision {
        let scheme = self.scheme;
        let result = verified
            .map_err(|reject| Denial::of(reject, scheme))
            .and_then(|token| authorize(self.requirements, token));
        Decision {
            verdict: in_mode(self.mode, result),
            ..self.decision
        }
    }
}

impl Policy {
    pub fn new(config: &GuardConfig) -> Policy {
        Policy {
            rules: config.rules.clone(),
            mode: config.mode,
            identity_headers: config
                .forward
                .claims_to_headers
                .iter()
                .map(|(_, h)| h.clone())
                .collect(),
            keep_override_headers: config.forward.keep_override_headers,
            max_header_bytes: config.limits.max_header_bytes,
            methods: representative_methods(&config.rules),
            dpop: config.dpop.clone(),
        }
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Decides `req`, which came over `connection`, up to the token's
    /// verification. `ready`: keys have loaded (until then nothing is
    /// served). Removes from `req` the hop-by-hop headers and those a caller
    /// may not send, so what is forwarded is what was decided on.
    pub fn decide<'a, B>(
        &'a self,
        req: &'a mut Request<B>,
        connection: Connection<'a>,
        ready: bool,
    ) -> Step<'a> {
        let refuse = |e| Step::Done(Decision::refused(e));
        if !ready {
            return refuse(ProxyError::NotReady);
        }
        if header_bytes(req.headers()) > self.max_header_bytes {
            return refuse(ProxyError::HeadersTooLarge);
        }
        let host = match shape(req) {
            Ok(host) => host,
            Err(why) => return refuse(ProxyError::BadRequest(why.into())),
        };
        // Hop-by-hop first: nothing added later can then be named away by `Connection`.
        let hop = strip_hop_by_hop(req.headers_mut());
        strip_caller_headers(
            req.headers_mut(),
            &self.identity_headers,
            self.keep_override_headers,
        );
        let req: &'a Request<B> = req;
        let host_name = host.as_ref().map_or(&b""[..], Host::name);
        let found = match self.route(req, host_name) {
            Ok(found) => found,
            Err(why) => return refuse(ProxyError::BadRequest(why.into())),
        };
        let decision = Decision {
            verdict: Verdict::Deny(Denial::NoRule),
            rule: found.map(|(i, _)| i),
            host: host.map(Host::into_value),
            hop,
        };
        let access = match found {
            Some((_, rule)) => &rule.access,
            None => return Step::Done(decision.in_mode(self.mode, Err(Denial::NoRule))),
        };
        match credential(access, self.mode, req) {
            Credential::Decided(result) => Step::Done(decision.in_mode(self.mode, result)),
            Credential::Token(token, scheme, requirements) => Step::Verify(Pending {
                token,
                scheme,
                requirements,
                mode: self.mode,
                decision,
                method: req.method(),
                path: req.uri().path(),
                connection,
                dpop: &self.dpop,
            }),
        }
    }

    /// Phase rule: the rule that takes the request, or why its readings disagree.
    fn route<'a, B>(
        &'a self,
        req: &Request<B>,
        host: &[u8],
    ) -> Result<Option<(usize, &'a RouteRule)>, &'static str> {
        let (method, path) = (req.method(), req.uri().path());
        let found = find_rule(&self.rules, method, host, path)?;
        let own = found.map(|(i, _)| i);
        if req.extensions().get::<MethodUnnamed>().is_some() {
            any_method_agrees(&self.rules, &self.methods, own, host, path)?;
        }
        if self.keep_override_headers {
            overrides_agree(&self.rules, (method, host, path), own, req.headers())?;
        }
        Ok(found)
    }
}

impl Decision {
    /// Refused before any rule: not ready, too large, or no one meaning.
    pub fn refused(e: ProxyError) -> Decision {
        Decision {
            verdict: Verdict::Refuse(e),
            rule: None,
            host: None,
            hop: Hop::default(),
        }
    }

    fn in_mode(self, mode: Mode, result: Result<Allowed, Denial>) -> Decision {
        Decision {
            verdict: in_mode(mode, result),
            ..self
        }
    }
}

/// PURE: the request's shape, or why it has no one meaning (a 400): the
/// method's spelling, its one canonical host, and its path.
fn shape<B>(req: &Request<B>) -> Result<Option<Host>, &'static str> {
    method_spelling(req.method())?;
    let host = request_host(req.version(), req.uri(), req.headers())?;
    canonical_path(req.uri().path())?;
    Ok(host)
}

/// What the credential phase found.
enum Credential<'a> {
    /// Decided without verifying anything.
    Decided(Result<Allowed, Denial>),
    /// This token, presented so, must be verified and meet these requirements.
    Token(&'a [u8], Scheme<'a>, &'a Requirements),
}

/// PURE: what a rule's `access` asks of the request's credential.
fn credential<'a, B>(access: &'a Access, mode: Mode, req: &'a Request<B>) -> Credential<'a> {
    let Access::Token(requirements) = access else {
        return Credential::Decided(Ok(Allowed::Anonymous));
    };
    match presented_token(req.headers()) {
        Ok(Some((token, scheme))) => Credential::Token(token, scheme, requirements),
        Ok(None) if mode == Mode::Permissive => Credential::Decided(Ok(Allowed::NoTokenPermissive)),
        Ok(None) => Credential::Decided(Err(Denial::MissingToken)),
        // A proof missing or doubled: a DPoP request, answered as one.
        Err(bad @ Reject::BadProof(_)) => Credential::Decided(Err(Denial::Dpop(bad))),
        Err(malformed) => Credential::Decided(Err(malformed.into())),
    }
}

/// PURE: a verified token against the rule's requirements.
fn authorize(requirements: &Requirements, token: Arc<VerifiedToken>) -> Result<Allowed, Denial> {
    match requirements.check(&token) {
        Ok(()) => Ok(Allowed::ValidToken(token)),
        Err(Shortfall::Scope(scopes)) => Err(Denial::InsufficientScope(scopes)),
        Err(Shortfall::Issuer | Shortfall::Claim(_)) => Err(Denial::Forbidden),
    }
}

/// PURE: the verdict under `mode`: audit forwards what it would deny.
fn in_mode(mode: Mode, result: Result<Allowed, Denial>) -> Verdict {
    match result {
        Ok(allowed) => Verdict::Allow(allowed),
        Err(denial) if mode == Mode::Audit => Verdict::Audit(denial),
        Err(denial) => Verdict::Deny(denial),
    }
}

#[cfg(test)]
mod tests;
