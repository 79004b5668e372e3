//! An issuer's `introspection` (RFC 7662): where opaque tokens are sent to
//! be judged, as which client, and how long answers are cached. The YAML
//! shape, the validated type and its validation.

use super::client_auth::{OAuthClient, RawClient};
use super::Validator;
use hyper::Uri;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub endpoint: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub max_ttl: Option<String>,
    pub negative_ttl: Option<String>,
    pub timeout: Option<String>,
    pub max_entries: Option<u64>,
    /// `opaque` (the default) or `all`: JWTs naming this issuer too.
    pub tokens: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub endpoint: IntrospectionEndpoint,
    /// Who tokengate is to the endpoint (RFC 7662 §2.1 requires it to be someone).
    pub client: OAuthClient,
    /// The longest an active answer is trusted (revocation shows after at most
    /// this); never past the token's own `exp`. Default 60s.
    pub max_ttl: Duration,
    /// How long an inactive (or refused) answer is remembered; default 10s.
    pub negative_ttl: Duration,
    /// One call's limit; default 3s. Past it the request is answered 503.
    pub timeout: Duration,
    /// Answers held: each counts once per started KiB. Default 10 000.
    pub max_entries: u64,
    /// JWTs whose `iss` is this issuer are introspected too (`tokens: all`),
    /// their signature not checked here: the endpoint's answer is the verdict.
    pub all_tokens: bool,
}

impl IntrospectionConfig {
    pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60);
    pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
}

/// Where the introspection endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionEndpoint {
    Uri(Uri),
    /// The `introspection_endpoint` of this discovery document.
    Discovery(Uri),
}

impl RawIntrospection {
    fn client(&self) -> RawClient<'_> {
        RawClient {
            client_id: self.client_id.as_ref(),
            client_auth: self.client_auth.as_deref(),
            client_secret: self.client_secret.as_ref(),
            client_secret_file: self.client_secret_file.as_ref(),
            private_key_file: self.private_key_file.as_ref(),
            key_id: self.key_id.as_ref(),
        }
    }
}

impl Validator<'_> {
    /// `path` is the issuer's `introspection`; `discovery` its discovery
    /// document, when it has one (the endpoint may come from there).
    pub(super) fn introspection(
        &mut self,
        path: &str,
        raw: &RawIntrospection,
        discovery: Option<&Uri>,
    ) -> Option<IntrospectionConfig> {
        let endpoint = match (&raw.endpoint, discovery) {
            (Some(u), _) => self
                .http_uri(&format!("{path}.endpoint"), u)
                .map(IntrospectionEndpoint::Uri),
            (None, Some(doc)) => Some(IntrospectionEndpoint::Discovery(doc.clone())),
            (None, None) => {
                self.error(
                    format!("{path}.endpoint"),
                    "required unless the issuer uses discovery: true",
                );
                None
            }
        };
        let client = match self.oauth_client(path, &raw.client(), true) {
            Ok(Some(client)) => Some(client),
            Ok(None) => {
                self.error(
                    format!("{path}.client_id"),
                    "required: the introspection endpoint must know who asks (RFC 7662 §2.1)",
                );
                None
            }
            Err(()) => None,
        };
        let max_ttl = self.duration(
            &format!("{path}.max_ttl"),
            raw.max_ttl.as_ref(),
            IntrospectionConfig::DEFAULT_MAX_TTL,
        );
        if max_ttl.is_zero() {
            self.error(format!("{path}.max_ttl"), "must be greater than zero");
        }
        let negative_ttl = self.duration(
            &format!("{path}.negative_ttl"),
            raw.negative_ttl.as_ref(),
            IntrospectionConfig::DEFAULT_NEGATIVE_TTL,
        );
        let timeout = self.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_ref(),
            IntrospectionConfig::DEFAULT_TIMEOUT,
        );
        if timeout.is_zero() {
            self.error(format!("{path}.timeout"), "must be greater than zero");
        }
        let max_entries = raw
            .max_entries
            .unwrap_or(IntrospectionConfig::DEFAULT_MAX_ENTRIES);
        if max_entries == 0 {
            self.error(format!("{path}.max_entries"), "must be at least 1");
        }
        let all_tokens = match raw.tokens.as_deref() {
            None => false,
            Some(tokens) => self
                .one_of(
                    &format!("{path}.tokens"),
                    tokens,
                    &[("opaque", false), ("all", true)],
                )
                .unwrap_or(false),
        };
        Some(IntrospectionConfig {
            endpoint: endpoint?,
            client: client?,
            max_ttl,
            negative_ttl,
            timeout,
            max_entries,
            all_tokens,
        })
    }
}
