//! The HTTP client for token and JWKS fetches, and the TLS client setup both
//! it and the upstream pools dial with.

use crate::body::Body;
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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
}

/// Plain TCP or TLS (per the URI's scheme) to an upstream or a token server.
pub type Connector = HttpsConnector<HttpConnector>;

/// HTTP/1.1 + HTTPS client with connection pooling for token and JWKS fetches
/// (hyper-util's pool, keyed by host); also carries the connector each
/// `Upstream` builds its own single-host pool from.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Body>,
    pub(crate) connector: Connector,
}

impl HttpClient {
    pub fn request(&self, req: Request<Body>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(req)
    }
}

/// Builds the pooled client. TLS uses `tls` when given (extra CAs, client
/// certificate), else the bundled web PKI roots.
pub fn http_client(
    connect_timeout: Duration,
    tls: Option<&rustls::ClientConfig>,
) -> Result<HttpClient, ClientError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = match tls {
        Some(config) => config.clone(),
        None => client_tls(&[], None)?,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HttpClient {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(https.clone()),
        connector: https,
    })
}

/// Pooled connections unused this long are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A TLS client configuration: the bundled web PKI roots plus `extra_roots`,
/// presenting `identity` (certificate chain and key) when a server asks (mTLS).
pub fn client_tls(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
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
