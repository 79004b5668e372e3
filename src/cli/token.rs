//! `tokengate token`: what an outbound token source gives, fetched once.

use super::{load, Failed};
use std::path::Path;

/// `tokengate token`: one outbound token fetched, its lifetime and (for a JWT)
/// its header and claims printed; never the token.
pub async fn token(path: &Path, name: &str) -> Result<(), Failed> {
    let config = load(path)?;
    let Some(outbound) = &config.outbound else {
        return Err(Failed::Usage("the config has no outbound section".into()));
    };
    let Some(t) = outbound.tokens.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = outbound.tokens.iter().map(|t| t.name.as_str()).collect();
        return Err(Failed::Usage(format!(
            "no token {name:?} (configured: {})",
            names.join(", ")
        )));
    };
    let client =
        crate::client::http_client(outbound.timeouts.upstream_connect, outbound.tls.as_deref())
            .map_err(|e| Failed::Run(e.to_string()))?
            .with_tls(t.tls.as_deref());
    let nonce = crate::outbound::source::Nonce::default();
    match crate::outbound::source::fetch(&t.source, &client, t.fetch_timeout, &nonce).await {
        Err(e) => {
            println!("token {name} ({}): FAILED: {e}", t.source.kind());
            Err(Failed::Said)
        }
        Ok(fetched) => {
            let lifetime = fetched
                .lifetime
                .map_or("not stated".to_string(), |d| format!("{}s", d.as_secs()));
            println!(
                "token {name} ({}): ok, {} bytes, fingerprint {}, lifetime {lifetime}",
                t.source.kind(),
                fetched.token.len(),
                crate::fingerprint(fetched.token.as_bytes())
            );
            match crate::unverified::header_and_claims(&fetched.token) {
                Some((header, claims)) => {
                    println!("header {header}");
                    println!(
                        "claims {}",
                        serde_json::to_string_pretty(&claims).unwrap_or_default()
                    );
                }
                None => println!("an opaque token (not a JWT): no claims to show"),
            }
            Ok(())
        }
    }
}
