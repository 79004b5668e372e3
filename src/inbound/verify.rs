//! PURE: `Verifier::verify(token, &KeySnapshot, now)`: the hot path. No I/O, no
//! locks, no `async`; keys are already parsed and every policy knob was compiled
//! from the config once. `verify_traced` runs the same code and reports each
//! check, which is how `tokengate verify` explains a decision.

use super::keys::{KeySnapshot, VerifyKey};
use crate::config::{is_hmac, IssuerConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

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
    UnknownKid { issuer: usize, kid: String },
    #[error("token has no kid and the issuer has no single key for its algorithm")]
    MissingKid,
    #[error("key {} cannot be used with this algorithm", Shown(.0))]
    KeyAlgMismatch(String),
    #[error("the issuer's keys are not available")]
    KeysUnavailable { issuer: usize },
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

/// Receives each passed check; the hot path uses `()`, which compiles to nothing.
pub trait Trace {
    fn pass(&mut self, check: &'static str, detail: fmt::Arguments<'_>);
}

impl Trace for () {
    #[inline(always)]
    fn pass(&mut self, _: &'static str, _: fmt::Arguments<'_>) {}
}

/// A token that passed every issuer-level check, with what later requests need.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Index of the issuer in the config.
    pub issuer: usize,
    pub exp: u64,
    /// Last second (inclusive) this verification holds: `exp`, or `iat +
    /// max_token_age` when sooner, plus leeway. Cache hits are checked against it.
    pub valid_until: u64,
    scopes: Box<[Box<str>]>,
    /// Only the claims some rule compares.
    claims: Box<[(Box<str>, Value)]>,
    /// `forward.claims_to_headers`, ready to insert.
    pub identity: Box<[(HeaderName, HeaderValue)]>,
    /// The key that verified it; `None` for shared-secret tokens.
    key: Option<Arc<VerifyKey>>,
}

