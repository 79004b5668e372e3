//! A JWT's header and claims read WITHOUT verification: for display (`tokengate
//! token`), scheduling (an outbound token's `exp`) and the dev issuer, never
//! for a decision. The guard's own reading is `guard::verify`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// The JSON header and claims of `token`, if it is a JWT; unverified.
pub fn header_and_claims(token: &str) -> Option<(Value, Value)> {
    let mut parts = token.split('.');
    let header = decode(parts.next()?)?;
    let claims = decode(parts.next()?)?;
    Some((header, claims))
}

/// The JSON claims of `token`, if it is a JWT; unverified.
pub fn claims(token: &str) -> Option<Value> {
    decode(token.split('.').nth(1)?)
}

fn decode(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jwt_and_nothing_else() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjo1fQ.c2ln";
        let (header, claims) = header_and_claims(jwt).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["exp"], 5);
        assert_eq!(super::claims(jwt).unwrap()["sub"], "a");
        for opaque in ["", "opaque-token", "a.b.c", "eyJhbGciOiJSUzI1NiJ9"] {
            assert!(header_and_claims(opaque).is_none(), "{opaque}");
        }
    }
}
