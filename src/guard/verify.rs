//! PURE: `Verifier::verify(token, &KeySnapshot, now)`: the hot path. No I/O, no
//! locks, no `async`; keys are already parsed and every policy knob was compiled
//! from the config once. `verify_traced` runs the same code and reports each
//! check, which is how `tokengate verify` explains a decision.

use super::bind::Confirmation;
use super::claims::{header_value, parse, Claim, Claims, JsonStr};
use super::keys::{KeySnapshot, VerifyKey};
use super::reject::Reject;
use crate::config::{
    is_hmac, ClaimName, IssuerConfig, IssuerId, Matched, OpenPattern, RequireBinding,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

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
    pub issuer: IssuerId,
    pub exp: u64,
    /// First second this verification holds: the later of `nbf` and `iat`,
    /// less the leeway (0 without either). A cache hit after the clock has
    /// jumped back before it is no hit.
    pub valid_from: u64,
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
    /// The key or certificate it is bound to (`cnf`): checked against each
    /// request's proof, never cached with it.
    pub confirmation: Confirmation,
    /// The issuer's `require_binding`.
    pub requires: Option<RequireBinding>,
}

impl VerifiedToken {
    /// Still good at `now`: inside its validity window (whichever way the
    /// clock has moved since it was verified) and its key still published.
    pub fn is_current(&self, now: u64) -> bool {
        (self.valid_from..=self.valid_until).contains(&now)
            && self.key.as_ref().is_none_or(|k| !k.is_retired())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// About the bytes it holds, for caches that count them.
    pub fn approx_bytes(&self) -> usize {
        let scopes: usize = self.scopes.iter().map(|s| s.len() + 16).sum();
        let claims: usize = self
            .claims
            .iter()
            .map(|(n, v)| n.len() + v.to_string().len() + 64)
            .sum();
        let identity: usize = self
            .identity
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 64)
            .sum();
        std::mem::size_of::<Self>() + scopes + claims + identity
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
            issuer: IssuerId::new(issuer),
            exp: u64::MAX,
            valid_from: 0,
            valid_until: u64::MAX,
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
            identity: Box::new([]),
            key: None,
            confirmation: Confirmation::default(),
            requires: None,
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
    require_binding: Option<RequireBinding>,
}

/// Everything the verify path needs that does not change between key refreshes.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<IssuerPolicy>,
    /// Issuers by name: a `match` may allow thousands.
    by_name: HashMap<String, IssuerId>,
    /// Issuers a `match.regex` stands for, tried when no name is `iss`.
    patterns: Vec<(OpenPattern, IssuerId)>,
    /// Issuers whose introspection takes their JWTs too (`tokens: all`).
    introspects_jwts: Vec<IssuerId>,
    max_token_bytes: usize,
    identity: Vec<(ClaimName, HeaderName)>,
    rule_claims: Vec<ClaimName>,
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
        configs: &[IssuerConfig],
        max_token_bytes: usize,
        identity: Vec<(ClaimName, HeaderName)>,
        rule_claims: Vec<ClaimName>,
    ) -> Self {
        let issuers: Vec<IssuerPolicy> = configs
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
                require_binding: c.require_binding,
            })
            .collect();
        let (mut by_name, mut patterns) = (HashMap::new(), Vec::new());
        for (i, c) in configs.iter().enumerate() {
            match &c.matched {
                // Its name is the pattern, `{tenant}` and all: never an `iss`.
                Some(Matched::Open(open)) => patterns.push((open.clone(), IssuerId::new(i))),
                _ => {
                    by_name.insert(c.issuer.clone(), IssuerId::new(i));
                }
            }
        }
        let introspects_jwts = configs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.introspection.as_ref().is_some_and(|i| i.all_tokens))
            .map(|(i, _)| IssuerId::new(i))
            .collect();
        Verifier {
            issuers,
            by_name,
            patterns,
            introspects_jwts,
            max_token_bytes,
            identity,
            rule_claims,
        }
    }

    pub fn issuer_name(&self, id: IssuerId) -> &str {
        self.issuers
            .get(id.index())
            .map_or("", |i| i.issuer.as_str())
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
        self.check_size(token)?;
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
            format_args!(
                "{alg:?} is in the allow-list {}",
                Listed(&policy.algorithms, |a, f| write!(f, "{a:?}"))
            ),
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
        let window = policy.times(&claims, now, trace)?;
        policy.audience(&claims, trace)?;
        self.admit(idx, policy, &claims, window, key, trace)
    }

    /// The end of every verification: the scopes granted, the claims rules
    /// compare and the identity headers, read from `claims`; `window` is
    /// `(exp, valid_from, valid_until)`.
    fn admit(
        &self,
        issuer: IssuerId,
        policy: &IssuerPolicy,
        claims: &Claims<'_>,
        (exp, valid_from, valid_until): (u64, u64, u64),
        key: Option<Arc<VerifyKey>>,
        trace: &mut impl Trace,
    ) -> Result<VerifiedToken, Reject> {
        let scopes = claims.scopes(&policy.scope_claim)?;
        trace.pass("scopes", format_args!("{} granted", scopes.len()));
        let confirmation = Confirmation::parse(claims.raw("cnf").map(|c| c.get()))?;
        if let Some(jkt) = &confirmation.jkt {
            trace.pass("cnf", format_args!("bound to DPoP key {jkt}"));
        }
        if let Some(x5t) = &confirmation.x5t {
            trace.pass("cnf", format_args!("bound to client certificate {x5t}"));
        }
        Ok(VerifiedToken {
            issuer,
            exp,
            valid_from,
            valid_until,
            scopes,
            claims: self.rule_claims(claims),
            identity: self.identity(claims)?,
            key,
            confirmation,
            requires: policy.require_binding,
        })
    }

    /// Judges `answer`, an introspection answer (RFC 7662 §2.2) from issuer
    /// `id`'s endpoint, with the checks a JWT gets where the answer carries
    /// them: `active`, then `iss`, `exp`/`nbf`/`iat`, `aud`; then the scopes,
    /// the claims rules compare and the identity headers, read from it. An
    /// answer without `exp` holds until `no_exp` (the cache's `max_ttl`).
    /// The outer `Err` is an answer that is no introspection answer at all.
    pub fn verify_introspected(
        &self,
        id: IssuerId,
        answer: &[u8],
        now: u64,
        no_exp: u64,
        trace: &mut impl Trace,
    ) -> Result<Result<VerifiedToken, Reject>, &'static str> {
        let Ok(claims) = Claims::parse(answer) else {
            return Err("the answer is not a JSON object");
        };
        let Some(active) = claims.raw("active").and_then(parse::<bool>) else {
            return Err("the answer has no boolean \"active\"");
        };
        let Some(policy) = self.issuers.get(id.index()) else {
            return Err("no such issuer");
        };
        Ok(self.judge_active(id, policy, active, &claims, now, no_exp, trace))
    }

    /// The checks [`Verifier::verify_introspected`] runs on a well-formed answer.
    #[allow(clippy::too_many_arguments)]
    fn judge_active(
        &self,
        id: IssuerId,
        policy: &IssuerPolicy,
        active: bool,
        claims: &Claims<'_>,
        now: u64,
        no_exp: u64,
        trace: &mut impl Trace,
    ) -> Result<VerifiedToken, Reject> {
        if !active {
            return Err(Reject::Inactive);
        }
        trace.pass("active", format_args!("true"));
        // The hint asked about an access token, but an endpoint may answer
        // for any token it issued (RFC 7662 §2.1).
        for (member, access) in [
            ("token_use", &["access_token"][..]),
            ("token_type", &["bearer", "access_token", "dpop"][..]),
        ] {
            match claims.get(member) {
                None => {}
                Some(Claim::String(kind))
                    if access.iter().any(|a| kind.eq_ignore_ascii_case(a)) => {}
                Some(Claim::String(kind)) => return Err(Reject::NotAccessToken(kind.into_owned())),
                Some(_) => return Err(Reject::BadClaim(member.into(), "string")),
            }
        }

        match claims.get("iss") {
            None => {}
            Some(Claim::String(iss)) if iss == policy.issuer => {
                trace.pass("iss", format_args!("{iss}"));
            }
            Some(Claim::String(iss)) => return Err(Reject::UnknownIssuer(iss.into_owned())),
            Some(_) => return Err(Reject::BadClaim("iss".into(), "string")),
        }
        let exp = claims.numeric_date("exp")?.unwrap_or(no_exp);
        let window = policy.window(claims, exp, now, trace)?;
        if claims.raw("aud").is_some() {
            policy.audience(claims, trace)?;
        }
        let token = self.admit(id, policy, claims, window, None, trace)?;
        // A DPoP token must say which key it is bound to (its `cnf`, read
        // by `admit`): the binding phase checks each request's proof
        // against it.
        let dpop = matches!(claims.get("token_type"), Some(Claim::String(t)) if t.eq_ignore_ascii_case("dpop"));
        match dpop && token.confirmation.jkt.is_none() {
            true => Err(Reject::UnknownBinding),
            false => Ok(token),
        }
    }

    /// PURE: the issuer whose introspection endpoint judges `token`, if one
    /// does: an opaque token's is its rule's (`opaque`); a JWT's is the one
    /// its `iss` names when that issuer introspects all its tokens (`tokens:
    /// all`; the answer, not the signature, is then the verdict). Reads
    /// nothing of a JWT unless such an issuer is configured.
    /// `accepted`: the rule's issuers (`None`: any); a JWT of another issuer
    /// is verified (and refused by the rule), never sent to an endpoint.
    pub fn introspector(
        &self,
        token: &[u8],
        opaque: Option<IssuerId>,
        accepted: Option<&[IssuerId]>,
    ) -> Option<IssuerId> {
        if opaque.is_none() && self.introspects_jwts.is_empty() {
            return None;
        }
        if !is_jwt(token) {
            return opaque;
        }
        if self.introspects_jwts.is_empty() {
            return None;
        }
        let parts = Parts::split(std::str::from_utf8(token).ok()?).ok()?;
        let payload = decode_part(parts.payload, "").ok()?;
        let (id, _) = self.issuer(&Claims::parse(&payload).ok()?).ok()?;
        let introspects = self.introspects_jwts.contains(&id);
        (introspects && accepted.is_none_or(|a| a.contains(&id))).then_some(id)
    }

    /// `limits.max_token_bytes`, for a JWT or an opaque token.
    pub fn check_size(&self, token: &str) -> Result<(), Reject> {
        match token.len() > self.max_token_bytes {
            true => Err(Reject::TooLarge(self.max_token_bytes)),
            false => Ok(()),
        }
    }

    /// The token's issuer among the configured ones, by its `iss`.
    fn issuer(&self, claims: &Claims<'_>) -> Result<(IssuerId, &IssuerPolicy), Reject> {
        let iss = match claims.get("iss") {
            Some(Claim::String(s)) => s,
            None => return Err(Reject::MissingIssuer),
            Some(_) => return Err(Reject::BadClaim("iss".into(), "string")),
        };
        let pattern = || {
            let mut open = self.patterns.iter();
            open.find(|(p, _)| p.tenant(&iss).is_some())
                .map(|(_, id)| id)
        };
        self.by_name
            .get(iss.as_ref())
            .or_else(pattern)
            .and_then(|&id| Some((id, self.issuers.get(id.index())?)))
            .ok_or_else(|| Reject::UnknownIssuer(iss.to_string()))
    }

    /// `forward.claims_to_headers`, rendered as header values.
    fn identity(&self, claims: &Claims<'_>) -> Result<Box<[(HeaderName, HeaderValue)]>, Reject> {
        self.identity
            .iter()
            .filter_map(|(claim, header)| claims.resolve(claim).map(|v| (claim, header, v)))
            .map(|(claim, header, v)| {
                header_value(&v)
                    .map(|hv| (header.clone(), hv))
                    .ok_or_else(|| Reject::BadClaim(claim.to_string(), "header value"))
            })
            .collect()
    }

    /// The claims some rule compares, parsed.
    fn rule_claims(&self, claims: &Claims<'_>) -> Box<[(Box<str>, Value)]> {
        self.rule_claims
            .iter()
            .filter_map(|name| Some((name.as_str().into(), claims.resolve(name)?.parse()?)))
            .collect()
    }
}

