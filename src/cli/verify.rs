//! `tokengate verify`: the proxy's own decision for a described request,
//! explained check by check.

use super::{load, Failed};
use crate::clock::unix_now;
use crate::config::{Access, GuardConfig, IssuerId, KeySource, Matched};
use crate::error::Denial;
use crate::guard::bearer::{token_text, DPOP};
use crate::guard::decide::{Allowed, Connection, Decision, Policy, Step, Verdict};
use crate::guard::introspect::{Introspection, Introspector};
use crate::guard::jwks::Jwks;
use crate::guard::reject::Reject;
use crate::guard::verify::{Trace, VerifiedToken, Verifier};
use crate::metrics::Metrics;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::Request;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Prints each passed check as it happens.
struct Explain;

impl Trace for Explain {
    fn pass(&mut self, check: &'static str, detail: fmt::Arguments<'_>) {
        println!("  ok    {check:<14} {detail}");
    }
}

/// What `tokengate verify` decides about: the request a caller would send.
pub struct Asked<'a> {
    pub token: Option<&'a str>,
    pub target: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    /// A DPoP proof: the token goes as `Authorization: DPoP`, this in `DPoP`.
    pub dpop: Option<&'a str>,
    /// A PEM file: the client certificate the connection presents.
    pub client_cert: Option<&'a Path>,
    /// Decide as the authz listener rather than the inbound guard.
    pub authz: bool,
}

