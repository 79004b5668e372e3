//! PURE: the token a request carries, as the guard reads it: `Bearer
//! <token>`, or `DPoP <token>` with its `DPoP` proof header (RFC 9449 §7.1).

pub use super::bind::Scheme;
use super::reject::Reject;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

/// The header carrying a DPoP proof.
pub static DPOP: HeaderName = HeaderName::from_static("dpop");

/// PURE: the token of a request, as the header's bytes (a cache hit needs
/// nothing more, see [`token_text`]), and how it was presented. `Ok(None)`
/// when there is no `Authorization` header or it uses another scheme;
/// several `Authorization` headers are malformed. A value an app could
/// read as a token is one, verified or refused, however its scheme is
/// spelled or separated: anything starting with `bearer` or `dpop` in any
/// case must go on with white space (space or tab) and a token, or it is
/// malformed (`Bearer:x`, `Bearer=x`, `Bearerx`). Otherwise permissive
/// mode, which lets a request without a token through, would carry a token
/// nobody verified to an app that reads it. A DPoP token needs exactly one
/// `DPoP` header.
pub fn presented_token(headers: &HeaderMap) -> Result<Option<(&[u8], Scheme<'_>)>, Reject> {
    let Some(value) = single(headers, &AUTHORIZATION)
        .map_err(|()| Reject::Malformed("more than one Authorization header"))?
    else {
        return Ok(None);
    };
    let value = value.as_bytes();
    let bearer = (
        "the Bearer scheme must be followed by white space",
        "empty bearer token",
    );
    let dpop = (
        "the DPoP scheme must be followed by white space",
        "empty DPoP token",
    );
    if let Some(token) = after_scheme(value, b"bearer", bearer)? {
        return Ok(Some((token, Scheme::Bearer)));
    }
    if let Some(token) = after_scheme(value, b"dpop", dpop)? {
        let proof = single(headers, &DPOP)
            .map_err(|()| Reject::BadProof("more than one DPoP header"))?
            .ok_or(Reject::BadProof("a DPoP token needs a DPoP proof header"))?;
        return Ok(Some((token, Scheme::Dpop(proof.as_bytes()))));
    }
    Ok(None)
}

/// PURE: the bearer token of a request: [`presented_token`]'s, when its
/// scheme is `Bearer`.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&[u8]>, Reject> {
    Ok(presented_token(headers)?
        .and_then(|(token, scheme)| (scheme == Scheme::Bearer).then_some(token)))
}

/// The one value of header `name`, if any; `Err` when there are several.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (Some(_), Some(_)) | (None, Some(_)) => Err(()),
    }
}

/// PURE: the token after `scheme` (lower case, matched in any case) in
/// `value`, if `value` starts with it: white space, then the token. `why`:
/// what is said of no white space, and of no token.
fn after_scheme<'v>(
    value: &'v [u8],
    scheme: &[u8],
    (unseparated, empty): (&'static str, &'static str),
) -> Result<Option<&'v [u8]>, Reject> {
    match value.get(..scheme.len()) {
        Some(found) if found.eq_ignore_ascii_case(scheme) => {}
        _ => return Ok(None),
    }
    let after_scheme = &value[scheme.len()..];
    let token = after_scheme.trim_ascii_start();
    if token.len() == after_scheme.len() && !token.is_empty() {
        return Err(Reject::Malformed(unseparated));
    }
    let token = token.trim_ascii_end();
    if token.is_empty() {
        return Err(Reject::Malformed(empty));
    }
    Ok(Some(token))
}

