//! Fixtures for `benches/load/run.sh`: signing keys, a JWKS, PEM public keys for
//! HAProxy, repeated tokens and a file of unique tokens (one per line) for the
//! cache-miss case.
//!
//! ```text
//! cargo run --release --example load-fixtures -- <dir> [unique-token-count]
//! cargo run --release --example load-fixtures -- dpop <dir> <proof-count>
//! ```
//!
//! Every token has `iss` = `https://issuer.bench.local`, `aud` = `bench-api`,
//! `scope` = `bench:read` and is valid for 24 hours from generation.
//!
//! `dpop` writes the DPoP case's parts, made afresh before each run because a
//! proof lives at most `dpop.max_age` (1 hour at most): a key of its own issuer
//! (`https://dpop.bench.local`, `jwks-dpop.json`), a token bound to a client
//! key (`dpop-token`, RS256, `cnf.jkt`), `proof-count` proofs of that key for
//! `GET https://api.bench.local/api`, each with its own `jti`, one per line
//! (`dpop-proofs`), and a quarter as many more for warm-ups
//! (`dpop-proofs-warm`): a proof is spent once. Also the outbound DPoP case's
//! token endpoint answer (`token-answer-dpop.json`).

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokengate::demo::{unix_now, KeyKind, SigningKey};

const ISSUER: &str = "https://issuer.bench.local";
const AUDIENCE: &str = "bench-api";
const LIFETIME_SECS: u64 = 24 * 3600;
/// What the DPoP case's proofs are for (`dpop.origin` in the bench config).
const DPOP_HTU: &str = "https://api.bench.local/api";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("dpop") {
        let (dir, count) = (args.nth(1), args.next().map(|n| n.parse::<usize>()));
        let (Some(dir), Some(Ok(count))) = (dir, count) else {
            eprintln!("usage: load-fixtures dpop <dir> <proof-count>");
            return ExitCode::from(64);
        };
        return match write_dpop(Path::new(&dir), count) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load-fixtures: {dir}: {e}");
                ExitCode::from(1)
            }
        };
    }
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

fn write_dpop(dir: &Path, count: usize) -> std::io::Result<()> {
    use base64::Engine;
    std::fs::create_dir_all(dir)?;
    let issuer = SigningKey::generate(KeyKind::Rs256, "bench-dpop");
    let client = SigningKey::generate(KeyKind::Es256, "client");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(client.jwk().clone())?;
    let jkt = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
    let now = unix_now();
    let token = issuer.sign_jwt(&json!({
        "iss": "https://dpop.bench.local", "aud": AUDIENCE, "sub": "repeat", "scope": "bench:read",
        "iat": now, "exp": now + LIFETIME_SECS, "cnf": { "jkt": jkt },
    }));
    std::fs::write(
        dir.join("jwks-dpop.json"),
        json!({ "keys": [issuer.jwk()] }).to_string(),
    )?;
    std::fs::write(dir.join("dpop-token"), &token)?;
    let ath = tokengate::sha256_base64url(token.as_bytes());
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
    let proofs = |from: usize, n: usize| {
        let mut out = String::new();
        for i in from..from + n {
            let claims = json!({
                "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("bench-proof-{i}")),
                "htm": "GET", "htu": DPOP_HTU, "iat": now, "ath": ath,
            });
            out.push_str(&tokengate::demo::sign_with_header(&header, &claims, |m| {
                client.sign_raw(m)
            }));
            out.push('\n');
        }
        out
    };
    std::fs::write(dir.join("dpop-proofs"), proofs(0, count))?;
    std::fs::write(dir.join("dpop-proofs-warm"), proofs(count, count / 4))?;
    let answer = json!({
        "access_token": issuer.sign_jwt(&json!({
            "iss": "https://dpop.bench.local", "aud": AUDIENCE, "sub": "outbound",
            "iat": now, "exp": now + LIFETIME_SECS, "cnf": { "jkt": "outbound" },
        })),
        "token_type": "DPoP",
        "expires_in": LIFETIME_SECS,
    });
    std::fs::write(dir.join("token-answer-dpop.json"), answer.to_string())?;
    println!(
        "load-fixtures: a DPoP-bound token and {count} (+{}) proofs in {}",
        count / 4,
        dir.display()
    );
    Ok(())
}