/// `tokengate verify`: the proxy's own decision ([`Policy::decide`]) for the
/// request described, each check explained, ending in `decision: <status>
/// <label>` (the `error` of the answer the proxy would send, or `forward`).
pub async fn verify(path: &Path, asked: Asked<'_>) -> Result<(), Failed> {
    let config = load(path)?;
    // The section deciding, the connect timeout of its key fetches, and what
    // its allow is called.
    // Whether callers reach it over TLS (a DPoP proof's `htu` is https).
    let (guard, connect, allowed, https) = match (&config.inbound, &config.authz, asked.authz) {
        (_, Some(a), true) | (None, Some(a), false) => {
            (&a.guard, a.timeouts.upstream_connect, "allow", false)
        }
        (Some(i), _, false) => (
            &i.guard,
            i.timeouts.upstream_connect,
            "forward",
            i.tls.is_some(),
        ),
        (_, None, true) => return Err(Failed::Usage("the config has no authz section".into())),
        (None, None, false) => {
            return Err(Failed::Usage(
                "the config has no inbound or authz section".into(),
            ))
        }
    };
    let token = match asked.token {
        Some("-") => {
            let mut buf = String::new();
            if std::io::stdin().read_line(&mut buf).is_err() {
                return Err(Failed::Usage("cannot read the token from stdin".into()));
            }
            Some(buf.trim().to_string())
        }
        other => other.map(str::to_string),
    };
    let mut req = match request(&asked, token.as_deref()) {
        Ok(req) => req,
        Err(RequestError::Usage(why)) => return Err(Failed::Usage(why)),
        Err(RequestError::Unparsable(why)) => {
            // The proxy's HTTP parser answers these itself, before the guard.
            println!("  FAIL  {:<14} {why}", "request");
            println!("result: REJECTED with 400 bad_request");
            println!("decision: 400 bad_request");
            return Err(Failed::Said);
        }
    };
    let client =
        crate::client::http_client(connect, None).map_err(|e| Failed::Run(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let introspection = Introspection::new(&guard.issuers, &client, &metrics);
    let jwks = Jwks::new(&guard.issuers, client, metrics);
    let (policy, verifier) = (Policy::new(guard), crate::guard::verifier(guard));
    // The keys a serving proxy holds: every issuer's, and an issuer a `match`
    // allows once its first token comes (this one's, if it is one).
    let on_demand =
        token
            .as_deref()
            .and_then(|t| match verifier.verify(t, &jwks.snapshot(), unix_now()) {
                Err(Reject::KeysUnavailable { issuer }) => Some(issuer),
                _ => None,
            });
    for (idx, iss) in guard.issuers.iter().enumerate() {
        let wanted = !iss.on_demand() || on_demand == Some(IssuerId::new(idx));
        if iss.keys != KeySource::None && wanted {
            if let Err(e) = jwks.refresh(IssuerId::new(idx)).await {
                println!("  note  keys of {} could not be fetched: {e}", iss.issuer);
            }
        }
    }
    match &token {
        Some(t) => println!(
            "request {} {} host {}, token {} ({} bytes)",
            asked.method,
            asked.target,
            asked.host,
            crate::fingerprint(t.as_bytes()),
            t.len()
        ),
        None => println!(
            "request {} {} host {}, no token",
            asked.method, asked.target, asked.host
        ),
    }
    // Decided as a serving proxy decides: an issuer whose keys could not be
    // fetched fails its own tokens (503), as keys past their stale bound do.
    let certificate = match asked.client_cert {
        Some(file) => Some(certificate_x5t(file).map_err(Failed::Usage)?),
        None => None,
    };
    let connection = Connection {
        https,
        certificate: certificate.as_deref(),
    };
    let (decision, token_reached) = match policy.decide(&mut req, connection, true) {
        Step::Done(decision) => (decision, false),
        Step::Verify(pending) => {
            explain_rule(&policy, pending.rule());
            let introspector = pending
                .introspector(&verifier)
                .and_then(|issuer| introspection.get(issuer));
            let verified = match introspector {
                Some(introspector) => {
                    explain_introspection(introspector, &verifier, pending.token).await
                }
                None => token_text(pending.token).and_then(|text| {
                    verifier.verify_traced(text, &jwks.snapshot(), unix_now(), &mut Explain)
                }),
            };
            if let Ok(v) = &verified {
                println!("  ok    {:<14} {}", "token", identity(&verifier, v));
                let iss = token_text(pending.token)
                    .ok()
                    .and_then(crate::unverified::claims)
                    .and_then(|c| Some(c.get("iss")?.as_str()?.to_string()));
                if let Some(how) = matched(guard, v.issuer, iss.as_deref().unwrap_or("")) {
                    println!("  ok    {:<14} {how}", "issuer");
                }
            }
            // The binding phase as the proxy runs it, but for the replay
            // cache (one request here spends no proof) and server nonces
            // (there is no earlier answer here to have given one).
            let bound = verified.and_then(|token| match pending.bind(&token, unix_now())? {
                Some(proof) => {
                    println!(
                        "  ok    {:<14} DPoP proof by key {} (jti {}), the key the token is bound to",
                        "proof", proof.jkt, proof.jti
                    );
                    if guard.dpop.require_nonce {
                        println!(
                            "  note  {:<14} not checked here: the proxy also wants a nonce it issued (dpop.require_nonce)",
                            "nonce"
                        );
                    }
                    Ok(token)
                }
                None => Ok(token),
            });
            (pending.finish(bound.map(Arc::new)), true)
        }
    };
    let forwarded = explain_decision(&policy, &decision, allowed);
    // The decision stopped before the token (no rule, an anonymous route, a
    // refused request): say what the token itself would meet, apart from it.
    if let (Some(token), false) = (&token, token_reached) {
        let alone = verifier.verify(token, &jwks.snapshot(), unix_now());
        println!("{}", token_alone(&verifier, alone.as_ref()));
    }
    forwarded
}

/// The `x5t#S256` of the first certificate in the PEM `file`.
fn certificate_x5t(file: &Path) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let first = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("--client-cert {}: {e}", file.display()))?
        .next()
        .ok_or_else(|| format!("--client-cert {}: no certificate in it", file.display()))?
        .map_err(|e| format!("--client-cert {}: {e}", file.display()))?;
    Ok(crate::sha256_base64url(&first))
}

