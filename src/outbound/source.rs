//! Token sources: one fetch each. Scheduling, single flight and back-off live in
//! `token.rs`; parsing answers is pure and tested here.

use crate::body::full;
use crate::client::{FetchFailed, HttpClient};
use crate::client_auth::{assertion_claims, authenticate, sign};
use crate::clock::unix_now;
use crate::config::{Assertion, Grant, Login, OAuthGrant, TokenSource};
use crate::dpop_key::{htu_origin, DpopKey, ProofFor};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

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

impl From<FetchFailed> for SourceError {
    fn from(e: FetchFailed) -> SourceError {
        match e {
            FetchFailed::Transport(why) => SourceError::Transport(why),
            FetchFailed::Timeout => SourceError::Timeout,
        }
    }
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

/// The latest `DPoP-Nonce` a server gave (RFC 9449 §8): sent in the next
/// proofs to it until it gives another.
#[derive(Debug, Default)]
pub struct Nonce(std::sync::Mutex<Option<String>>);

impl Nonce {
    pub fn get(&self) -> Option<String> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Keeps the answer's `DPoP-Nonce`, if it has a well-formed one; whether
    /// it is new.
    pub fn keep(&self, answer: &hyper::HeaderMap) -> bool {
        let Some(given) = given_nonce(answer) else {
            return false;
        };
        match self.0.lock() {
            Ok(mut held) if held.as_deref() != Some(given) => {
                *held = Some(given.to_string());
                true
            }
            _ => false,
        }
    }
}

/// PURE: the answer's `DPoP-Nonce` when it is one (RFC 9449 §8.1: 1*NQCHAR,
/// here at most 512 of them).
pub fn given_nonce(answer: &hyper::HeaderMap) -> Option<&str> {
    let nonce = answer.get("dpop-nonce")?.to_str().ok()?;
    let nqchar = |b: u8| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b);
    (!nonce.is_empty() && nonce.len() <= 512 && nonce.bytes().all(nqchar)).then_some(nonce)
}

/// Fetches one token from `source`; `nonce`: the token endpoint's latest
/// DPoP nonce, kept across fetches.
pub async fn fetch(
    source: &TokenSource,
    client: &HttpClient,
    timeout: Duration,
    nonce: &Nonce,
) -> Result<Fetched, SourceError> {
    match source {
        TokenSource::OAuth(grant) => match &grant.dpop {
            None => {
                let request = oauth_request(grant, unix_now()).await?;
                let (status, body) = post(client, request, timeout).await?;
                parse_token_answer(status, &body, unix_now())
            }
            Some(key) => fetch_bound(grant, key, client, timeout, nonce).await,
        },
        TokenSource::Login(login) => {
            let request = login_request(login, unix_now())?;
            let (status, body) = post(client, request, timeout).await?;
            parse_login_answer(login, status, &body, unix_now())
        }
        TokenSource::File { path } => {
            let token = read_token_file(path).await?;
            let lifetime = jwt_lifetime(&token, unix_now());
            Ok(Fetched { token, lifetime })
        }
    }
}

/// A DPoP-bound token (RFC 9449 §5): the request carries a proof of `key`;
/// asked for a nonce, it is sent once more with one.
async fn fetch_bound(
    grant: &OAuthGrant,
    key: &DpopKey,
    client: &HttpClient,
    timeout: Duration,
    nonce: &Nonce,
) -> Result<Fetched, SourceError> {
    let htu = htu(&grant.token_url);
    let mut retried = false;
    loop {
        let now = unix_now();
        let mut request = oauth_request(grant, now).await?;
        let held = nonce.get();
        let what = ProofFor {
            htm: "POST",
            htu: &htu,
            ath: None,
            nonce: held.as_deref(),
        };
        let proof = key.proof(what, now).map_err(SourceError::Invalid)?;
        let proof =
            HeaderValue::try_from(proof).map_err(|e| SourceError::Invalid(e.to_string()))?;
        request.headers_mut().insert("dpop", proof);
        let answer = client.fetch(request, MAX_ANSWER_BYTES, timeout).await?;
        let fresh_nonce = nonce.keep(&answer.headers);
        let status = answer.status.as_u16();
        if !retried && fresh_nonce && asks_for_nonce(status, &answer.body) {
            retried = true;
            continue;
        }
        return parse_bound_answer(status, &answer.body, now);
    }
}

