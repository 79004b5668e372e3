//! OIDC discovery: the JWKS URL an issuer's discovery document names, once
//! it names the issuer it was fetched for.

use super::FetchError;
use hyper::Uri;

pub(super) fn jwks_uri_from_discovery(body: &[u8], issuer: &str) -> Result<Uri, FetchError> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Discovery = serde_json::from_slice(body)
        .map_err(|e| FetchError::Document(format!("bad discovery document: {e}")))?;
    // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
    if doc.issuer != issuer {
        return Err(FetchError::Document(format!(
            "discovery names issuer {:?}, expected {issuer:?}",
            doc.issuer
        )));
    }
    doc.jwks_uri
        .parse()
        .map_err(|_| FetchError::Document("discovery jwks_uri is not a URL".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_same_issuer() {
        let doc = br#"{"issuer":"https://idp","jwks_uri":"https://idp/jwks"}"#;
        assert_eq!(
            jwks_uri_from_discovery(doc, "https://idp").unwrap(),
            "https://idp/jwks"
        );
        assert!(jwks_uri_from_discovery(doc, "https://other").is_err());
        assert!(jwks_uri_from_discovery(b"{}", "https://idp").is_err());
    }
}