impl VerifiedToken {
    /// Still good at `now`: not expired and its key still published.
    pub fn is_current(&self, now: u64) -> bool {
        now <= self.valid_until && self.key.as_ref().is_none_or(|k| !k.is_retired())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    #[cfg(test)]
    pub fn for_tests(issuer: usize, scopes: &[&str], claims: &[(&str, Value)]) -> Self {
        VerifiedToken {
            issuer,
            exp: u64::MAX,
            valid_until: u64::MAX,
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
            identity: Box::new([]),
            key: None,
        }
    }
}

/// Issuer policy compiled for the hot path.
#[derive(Debug)]
struct IssuerPolicy {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    scope_claim: String,
    require_typ: Option<String>,
    max_age: Option<u64>,
    hmac: Option<Arc<VerifyKey>>,
}

/// Everything the verify path needs that does not change between key refreshes.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<IssuerPolicy>,
    max_token_bytes: usize,
    identity: Vec<(String, HeaderName)>,
    rule_claims: Vec<String>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl Verifier {
    pub fn new(
        issuers: &[IssuerConfig],
        max_token_bytes: usize,
        identity: Vec<(String, HeaderName)>,
        rule_claims: Vec<String>,
    ) -> Self {
        let issuers = issuers
            .iter()
            .map(|c| IssuerPolicy {
                issuer: c.issuer.clone(),
                audiences: c.audiences.clone(),
                algorithms: c.algorithms.clone(),
                leeway: c.leeway.as_secs(),
                scope_claim: c.scope_claim.clone(),
                require_typ: c.require_typ.clone(),
                max_age: c.max_token_age.map(|d| d.as_secs()),
                hmac: c
                    .shared_secret
                    .as_ref()
                    .map(|s| Arc::new(VerifyKey::hmac(s.expose(), &c.algorithms))),
            })
            .collect();
        Verifier {
            issuers,
            max_token_bytes,
            identity,
            rule_claims,
        }
    }

    pub fn issuer_name(&self, idx: usize) -> &str {
        self.issuers.get(idx).map_or("", |i| i.issuer.as_str())
    }

    /// Verifies `token` against the keys in `keys` at unix time `now`.
    #[inline]
    pub fn verify(
        &self,
        token: &str,
        keys: &KeySnapshot,
        now: u64,
    ) -> Result<VerifiedToken, Reject> {
        self.verify_traced(token, keys, now, &mut ())
    }

    /// `verify`, reporting every check that passed to `trace`: the checks in
    /// order, each a small function below.
    pub fn verify_traced(
        &self,
        token: &str,
        keys: &KeySnapshot,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<VerifiedToken, Reject> {
        if token.len() > self.max_token_bytes {
            return Err(Reject::TooLarge(self.max_token_bytes));
        }
        trace.pass(
            "size",
            format_args!("{} bytes (limit {})", token.len(), self.max_token_bytes),
        );
        let parts = Parts::split(token)?;
        let header_json = decode_part(parts.header, "header is not base64url")?;
        let header = Header::parse(&header_json)?;
        trace.pass(
            "header",
            format_args!(
                "alg={} kid={} typ={}",
                header.alg,
                header.kid.as_deref().unwrap_or("-"),
                header.typ.as_deref().unwrap_or("-")
            ),
        );
        let payload = decode_part(parts.payload, "payload is not base64url")?;
        let claims = Claims::parse(&payload)?;
        let (idx, policy) = self.issuer(&claims)?;
        trace.pass(
            "iss",
            format_args!("{} is a configured issuer", policy.issuer),
        );
        let alg = policy.algorithm(&header.alg)?;
        trace.pass(
            "alg",
            format_args!("{alg:?} is in the allow-list {:?}", policy.algorithms),
        );
        let key = policy.signature(&parts, &header, alg, keys, idx, now)?;
        trace.pass(
            "signature",
            format_args!(
                "verified with {}",
                header.kid.as_deref().unwrap_or(if key.is_none() {
                    "the shared secret"
                } else {
                    "a key without kid"
                })
            ),
        );
        if let Some(found) = policy.typ(&header)? {
            trace.pass("typ", format_args!("{found}"));
        }
        let (exp, valid_until) = policy.times(&claims, now, trace)?;
        policy.audience(&claims)?;
        trace.pass("aud", format_args!("intersects {:?}", policy.audiences));
        let scopes = claims.scopes(&policy.scope_claim)?;
        trace.pass("scopes", format_args!("{} granted", scopes.len()));
        Ok(VerifiedToken {
            issuer: idx,
            exp,
            valid_until,
            scopes,
            claims: self.rule_claims(&claims),
            identity: self.identity(&claims)?,
            key,
        })
    }

    /// The token's issuer among the configured ones, by its `iss`.
    fn issuer(&self, claims: &Claims<'_>) -> Result<(usize, &IssuerPolicy), Reject> {
        let iss = match claims.get("iss") {
            Some(Claim::String(s)) => s,
            None => return Err(Reject::MissingIssuer),
            Some(_) => return Err(Reject::BadClaim("iss".into(), "string")),
        };
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == *iss)
            .ok_or_else(|| Reject::UnknownIssuer(iss.to_string()))
    }

    /// `forward.claims_to_headers`, rendered as header values.
    fn identity(&self, claims: &Claims<'_>) -> Result<Box<[(HeaderName, HeaderValue)]>, Reject> {
        self.identity
            .iter()
            .filter_map(|(claim, header)| claims.raw(claim).map(|v| (claim, header, v)))
            .map(|(claim, header, v)| {
                header_value(v)
                    .map(|hv| (header.clone(), hv))
                    .ok_or_else(|| Reject::BadClaim(claim.clone(), "header value"))
            })
            .collect()
    }

    /// The claims some rule compares, parsed.
    fn rule_claims(&self, claims: &Claims<'_>) -> Box<[(Box<str>, Value)]> {
        self.rule_claims
            .iter()
            .filter_map(|name| Some((name.as_str().into(), parse::<Value>(claims.raw(name)?)?)))
            .collect()
    }
}

/// A compact JWS split at its dots, still encoded.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, Reject> {
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or(Reject::Malformed("expected three dot-separated parts"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(Reject::Malformed("expected three dot-separated parts"))?;
        if header.is_empty() || payload.is_empty() {
            return Err(Reject::Malformed("empty header or payload"));
        }
        Ok(Parts {
            header,
            payload,
            signature,
            signing_input,
        })
    }
}

fn decode_part(part: &str, why: &'static str) -> Result<Vec<u8>, Reject> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Reject::Malformed(why))
}

impl<'a> Header<'a> {
    fn parse(json: &'a [u8]) -> Result<Self, Reject> {
        let header: Header<'_> = serde_json::from_slice(json)
            .map_err(|_| Reject::Malformed("header is not a JSON object with alg"))?;
        if header.crit.is_some() {
            return Err(Reject::CriticalHeader);
        }
        Ok(header)
    }
}

impl IssuerPolicy {
    /// The header's `alg`, if this issuer allows it.
    fn algorithm(&self, alg: &str) -> Result<Algorithm, Reject> {
        Algorithm::from_str(alg)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| Reject::AlgNotAllowed(alg.to_string()))
    }

