//! A TLS client presenting a client certificate (rcgen makes it, rustls
//! presents it): what certificate-bound tokens (RFC 8705) are bound to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::net::SocketAddr;

/// A TLS listener's self-signed certificate for `localhost` and
/// `127.0.0.1`, in files.
pub struct ServerCert {
    /// What the test client trusts.
    pub cert: rustls::pki_types::CertificateDer<'static>,
    cert_file: tempfile::TempPath,
    key_file: tempfile::TempPath,
}

impl ServerCert {
    pub fn generate() -> ServerCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        ServerCert {
            cert: made.cert.der().clone(),
            cert_file: super::temp_file("tls-server.crt", &made.cert.pem()),
            key_file: super::temp_file("tls-server.key", &made.signing_key.serialize_pem()),
        }
    }

    /// Its certificate's and key's files (PEM).
    pub fn files(&self) -> (&std::path::Path, &std::path::Path) {
        (&self.cert_file, &self.key_file)
    }

    /// `inbound.tls` serving it, with `extra` fields (`client_certificates: …`).
    pub fn tls_yaml(&self, extra: &str) -> String {
        format!(
            "{{ cert_file: \"{}\", key_file: \"{}\", {extra} }}",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}

/// A PEM as nginx's `$ssl_client_escaped_cert` passes it (and as
/// `decodeURIComponent` reads it).
pub fn escaped_pem(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A client certificate (self-signed: RFC 8705 §2.2) and its key, for rustls.
pub struct ClientCert {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
    /// What a token bound to it carries in `cnf.x5t#S256`.
    pub x5t: String,
}

/// A fresh self-signed client certificate for `name`.
pub fn client_cert(name: &str) -> ClientCert {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    ClientCert::of(&made)
}

impl ClientCert {
    /// `made`, as rustls presents it.
    pub fn of(made: &rcgen::CertifiedKey<rcgen::KeyPair>) -> ClientCert {
        let der = made.cert.der().clone();
        let x5t =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
        ClientCert {
            chain: vec![der],
            key: rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .unwrap(),
            x5t,
        }
    }
}

/// One HTTP/1.1 request as raw bytes over TLS to `addr` (trusting `server`),
/// presenting `cert` if given; the answer's status and body, or `None` when
/// the handshake or the connection failed.
pub async fn tls_request(
    addr: SocketAddr,
    server: &rustls::pki_types::CertificateDer<'static>,
    cert: Option<&ClientCert>,
    request: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector.connect(name, tcp).await.ok()?;
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut answer),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.get(9..12)?.parse().ok()?, body.to_string()))
}
