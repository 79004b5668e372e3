//! The HTTP client for token and JWKS fetches, and the TLS client setup both
//! it and the upstream pools dial with.

use crate::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a TLS client configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    #[error("TLS client setup: {0}")]
    Setup(#[source] rustls::Error),
    #[error("client certificate: {0}")]
    ClientCertificate(#[source] rustls::Error),
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` is set but cannot be read.
    #[error("system trust store: {0}")]
    SystemTrust(String),
}

/// Plain TCP or TLS (per the URI's scheme) to an upstream or a token server.
pub type Connector = HttpsConnector<HttpConnector>;

/// HTTP/1.1 + HTTPS client with connection pooling for token and JWKS fetches
/// (hyper-util's pool, keyed by host); also carries the connector each
/// `Upstream` builds its own single-host pool from.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Body>,
    /// What connectors for upstreams are built from.
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
}

/// The protocols a TLS connection offers by ALPN (plain TCP ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
    /// h2 and http/1.1: the server picks.
    Both,
}

/// Why a [`HttpClient::fetch`] got no whole answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailed {
    /// No connection, a broken one, or a body past its cap.
    #[error("{0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
}

/// A whole answer: its status and headers, and its body (capped).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpClient {
    pub fn request(&self, req: Request<Body>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(req)
    }

    /// Sends `req` and reads the whole answer, its body at most `max_body`
    /// bytes, all within `timeout`: the one fetch of token servers, JWKS and
    /// discovery documents.
    pub async fn fetch(
        &self,
        req: Request<Body>,
        max_body: usize,
        timeout: Duration,
    ) -> Result<Answer, FetchFailed> {
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchFailed::Transport(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| FetchFailed::Transport(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchFailed::Timeout)?
    }

    /// A connector with this client's TLS and connect timeout, offering
    /// `alpn` on TLS connections (an upstream's own pool dials with it).
    pub fn connector(&self, alpn: Alpn) -> Connector {
        connector(self.connect_timeout, (*self.tls).clone(), alpn)
    }

    /// This client, or one like it that dials TLS with `tls` when given (an
    /// issuer's or a token source's own `tls` block).
    pub fn with_tls(&self, tls: Option<&rustls::ClientConfig>) -> HttpClient {
        match tls {
            Some(tls) => build(self.connect_timeout, tls.clone()),
            None => self.clone(),
        }
    }
}

/// Builds the pooled client. TLS uses `tls` when given (extra CAs, client
/// certificate), else the trusted roots (bundled and system).
pub fn http_client(
    connect_timeout: Duration,
    tls: Option<&rustls::ClientConfig>,
) -> Result<HttpClient, ClientError> {
    let tls = match tls {
        Some(config) => config.clone(),
        None => client_tls(&[], None)?,
    };
    Ok(build(connect_timeout, tls))
}

fn build(connect_timeout: Duration, tls: rustls::ClientConfig) -> HttpClient {
    HttpClient {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector(connect_timeout, tls.clone(), Alpn::Http1)),
        tls: Arc::new(tls),
        connect_timeout,
    }
}

fn connector(connect_timeout: Duration, tls: rustls::ClientConfig, alpn: Alpn) -> Connector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::H2 => builder.enable_http2().wrap_connector(http),
        Alpn::Both => builder.enable_all_versions().wrap_connector(http),
    }
}

/// Pooled connections unused this long are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A TLS client configuration: the trusted roots ([`trusted_roots`]) plus
/// `extra_roots`, presenting `identity` (certificate chain and key) when a
/// server asks (mTLS).
pub fn client_tls(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = trusted_roots()?;
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(ClientError::CaCertificate)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(ClientError::Setup)?
    .with_root_certificates(roots);
    // ALPN is left to hyper-rustls, which sets it for the protocols it enables.
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(ClientError::ClientCertificate)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The roots every TLS client trusts: the bundled web PKI roots and the system
/// trust store — `SSL_CERT_FILE`/`SSL_CERT_DIR` when set, else the OS bundle
/// (`/etc/ssl/certs/ca-certificates.crt` on Debian and distroless), where a
/// cluster or corporate CA is usually installed. A trust store named by
/// environment that cannot be read is an error; a machine without an OS bundle
/// is not (the bundled roots remain).
pub fn trusted_roots() -> Result<rustls::RootCertStore, ClientError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    let named = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
    if named {
        if let Some(e) = system.errors.first() {
            return Err(ClientError::SystemTrust(e.to_string()));
        }
    }
    // Certificates rustls cannot use as anchors (expired formats, v1) are skipped.
    roots.add_parsable_certificates(system.certs);
    Ok(roots)
}

/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// A credential kept in a file (a projected service-account token, a Vault
/// agent sink), read at each use so a rotated one is picked up: its content
/// without surrounding white space; an error names the file and why.
pub async fn read_token_file(path: &Path) -> Result<String, String> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "{} is {size} bytes, more than a token",
            path.display()
        ));
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

/// An error with its causes, `outer: inner: root` (hyper-util's client errors
/// say only "client error (Connect)" without them).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
