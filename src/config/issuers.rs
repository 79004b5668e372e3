//! The guard's `issuers`: whom tokens may come from, and where their keys
//! are (a JWKS, discovery, or a shared secret). The YAML shape, the validated
//! types and their validation.

use super::introspection::{IntrospectionConfig, RawIntrospection};
use super::raw::RawClientTls;
use super::{is_hmac, Secret, Validator};
use hyper::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// One issuer; or `match`, many.
    pub issuer: Option<String>,
    #[serde(rename = "match")]
    pub matches: Option<RawMatchOrList>,
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
    /// Opaque tokens are sent to this issuer's introspection endpoint.
    pub introspection: Option<RawIntrospection>,
    /// `dpop | mtls | any`: only this issuer's sender-constrained tokens pass.
    pub require_binding: Option<String>,
}

/// `match`: a list of exact issuers, or one `{tenant}` pattern with the
/// tenants it may take. Written as a plain list it is the exact list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub issuers: Option<Vec<String>>,
    #[serde(alias = "pattern")]
    pub issuer: Option<String>,
    #[serde(alias = "values")]
    pub tenants: Option<Vec<String>>,
    pub regex: Option<String>,
}

/// `match` as written: the map, or a plain list of issuers.
#[derive(Debug)]
pub struct RawMatchOrList(pub RawMatch);

impl<'de> Deserialize<'de> for RawMatchOrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = RawMatch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of issuers, or { issuer: \"…{tenant}…\", tenants: [...] }")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<RawMatch, A::Error> {
                let issuers = Vec::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(RawMatch {
                    issuers: Some(issuers),
                    ..RawMatch::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawMatch, A::Error> {
                RawMatch::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_any(Shape).map(RawMatchOrList)
    }
}

/// The placeholder a `match` pattern has once.
pub const TENANT: &str = "{tenant}";

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

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on exp/nbf/iat; default 30s.
    pub leeway: Duration,
    /// Claim holding scopes: `scope` (space-separated) by default; arrays are read too.
    pub scope_claim: String,
    pub require_typ: Option<String>,
    pub max_token_age: Option<Duration>,
    /// HMAC secret for HS256/384/512; only when such an algorithm is allowed.
    pub shared_secret: Option<Secret>,
    pub jwks_cache: JwksCachePolicy,
    /// TLS for discovery and JWKS fetches (a private CA, a client
    /// certificate); `None`: the trusted roots, no client certificate.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Discovery and JWKS requests carry `Authorization: Bearer` with this
    /// file's content, read at each fetch (a rotated service-account token).
    pub jwks_bearer_token_file: Option<PathBuf>,
    /// Opaque tokens (any token that is not a JWT) are judged by this
    /// issuer's introspection endpoint.
    pub introspection: Option<IntrospectionConfig>,
    /// Only tokens bound to a key the caller proves pass (`require_binding`).
    pub require_binding: Option<RequireBinding>,
    /// Set when the issuer is one a `match` allows; its keys are then fetched
    /// when its first token comes, not at start, and its outages do not make
    /// the guard unready.
    pub matched: Option<Matched>,
}

/// Which `match` allowed an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// One of the exact issuers listed.
    Listed,
    /// `pattern` with its `{tenant}` as `tenant`.
    Tenant { pattern: String, tenant: String },
    /// Every tenant a regex takes, all sharing one key set: the issuer
    /// stands for the whole pattern.
    Open(OpenPattern),
}

impl IssuerConfig {
    /// The `{tenant}` pattern the issuer was built from, if it was.
    pub fn pattern(&self) -> Option<&str> {
        match &self.matched {
            Some(Matched::Tenant { pattern, .. }) => Some(pattern),
            Some(Matched::Open(open)) => Some(&open.pattern),
            _ => None,
        }
    }

    /// Whether the issuer's keys wait for its first token: one issuer of
    /// many a `match` allows. A regex's one key set is fetched at start.
    pub fn on_demand(&self) -> bool {
        matches!(self.matched, Some(Matched::Listed | Matched::Tenant { .. }))
    }
}

/// `match: { issuer: "…{tenant}…", regex: … }`: an issuer whose `{tenant}`
/// may be any value the regex matches whole.
#[derive(Debug, Clone)]
pub struct OpenPattern {
    /// As written, `{tenant}` included.
    pub pattern: String,
    /// Anchored at both ends.
    regex: regex::Regex,
}

