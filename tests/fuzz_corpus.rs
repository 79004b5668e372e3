//! Every committed fuzz corpus file (fuzz/corpus/<target>/), replayed through
//! its target's body under stable `cargo test`: an input that once crashed a
//! target, added to its corpus, can never crash it again unnoticed. The
//! bodies are fuzz/src/lib.rs itself.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// Runs every file of `target`'s corpus through `body`; returns how many.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{} crashed {target}", file.display());
    }
    assert!(!files.is_empty(), "{target} has no corpus");
    files.len()
}

#[test]
fn token_corpus() {
    replay("token", targets::token);
}

#[test]
fn dpop_proof_corpus() {
    let n = replay("dpop_proof", targets::dpop_proof);
    // The corpus's valid proofs are accepted: the oracle above ran on them.
    for valid in [
        "valid-es256",
        "valid-eddsa",
        "valid-rs256",
        "htu-normalized",
    ] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/dpop_proof")
            .join(valid);
        assert!(
            targets::dpop_proof_accepts(&std::fs::read(file).unwrap()),
            "{valid}"
        );
    }
    assert!(n >= 12);
}

#[test]
fn claims_corpus() {
    replay("claims", targets::claims);
}

#[test]
fn config_corpus() {
    replay("config", targets::config);
}

#[test]
fn jwks_corpus() {
    replay("jwks", targets::jwks);
}

#[test]
fn token_answer_corpus() {
    replay("token_answer", targets::token_answer);
}

#[test]
fn path_and_host_corpus() {
    replay("path_and_host", targets::path_and_host);
}

#[test]
fn rules_corpus() {
    replay("rules", targets::rules);
}

/// The oracle is live: the corpus's valid tokens are accepted (so a fuzzer
/// mutating them reaches the assertion), and a token whose signature belongs
/// to another message is refused.
#[test]
fn the_token_target_accepts_the_fixture_tokens_and_nothing_resigned() {
    let valid =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/token/rs256-valid"))
            .unwrap();
    assert!(
        targets::accepts(&valid),
        "the fixture token verifies at NOW"
    );
    let text = String::from_utf8(valid).unwrap();
    let (rest, _) = text.rsplit_once('.').unwrap();
    let other = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/token/rs256-unique"),
    )
    .unwrap();
    let (_, foreign) = other.rsplit_once('.').unwrap();
    assert!(!targets::accepts(format!("{rest}.{foreign}").as_bytes()));
}
