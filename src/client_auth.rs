//! Client authentication to an OAuth server (RFC 6749 §2.3, RFC 7523 §2.2):
//! what a token request and an introspection request add to their form and
//! headers to say who is asking. Shared by outbound token sources and
//! inbound introspection.

use crate::config::{AssertionKey, ClientAuth, OAuthClient};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::header::HeaderValue;
use hyper::Uri;
use serde_json::Value;

/// A form being built (`application/x-www-form-urlencoded`).
pub type Form = form_urlencoded::Serializer<'static, String>;

/// Adds `client`'s credentials for a request to `endpoint`: to the form
/// (`client_id`, `client_secret`, a signed `client_assertion`), or as the
/// returned `Authorization: Basic` value (marked sensitive).
pub fn authenticate(
    client: &OAuthClient,
    endpoint: &Uri,
    form: &mut Form,
    now: u64,
) -> Result<Option<HeaderValue>, String> {
    match &client.auth {
        ClientAuth::None => {
            form.append_pair("client_id", &client.id);
        }
        ClientAuth::SecretBasic(secret) => {
            // RFC 6749 §2.3.1: form-encode id and secret, then base64 "id:secret".
            let enc = |s: &[u8]| form_urlencoded::byte_serialize(s).collect::<String>();
            let pair = format!("{}:{}", enc(client.id.as_bytes()), enc(secret.expose()));
            let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                .map_err(|_| "client credentials are not header-safe".to_string())?;
            value.set_sensitive(true);
            return Ok(Some(value));
        }
        ClientAuth::SecretPost(secret) => {
            form.append_pair("client_id", &client.id);
            form.append_pair("client_secret", &String::from_utf8_lossy(secret.expose()));
        }
        ClientAuth::PrivateKeyJwt(key) => {
            // RFC 7523 §2.2: iss = sub = client_id, aud = the endpoint.
            let assertion = sign(
                key,
                assertion_claims(&client.id, &client.id, endpoint, now)?,
            )?;
            form.append_pair("client_id", &client.id);
            form.append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            );
            form.append_pair("client_assertion", &assertion);
        }
    }
    Ok(None)
}

/// Claims of an RFC 7523 assertion: unique `jti`, valid for 60 seconds.
pub fn assertion_claims(
    issuer: &str,
    subject: &str,
    audience: &Uri,
    now: u64,
) -> Result<Value, String> {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness for jti".to_string())?;
    Ok(serde_json::json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience.to_string(),
        "jti": URL_SAFE_NO_PAD.encode(jti),
        "iat": now,
        "exp": now + 60,
    }))
}

/// `claims`, signed with `key` (its `kid` in the header).
pub fn sign(key: &AssertionKey, claims: Value) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &key.key).map_err(|e| format!("cannot sign a JWT: {e}"))
}
