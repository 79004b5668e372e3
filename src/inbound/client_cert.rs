//! PURE: a client certificate as a TLS-terminating proxy in front passes it
//! (`inbound.client_certificate_header`), read as the `x5t#S256` a
//! certificate-bound token names: only from a trusted peer, only from one
//! header line, in the forms proxies send:
//!
//! - a URL-encoded PEM (ingress-nginx's `ssl-client-cert`, nginx's
//!   `$ssl_client_escaped_cert`);
//! - RFC 9440's `Client-Cert`: the DER as a structured-field byte sequence,
//!   `:base64:`;
//! - Envoy's `X-Forwarded-Client-Cert` (one element): its `Hash=` (the
//!   hex SHA-256 of the DER), else its `Cert=` (a URL-encoded PEM).

use crate::config::CertHeader;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::header::HeaderMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::IpAddr;

/// PURE: the `x5t#S256` of the certificate `config`'s header carries on a
/// request from `peer`; `None` from an untrusted peer, without exactly one
/// such header, or with one that names no certificate.
pub fn passed_certificate(
    config: &CertHeader,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Option<String> {
    if !config.trusted_peers.iter().any(|net| net.contains(&peer)) {
        return None;
    }
    let mut values = headers.get_all(&config.name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    thumbprint(value.to_str().ok()?)
}

/// PURE: the `x5t#S256` of the certificate a header value carries.
fn thumbprint(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(b64) = value.strip_prefix(':').and_then(|v| v.strip_suffix(':')) {
        return Some(crate::sha256_base64url(&STANDARD.decode(b64).ok()?));
    }
    if value.contains("Hash=") || value.contains("Cert=") {
        return xfcc(value);
    }
    from_pem(value)
}

/// Envoy's XFCC, one element (a chain of proxies is not a certificate).
fn xfcc(value: &str) -> Option<String> {
    if value.contains(',') {
        return None;
    }
    let field = |key: &str| {
        value.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().trim_matches('"'))
        })
    };
    if let Some(hex) = field("Hash") {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        return bytes
            .filter(|b| b.len() == 32)
            .map(|b| URL_SAFE_NO_PAD.encode(b));
    }
    from_pem(field("Cert")?)
}

/// A URL-encoded (or plain) PEM certificate.
fn from_pem(value: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?;
    let der = CertificateDer::from_pem_slice(decoded.as_bytes()).ok()?;
    Some(crate::sha256_base64url(&der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::digest;
    use hyper::header::{HeaderName, HeaderValue};

    #[test]
    fn each_form_a_proxy_passes_is_read_and_only_from_a_trusted_peer() {
        let made = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let der = made.cert.der().to_vec();
        let want = crate::sha256_base64url(&der);
        let pem = made.cert.pem();
        let url_encoded: String =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let hex: String = digest::digest(&digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let config = |name: &str| CertHeader {
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            trusted_peers: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        let trusted: IpAddr = "10.1.2.3".parse().unwrap();
        let cases: Vec<(&str, Vec<String>, IpAddr, Option<&str>)> = vec![
            (
                "ssl-client-cert",
                vec![url_encoded.clone()],
                trusted,
                Some(&want),
            ),
            (
                "client-cert",
                vec![format!(":{}:", STANDARD.encode(&der))],
                trusted,
                Some(&want),
            ),
            (
                "x-forwarded-client-cert",
                vec![format!("By=spiffe://a;Hash={hex};Subject=\"CN=client\"")],
                trusted,
                Some(&want),
            ),
            (
                "x-forwarded-client-cert",
                vec![format!("By=spiffe://a;Cert=\"{url_encoded}\"")],
                trusted,
                Some(&want),
            ),
            (
                "ssl-client-cert",
                vec![url_encoded.clone()],
                "::1".parse().unwrap(),
                Some(&want),
            ),
            // Not from a trusted peer, two lines, two hops, or no certificate: none.
            (
                "ssl-client-cert",
                vec![url_encoded.clone()],
                "192.0.2.1".parse().unwrap(),
                None,
            ),
            (
                "ssl-client-cert",
                vec![url_encoded.clone(), url_encoded.clone()],
                trusted,
                None,
            ),
            (
                "x-forwarded-client-cert",
                vec![format!("Hash={hex},Hash={hex}")],
                trusted,
                None,
            ),
            (
                "x-forwarded-client-cert",
                vec!["Hash=abcd".to_string()],
                trusted,
                None,
            ),
            ("ssl-client-cert", vec!["forged".to_string()], trusted, None),
            ("ssl-client-cert", vec![], trusted, None),
        ];
        for (name, values, peer, want) in cases {
            let mut headers = HeaderMap::new();
            for v in &values {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            let got = passed_certificate(&config(name), &headers, peer);
            assert_eq!(got.as_deref(), want, "{name} {values:?} from {peer}");
        }
    }
}