/// Asks `introspector` about an opaque token, printing its answer (secret
/// members elided), each check, and what the proxy's cache would do with it.
async fn explain_introspection(
    introspector: &Introspector,
    verifier: &Verifier,
    token: &[u8],
) -> Result<VerifiedToken, Reject> {
    let text = token_text(token)?;
    verifier.check_size(text)?;
    println!(
        "  ok    {:<14} not a JWT: asked the issuer's introspection endpoint",
        "opaque"
    );
    let (answer, judged) = match introspector.explain(text, verifier, &mut Explain).await {
        Ok(explained) => explained,
        Err(why) => {
            println!("  FAIL  {:<14} {why}", "introspection");
            return Err(Reject::IntrospectionUnavailable {
                issuer: introspector.issuer_id(),
            });
        }
    };
    println!("  note  {:<14} {}", "answer", elide_secrets(answer));
    println!(
        "  note  {:<14} {}",
        "cache",
        cache_decision(introspector, judged.as_ref(), unix_now())
    );
    judged
}

/// PURE: what the proxy's introspection cache would do with an answer.
fn cache_decision(
    introspector: &Introspector,
    judged: Result<&VerifiedToken, &Reject>,
    now: u64,
) -> String {
    match judged {
        Ok(token) => {
            let left = token.exp.saturating_sub(now);
            let max_ttl = introspector.max_ttl().as_secs();
            match left < max_ttl {
                true => {
                    format!("active: cached {left}s, until the token expires (max_ttl {max_ttl}s)")
                }
                false => {
                    format!("active: cached {max_ttl}s (max_ttl; the token expires in {left}s)")
                }
            }
        }
        Err(reject) => format!(
            "refused ({}): remembered {}s (negative_ttl)",
            reject.reason(),
            introspector.negative_ttl().as_secs()
        ),
    }
}

/// PURE: an introspection answer with every member that could be a secret
/// (a token, a secret) replaced by `"…"`.
fn elide_secrets(mut answer: serde_json::Value) -> serde_json::Value {
    if let Some(members) = answer.as_object_mut() {
        for (name, value) in members.iter_mut() {
            let name = name.to_ascii_lowercase();
            if (name.contains("token") && name != "token_type") || name.contains("secret") {
                *value = serde_json::Value::String("…".into());
            }
        }
    }
    answer
}

/// PURE: the line after the decision for a token the decision did not reach.
fn token_alone(verifier: &Verifier, verified: Result<&VerifiedToken, &Reject>) -> String {
    match verified {
        Ok(v) => format!(
            "token (not reached by the decision): valid, {}",
            identity(verifier, v)
        ),
        Err(reject) => format!(
            "token (not reached by the decision): FAIL {}: {reject}",
            reject.reason()
        ),
    }
}

/// PURE: who a verified token speaks for, as `verify` prints it.
fn identity(verifier: &Verifier, token: &VerifiedToken) -> String {
    let scopes: Vec<&str> = token.scopes().collect();
    format!(
        "issuer {}, scopes [{}]",
        verifier.issuer_name(token.issuer),
        scopes.join(" ")
    )
}

/// PURE: which `match` allowed issuer `id` (named `iss` in the token), when one did.
fn matched(guard: &GuardConfig, id: IssuerId, iss: &str) -> Option<String> {
    let issuer = guard.issuers.get(id.index())?;
    Some(match issuer.matched.as_ref()? {
        Matched::Listed => format!("{} is in a match list of issuers", issuer.issuer),
        Matched::Tenant { pattern, tenant } => {
            format!("matched pattern {pattern} with tenant {tenant}")
        }
        Matched::Open(open) => format!(
            "matched pattern {} with tenant {} (its regex)",
            open.pattern,
            open.tenant(iss)?
        ),
    })
}

/// Why a `verify` request could not be built.
enum RequestError {
    /// Bad flags (exit 64).
    Usage(String),
    /// A request the proxy's HTTP parser refuses (a 400).
    Unparsable(String),
}