impl OpenPattern {
    /// PURE: the tenant `iss` names, when it is this pattern with a tenant
    /// the regex takes.
    pub fn tenant<'a>(&self, iss: &'a str) -> Option<&'a str> {
        let (prefix, suffix) = self.pattern.split_once(TENANT)?;
        let tenant = iss.strip_prefix(prefix)?.strip_suffix(suffix)?;
        self.regex.is_match(tenant).then_some(tenant)
    }
}

impl PartialEq for OpenPattern {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.regex.as_str() == other.regex.as_str()
    }
}
impl Eq for OpenPattern {}

/// Largest compiled `match.regex`: ample for tenant IDs, and a bound on what
/// a config can make every unknown issuer cost.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// `require_binding`: the sender constraint a token must carry, on an
/// issuer (all its tokens) or a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireBinding {
    /// Bound to a DPoP key (`cnf.jkt`, RFC 9449), presented with its proof.
    Dpop,
    /// Bound to the TLS client certificate (`cnf.x5t#S256`, RFC 8705).
    Mtls,
    /// Either.
    Any,
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(Uri),
    /// `{issuer}/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery(Uri),
    /// Shared-secret only issuer: no JWKS.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksCachePolicy {
    /// Refresh period when the answer has no `Cache-Control: max-age`; default 5m.
    pub refresh_interval: Duration,
    /// Lower bound on `max-age`; default 30s.
    pub min_refresh: Duration,
    /// Upper bound on `max-age`; default 1h.
    pub max_refresh: Duration,
    /// How long the last good key set keeps serving once a refresh is due and the IdP
    /// cannot be reached; default 6h.
    pub stale_if_error: Duration,
    /// At most one unknown-kid refetch per this period; default 5s.
    pub refetch_cooldown: Duration,
    /// How long a kid that was still unknown after a refetch is remembered (cleared by
    /// any successful fetch); default 60s.
    pub unknown_kid_ttl: Duration,
    /// Per-fetch timeout; default 5s.
    pub fetch_timeout: Duration,
}
impl Default for JwksCachePolicy {
    fn default() -> Self {
        JwksCachePolicy {
            refresh_interval: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            stale_if_error: Duration::from_secs(6 * 3600),
            refetch_cooldown: Duration::from_secs(5),
            unknown_kid_ttl: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

impl Validator<'_> {
    /// `issuers[i]`: its one issuer, or every issuer its `match` allows.
    pub(super) fn issuers(&mut self, path: &str, raw: &RawIssuer) -> Vec<IssuerConfig> {
        let named = match (&raw.issuer, &raw.matches) {
            (Some(_), Some(_)) => {
                self.error(format!("{path}.match"), "set issuer or match, not both");
                Vec::new()
            }
            (None, None) => {
                self.error(
                    format!("{path}.issuer"),
                    "required (or match: the issuers allowed)",
                );
                Vec::new()
            }
            (Some(issuer), None) => {
                let issuer = self.text(&format!("{path}.issuer"), issuer);
                issuer.map(|i| (i, None)).into_iter().collect()
            }
            (None, Some(RawMatchOrList(m))) => self.matched(path, m, raw),
        };
        let is_pattern = |(_, m): &(String, Option<Matched>)| {
            matches!(m, Some(Matched::Tenant { .. } | Matched::Open(_)))
        };
        if raw.jwks_uri.as_ref().is_some_and(|u| u.contains(TENANT))
            && !named.iter().any(is_pattern)
        {
            self.error(
                format!("{path}.jwks_uri"),
                "{tenant} is only for an issuer matched by a pattern (match.issuer)",
            );
        }
        named
            .into_iter()
            .filter_map(|(issuer, matched)| self.issuer(path, raw, issuer, matched))
            .collect()
    }

    /// The issuers `match` allows, each with how: an exact list, a
    /// `{tenant}` pattern and the tenants it may take, or a pattern whose
    /// tenants a regex takes (one issuer, one key set for them all: a regex
    /// may not choose the URLs keys are fetched from).
    fn matched(
        &mut self,
        path: &str,
        m: &RawMatch,
        raw: &RawIssuer,
    ) -> Vec<(String, Option<Matched>)> {
        let path = format!("{path}.match");
        if raw.introspection.is_some() {
            self.error(
                path.clone(),
                "cannot go with introspection: an opaque token names no issuer, so it cannot choose one of those matched",
            );
        }
        match (&m.issuers, &m.issuer, &m.tenants, &m.regex) {
            (Some(list), None, None, None) => {
                if list.is_empty() {
                    self.error(format!("{path}.issuers"), "must name at least one issuer");
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(i, issuer)| {
                        let at = format!("{path}.issuers[{i}]");
                        let issuer = self.text(&at, issuer)?;
                        if issuer.contains(TENANT) {
                            self.error(at, "an exact issuer; a {tenant} pattern goes in match.issuer, with match.tenants");
                            return None;
                        }
                        Some((issuer, Some(Matched::Listed)))
                    })
                    .collect()
            }
            (None, Some(pattern), Some(tenants), None) => {
                let Some(pattern) = self.pattern(&path, pattern) else {
                    return Vec::new();
                };
                if tenants.is_empty() {
                    self.error(format!("{path}.tenants"), "must name at least one tenant");
                }
                tenants
                    .iter()
                    .enumerate()
                    .filter_map(|(i, tenant)| {
                        if !is_tenant(tenant) {
                            self.error(
                                format!("{path}.tenants[{i}]"),
                                format!("{tenant:?}: a tenant is letters, digits, '-', '.', '_' or '~', not . or .. (it goes into URLs)"),
                            );
                            return None;
                        }
                        let matched = Matched::Tenant {
                            pattern: pattern.clone(),
                            tenant: tenant.clone(),
                        };
                        Some((pattern.replace(TENANT, tenant), Some(matched)))
                    })
                    .collect()
            }
            (None, Some(pattern), None, Some(regex)) => self
                .open_pattern(&path, pattern, regex, raw)
                .map(|open| (open.pattern.clone(), Some(Matched::Open(open))))
                .into_iter()
                .collect(),
            (None, Some(_), None, None) => {
                self.error(
                    format!("{path}.tenants"),
                    "a {tenant} pattern needs the tenants it may take (tenants: [...], or regex: …)",
                );
                Vec::new()
            }
            (None, Some(_), Some(_), Some(_)) => {
                self.error(path, "set tenants or regex, not both");
                Vec::new()
            }
            (None, None, _, _) => {
                self.error(
                    path,
                    "name the issuers allowed (issuers: [...]) or a pattern and its tenants (issuer: \"…{tenant}…\", tenants: [...] or regex: …)",
                );
                Vec::new()
            }
            (Some(_), _, _, _) => {
                self.error(
                    path,
                    "set issuers, or issuer with tenants or regex, not both",
                );
                Vec::new()
            }
        }
    }

    /// `match.issuer`: a pattern holding `{tenant}` once.
    fn pattern(&mut self, path: &str, pattern: &str) -> Option<String> {
        let pattern = self.text(&format!("{path}.issuer"), pattern)?;
        if pattern.matches(TENANT).count() != 1 {
            self.error(format!("{path}.issuer"), "must hold {tenant} exactly once");
            return None;
        }
        Some(pattern)
    }

    /// `match: { issuer, regex }`. The tenants a regex takes are not known
    /// ahead, so they share one key set: `jwks_uri` without `{tenant}` (as
    /// Azure AD's common keys sign for every tenant), never discovery (read
    /// from each issuer's own URL). So a made-up tenant costs no fetch.
    fn open_pattern(
        &mut self,
        path: &str,
        pattern: &str,
        regex: &str,
        raw: &RawIssuer,
    ) -> Option<OpenPattern> {
        let pattern = self.pattern(path, pattern)?;
        let issuer_path = path.trim_end_matches(".match");
        if raw.jwks_uri.as_ref().is_some_and(|u| u.contains(TENANT)) {
            self.error(
                format!("{issuer_path}.jwks_uri"),
                "no {tenant} with match.regex: the tenants a regex takes share one key set (a jwks_uri without {tenant}, as Azure AD's common keys); list the tenants (match.tenants) for a key set each",
            );
            return None;
        }
        if raw.discovery == Some(true) {
            self.error(
                format!("{issuer_path}.discovery"),
                "not with match.regex: discovery is read from each issuer's own URL; give the jwks_uri the tenants share, or list the tenants (match.tenants)",
            );
            return None;
        }
        let compile = |re: &str| {
            regex::RegexBuilder::new(re)
                .size_limit(MAX_REGEX_BYTES)
                .build()
        };
        // Errors point into the regex as written, not the anchored one.
        match compile(regex).and_then(|_| compile(&format!("^(?:{regex})$"))) {
            Ok(regex) => Some(OpenPattern { pattern, regex }),
            Err(e) => {
                self.error(format!("{path}.regex"), format!("not a regex: {e}"));
                None
            }
        }
    }

    /// One issuer: `issuer`, with `raw`'s settings (and its `{tenant}`, when
    /// a pattern matched it, in `jwks_uri`).
    fn issuer(
        &mut self,
        path: &str,
        raw: &RawIssuer,
        issuer: String,
        matched: Option<Matched>,
    ) -> Option<IssuerConfig> {
        if issuer.is_empty() {
            self.error(format!("{path}.issuer"), "must not be empty");
        }
        let algorithms = self.algorithms(path, raw.algorithms.as_deref());
        let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
        let wants_public = algorithms.iter().any(|a| !is_hmac(*a));
        let shared_secret = self.shared_secret(path, raw);
        if wants_hmac && shared_secret.is_none() {
            self.error(
                format!("{path}.shared_secret"),
                "an HS* algorithm is allowed but no shared secret is configured",
            );
        }
        if !wants_hmac && shared_secret.is_some() {
            self.error(
                format!("{path}.algorithms"),
                "a shared secret is configured but no HS* algorithm is allowed",
            );
        }
        if let Some(s) = &shared_secret {
            if s.expose().len() < 32 {
                self.error(format!("{path}.shared_secret"), "must be at least 32 bytes");
            }
        }
        // An issuer that introspects needs no keys: it may take opaque tokens only.
        let needs_keys = wants_public && raw.introspection.is_none();
        let jwks_uri = raw.jwks_uri.as_ref().map(|uri| match &matched {
            Some(Matched::Tenant { tenant, .. }) => uri.replace(TENANT, tenant),
            _ => uri.clone(),
        });
        let keys = self.key_source(
            path,
            jwks_uri.as_deref(),
            raw.discovery,
            &issuer,
            needs_keys,
        );
        let introspection = raw.introspection.as_ref().and_then(|i| {
            let discovery = match &keys {
                KeySource::Discovery(doc) => Some(doc),
                _ => None,
            };
            self.introspection(&format!("{path}.introspection"), i, discovery)
        });
        if raw.audiences.is_empty() {
            self.error(
                format!("{path}.audiences"),
                "at least one audience is required",
            );
        }
        let leeway = self.duration(
            &format!("{path}.leeway"),
            raw.leeway.as_ref(),
            Duration::from_secs(30),
        );
        let max_token_age = raw
            .max_token_age
            .as_ref()
            .map(|v| self.duration(&format!("{path}.max_token_age"), Some(v), Duration::ZERO));
        let jwks_cache = self.jwks_cache(&format!("{path}.jwks_cache"), &raw.jwks_cache);
        if keys == KeySource::None {
            let set = [
                ("tls", raw.tls.is_some()),
                (
                    "jwks_bearer_token_file",
                    raw.jwks_bearer_token_file.is_some(),
                ),
            ];
            for (field, _) in set.iter().filter(|(_, set)| *set) {
                self.error(
                    format!("{path}.{field}"),
                    "applies to JWKS fetches, and this issuer has no JWKS",
                );
            }
        }
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.client_tls(&format!("{path}.tls"), t));
        let jwks_bearer_token_file = raw.jwks_bearer_token_file.as_ref().and_then(|f| {
            self.text(&format!("{path}.jwks_bearer_token_file"), f)
                .map(PathBuf::from)
        });
        Some(IssuerConfig {
            issuer,
            keys,
            audiences: raw.audiences.clone(),
            algorithms,
            leeway,
            scope_claim: raw
                .scope_claim
                .clone()
                .unwrap_or_else(|| "scope".to_string()),
            require_typ: raw.require_typ.clone(),
            max_token_age,
            shared_secret,
            jwks_cache,
            tls,
            jwks_bearer_token_file,
            introspection,
            require_binding: self.require_binding(path, raw.require_binding.as_deref()),
            matched,
        })
    }

    /// `require_binding` of an issuer or rule at `path`.
    pub(super) fn require_binding(
        &mut self,
        path: &str,
        raw: Option<&str>,
    ) -> Option<RequireBinding> {
        let choices = [
            ("dpop", RequireBinding::Dpop),
            ("mtls", RequireBinding::Mtls),
            ("any", RequireBinding::Any),
        ];
        self.one_of(&format!("{path}.require_binding"), raw?, &choices)
    }

    /// `algorithms`: RS256 when unset; never empty, never `none`.
    fn algorithms(&mut self, path: &str, raw: Option<&[String]>) -> Vec<Algorithm> {
        match raw {
            None => vec![Algorithm::RS256],
            Some([]) => {
                self.error(format!("{path}.algorithms"), "must name at least one algorithm");
                Vec::new()
            }
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match Algorithm::from_str(a) {
                    Ok(alg) => Some(alg),
                    Err(_) => {
                        self.error(
                            format!("{path}.algorithms[{i}]"),
                            format!("unsupported algorithm {a:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512; never none)"),
                        );
                        None
                    }
                })
                .collect(),
        }
    }

