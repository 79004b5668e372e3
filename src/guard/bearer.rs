//! PURE: the bearer token a request carries, as the guard reads it.

use super::reject::Reject;
use hyper::header::{HeaderMap, AUTHORIZATION};

/// PURE: the bearer token of a request, as the header's bytes: a cache hit
/// needs nothing more (see [`token_text`]). `Ok(None)` when there is no
/// `Authorization` header or it uses another scheme; several `Authorization`
/// headers are malformed. A value an app could read as a bearer token is one,
/// verified or refused, however its scheme is spelled or separated: anything
/// starting with `bearer` in any case must go on with white space (space or
/// tab) and a token, or it is malformed (`Bearer:x`, `Bearer=x`, `Bearerx`).
/// Otherwise permissive mode, which lets a request without a token through,
/// would carry a token nobody verified to an app that reads it.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&[u8]>, Reject> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reject::Malformed("more than one Authorization header"));
    }
    let value = value.as_bytes();
    match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer") => {}
        _ => return Ok(None),
    }
    let after_scheme = &value[6..];
    let token = after_scheme.trim_ascii_start();
    if token.len() == after_scheme.len() && !token.is_empty() {
        return Err(Reject::Malformed(
            "the Bearer scheme must be followed by white space",
        ));
    }
    let token = token.trim_ascii_end();
    if token.is_empty() {
        return Err(Reject::Malformed("empty bearer token"));
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
