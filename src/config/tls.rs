//! Client TLS blocks (`outbound.tls`, an issuer's `tls`, a token source's
//! `tls`): extra CAs and a client certificate, loaded at validation so a bad
//! file fails at start with its path.

use super::raw::RawClientTls;
use super::Validator;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

impl Validator<'_> {
    /// The TLS client configuration `raw` (at `path`) describes: the trusted
    /// roots (bundled and system) plus its `ca_file`, presenting its
    /// `cert_file`/`key_file` pair when a server asks.
    pub(super) fn client_tls(
        &mut self,
        path: &str,
        raw: &RawClientTls,
    ) -> Option<Arc<rustls::ClientConfig>> {
        self.client_tls_trusting(path, raw, Vec::new())
    }

    /// A certificate-bound token source's TLS to the upstreams of the routes
    /// injecting its tokens: presenting its own certificate, trusting what
    /// its `tls` trusts and what `outbound.tls` does.
    pub(super) fn bound_tls(
        &mut self,
        path: &str,
        own: &RawClientTls,
        upstreams: Option<&RawClientTls>,
    ) -> Option<Arc<rustls::ClientConfig>> {
        let roots = match upstreams.and_then(|t| t.ca_file.as_ref()) {
            Some(f) => self.certificates("outbound.tls.ca_file", f)?,
            None => Vec::new(),
        };
        self.client_tls_trusting(path, own, roots)
    }

    /// [`Validator::client_tls`], trusting `roots` besides.
    fn client_tls_trusting(
        &mut self,
        path: &str,
        raw: &RawClientTls,
        mut roots: Vec<CertificateDer<'static>>,
    ) -> Option<Arc<rustls::ClientConfig>> {
        if let Some(f) = &raw.ca_file {
            roots.extend(self.certificates(&format!("{path}.ca_file"), f)?);
        }
        let identity = match (&raw.cert_file, &raw.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = self.certificates(&format!("{path}.cert_file"), cert)?;
                let field = format!("{path}.key_file");
                let key = self.text(&field, key)?;
                if chain.is_empty() || self.stand_in(&key) {
                    // Stood in for: no client certificate.
                    return self.tls_config(path, roots, None);
                }
                match PrivateKeyDer::from_pem_file(&key) {
                    Ok(der) => Some((chain, der)),
                    Err(e) => {
                        self.error(field, format!("{key}: {e}"));
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    format!("{path}.cert_file"),
                    "set both cert_file and key_file for a client certificate",
                );
                return None;
            }
        };
        self.tls_config(path, roots, identity)
    }

    fn tls_config(
        &mut self,
        path: &str,
        roots: Vec<CertificateDer<'static>>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Option<Arc<rustls::ClientConfig>> {
        match crate::client::client_tls(&roots, identity) {
            Ok(config) => Some(Arc::new(config)),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// The PEM certificates in the file `file` names (at least one; none when
    /// the file is stood in for).
    fn certificates(&mut self, field: &str, file: &str) -> Option<Vec<CertificateDer<'static>>> {
        let file = self.text(field, file)?;
        if self.stand_in(&file) {
            return Some(Vec::new());
        }
        match CertificateDer::pem_file_iter(&file).and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => {
                self.error(field, format!("{file} holds no certificate"));
                None
            }
            Err(e) => {
                self.error(field, format!("{file}: {e}"));
                None
            }
        }
    }
}
