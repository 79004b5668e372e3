//! Every way a request can fail (`respond` turns each into its HTTP answer).

use crate::guard::bind::Scheme;
use crate::guard::reject::Reject;
use std::borrow::Cow;

/// Why the auth layer refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(#[from] Reject),
    /// A token presented with DPoP (or bound to a DPoP key) was refused:
    /// answered with a `DPoP` challenge.
    #[error("{0}")]
    Dpop(Reject),
    /// The value lists the scopes the route requires.
    #[error("the token lacks a required scope")]
    InsufficientScope(String),
    #[error("the token's issuer or claims are not allowed here")]
    Forbidden,
    #[error("no rule allows this request")]
    NoRule,
}

impl Denial {
    /// Bounded label for `tokengate_auth_decisions_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidToken(r) | Denial::Dpop(r) => r.reason(),
            Denial::InsufficientScope(_) => "insufficient_scope",
            Denial::Forbidden => "forbidden",
            Denial::NoRule => "no_rule",
        }
    }

    /// A token refused: with a `DPoP` challenge when it came with the DPoP
    /// scheme, or was DPoP-bound and came as a bearer token.
    pub fn of(reject: Reject, scheme: Scheme<'_>) -> Denial {
        match (scheme, &reject) {
            (Scheme::Dpop(_), _) | (Scheme::Bearer, Reject::Bound) => Denial::Dpop(reject),
            (Scheme::Bearer, _) => Denial::InvalidToken(reject),
        }
    }
}

/// Failures of the proxy itself (not of the caller's credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("tokengate is not ready yet")]
    NotReady,
    #[error("request headers are too large")]
    HeadersTooLarge,
    /// The request has no one meaning; the value says why (naming the
    /// headers at fault where there are some).
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    /// Nothing is served at this path; the value says where to ask.
    #[error("not found: ask at {0}")]
    NotFound(&'static str),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream failed: {0}")]
    UpstreamFailed(String),
    #[error("no outbound route for host {0:?}")]
    NoRoute(String),
    #[error("no valid token for {0:?}: the token server has not provided one")]
    TokenUnavailable(String),
}

/// Anything that ends a request before (or instead of) the upstream answering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}
