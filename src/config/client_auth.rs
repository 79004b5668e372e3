//! How tokengate authenticates to an OAuth server as a client: to a token
//! endpoint (an outbound token source) or to an introspection endpoint (an
//! inbound issuer's `introspection`). The fields are spelled and validated
//! alike wherever they appear.

use super::{expected, Secret, Validator};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::fmt;

/// Every `client_auth`.
const CLIENT_AUTHS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];

#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub auth: ClientAuth,
}

/// How the client authenticates to the endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: only `client_id` is sent.
    None,
    SecretBasic(Secret),
    SecretPost(Secret),
    /// RFC 7523 §2.2 client assertion signed with this key.
    PrivateKeyJwt(AssertionKey),
}

/// A private key that signs JWTs (client assertions).
#[derive(Clone)]
pub struct AssertionKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub key_id: Option<String>,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionKey({:?}, kid {:?})", self.alg, self.key_id)
    }
}

/// The client fields as written, wherever they appear.
pub(super) struct RawClient<'a> {
    pub client_id: Option<&'a String>,
    pub client_auth: Option<&'a str>,
    pub client_secret: Option<&'a String>,
    pub client_secret_file: Option<&'a String>,
    pub private_key_file: Option<&'a String>,
    pub key_id: Option<&'a String>,
}

impl Validator<'_> {
    /// The client and how it authenticates (`client_auth`, defaulting from
    /// what is configured); `None` with no `client_id` and nothing to send.
    /// `key_signs_client`: a `private_key_file` authenticates the client
    /// (false for jwt_bearer, where it signs the grant's assertion).
    pub(super) fn oauth_client(
        &mut self,
        path: &str,
        raw: &RawClient<'_>,
        key_signs_client: bool,
    ) -> Result<Option<OAuthClient>, ()> {
        let id = match raw.client_id {
            Some(id) => Some(self.text(&format!("{path}.client_id"), id).ok_or(())?),
            None => None,
        };
        let secret = self.client_secret(path, raw);
        let auth = self
            .client_auth(path, raw, secret, key_signs_client)
            .ok_or(())?;
        match (id, auth) {
            (Some(id), auth) => Ok(Some(OAuthClient { id, auth })),
            (None, ClientAuth::None) => Ok(None),
            (None, _) => {
                self.error(
                    format!("{path}.client_id"),
                    "client authentication needs a client_id",
                );
                Err(())
            }
        }
    }

    fn client_auth(
        &mut self,
        path: &str,
        raw: &RawClient<'_>,
        secret: Option<Secret>,
        key_signs_client: bool,
    ) -> Option<ClientAuth> {
        let default_auth = if secret.is_some() {
            "client_secret_basic"
        } else if raw.private_key_file.is_some() && key_signs_client {
            "private_key_jwt"
        } else {
            "none"
        };
        Some(match raw.client_auth.unwrap_or(default_auth) {
            "none" => ClientAuth::None,
            "client_secret_basic" | "client_secret_post" if secret.is_none() => {
                self.error(
                    format!("{path}.client_secret"),
                    "this client_auth needs client_secret or client_secret_file",
                );
                return None;
            }
            "client_secret_basic" => ClientAuth::SecretBasic(secret?),
            "client_secret_post" => ClientAuth::SecretPost(secret?),
            "private_key_jwt" if !key_signs_client => {
                self.error(format!("{path}.client_auth"), "jwt_bearer signs its assertion with private_key_file; use a client secret or none");
                return None;
            }
            "private_key_jwt" => {
                if secret.is_some() {
                    self.error(
                        format!("{path}.client_secret"),
                        "not used with client_auth private_key_jwt",
                    );
                }
                ClientAuth::PrivateKeyJwt(self.client_key(path, raw)?)
            }
            other => {
                self.error(
                    format!("{path}.client_auth"),
                    expected(&CLIENT_AUTHS, other),
                );
                return None;
            }
        })
    }

    /// `private_key_file` (with `key_id`), loaded.
    pub(super) fn client_key(&mut self, path: &str, raw: &RawClient<'_>) -> Option<AssertionKey> {
        let Some(file) = raw.private_key_file else {
            self.error(format!("{path}.private_key_file"), "required for this kind");
            return None;
        };
        let file = self.text(&format!("{path}.private_key_file"), file)?;
        let key_id = raw.key_id.cloned();
        if self.stand_in(&file) {
            return Some(AssertionKey {
                key: EncodingKey::from_secret(&[]),
                alg: Algorithm::RS256,
                key_id,
            });
        }
        match assertion_key(&file, key_id) {
            Ok(k) => Some(k),
            Err(e) => {
                self.error(format!("{path}.private_key_file"), e);
                None
            }
        }
    }

    pub(super) fn client_secret(&mut self, path: &str, raw: &RawClient<'_>) -> Option<Secret> {
        self.secret_or_file(
            path,
            "client_secret",
            raw.client_secret,
            raw.client_secret_file,
        )
    }
}

/// Loads a PEM private key (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA).
pub fn assertion_key(file: &str, key_id: Option<String>) -> Result<AssertionKey, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let (key, alg) = EncodingKey::from_rsa_pem(&pem)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| EncodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
        .or_else(|_| EncodingKey::from_ed_pem(&pem).map(|k| (k, Algorithm::EdDSA)))
        .map_err(|_| {
            format!(
                "{file} is not a PEM RSA, EC P-256 or Ed25519 private key \
                 (EC and Ed25519 keys must be PKCS#8: openssl pkcs8 -topk8 -nocrypt)"
            )
        })?;
    Ok(AssertionKey { key, alg, key_id })
}