/// PURE: the token endpoint wants a proof with its nonce (RFC 9449 §8).
fn asks_for_nonce(status: u16, body: &[u8]) -> bool {
    status == 400
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|j| j.get("error").and_then(Value::as_str) == Some("use_dpop_nonce"))
}

/// PURE: an answer to a DPoP token request: a token answer whose
/// `token_type` is `DPoP`. A server that ignored the proof and issued a
/// bearer token is refused: the token would go out unbound.
pub fn parse_bound_answer(status: u16, body: &[u8], now: u64) -> Result<Fetched, SourceError> {
    let fetched = parse_token_answer(status, body, now)?;
    let token_type = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|j| j.get("token_type")?.as_str().map(str::to_string));
    match token_type {
        Some(t) if t.eq_ignore_ascii_case("DPoP") => Ok(fetched),
        Some(other) => Err(SourceError::Invalid(format!(
            "asked for a DPoP-bound token, got token_type {:?}",
            other.chars().take(40).collect::<String>()
        ))),
        None => Err(SourceError::Invalid(
            "asked for a DPoP-bound token, got no token_type".into(),
        )),
    }
}

/// A URI normalized, without its query: a proof's `htu`.
fn htu(uri: &hyper::Uri) -> String {
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    format!("{}{path}", htu_origin(uri))
}

async fn read_token_file(path: &Path) -> Result<String, SourceError> {
    crate::client::read_token_file(path)
        .await
        .map_err(SourceError::File)
}

