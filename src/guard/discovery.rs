//! OIDC discovery: an endpoint an issuer's discovery document names (its
//! `jwks_uri`, its `introspection_endpoint`), once it names the issuer it was
//! fetched for.

use hyper::Uri;

/// PURE: the URL `field` of discovery document `body`, fetched for `issuer`.
pub fn endpoint(body: &[u8], issuer: &str, field: &str) -> Result<Uri, String> {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("bad discovery document: {e}"))?;
    // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
    match doc.get("issuer").and_then(|i| i.as_str()) {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(format!(
                "discovery names issuer {named:?}, expected {issuer:?}"
            ))
        }
        None => return Err("bad discovery document: no issuer".into()),
    }
    let url = doc
        .get(field)
        .and_then(|u| u.as_str())
        .ok_or_else(|| format!("discovery names no {field}"))?;
    url.parse()
        .ok()
        .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")))
        .ok_or_else(|| format!("discovery {field} is not an http(s) URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_same_issuer_and_the_field() {
        let doc = br#"{"issuer":"https://idp","jwks_uri":"https://idp/jwks","introspection_endpoint":"ftp://x"}"#;
        assert_eq!(
            endpoint(doc, "https://idp", "jwks_uri").unwrap(),
            "https://idp/jwks"
        );
        let cases: [(&[u8], &str, &str, &str); 5] = [
            (
                doc,
                "https://other",
                "jwks_uri",
                "discovery names issuer \"https://idp\", expected \"https://other\"",
            ),
            (
                b"{}",
                "https://idp",
                "jwks_uri",
                "bad discovery document: no issuer",
            ),
            (
                doc,
                "https://idp",
                "revocation_endpoint",
                "discovery names no revocation_endpoint",
            ),
            (
                doc,
                "https://idp",
                "introspection_endpoint",
                "discovery introspection_endpoint is not an http(s) URL",
            ),
            (
                b"[",
                "https://idp",
                "jwks_uri",
                "bad discovery document: invalid type: sequence, expected a map at line 1 column 0",
            ),
        ];
        for (doc, issuer, field, want) in cases {
            assert_eq!(endpoint(doc, issuer, field).unwrap_err(), want);
        }
    }
}