    /// `shared_secret` or `shared_secret_file` (at most one).
    fn shared_secret(&mut self, path: &str, raw: &RawIssuer) -> Option<Secret> {
        let (inline, file) = (raw.shared_secret.as_ref(), raw.shared_secret_file.as_ref());
        self.secret_or_file(path, "shared_secret", inline, file)
    }

    /// Where the issuer's public keys come from: `jwks_uri`, discovery, or
    /// nowhere (only when no public-key algorithm is allowed).
    fn key_source(
        &mut self,
        path: &str,
        jwks_uri: Option<&str>,
        discovery: Option<bool>,
        issuer: &str,
        wants_public: bool,
    ) -> KeySource {
        match (jwks_uri, discovery.unwrap_or(false)) {
            (Some(_), true) => {
                self.error(
                    format!("{path}.discovery"),
                    "set jwks_uri or discovery: true, not both",
                );
                KeySource::None
            }
            (Some(u), false) => self
                .http_uri(&format!("{path}.jwks_uri"), u)
                .map(KeySource::Jwks)
                .unwrap_or(KeySource::None),
            (None, true) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                match url.parse::<Uri>() {
                    Ok(u) if u.scheme_str().is_some() => KeySource::Discovery(u),
                    _ => {
                        self.error(
                            format!("{path}.issuer"),
                            "discovery needs the issuer to be an http(s) URL",
                        );
                        KeySource::None
                    }
                }
            }
            (None, false) => {
                if wants_public {
                    self.error(
                        format!("{path}.jwks_uri"),
                        "a public-key algorithm is allowed: set jwks_uri or discovery: true",
                    );
                }
                KeySource::None
            }
        }
    }

    fn jwks_cache(&mut self, path: &str, raw: &RawJwksCache) -> JwksCachePolicy {
        let d = JwksCachePolicy::default();
        let p = JwksCachePolicy {
            refresh_interval: self.duration(
                &format!("{path}.refresh_interval"),
                raw.refresh_interval.as_ref(),
                d.refresh_interval,
            ),
            min_refresh: self.duration(
                &format!("{path}.min_refresh"),
                raw.min_refresh.as_ref(),
                d.min_refresh,
            ),
            max_refresh: self.duration(
                &format!("{path}.max_refresh"),
                raw.max_refresh.as_ref(),
                d.max_refresh,
            ),
            stale_if_error: self.duration(
                &format!("{path}.stale_if_error"),
                raw.stale_if_error.as_ref(),
                d.stale_if_error,
            ),
            refetch_cooldown: self.duration(
                &format!("{path}.refetch_cooldown"),
                raw.refetch_cooldown.as_ref(),
                d.refetch_cooldown,
            ),
            unknown_kid_ttl: self.duration(
                &format!("{path}.unknown_kid_ttl"),
                raw.unknown_kid_ttl.as_ref(),
                d.unknown_kid_ttl,
            ),
            fetch_timeout: self.duration(
                &format!("{path}.fetch_timeout"),
                raw.fetch_timeout.as_ref(),
                d.fetch_timeout,
            ),
        };
        if p.min_refresh > p.max_refresh {
            self.error(format!("{path}.min_refresh"), "must not exceed max_refresh");
        }
        if p.fetch_timeout.is_zero() {
            self.error(format!("{path}.fetch_timeout"), "must be greater than zero");
        }
        p
    }
}

/// A tenant goes into URLs as it is: URL-unreserved characters only
/// (RFC 3986 §2.3), so it can neither end a path segment nor add a query.
fn is_tenant(tenant: &str) -> bool {
    !matches!(tenant, "" | "." | "..")
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}
