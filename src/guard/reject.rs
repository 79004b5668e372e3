//! Why a token was rejected, in words safe to show the caller.

use crate::config::IssuerId;
use std::fmt;

/// Why a token was rejected. Messages are safe to show callers: they never echo
/// the token, only the offending claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("token exceeds {0} bytes")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {} is not allowed", Shown(.0))]
    AlgNotAllowed(String),
    #[error("token has no iss claim")]
    MissingIssuer,
    #[error("issuer {} is not trusted", Shown(.0))]
    UnknownIssuer(String),
    #[error("no key with kid {}", Shown(kid))]
    UnknownKid { issuer: IssuerId, kid: String },
    #[error("token has no kid and the issuer has no single key for its algorithm")]
    MissingKid,
    #[error("key {} cannot be used with this algorithm", Shown(.0))]
    KeyAlgMismatch(String),
    #[error("the issuer's keys are not available")]
    KeysUnavailable { issuer: IssuerId },
    #[error("signature does not verify")]
    BadSignature,
    #[error("typ {} is not {want:?}", Shown(found))]
    WrongType { found: String, want: String },
    #[error("token has no exp claim")]
    MissingExp,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("token issued in the future at {iat} (now {now})")]
    IssuedInFuture { iat: u64, now: u64 },
    #[error("token issued at {iat} is older than the allowed {max_age}s")]
    TooOld { iat: u64, max_age: u64 },
    #[error("audience does not match")]
    WrongAudience,
    #[error("claim {0} is not a valid {1}")]
    BadClaim(String, &'static str),
    #[error("crit header parameters are not supported")]
    CriticalHeader,
    /// The issuer's introspection endpoint answered `active: false`.
    #[error("token is not active")]
    Inactive,
    /// The introspection answer is for another kind of token (a refresh
    /// token): an endpoint may answer for any token it issued.
    #[error("the token is a {} token, not an access token", Shown(.0))]
    NotAccessToken(String),
    /// The token is bound to a key (`cnf`) and came without a proof of it.
    #[error("the token is bound to a key (cnf) and was presented as a plain bearer token")]
    Bound,
    /// The token's `cnf` names no binding tokengate can check.
    #[error("the token's cnf names no key binding tokengate checks (jkt, x5t#S256)")]
    UnknownBinding,
    /// The DPoP proof does not check out (RFC 9449 §4.3): which check failed.
    #[error("invalid DPoP proof: {0}")]
    BadProof(&'static str),
    /// The proof's `jti` was seen within the proof's window: a replay.
    #[error("invalid DPoP proof: it was used before (jti)")]
    ProofReplayed,
    /// The proof is by another key than the one the token is bound to.
    #[error("the DPoP proof's key is not the key the token is bound to (cnf.jkt)")]
    ProofKeyMismatch,
    /// The token is bound to no key where one must be: it came with the
    /// DPoP scheme, or the rule or issuer requires a binding it lacks.
    #[error("{0}")]
    NotBound(&'static str),
    /// Bound to a client certificate (`cnf.x5t#S256`) the connection did
    /// not present: the value says what it presented.
    #[error("the token is bound to a client certificate (cnf.x5t#S256) and {0}")]
    Certificate(&'static str),
    /// Nonces are required and the proof carries none this server issued
    /// lately: the value is a fresh one, sent back as `DPoP-Nonce`.
    #[error("the DPoP proof must carry a nonce this server issued (DPoP-Nonce)")]
    UseNonce(Box<str>),
    /// Every proof the replay cache holds is still live: another cannot be
    /// remembered, so it is not taken (503; the caller may retry).
    #[error("too many DPoP proofs within their window to remember another")]
    ReplayCacheFull,
    /// The issuer's introspection endpoint could not be asked, or gave no
    /// introspection answer: the token may be fine (503, like missing keys).
    #[error("the issuer's introspection endpoint is not available")]
    IntrospectionUnavailable { issuer: IssuerId },
}

impl Reject {
    /// Bounded label for `tokengate_auth_decisions_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TooLarge(_) => "token_too_large",
            Reject::Malformed(_) | Reject::CriticalHeader | Reject::BadClaim(..) => "malformed",
            Reject::AlgNotAllowed(_) => "alg_not_allowed",
            Reject::MissingIssuer | Reject::UnknownIssuer(_) => "unknown_issuer",
            Reject::UnknownKid { .. } | Reject::MissingKid => "unknown_kid",
            Reject::KeyAlgMismatch(_) => "key_alg_mismatch",
            Reject::KeysUnavailable { .. } => "keys_unavailable",
            Reject::BadSignature => "bad_signature",
            Reject::WrongType { .. } => "wrong_typ",
            Reject::MissingExp => "missing_exp",
            Reject::Expired { .. } => "expired",
            Reject::NotYetValid { .. } | Reject::IssuedInFuture { .. } => "not_yet_valid",
            Reject::TooOld { .. } => "too_old",
            Reject::WrongAudience => "wrong_audience",
            Reject::Inactive => "inactive",
            Reject::NotAccessToken(_) => "not_access_token",
            Reject::Bound | Reject::UnknownBinding => "bound_token",
            Reject::BadProof(_) => "invalid_dpop_proof",
            Reject::ProofReplayed => "dpop_replay",
            Reject::ProofKeyMismatch | Reject::Certificate(_) => "binding_mismatch",
            Reject::NotBound(_) => "unbound_token",
            Reject::ReplayCacheFull => "replay_cache_full",
            Reject::UseNonce(_) => "use_dpop_nonce",
            Reject::IntrospectionUnavailable { .. } => "introspection_unavailable",
        }
    }
}

/// Displays a value taken from a token (so: attacker-controlled) for logs and
/// error descriptions: quoted, printable ASCII only, at most 64 characters.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars().take(64) {
            let printable = c.is_ascii_graphic() || c == ' ';
            let c = if printable && c != '"' && c != '\\' {
                c
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        if self.0.chars().count() > 64 {
            f.write_str("…")?;
        }
        f.write_str("\"")
    }
}
