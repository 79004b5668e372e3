//! Serde mirror of the YAML file: shapes only, every struct `deny_unknown_fields`.
//!
//! Nothing here is trusted; `Config::from_yaml` (its `Validator`) turns it into the
//! validated types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    pub inbound: Option<RawInbound>,
    pub authz: Option<RawAuthz>,
    pub outbound: Option<RawOutbound>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    pub listen: String,
    pub tls: Option<RawTls>,
    pub upstream: String,
    /// How to speak to `upstream`: http1, h2 or auto.
    pub protocol: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub forward: RawForward,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub token_cache: RawTokenCache,
}

/// `inbound`'s fields without those about forwarding (`upstream`,
/// `protocol`, `tls`); `listen` has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthz {
    pub listen: Option<String>,
    /// Envoy's ext_authz gRPC service, on its own port (off when absent).
    pub grpc_listen: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub forward: RawForward,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub token_cache: RawTokenCache,
}

/// The fields `inbound` and `authz` share: what decides a request.
pub struct RawGuard {
    pub mode: Option<String>,
    pub issuers: Vec<RawIssuer>,
    pub rules: Vec<RawRule>,
    pub forward: RawForward,
    pub limits: RawLimits,
    pub token_cache: RawTokenCache,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub discovery: Option<bool>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub scope_claim: Option<String>,
    pub require_typ: Option<String>,
    pub max_token_age: Option<String>,
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<String>,
    #[serde(default)]
    pub jwks_cache: RawJwksCache,
    /// TLS for discovery and JWKS fetches: a private CA, a client certificate.
    pub tls: Option<RawClientTls>,
    /// Discovery and JWKS requests carry `Authorization: Bearer <this file>`.
    pub jwks_bearer_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwksCache {
    pub refresh_interval: Option<String>,
    pub min_refresh: Option<String>,
    pub max_refresh: Option<String>,
    pub stale_if_error: Option<String>,
    pub refetch_cooldown: Option<String>,
    pub unknown_kid_ttl: Option<String>,
    pub fetch_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub path: String,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub allow: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub issuers: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub override_headers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub header_read: Option<String>,
    pub upstream_connect: Option<String>,
    pub upstream_response: Option<String>,
    pub drain: Option<String>,
    pub tunnel_idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_token_bytes: Option<usize>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    pub listen: String,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub tokens: BTreeMap<String, RawTokenSource>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawOutboundLimits,
    pub tls: Option<RawClientTls>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: String,
    pub upstream: String,
    /// How to speak to `upstream`: http1, h2 or auto.
    pub protocol: Option<String>,
    /// Absent: a pass-through route (the request is forwarded as the app sent it).
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutboundLimits {
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_retry_body_bytes: Option<usize>,
}

/// One entry of `outbound.tokens`. Flat on purpose: which fields a `kind` uses is
/// checked during validation, with a message naming the kind. `Serialize` lists
/// the fields that were set ([`RawTokenSource::present`]), so that check needs
/// no hand-kept list of them.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    pub kind: String,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub extra_params: Option<BTreeMap<String, String>>,
    pub path: Option<String>,
    /// jwt_bearer: `sub` of a self-signed assertion (default: client_id).
    pub subject: Option<String>,
    /// jwt_bearer: read the assertion from this file instead of signing one.
    pub assertion_file: Option<String>,
    /// token_exchange: the subject token's file, and its type.
    pub subject_token_file: Option<String>,
    pub subject_token_type: Option<String>,
    /// login: HTTP method, JSON body template, JSON pointers into the answer.
    pub method: Option<String>,
    pub body: Option<serde_yaml::Value>,
    pub token_pointer: Option<String>,
    pub expires_in_pointer: Option<String>,
    /// login: claims of the self-signed service login token, and its lifetime.
    pub login_token_claims: Option<BTreeMap<String, serde_json::Value>>,
    pub login_token_ttl: Option<String>,
    pub renew_before: Option<String>,
    pub inject: Option<String>,
    pub retry_on: Option<Vec<u16>>,
    pub fetch_timeout: Option<String>,
    /// TLS to this source's token server (not `file`).
    pub tls: Option<RawClientTls>,
}

impl RawTokenSource {
    /// The fields set in the file, by their YAML names (what serde parsed: a
    /// field added to the struct is listed without more code).
    pub fn present(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        }
    }
}
