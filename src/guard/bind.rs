//! PURE: sender-constrained tokens. A token may be bound to a key its
//! presenter must prove it holds (`cnf`, RFC 7800): a DPoP key (`cnf.jkt`,
//! RFC 9449) or a TLS client certificate (`cnf.x5t#S256`, RFC 8705).
//! [`Confirmation`] is what a verified token says of its binding;
//! [`check`] is the binding phase: the token's binding against how it was
//! presented, on every request (a cached verification never carries a
//! proof: proofs are per request).

use super::dpop::Proven;
use super::reject::Reject;
use crate::config::RequireBinding;
use serde::Deserialize;
use std::borrow::Cow;

/// How the token was presented (`Authorization`'s scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    Bearer,
    /// `DPoP <token>`, with the `DPoP` header's proof.
    Dpop(&'a [u8]),
}

/// What a token's `cnf` binds it to; empty for a bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the DPoP key (`cnf.jkt`).
    pub jkt: Option<Box<str>>,
    /// The base64url SHA-256 of the client certificate's DER (`cnf.x5t#S256`).
    pub x5t: Option<Box<str>>,
}

#[derive(Deserialize)]
struct Cnf<'a> {
    #[serde(borrow, default)]
    jkt: Option<Cow<'a, str>>,
    #[serde(rename = "x5t#S256", borrow, default)]
    x5t: Option<Cow<'a, str>>,
}

impl Confirmation {
    /// PURE: a token's `cnf` (raw JSON), read. A `cnf` naming no binding
    /// tokengate can check (a `jwk`, a `kid`) is refused: the token is
    /// bound, and its proof could not be checked.
    pub fn parse(cnf: Option<&str>) -> Result<Confirmation, Reject> {
        let Some(raw) = cnf else {
            return Ok(Confirmation::default());
        };
        let cnf: Cnf<'_> = serde_json::from_str(raw)
            .map_err(|_| Reject::BadClaim("cnf".into(), "object of strings"))?;
        if cnf.jkt.is_none() && cnf.x5t.is_none() {
            return Err(Reject::UnknownBinding);
        }
        Ok(Confirmation {
            jkt: cnf.jkt.map(Into::into),
            x5t: cnf.x5t.map(Into::into),
        })
    }

    pub fn is_bound(&self) -> bool {
        self.jkt.is_some() || self.x5t.is_some()
    }

    fn meets(&self, required: RequireBinding) -> bool {
        match required {
            RequireBinding::Dpop => self.jkt.is_some(),
            RequireBinding::Mtls => self.x5t.is_some(),
            RequireBinding::Any => self.is_bound(),
        }
    }
}