/// PURE: a token to verify as text: visible ASCII, as `HeaderValue::to_str`
/// requires. Checked only on a cache miss; the cache holds only tokens that
/// passed it.
pub fn token_text(token: &[u8]) -> Result<&str, Reject> {
    // No early exit, so the check vectorises: a valid token is read whole anyway.
    let visible = token.iter().fold(true, |all, &b| {
        all & (b == b'\t' || (b' '..=b'~').contains(&b))
    });
    match std::str::from_utf8(token) {
        Ok(text) if visible => Ok(text),
        _ => Err(Reject::Malformed("Authorization header is not ASCII")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn bearer_token_extraction() {
        type Case = (Vec<&'static str>, Result<Option<&'static [u8]>, Reject>);
        let cases: Vec<Case> = vec![
            (vec![], Ok(None)),
            (vec!["Bearer abc.def.ghi"], Ok(Some(b"abc.def.ghi"))),
            (vec!["bearer abc"], Ok(Some(b"abc"))),
            (vec!["BEARER   abc  "], Ok(Some(b"abc"))),
            (vec!["Bearer\tabc"], Ok(Some(b"abc"))),
            (vec!["bearer \t abc"], Ok(Some(b"abc"))),
            (vec!["Basic dXNlcjpwYXNz"], Ok(None)),
            (vec!["Token abc"], Ok(None)),
            (vec!["Beare abc"], Ok(None)),
            (
                vec!["Bearer:abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearer=abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["bearer,abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearerabc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (
                vec!["Bearer: abc"],
                Err(Reject::Malformed(
                    "the Bearer scheme must be followed by white space",
                )),
            ),
            (vec!["Bearer"], Err(Reject::Malformed("empty bearer token"))),
            (
                vec!["Bearer   "],
                Err(Reject::Malformed("empty bearer token")),
            ),
            (
                vec!["Bearer a", "Bearer b"],
                Err(Reject::Malformed("more than one Authorization header")),
            ),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in &values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(bearer_token(&h), want, "{values:?}");
        }
    }

    #[test]
    fn dpop_tokens_come_with_exactly_one_proof() {
        type Case = (
            &'static str,
            Vec<&'static str>,
            Result<Option<(&'static [u8], Scheme<'static>)>, Reject>,
        );
        let cases: Vec<Case> = vec![
            (
                "DPoP abc",
                vec!["p"],
                Ok(Some((b"abc", Scheme::Dpop(b"p")))),
            ),
            (
                "dpop \t abc ",
                vec!["p"],
                Ok(Some((b"abc", Scheme::Dpop(b"p")))),
            ),
            ("Bearer abc", vec!["p"], Ok(Some((b"abc", Scheme::Bearer)))),
            (
                "DPoP abc",
                vec![],
                Err(Reject::BadProof("a DPoP token needs a DPoP proof header")),
            ),
            (
                "DPoP abc",
                vec!["p", "q"],
                Err(Reject::BadProof("more than one DPoP header")),
            ),
            (
                "DPoP:abc",
                vec!["p"],
                Err(Reject::Malformed(
                    "the DPoP scheme must be followed by white space",
                )),
            ),
            (
                "DPoPabc",
                vec!["p"],
                Err(Reject::Malformed(
                    "the DPoP scheme must be followed by white space",
                )),
            ),
            (
                "DPoP ",
                vec!["p"],
                Err(Reject::Malformed("empty DPoP token")),
            ),
            ("DPo abc", vec!["p"], Ok(None)),
        ];
        for (authorization, proofs, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
            for p in &proofs {
                h.append(&DPOP, HeaderValue::from_str(p).unwrap());
            }
            assert_eq!(presented_token(&h), want, "{authorization:?} {proofs:?}");
        }
    }

    #[test]
    fn tokens_are_verified_only_as_visible_ascii() {
        let not_ascii = Err(Reject::Malformed("Authorization header is not ASCII"));
        let cases: [(&[u8], _); 4] = [
            (b"abc.def.ghi", Ok("abc.def.ghi")),
            (b"ab c\td", Ok("ab c\td")),
            (b"ab\xffc", not_ascii.clone()),
            ("ab\u{e9}c".as_bytes(), not_ascii.clone()),
        ];
        for (token, want) in cases {
            assert_eq!(token_text(token), want, "{token:?}");
        }
        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer ab\xffc").unwrap(),
        );
        let token = bearer_token(&h).unwrap().unwrap();
        assert_eq!(token_text(token), not_ascii);
    }
}
