//! Fixtures for `benches/load/run.sh`: signing keys, a JWKS, PEM public keys for
//! HAProxy, repeated tokens and a file of unique tokens (one per line) for the
//! cache-miss case.
//!
//! ```text
//! cargo run --release --example load-fixtures -- <dir> [unique-token-count]
//! ```
//!
//! Every token has `iss` = `https://issuer.bench.local`, `aud` = `bench-api`,
//! `scope` = `bench:read` and is valid for 24 hours from generation.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokengate::demo::{unix_now, KeyKind, SigningKey};

const ISSUER: &str = "https://issuer.bench.local";
const AUDIENCE: &str = "bench-api";
const LIFETIME_SECS: u64 = 24 * 3600;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: load-fixtures <dir> [unique-token-count]");
        return ExitCode::from(64);
    };
    let unique = match args.next().map(|n| n.parse::<usize>()) {
        None => 200_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("load-fixtures: unique-token-count: {e}");
            return ExitCode::from(64);
        }
    };
    match write_all(&dir, unique) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load-fixtures: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn write_all(dir: &Path, unique: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let rsa = SigningKey::generate(KeyKind::Rs256, "bench-rs256");
    let ec = SigningKey::generate(KeyKind::Es256, "bench-es256");
    let now = unix_now();
    let claims = |sub: &str, jti: usize| {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": "bench:read",
            "iat": now, "exp": now + LIFETIME_SECS, "jti": format!("bench-{jti}"),
        })
    };

    let jwks = json!({ "keys": [rsa.jwk(), ec.jwk()] });
    std::fs::write(dir.join("jwks.json"), jwks.to_string())?;
    std::fs::write(dir.join("rs256.pub.pem"), rsa.public_key_pem())?;
    std::fs::write(dir.join("es256.pub.pem"), ec.public_key_pem())?;
    std::fs::write(dir.join("token-rs256"), rsa.sign_jwt(&claims("repeat", 0)))?;
    std::fs::write(dir.join("token-es256"), ec.sign_jwt(&claims("repeat", 0)))?;
    // What the outbound case's token endpoint answers (served by nginx).
    let answer = json!({
        "access_token": rsa.sign_jwt(&claims("outbound", 0)),
        "token_type": "Bearer",
        "expires_in": LIFETIME_SECS,
    });
    std::fs::write(dir.join("token-answer.json"), answer.to_string())?;

    // RSA signing dominates; spread it over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = unique.div_ceil(threads.max(1));
    let chunks: Option<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (rsa, claims) = (&rsa, &claims);
                scope.spawn(move || {
                    let start = t * per_thread;
                    let end = (start + per_thread).min(unique);
                    let mut out = String::new();
                    for i in start..end {
                        out.push_str(
                            &rsa.sign_jwt(&claims(&format!("client-{}", i % 1000), i + 1)),
                        );
                        out.push('\n');
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    // A signing thread that panicked would leave the file short: refuse instead.
    let chunks = chunks.ok_or_else(|| std::io::Error::other("a signing thread failed"))?;
    std::fs::write(dir.join("tokens-rs256-unique"), chunks.concat())?;
    println!(
        "load-fixtures: {} unique RS256 tokens and keys in {}",
        unique,
        dir.display()
    );
    Ok(())
}
