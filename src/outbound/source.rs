//! Token sources: one fetch each. Scheduling, single flight and back-off live in
//! `token.rs`; parsing answers is pure and tested here.

use crate::config::{ClientAuth, ClientCredentials, TokenSource};
use crate::upstream::{full, HttpClient};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest token endpoint answer accepted.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A token as fetched, before it is formatted for injection.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    pub token: String,
    /// From `expires_in`, else the JWT's `exp`; `None` if neither says.
    pub lifetime: Option<Duration>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fetched({}, {:?})",
            crate::fingerprint(self.token.as_bytes()),
            self.lifetime
        )
    }
}

/// Why a fetch failed. Messages never contain secrets or tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    #[error("token endpoint did not answer in time")]
    Timeout,
    #[error("token endpoint refused ({status}): {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("bad token endpoint answer: {0}")]
    Invalid(String),
    #[error("cannot read the token file: {0}")]
    File(String),
}

impl SourceError {
    /// Bounded label for `tokengate_token_refresh_total{result}`.
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::Transport(_) | SourceError::Timeout => "unreachable",
            SourceError::Rejected { .. } => "rejected",
            SourceError::Invalid(_) => "invalid_answer",
            SourceError::File(_) => "file_error",
        }
    }
}

/// Fetches one token from `source`.
pub async fn fetch(
    source: &TokenSource,
    client: &HttpClient,
    timeout: Duration,
) -> Result<Fetched, SourceError> {
    match source {
        TokenSource::ClientCredentials(cc) => {
            let request = client_credentials_request(cc, unix_now())?;
            let (status, body) = post(client, request, timeout).await?;
            parse_token_answer(status, &body, unix_now())
        }
        TokenSource::File { path } => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| SourceError::File(format!("{}: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(SourceError::File(format!("{} is empty", path.display())));
            }
            let lifetime = jwt_lifetime(&token, unix_now());
            Ok(Fetched { token, lifetime })
        }
    }
}

/// PURE (but for the assertion's random `jti`): the token request for a client_credentials source.
pub fn client_credentials_request(
    cc: &ClientCredentials,
    now: u64,
) -> Result<Request<crate::upstream::Body>, SourceError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if !cc.scopes.is_empty() {
        form.append_pair("scope", &cc.scopes.join(" "));
    }
    if let Some(a) = &cc.audience {
        form.append_pair("audience", a);
    }
    if let Some(r) = &cc.resource {
        form.append_pair("resource", r);
    }
    for (k, v) in &cc.extra_params {
        form.append_pair(k, v);
    }
    let mut basic = None;
    match &cc.auth {
        ClientAuth::SecretBasic(secret) => {
            // RFC 6749 §2.3.1: form-encode id and secret, then base64 "id:secret".
            let enc = |s: &[u8]| form_urlencoded::byte_serialize(s).collect::<String>();
            let pair = format!("{}:{}", enc(cc.client_id.as_bytes()), enc(secret.expose()));
            let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                .map_err(|_| {
                    SourceError::Invalid("client credentials are not header-safe".into())
                })?;
            value.set_sensitive(true);
            basic = Some(value);
        }
        ClientAuth::SecretPost(secret) => {
            form.append_pair("client_id", &cc.client_id);
            form.append_pair("client_secret", &String::from_utf8_lossy(secret.expose()));
        }
        ClientAuth::PrivateKeyJwt(key) => {
            let assertion = client_assertion(cc, key, now)?;
            form.append_pair("client_id", &cc.client_id);
            form.append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            );
            form.append_pair("client_assertion", &assertion);
        }
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(cc.token_url.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(full(form.finish()))
        .map_err(|e| SourceError::Invalid(e.to_string()))?;
    if let Some(v) = basic {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    Ok(req)
}

/// RFC 7523 §2.2 client assertion: iss = sub = client_id, aud = token URL,
/// unique jti, valid for 60 seconds.
fn client_assertion(
    cc: &ClientCredentials,
    key: &crate::config::AssertionKey,
    now: u64,
) -> Result<String, SourceError> {
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti)
        .map_err(|_| SourceError::Invalid("no randomness for jti".into()))?;
    let claims = serde_json::json!({
        "iss": cc.client_id,
        "sub": cc.client_id,
        "aud": cc.token_url.to_string(),
        "jti": URL_SAFE_NO_PAD.encode(jti),
        "iat": now,
        "exp": now + 60,
    });
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &key.key)
        .map_err(|e| SourceError::Invalid(format!("cannot sign the client assertion: {e}")))
}

