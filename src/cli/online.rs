//! `tokengate check --online`: what start-up will meet, tried now. Every
//! issuer's keys are fetched (discovery, then JWKS), every outbound token once,
//! and every file the config names is read; each is printed as ok or FAIL with
//! its reason.

use crate::config::{Config, IssuerId, KeySource};
use crate::guard::jwks::Jwks;
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;

/// Runs every online check; true when all passed.
pub async fn check(path: &Path, config: &Config) -> bool {
    println!("online:");
    let mut ok = true;
    let mut report = |what: String, result: Result<String, String>| match result {
        Ok(detail) => println!("  ok    {what}: {detail}"),
        Err(why) => {
            ok = false;
            println!("  FAIL  {what}: {why}");
        }
    };
    for file in crate::watch::named_files(path).iter().skip(1) {
        let read = std::fs::metadata(file)
            .and_then(|_| std::fs::read(file))
            .map(|bytes| format!("{} bytes", bytes.len()))
            .map_err(|e| e.to_string());
        report(format!("file {}", file.display()), read);
    }
    let guards = [
        config
            .inbound
            .as_ref()
            .map(|i| ("inbound", &i.guard, i.timeouts.upstream_connect)),
        config
            .authz
            .as_ref()
            .map(|a| ("authz", &a.guard, a.timeouts.upstream_connect)),
    ];
    for (section, guard, connect) in guards.into_iter().flatten() {
        match crate::client::http_client(connect, None) {
            Err(e) => report(format!("{section} client"), Err(e.to_string())),
            Ok(client) => {
                let jwks = Jwks::new(&guard.issuers, client, Arc::new(Metrics::new()));
                for (idx, issuer) in guard.issuers.iter().enumerate() {
                    if issuer.keys == KeySource::None {
                        continue;
                    }
                    let fetched = jwks
                        .refresh(IssuerId::new(idx))
                        .await
                        .map(|_| {
                            let keys = jwks.snapshot();
                            let count = keys.issuers.get(idx).map_or(0, |s| s.keys.len());
                            format!("{count} usable keys")
                        })
                        .map_err(|e| e.to_string());
                    // `issuer …` for inbound's, `authz issuer …` for authz's.
                    let prefix = if section == "inbound" { "" } else { "authz " };
                    report(format!("{prefix}issuer {}", issuer.issuer), fetched);
                }
            }
        }
    }
    if let Some(outbound) = &config.outbound {
        match crate::client::http_client(
            outbound.timeouts.upstream_connect,
            outbound.tls.as_deref(),
        ) {
            Err(e) => report("outbound client".into(), Err(e.to_string())),
            Ok(client) => {
                for token in &outbound.tokens {
                    let client = client.with_tls(token.tls.as_deref());
                    let nonce = crate::outbound::source::Nonce::default();
                    let fetched = crate::outbound::source::fetch(
                        &token.source,
                        &client,
                        token.fetch_timeout,
                        &nonce,
                    )
                    .await
                    .map(|f| match f.lifetime {
                        Some(d) => format!("a token for {}s", d.as_secs()),
                        None => "a token (lifetime not stated)".to_string(),
                    })
                    .map_err(|e| e.to_string());
                    report(format!("token {}", token.name), fetched);
                }
            }
        }
    }
    ok
}