/// PURE: the binding phase. `scheme` is how the token came; `proof`, the
/// DPoP proof that checked out (present exactly when the scheme is DPoP);
/// `certificate`, the x5t#S256 of the connection's client certificate;
/// `required`, the issuer's and the rule's `require_binding`.
pub fn check(
    cnf: &Confirmation,
    scheme: Scheme<'_>,
    proof: Option<&Proven>,
    certificate: Option<&str>,
    required: [Option<RequireBinding>; 2],
) -> Result<(), Reject> {
    match (scheme, &cnf.jkt, proof) {
        (Scheme::Dpop(_), Some(jkt), Some(proof)) if **jkt == *proof.jkt => {}
        (Scheme::Dpop(_), Some(_), Some(_)) => return Err(Reject::ProofKeyMismatch),
        (Scheme::Dpop(_), None, _) => {
            return Err(Reject::NotBound(
                "a token presented with DPoP must be bound to the proof's key (cnf.jkt)",
            ))
        }
        (Scheme::Dpop(_), Some(_), None) => return Err(Reject::BadProof("no proof was checked")),
        // No downgrade: a DPoP-bound token is no bearer token.
        (Scheme::Bearer, Some(_), _) => return Err(Reject::Bound),
        (Scheme::Bearer, None, _) => {}
    }
    if let Some(x5t) = &cnf.x5t {
        match certificate {
            Some(presented) if presented == &**x5t => {}
            Some(_) => return Err(Reject::Certificate("the connection presented another")),
            None => return Err(Reject::Certificate("the connection presented none")),
        }
    }
    for required in required.into_iter().flatten() {
        if !cnf.meets(required) {
            return Err(Reject::NotBound(match required {
                RequireBinding::Dpop => {
                    "this route takes only DPoP-bound tokens (require_binding: dpop)"
                }
                RequireBinding::Mtls => {
                    "this route takes only certificate-bound tokens (require_binding: mtls)"
                }
                RequireBinding::Any => {
                    "this route takes only sender-constrained tokens (require_binding: any)"
                }
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnf(jkt: Option<&str>, x5t: Option<&str>) -> Confirmation {
        Confirmation {
            jkt: jkt.map(Into::into),
            x5t: x5t.map(Into::into),
        }
    }

    fn proven(jkt: &str) -> Proven {
        Proven {
            jkt: jkt.into(),
            jti: "j".into(),
            iat: 0,
            nonce: None,
        }
    }

    #[test]
    fn cnf_is_read_and_unknown_bindings_refused() {
        let cases: Vec<(Option<&str>, Result<Confirmation, Reject>)> = vec![
            (None, Ok(cnf(None, None))),
            (Some(r#"{"jkt":"k"}"#), Ok(cnf(Some("k"), None))),
            (Some(r#"{"x5t#S256":"c"}"#), Ok(cnf(None, Some("c")))),
            (
                Some(r#"{"jkt":"k","x5t#S256":"c"}"#),
                Ok(cnf(Some("k"), Some("c"))),
            ),
            (Some(r#"{"jkt":"k","kid":"x"}"#), Ok(cnf(Some("k"), None))),
            (Some(r#"{"jwk":{"kty":"EC"}}"#), Err(Reject::UnknownBinding)),
            (Some(r#"{}"#), Err(Reject::UnknownBinding)),
            (
                Some(r#""k""#),
                Err(Reject::BadClaim("cnf".into(), "object of strings")),
            ),
            (
                Some(r#"{"jkt":1}"#),
                Err(Reject::BadClaim("cnf".into(), "object of strings")),
            ),
            (
                Some(r#"{"jkt":"a","jkt":"b"}"#),
                Err(Reject::BadClaim("cnf".into(), "object of strings")),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(Confirmation::parse(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn the_binding_phase_as_a_table() {
        use RequireBinding::{Any, Dpop, Mtls};
        let dpop = Scheme::Dpop(b"proof");
        let bearer = Scheme::Bearer;
        let (k, other) = (proven("k"), proven("other"));
        let none = [None, None];
        type Case<'a> = (
            Confirmation,
            Scheme<'a>,
            Option<&'a Proven>,
            Option<&'a str>,
            [Option<RequireBinding>; 2],
            Result<(), &'static str>,
        );
        let cases: Vec<Case> = vec![
            // Bearer tokens, presented as such.
            (cnf(None, None), bearer, None, None, none, Ok(())),
            (cnf(None, None), bearer, None, Some("c"), none, Ok(())),
            // DPoP: the proof's key must be the bound one.
            (cnf(Some("k"), None), dpop, Some(&k), None, none, Ok(())),
            (
                cnf(Some("k"), None),
                dpop,
                Some(&other),
                None,
                none,
                Err("binding_mismatch"),
            ),
            (
                cnf(None, None),
                dpop,
                Some(&k),
                None,
                none,
                Err("unbound_token"),
            ),
            (
                cnf(Some("k"), None),
                dpop,
                None,
                None,
                none,
                Err("invalid_dpop_proof"),
            ),
            // No downgrade: a DPoP-bound token as a bearer token.
            (
                cnf(Some("k"), None),
                bearer,
                None,
                None,
                none,
                Err("bound_token"),
            ),
            // Certificate-bound: the connection's certificate must be the bound one.
            (cnf(None, Some("c")), bearer, None, Some("c"), none, Ok(())),
            (
                cnf(None, Some("c")),
                bearer,
                None,
                Some("d"),
                none,
                Err("binding_mismatch"),
            ),
            (
                cnf(None, Some("c")),
                bearer,
                None,
                None,
                none,
                Err("binding_mismatch"),
            ),
            // Both: both proofs.
            (
                cnf(Some("k"), Some("c")),
                dpop,
                Some(&k),
                Some("c"),
                none,
                Ok(()),
            ),
            (
                cnf(Some("k"), Some("c")),
                dpop,
                Some(&k),
                None,
                none,
                Err("binding_mismatch"),
            ),
            // Required bindings, the issuer's or the rule's.
            (
                cnf(None, None),
                bearer,
                None,
                None,
                [Some(Any), None],
                Err("unbound_token"),
            ),
            (
                cnf(None, None),
                bearer,
                None,
                None,
                [None, Some(Dpop)],
                Err("unbound_token"),
            ),
            (
                cnf(Some("k"), None),
                dpop,
                Some(&k),
                None,
                [Some(Dpop), Some(Any)],
                Ok(()),
            ),
            (
                cnf(Some("k"), None),
                dpop,
                Some(&k),
                None,
                [None, Some(Mtls)],
                Err("unbound_token"),
            ),
            (
                cnf(None, Some("c")),
                bearer,
                None,
                Some("c"),
                [Some(Mtls), Some(Any)],
                Ok(()),
            ),
            (
                cnf(None, Some("c")),
                bearer,
                None,
                Some("c"),
                [Some(Dpop), None],
                Err("unbound_token"),
            ),
        ];
        for (i, (c, scheme, proof, cert, required, want)) in cases.into_iter().enumerate() {
            let got = check(&c, scheme, proof, cert, required).map_err(|r| r.reason());
            assert_eq!(
                got, want,
                "case {i}: {c:?} {scheme:?} {proof:?} {cert:?} {required:?}"
            );
        }
    }
}