    /// Checks the signature; returns the key that verified it (`None`: the shared secret).
    fn signature(
        &self,
        parts: &Parts<'_>,
        header: &Header<'_>,
        alg: Algorithm,
        keys: &KeySnapshot,
        idx: usize,
        now: u64,
    ) -> Result<Option<Arc<VerifyKey>>, Reject> {
        let mut sig_buf = [0u8; 1024];
        let sig_len = URL_SAFE_NO_PAD
            .decode_slice(parts.signature, &mut sig_buf)
            .map_err(|_| Reject::Malformed("signature is not base64url"))?;
        let sig = &sig_buf[..sig_len];
        let message = parts.signing_input.as_bytes();
        if is_hmac(alg) {
            // The shared secret is the only HMAC key: a public key is never an HMAC secret.
            let key = self
                .hmac
                .as_ref()
                .ok_or_else(|| Reject::AlgNotAllowed(header.alg.to_string()))?;
            return match key.verify(alg, message, sig) {
                true => Ok(None),
                false => Err(Reject::BadSignature),
            };
        }
        let set = keys
            .issuers
            .get(idx)
            .filter(|set| set.is_usable(now))
            .ok_or(Reject::KeysUnavailable { issuer: idx })?;
        let key = match header.kid.as_deref() {
            Some(kid) => {
                let key = set.by_kid(kid).ok_or_else(|| Reject::UnknownKid {
                    issuer: idx,
                    kid: kid.to_string(),
                })?;
                if !key.supports(alg) {
                    return Err(Reject::KeyAlgMismatch(kid.to_string()));
                }
                key
            }
            // No kid: only unambiguous when exactly one key fits the alg
            // (one signature check, whatever the JWKS size).
            None => {
                let mut fitting = set.keys.iter().filter(|k| k.supports(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => key,
                    _ => return Err(Reject::MissingKid),
                }
            }
        };
        match key.verify(alg, message, sig) {
            true => Ok(Some(key.clone())),
            false => Err(Reject::BadSignature),
        }
    }

    /// `require_typ`: the header's `typ` (without `application/`), when one is required.
    fn typ<'h>(&self, header: &'h Header<'_>) -> Result<Option<&'h str>, Reject> {
        let Some(want) = &self.require_typ else {
            return Ok(None);
        };
        let found = header.typ.as_deref().unwrap_or("");
        let found_short = found.strip_prefix("application/").unwrap_or(found);
        if !found_short.eq_ignore_ascii_case(want) {
            return Err(Reject::WrongType {
                found: found.to_string(),
                want: want.clone(),
            });
        }
        Ok(Some(found))
    }

    /// `exp`, `nbf`, `iat` and `max_token_age` at `now`, within the leeway;
    /// returns `exp` and the last second the verification holds.
    fn times(
        &self,
        claims: &Claims<'_>,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<(u64, u64), Reject> {
        let leeway = self.leeway;
        let exp = claims.numeric_date("exp")?.ok_or(Reject::MissingExp)?;
        if now > exp.saturating_add(leeway) {
            return Err(Reject::Expired { exp, now });
        }
        trace.pass(
            "exp",
            format_args!("{exp} is after now {now} (leeway {leeway}s)"),
        );
        if let Some(nbf) = claims.numeric_date("nbf")? {
            if nbf > now.saturating_add(leeway) {
                return Err(Reject::NotYetValid { nbf, now });
            }
            trace.pass(
                "nbf",
                format_args!("{nbf} is not after now {now} (leeway {leeway}s)"),
            );
        }
        let iat = claims.numeric_date("iat")?;
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(Reject::IssuedInFuture { iat, now });
            }
            trace.pass("iat", format_args!("{iat}"));
        }
        let mut valid_until = exp.saturating_add(leeway);
        if let Some(max_age) = self.max_age {
            let iat = iat.ok_or(Reject::TooOld { iat: 0, max_age })?;
            valid_until = valid_until.min(iat.saturating_add(max_age).saturating_add(leeway));
            if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
                return Err(Reject::TooOld { iat, max_age });
            }
            trace.pass(
                "max_token_age",
                format_args!("issued {}s ago, limit {max_age}s", now.saturating_sub(iat)),
            );
        }
        Ok((exp, valid_until))
    }

    /// `aud`: a string, or a list with a member, that this issuer accepts.
    fn audience(&self, claims: &Claims<'_>) -> Result<(), Reject> {
        let wanted = |aud: &str| self.audiences.iter().any(|w| w == aud);
        let ok = match claims.get("aud") {
            Some(Claim::String(aud)) => wanted(&aud),
            // Members that are not strings match nothing.
            Some(Claim::List(list)) => list
                .iter()
                .any(|a| parse::<JsonStr>(a).is_some_and(|a| wanted(&a.0))),
            _ => false,
        };
        ok.then_some(()).ok_or(Reject::WrongAudience)
    }
}

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct JsonStr<'a>(#[serde(borrow)] Cow<'a, str>);