async fn post(
    client: &HttpClient,
    req: Request<crate::upstream::Body>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), SourceError> {
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| SourceError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| SourceError::Transport(e.to_string()))?
            .to_bytes();
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| SourceError::Timeout)?
}

/// PURE: an OAuth 2.0 token endpoint answer (RFC 6749 §5.1 / §5.2).
pub fn parse_token_answer(status: u16, body: &[u8], now: u64) -> Result<Fetched, SourceError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        return Err(SourceError::Rejected {
            status,
            error: field("error").unwrap_or_else(|| "no OAuth error code".into()),
            description: field("error_description"),
        });
    }
    let json = json.ok_or_else(|| SourceError::Invalid("not JSON".into()))?;
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SourceError::Invalid("no access_token".into()))?
        .to_string();
    let expires_in = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| *s >= 0.0)
            .map(Duration::from_secs_f64),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok().map(Duration::from_secs),
        Some(_) => return Err(SourceError::Invalid("expires_in is not a number".into())),
    };
    let lifetime = expires_in.or_else(|| jwt_lifetime(&token, now));
    Ok(Fetched { token, lifetime })
}

/// PURE: seconds until a JWT's `exp` (unverified: only used for scheduling).
pub fn jwt_lifetime(token: &str, now: u64) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: u64) -> String {
        format!(
            "e30.{}.sig",
            URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"))
        )
    }

    #[test]
    fn token_answers() {
        let now = 1_000;
        let ok = |token: &str, secs: Option<u64>| {
            Ok(Fetched {
                token: token.into(),
                lifetime: secs.map(Duration::from_secs),
            })
        };
        let cases: Vec<(u16, String, Result<Fetched, SourceError>)> = vec![
            (
                200,
                r#"{"access_token":"t","expires_in":300,"token_type":"Bearer"}"#.into(),
                ok("t", Some(300)),
            ),
            (
                200,
                r#"{"access_token":"t","expires_in":"60"}"#.into(),
                ok("t", Some(60)),
            ),
            (
                200,
                format!(r#"{{"access_token":"{}"}}"#, jwt(1_600)),
                ok(&jwt(1_600), Some(600)),
            ),
            (
                200,
                r#"{"access_token":"opaque"}"#.into(),
                ok("opaque", None),
            ),
            (
                200,
                r#"{"token_type":"Bearer"}"#.into(),
                Err(SourceError::Invalid("no access_token".into())),
            ),
            (
                200,
                r#"{"access_token":""}"#.into(),
                Err(SourceError::Invalid("no access_token".into())),
            ),
            (
                200,
                "<html>".into(),
                Err(SourceError::Invalid("not JSON".into())),
            ),
            (
                200,
                r#"{"access_token":"t","expires_in":[1]}"#.into(),
                Err(SourceError::Invalid("expires_in is not a number".into())),
            ),
            (
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
                    .into(),
                Err(SourceError::Rejected {
                    status: 401,
                    error: "invalid_client".into(),
                    description: Some("client authentication failed".into()),
                }),
            ),
            (
                503,
                "upstream down".into(),
                Err(SourceError::Rejected {
                    status: 503,
                    error: "no OAuth error code".into(),
                    description: None,
                }),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                parse_token_answer(status, body.as_bytes(), now),
                want,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn errors_read_well_and_have_bounded_labels() {
        let e = SourceError::Rejected {
            status: 400,
            error: "invalid_scope".into(),
            description: Some("nope".into()),
        };
        assert_eq!(
            e.to_string(),
            "token endpoint refused (400): invalid_scope (nope)"
        );
        assert_eq!(e.label(), "rejected");
        assert_eq!(SourceError::Timeout.label(), "unreachable");
    }

    #[test]
    fn jwt_lifetime_reads_exp() {
        assert_eq!(
            jwt_lifetime(&jwt(1_300), 1_000),
            Some(Duration::from_secs(300))
        );
        assert_eq!(jwt_lifetime(&jwt(900), 1_000), Some(Duration::ZERO));
        assert_eq!(jwt_lifetime("opaque-token", 1_000), None);
        assert_eq!(jwt_lifetime("a.!!.c", 1_000), None);
    }
}