/// The token endpoint request of an OAuth grant (reads assertion / subject token files).
pub async fn oauth_request(
    g: &OAuthGrant,
    now: u64,
) -> Result<Request<crate::body::Body>, SourceError> {
    // Gather what needs I/O first: the form serializer is not Send.
    let grant: Vec<(&str, String)> = match &g.grant {
        Grant::ClientCredentials => vec![("grant_type", "client_credentials".into())],
        Grant::JwtBearer(assertion) => {
            let assertion = match assertion {
                Assertion::File(path) => read_token_file(path).await?,
                Assertion::Signed {
                    key,
                    issuer,
                    subject,
                } => assertion_claims(issuer, subject, &g.token_url, now)
                    .and_then(|claims| sign(key, claims))
                    .map_err(SourceError::Invalid)?,
            };
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ),
                ("assertion", assertion),
            ]
        }
        Grant::TokenExchange {
            subject_token_file,
            subject_token_type,
        } => vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ),
            ("subject_token", read_token_file(subject_token_file).await?),
            ("subject_token_type", subject_token_type.clone()),
        ],
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &grant {
        form.append_pair(k, v);
    }
    if !g.scopes.is_empty() {
        form.append_pair("scope", &g.scopes.join(" "));
    }
    if let Some(a) = &g.audience {
        form.append_pair("audience", a);
    }
    if let Some(r) = &g.resource {
        form.append_pair("resource", r);
    }
    for (k, v) in &g.extra_params {
        form.append_pair(k, v);
    }
    let basic = match &g.client {
        Some(client) => {
            authenticate(client, &g.token_url, &mut form, now).map_err(SourceError::Invalid)?
        }
        None => None,
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(g.token_url.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(full(form.finish()))
        .map_err(|e| SourceError::Invalid(e.to_string()))?;
    if let Some(v) = basic {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    Ok(req)
}

/// The request of a `login` source: its body template with `{client_id}`,
/// `{client_secret}` and a freshly signed `{login_token}` filled in.
pub fn login_request(login: &Login, now: u64) -> Result<Request<crate::body::Body>, SourceError> {
    let client_id = login.client_id.as_deref().unwrap_or("");
    let login_token = match &login.login_token {
        Some(t) => {
            let mut claims = Value::Object(t.claims.clone());
            fill(&mut claims, &[("{client_id}", client_id)]);
            claims["iat"] = now.into();
            claims["exp"] = (now + t.ttl.as_secs()).into();
            Some(sign(&t.key, claims).map_err(SourceError::Invalid)?)
        }
        None => None,
    };
    let secret = login
        .client_secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s.expose()).into_owned());
    let mut body = login.body.clone();
    fill(
        &mut body,
        &[
            ("{client_id}", client_id),
            ("{client_secret}", secret.as_deref().unwrap_or("")),
            ("{login_token}", login_token.as_deref().unwrap_or("")),
        ],
    );
    Request::builder()
        .method(login.method.clone())
        .uri(login.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(full(body.to_string()))
        .map_err(|e| SourceError::Invalid(e.to_string()))
}

/// Replaces placeholders in every string of a JSON value (JSON escaping stays the serializer's job).
fn fill(value: &mut Value, with: &[(&str, &str)]) {
    match value {
        Value::String(s) => {
            for (placeholder, v) in with {
                if s.contains(placeholder) {
                    *s = s.replace(placeholder, v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| fill(i, with)),
        Value::Object(map) => map.values_mut().for_each(|v| fill(v, with)),
        _ => {}
    }
}

/// PURE: a `login` answer: the token at `token_pointer`, its lifetime at
/// `expires_in_pointer` or from its JWT `exp`. GraphQL errors come back with 200
/// and an `errors` list; they are reported as a refusal.
pub fn parse_login_answer(
    login: &Login,
    status: u16,
    body: &[u8],
    now: u64,
) -> Result<Fetched, SourceError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            json.as_ref()
                .and_then(|j| j.get(*k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };
    if !(200..300).contains(&status) {
        return Err(SourceError::Rejected {
            status,
            error: field(&["code", "error", "title"]).unwrap_or_else(|| "login refused".into()),
            description: field(&["description", "error_description", "message"]),
        });
    }
    let json = json
        .as_ref()
        .ok_or_else(|| SourceError::Invalid("not JSON".into()))?;
    let Some(token) = json
        .pointer(&login.token_pointer)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        if let Some(message) = json.pointer("/errors/0/message").and_then(Value::as_str) {
            return Err(SourceError::Rejected {
                status,
                error: "graphql_error".into(),
                description: Some(message.to_string()),
            });
        }
        return Err(SourceError::Invalid(format!(
            "no token at {}",
            login.token_pointer
        )));
    };
    let lifetime = match &login.expires_in_pointer {
        Some(p) => match json.pointer(p) {
            Some(v @ (Value::Number(_) | Value::String(_))) => seconds(v),
            _ => {
                return Err(SourceError::Invalid(format!(
                    "no lifetime in seconds at {p}"
                )))
            }
        },
        None => None,
    }
    .or_else(|| jwt_lifetime(token, now));
    Ok(Fetched {
        token: token.to_string(),
        lifetime,
    })
}

async fn post(
    client: &HttpClient,
    req: Request<crate::body::Body>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), SourceError> {
    let answer = client.fetch(req, MAX_ANSWER_BYTES, timeout).await?;
    Ok((answer.status.as_u16(), answer.body.to_vec()))
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
        Some(v @ (Value::Number(_) | Value::String(_))) => seconds(v),
        Some(_) => return Err(SourceError::Invalid("expires_in is not a number".into())),
    };
    let lifetime = expires_in.or_else(|| jwt_lifetime(&token, now));
    Ok(Fetched { token, lifetime })
}

/// Longest lifetime believed: a server saying "forever" (or 1e30 seconds) gets ten years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A lifetime in seconds from a JSON number or numeric string; negative, NaN or
/// non-numeric is `None`, huge is capped at `MAX_LIFETIME`.
fn seconds(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_LIFETIME.as_secs_f64())))
}

/// PURE: seconds until a JWT's `exp` (unverified: only used for scheduling), capped at `MAX_LIFETIME`.
pub fn jwt_lifetime(token: &str, now: u64) -> Option<Duration> {
    let exp = crate::unverified::claims(token)?.get("exp")?.as_u64()?;
    Some(Duration::from_secs(exp.saturating_sub(now)).min(MAX_LIFETIME))
}

#[cfg(test)]
mod tests;
