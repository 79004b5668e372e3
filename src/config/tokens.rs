//! Validation of `outbound.tokens` entries: which fields each kind takes, and
//! each kind's settings (OAuth grants and client authentication, logins, files).

use super::client_auth::{ClientAuth, OAuthClient};
use super::outbound::{Assertion, Grant, Login, LoginToken, OAuthGrant, TokenSource};
use super::outbound::{RawDpop, RawTokenSource};
use super::{expected, Validator};
use crate::dpop_key::{DpopKey, GENERATED};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Every token source `kind`.
const KINDS: [&str; 5] = [
    "client_credentials",
    "jwt_bearer",
    "token_exchange",
    "login",
    "file",
];

impl Validator<'_> {
    /// The kind-specific part of a token source. Each kind lists the fields it
    /// uses; any other field that is set is reported, naming the kind.
    pub(super) fn source(&mut self, path: &str, raw: &RawTokenSource) -> Option<TokenSource> {
        const OAUTH: &[&str] = &[
            "token_url",
            "client_id",
            "client_auth",
            "client_secret",
            "client_secret_file",
            "private_key_file",
            "key_id",
            "scopes",
            "audience",
            "resource",
            "extra_params",
            "tls",
            "dpop",
            "certificate_bound",
        ];
        let allowed: Vec<&str> = match raw.kind.as_str() {
            "client_credentials" => OAUTH.to_vec(),
            "jwt_bearer" => [OAUTH, &["subject", "assertion_file"]].concat(),
            "token_exchange" => [OAUTH, &["subject_token_file", "subject_token_type"]].concat(),
            "login" => vec![
                "token_url",
                "client_id",
                "client_secret",
                "client_secret_file",
                "private_key_file",
                "key_id",
                "method",
                "body",
                "token_pointer",
                "expires_in_pointer",
                "login_token_claims",
                "login_token_ttl",
                "tls",
            ],
            "file" => vec!["path"],
            other => {
                self.error(format!("{path}.kind"), expected(&KINDS, other));
                return None;
            }
        };
        // What every kind takes (validated in `token`).
        const COMMON: &[&str] = &[
            "kind",
            "renew_before",
            "inject",
            "retry_on",
            "fetch_timeout",
        ];
        for field in raw.present() {
            if !allowed.contains(&field.as_str()) && !COMMON.contains(&field.as_str()) {
                self.error(
                    format!("{path}.{field}"),
                    format!("not used by kind {}", raw.kind),
                );
            }
        }
        match raw.kind.as_str() {
            "file" => {
                let file = self.required(path, "path", raw.path.as_ref())?;
                Some(TokenSource::File {
                    path: PathBuf::from(file),
                })
            }
            "login" => self
                .login(path, raw)
                .map(|l| TokenSource::Login(Box::new(l))),
            _ => self
                .oauth(path, raw)
                .map(|g| TokenSource::OAuth(Box::new(g))),
        }
    }

    /// A required string field, interpolated.
    fn required(&mut self, path: &str, field: &str, value: Option<&String>) -> Option<String> {
        match value {
            Some(v) => self.text(&format!("{path}.{field}"), v),
            None => {
                self.error(format!("{path}.{field}"), "required for this kind");
                None
            }
        }
    }

    fn oauth(&mut self, path: &str, raw: &RawTokenSource) -> Option<OAuthGrant> {
        let token_url = self
            .required(path, "token_url", raw.token_url.as_ref())
            .and_then(|u| self.http_uri(&format!("{path}.token_url"), &u));
        let key_signs_client = raw.kind != "jwt_bearer";
        let client = self
            .oauth_client(path, &raw.client(), key_signs_client)
            .ok()?;
        let client_id = client.as_ref().map(|c| c.id.clone());
        let grant = self.grant(path, raw, client.as_ref(), client_id)?;
        Some(OAuthGrant {
            token_url: token_url?,
            grant,
            client,
            scopes: raw.scopes.clone().unwrap_or_default(),
            audience: raw.audience.clone(),
            resource: raw.resource.clone(),
            extra_params: raw
                .extra_params
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            dpop: match &raw.dpop {
                Some(d) => Some(Arc::new(self.dpop_key(&format!("{path}.dpop"), d)?)),
                None => None,
            },
        })
    }

    /// A DPoP key: read from `key_file`, or made now by `generate`.
    fn dpop_key(&mut self, path: &str, raw: &RawDpop) -> Option<DpopKey> {
        let made = match (&raw.key_file, &raw.generate) {
            (Some(file), None) => {
                let file = self.text(&format!("{path}.key_file"), file)?;
                if self.stand_in(&file) {
                    return DpopKey::generate("ES256").ok();
                }
                std::fs::read(&file)
                    .map_err(|e| format!("cannot read {file}: {e}"))
                    .and_then(|pem| DpopKey::from_pem(&pem).map_err(|e| format!("{file}: {e}")))
                    .map_err(|e| (format!("{path}.key_file"), e))
            }
            (None, Some(alg)) => {
                let alg =
                    self.one_of(&format!("{path}.generate"), alg, &GENERATED.map(|a| (a, a)))?;
                DpopKey::generate(alg).map_err(|e| (format!("{path}.generate"), e))
            }
            _ => Err((
                path.to_string(),
                "set key_file or generate (ES256, ES384 or EdDSA), one of them".to_string(),
            )),
        };
        made.map_err(|(at, e)| self.error(at, e)).ok()
    }

    /// The grant a token source of `raw.kind` asks for.
    fn grant(
        &mut self,
        path: &str,
        raw: &RawTokenSource,
        client: Option<&OAuthClient>,
        client_id: Option<String>,
    ) -> Option<Grant> {
        Some(match raw.kind.as_str() {
            "client_credentials" => {
                match client {
                    None => {
                        self.error(
                            format!("{path}.client_id"),
                            "client_credentials needs a client_id",
                        );
                        return None;
                    }
                    Some(OAuthClient {
                        auth: ClientAuth::None,
                        ..
                    }) => {
                        self.error(
                            format!("{path}.client_secret"),
                            "client_credentials needs client_secret, client_secret_file or private_key_file",
                        );
                        return None;
                    }
                    Some(_) => {}
                }
                Grant::ClientCredentials
            }
            "jwt_bearer" => match (&raw.assertion_file, &raw.private_key_file) {
                (Some(_), Some(_)) => {
                    self.error(
                        format!("{path}.assertion_file"),
                        "set assertion_file or private_key_file, not both",
                    );
                    return None;
                }
                (Some(file), None) => Grant::JwtBearer(Assertion::File(PathBuf::from(
                    self.text(&format!("{path}.assertion_file"), file)?,
                ))),
                (None, Some(_)) => {
                    let Some(issuer) = client_id.clone() else {
                        self.error(
                            format!("{path}.client_id"),
                            "a self-signed assertion needs client_id (its issuer)",
                        );
                        return None;
                    };
                    let subject = raw.subject.clone().unwrap_or_else(|| issuer.clone());
                    Grant::JwtBearer(Assertion::Signed {
                        key: self.client_key(path, &raw.client())?,
                        issuer,
                        subject,
                    })
                }
                (None, None) => {
                    self.error(
                        format!("{path}.assertion_file"),
                        "jwt_bearer needs assertion_file or private_key_file",
                    );
                    return None;
                }
            },
            _ => Grant::TokenExchange {
                subject_token_file: PathBuf::from(self.required(
                    path,
                    "subject_token_file",
                    raw.subject_token_file.as_ref(),
                )?),
                subject_token_type: raw
                    .subject_token_type
                    .clone()
                    .unwrap_or_else(|| "urn:ietf:params:oauth:token-type:jwt".into()),
            },
        })
    }

    fn login(&mut self, path: &str, raw: &RawTokenSource) -> Option<Login> {
        let url = self
            .required(path, "token_url", raw.token_url.as_ref())
            .and_then(|u| self.http_uri(&format!("{path}.token_url"), &u));
        let method = self.login_method(path, raw.method.as_deref());
        let body = match &raw.body {
            Some(v) => match serde_json::to_value(v) {
                Ok(json) => json,
                Err(e) => {
                    self.error(
                        format!("{path}.body"),
                        format!("not representable as JSON: {e}"),
                    );
                    return None;
                }
            },
            None => {
                self.error(
                    format!("{path}.body"),
                    "required for kind login (a JSON body template)",
                );
                return None;
            }
        };
        let token_pointer = self
            .json_pointer(path, "token_pointer", &raw.token_pointer)
            .unwrap_or_else(|| "/token".into());
        let expires_in_pointer =
            self.json_pointer(path, "expires_in_pointer", &raw.expires_in_pointer);
        let client_id = match &raw.client_id {
            Some(id) => self.text(&format!("{path}.client_id"), id),
            None => None,
        };
        let client_secret = self.client_secret(path, &raw.client());
        let login_token = self.login_token(path, raw)?;
        let text = body.to_string();
        for (placeholder, available, field) in [
            ("{client_id}", client_id.is_some(), "client_id"),
            ("{client_secret}", client_secret.is_some(), "client_secret"),
            ("{login_token}", login_token.is_some(), "private_key_file"),
        ] {
            if text.contains(placeholder) && !available {
                self.error(
                    format!("{path}.body"),
                    format!("uses {placeholder} but {field} is not set"),
                );
            }
        }
        Some(Login {
            url: url?,
            method,
            body,
            client_id,
            client_secret,
            login_token,
            token_pointer,
            expires_in_pointer,
        })
    }

    /// A login's HTTP method: POST (the default) or PUT.
    fn login_method(&mut self, path: &str, raw: Option<&str>) -> hyper::Method {
        let method = raw.unwrap_or("POST").to_ascii_uppercase();
        let methods = [("POST", &hyper::Method::POST), ("PUT", &hyper::Method::PUT)];
        self.one_of(&format!("{path}.method"), &method, &methods)
            .unwrap_or(&hyper::Method::POST)
            .clone()
    }

    /// A JSON pointer field (`/a/b`), when set.
    fn json_pointer(&mut self, path: &str, field: &str, value: &Option<String>) -> Option<String> {
        match value {
            Some(p) if !p.starts_with('/') => {
                self.error(
                    format!("{path}.{field}"),
                    format!("a JSON pointer starts with '/', got {p:?}"),
                );
                None
            }
            other => other.clone(),
        }
    }

    /// The self-signed service login token, when `private_key_file` is set
    /// (`None` inside: not asked for; outer `None`: invalid).
    fn login_token(&mut self, path: &str, raw: &RawTokenSource) -> Option<Option<LoginToken>> {
        match &raw.private_key_file {
            Some(_) => Some(Some(LoginToken {
                key: self.client_key(path, &raw.client())?,
                claims: raw
                    .login_token_claims
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                ttl: self.duration(
                    &format!("{path}.login_token_ttl"),
                    raw.login_token_ttl.as_ref(),
                    Duration::from_secs(300),
                ),
            })),
            None => Some(None),
        }
    }
}