/// PURE: whether `token` is read as a JWT (a compact JWS: three parts, two
/// dots); any other token is opaque, for an introspection endpoint to judge.
pub fn is_jwt(token: &[u8]) -> bool {
    let mut dots = memchr::memchr_iter(b'.', token);
    dots.next().is_some() && dots.next().is_some() && dots.next().is_none()
}

/// A list shown as `a, b` for the trace, `show` writing each item; formatted
/// only when a trace prints it.
struct Listed<'a, T>(&'a [T], fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result);

impl<T> fmt::Display for Listed<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            (self.1)(item, f)?;
        }
        Ok(())
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
        idx: IssuerId,
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
            .get(idx.index())
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
    /// returns `exp` and the first and last seconds the verification holds.
    fn times(
        &self,
        claims: &Claims<'_>,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<(u64, u64, u64), Reject> {
        let exp = claims.numeric_date("exp")?.ok_or(Reject::MissingExp)?;
        self.window(claims, exp, now, trace)
    }

    /// [`IssuerPolicy::times`] once `exp` is known.
    fn window(
        &self,
        claims: &Claims<'_>,
        exp: u64,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<(u64, u64, u64), Reject> {
        let leeway = self.leeway;
        if now > exp.saturating_add(leeway) {
            return Err(Reject::Expired { exp, now });
        }
        trace.pass(
            "exp",
            format_args!("{exp} is after now {now} (leeway {leeway}s)"),
        );
        let nbf = claims.numeric_date("nbf")?;
        if let Some(nbf) = nbf {
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
        let valid_from = nbf.max(iat).map_or(0, |t| t.saturating_sub(leeway));
        Ok((exp, valid_from, valid_until))
    }

    /// `aud`: a string, or a list with a member, that this issuer accepts.
    fn audience(&self, claims: &Claims<'_>, trace: &mut impl Trace) -> Result<(), Reject> {
        let wanted = |aud: &str| self.audiences.iter().any(|w| w == aud);
        let ok = match claims.get("aud") {
            Some(Claim::String(aud)) => wanted(&aud),
            // Members that are not strings match nothing.
            Some(Claim::List(list)) => list
                .iter()
                .any(|a| parse::<JsonStr>(a).is_some_and(|a| wanted(&a.0))),
            _ => false,
        };
        if !ok {
            return Err(Reject::WrongAudience);
        }
        trace.pass(
            "aud",
            format_args!(
                "intersects {}",
                Listed(&self.audiences, |a, f| f.write_str(a))
            ),
        );
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