impl Borrow<str> for JsonStr<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `raw` parsed as a `T`, or `None` when it is not one.
fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// A claim value as the checks tell them apart: a string, a list (members
/// still raw), or anything else.
enum Claim<'a> {
    String(Cow<'a, str>),
    List(Vec<&'a RawValue>),
    Other,
}

/// The payload's claims, each value still raw JSON: a check parses only the
/// claim it reads, and strings borrow from the payload, so a token's claims cost
/// one allocation rather than one per name and value. Duplicate names keep the
/// last value, as RFC 7519 §4 allows.
struct Claims<'a>(BTreeMap<JsonStr<'a>, &'a RawValue>);

impl<'a> Claims<'a> {
    fn parse(payload: &'a [u8]) -> Result<Self, Reject> {
        serde_json::from_slice(payload)
            .map(Claims)
            .map_err(|_| Reject::Malformed("payload is not a JSON object"))
    }

    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied()
    }

    /// `name`'s value, `None` when absent.
    fn get(&self, name: &str) -> Option<Claim<'a>> {
        let raw = self.raw(name)?;
        Some(match raw.get().as_bytes().first() {
            Some(b'"') => parse::<JsonStr>(raw).map_or(Claim::Other, |s| Claim::String(s.0)),
            Some(b'[') => parse(raw).map_or(Claim::Other, Claim::List),
            _ => Claim::Other,
        })
    }

    /// NumericDate claim as whole seconds (fractions truncated); negative or
    /// non-numeric is malformed.
    fn numeric_date(&self, name: &'static str) -> Result<Option<u64>, Reject> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        parse::<serde_json::Number>(raw)
            .and_then(|n| {
                n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as u64)
                })
            })
            .map(Some)
            .ok_or_else(|| Reject::BadClaim(name.into(), "NumericDate"))
    }

    /// Scopes from a space-separated string (`scope`) or an array of strings
    /// (`scp`, `permissions`).
    fn scopes(&self, claim: &str) -> Result<Box<[Box<str>]>, Reject> {
        let bad = || Reject::BadClaim(claim.into(), "scope list");
        match self.get(claim) {
            None => Ok(Box::new([])),
            Some(Claim::String(s)) => Ok(s.split_ascii_whitespace().map(Into::into).collect()),
            Some(Claim::List(items)) => items
                .iter()
                .map(|v| parse::<JsonStr>(v).map(|s| s.0.into()).ok_or_else(bad))
                .collect(),
            Some(Claim::Other) => Err(bad()),
        }
    }
}

/// Claim → header value: strings as-is, arrays joined with `,`, anything else compact JSON.
fn header_value(raw: &RawValue) -> Option<HeaderValue> {
    if let Some(s) = parse::<JsonStr>(raw) {
        return HeaderValue::from_str(&s.0).ok();
    }
    let text = match parse::<Value>(raw)? {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
pub(crate) mod tests;