/// The request a caller would send: method and target as spelled, `Host`,
/// `Authorization: Bearer <token>` when there is a token (`DPoP <token>` and
/// the `DPoP` header when there is a proof).
fn request(asked: &Asked<'_>, token: Option<&str>) -> Result<Request<()>, RequestError> {
    let method = hyper::Method::from_bytes(asked.method.as_bytes())
        .map_err(|_| RequestError::Unparsable(format!("not an HTTP method: {:?}", asked.method)))?;
    let target = asked
        .target
        .parse::<hyper::Uri>()
        .map_err(|e| RequestError::Unparsable(format!("not a request target: {e}")))?;
    let mut req = Request::builder().method(method).uri(target);
    if !asked.host.is_empty() {
        let host = HeaderValue::from_str(asked.host)
            .map_err(|_| RequestError::Unparsable(format!("not a Host value: {:?}", asked.host)))?;
        req = req.header(HOST, host);
    }
    if let Some(token) = token {
        let scheme = if asked.dpop.is_some() {
            "DPoP"
        } else {
            "Bearer"
        };
        let value = HeaderValue::from_str(&format!("{scheme} {token}"))
            .map_err(|_| RequestError::Usage("the token is not a valid header value".into()))?;
        req = req.header(AUTHORIZATION, value);
    }
    if let Some(proof) = asked.dpop {
        let value = HeaderValue::from_str(proof).map_err(|_| {
            RequestError::Usage("the DPoP proof is not a valid header value".into())
        })?;
        req = req.header(&DPOP, value);
    }
    req.body(())
        .map_err(|e| RequestError::Unparsable(e.to_string()))
}

fn explain_rule(policy: &Policy, rule: Option<usize>) {
    if let Some(n) = rule {
        let rule = &policy.rules()[n];
        let access = match &rule.access {
            Access::Anonymous => "allows anonymous access".to_string(),
            Access::Token(req) if req.scopes.is_empty() => "asks for a valid token".to_string(),
            Access::Token(req) => format!("asks for scopes {}", req.scopes.join(" ")),
        };
        println!("  ok    {:<14} rules[{n}] {} {access}", "route", rule.name);
    }
}

/// Prints how the decision ended, the human `result:` line and the
/// `decision:` line (`allowed`: what an allow is called); `Ok` when the
/// request would be forwarded (allowed).
fn explain_decision(policy: &Policy, decision: &Decision, allowed: &str) -> Result<(), Failed> {
    let rule = decision
        .rule
        .map(|n| format!("rules[{n}] {}", policy.rules()[n].name))
        .unwrap_or_default();
    let failed = |denial: &Denial| match denial {
        Denial::NoRule => ("rule", "no rule matches this request".to_string()),
        Denial::MissingToken => ("token", denial.to_string()),
        Denial::InvalidToken(r) | Denial::Dpop(r) => (r.reason(), denial.to_string()),
        Denial::InsufficientScope(scopes) => ("rule", format!("{rule}: lacks scopes {scopes}")),
        Denial::Forbidden => ("rule", format!("{rule}: {denial}")),
    };
    match &decision.verdict {
        Verdict::Allow(allowed) => {
            let how = match allowed {
                Allowed::Anonymous => "allows anonymous access",
                Allowed::ValidToken(_) => "requirements met",
                Allowed::NoTokenPermissive => {
                    "lets a request without a token through (permissive mode)"
                }
            };
            println!("  ok    {:<14} {rule} {how}", "rule");
        }
        Verdict::Audit(denial) => {
            let (check, why) = failed(denial);
            println!("  FAIL  {check:<14} {why} (audit mode: forwarded anyway)");
        }
        Verdict::Deny(denial) => {
            let (check, why) = failed(denial);
            println!("  FAIL  {check:<14} {why}");
        }
        Verdict::Refuse(e) => println!("  FAIL  {:<14} {e}", "request"),
    }
    match decision.verdict.failure() {
        None => {
            println!("result: ALLOWED");
            println!("decision: 200 {allowed}");
            Ok(())
        }
        Some(failure) => {
            let (status, label) = crate::respond::status_and_label(&failure);
            println!("result: REJECTED with {} {label}", status.as_u16());
            println!("decision: {} {label}", status.as_u16());
            Err(Failed::Said)
        }
    }
}
