//! `tokengate check`: a config validated and summarized, each section a few
//! lines; `--online` goes on to [`super::online`].

use super::{load_with, Failed};
use crate::config::{AbsentFiles, Access, GuardConfig, KeySource, Mode, UpstreamProtocol};
use std::path::Path;

/// `  protocol h2` when an upstream's protocol is not its URL's default;
/// nothing otherwise.
fn protocol_note(url: &hyper::Uri, protocol: UpstreamProtocol) -> String {
    match protocol == UpstreamProtocol::default_for(url) {
        true => String::new(),
        false => format!("  protocol {}", protocol.name()),
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Strict => "strict",
        Mode::Permissive => "permissive",
        Mode::Audit => "audit (nothing is rejected)",
    }
}

/// The issuers and rules of an `inbound` or `authz` section.
fn print_guard(guard: &GuardConfig) {
    for iss in &guard.issuers {
        let keys = match &iss.keys {
            KeySource::Jwks(u) => format!("jwks {u}"),
            KeySource::Discovery(u) => format!("discovery {u}"),
            KeySource::None => "shared secret only".to_string(),
        };
        let algorithms: Vec<String> = iss.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let mut fetch = String::new();
        if iss.tls.is_some() {
            fetch.push_str("  own TLS");
        }
        if let Some(file) = &iss.jwks_bearer_token_file {
            fetch.push_str(&format!("  bearer from {}", file.display()));
        }
        println!(
            "  issuer {}  {keys}{fetch}  algorithms {}  audiences {}",
            iss.issuer,
            algorithms.join(", "),
            iss.audiences.join(", ")
        );
    }
    for (n, r) in guard.rules.iter().enumerate() {
        let access = match &r.access {
            Access::Anonymous => "anonymous".to_string(),
            Access::Token(req) => {
                let mut needs = Vec::new();
                if !req.scopes.is_empty() {
                    needs.push(format!("scopes {}", req.scopes.join(" ")));
                }
                for (name, value) in &req.claims {
                    needs.push(format!("claim {name} = {value}"));
                }
                match needs.is_empty() {
                    true => "any valid token".to_string(),
                    false => needs.join(", "),
                }
            }
        };
        println!("  rules[{n}] {}  {access}", r.name);
    }
}

/// `tokengate check [--online]`: the config validated and summarized; online,
/// what start-up will meet, tried now.
pub async fn check(path: &Path, online: bool) -> Result<(), Failed> {
    // Offline, files that exist only where tokengate runs (a mounted Secret,
    // a projected token) are warned about, not refused; online reads them.
    let absent = if online {
        AbsentFiles::Refuse
    } else {
        AbsentFiles::StandIn
    };
    let config = load_with(path, absent)?;
    println!("{}: OK", path.display());
    if !online {
        for file in crate::watch::named_files(path).iter().skip(1) {
            if crate::config::is_absent(file) {
                eprintln!(
                    "tokengate: warning: {} does not exist here; it must where tokengate runs \
                     (`check --online` reads it)",
                    file.display()
                );
            }
        }
    }
    println!("admin    {}", config.admin.listen);
    match &config.inbound {
        Some(i) => {
            println!(
                "inbound  {}{} → {}  mode {}{}",
                i.listen,
                if i.tls.is_some() { " (TLS)" } else { "" },
                i.upstream,
                mode_name(i.guard.mode),
                protocol_note(&i.upstream, i.upstream_protocol),
            );
            print_guard(&i.guard);
        }
        None => println!("inbound  not configured"),
    }
    if let Some(a) = &config.authz {
        let grpc = a
            .grpc_listen
            .map(|g| format!(", gRPC ext_authz {g}"))
            .unwrap_or_default();
        println!(
            "authz    {}{grpc} (answers only)  mode {}",
            a.listen,
            mode_name(a.guard.mode)
        );
        print_guard(&a.guard);
    }
    match &config.outbound {
        Some(o) => {
            println!("outbound {}", o.listen);
            for r in &o.routes {
                let token = r
                    .token
                    .map_or("none (pass-through)", |i| o.tokens[i].name.as_str());
                println!(
                    "  host {}  → {}  token {token}{}",
                    r.host.as_deref().unwrap_or("*"),
                    r.upstream,
                    protocol_note(&r.upstream, r.protocol),
                );
            }
            for t in &o.tokens {
                let kind = match &t.source {
                    crate::config::TokenSource::OAuth(g) => {
                        format!("{} {}", t.source.kind(), g.token_url)
                    }
                    crate::config::TokenSource::Login(l) => format!("login {}", l.url),
                    crate::config::TokenSource::File { path } => format!("file {}", path.display()),
                };
                let dpop = match &t.source {
                    crate::config::TokenSource::OAuth(g) => g.dpop.as_deref(),
                    _ => None,
                };
                let mut bound = String::new();
                if let Some(key) = dpop {
                    bound += &format!("  DPoP-bound ({})", key.alg());
                }
                if t.upstream_tls.is_some() {
                    bound += "  certificate-bound (its routes present the certificate)";
                }
                println!(
                    "  token {}  {kind}  renew_before {}{bound}",
                    t.name, t.renew_before
                );
            }
        }
        None => println!("outbound not configured"),
    }
    if online && !super::online::check(path, &config).await {
        return Err(Failed::Said);
    }
    Ok(())
}
