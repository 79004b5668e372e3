//! The `inbound` and `authz` sections: their listeners, the inbound upstream,
//! and the guard both hold ([`super::guard`]). Their YAML shape, their
//! validated types and their validation.

use super::guard::{GuardConfig, RawDpop, RawForward, RawGuard, RawLimits, RawTokenCache};
use super::issuers::RawIssuer;
use super::raw::RawTimeouts;
use super::rules::RawRule;
use super::{Timeouts, UpstreamProtocol, Validator};
use hyper::Uri;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    pub listen: String,
    pub tls: Option<RawTls>,
    pub upstream: String,
    /// How to speak to `upstream`: http1, h2 or auto.
    pub protocol: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub forward: RawForward,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub token_cache: RawTokenCache,
    #[serde(default)]
    pub dpop: RawDpop,
    pub client_certificate_header: Option<RawCertHeader>,
}

/// `client_certificate_header`: where a TLS-terminating proxy in front
/// passes the client certificate, and which peers may.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertHeader {
    pub name: String,
    #[serde(default)]
    pub trusted_peers: Vec<String>,
}

/// The client certificate as a TLS-terminating proxy in front passes it:
/// read from header `name` only on connections from `trusted_peers`, and
/// removed from every request before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertHeader {
    pub name: hyper::header::HeaderName,
    pub trusted_peers: Vec<ipnet::IpNet>,
}

/// `inbound`'s fields without those about forwarding (`upstream`,
/// `protocol`, `tls`); `listen` has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthz {
    pub listen: Option<String>,
    /// Envoy's ext_authz gRPC service, on its own port (off when absent).
    pub grpc_listen: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub forward: RawForward,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub token_cache: RawTokenCache,
    #[serde(default)]
    pub dpop: RawDpop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
    /// Client certificates are asked for and verified against this CA.
    pub client_ca_file: Option<String>,
    /// `optional | required`: client certificates are asked for (with no
    /// `client_ca_file`, any certificate whose key the client holds).
    pub client_certificates: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub upstream: Uri,
    /// How tokengate speaks to `upstream` (`protocol:` in the file).
    pub upstream_protocol: UpstreamProtocol,
    pub timeouts: Timeouts,
    pub guard: GuardConfig,
    /// A client certificate passed by a proxy in front (RFC 8705 behind a
    /// TLS-terminating ingress).
    pub client_certificate_header: Option<CertHeader>,
}

/// The `authz` section: a listener that answers "may this request pass?" for
/// a fronting proxy (nginx `auth_request`, Traefik `forwardAuth`, Envoy
/// `ext_authz`) and forwards nothing.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    /// Default `127.0.0.1:9191`: only the fronting proxy may reach it, since
    /// it trusts the `X-Forwarded-*` / `X-Original-*` headers it is sent.
    pub listen: SocketAddr,
    /// Envoy's `ext_authz` gRPC service (`Authorization/Check`), on its own
    /// port; off unless set.
    pub grpc_listen: Option<SocketAddr>,
    /// `header_read` and `drain` apply; the upstream ones keep their defaults
    /// (the connect timeout is that of JWKS fetches).
    pub timeouts: Timeouts,
    pub guard: GuardConfig,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The client certificates asked for: what a certificate-bound token
    /// (RFC 8705) is checked against.
    pub clients: ClientCerts,
}

/// The client certificates the inbound TLS listener asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCerts {
    None,
    /// Any certificate whose key the client proves it holds (self-signed
    /// included, RFC 8705 §2.2): what a certificate-bound token names is
    /// what authenticates it.
    Any {
        required: bool,
    },
    /// Certificates chaining to the CAs in `ca_file`.
    Ca {
        ca_file: PathBuf,
        required: bool,
    },
}

impl Validator<'_> {
    pub(super) fn inbound(&mut self, raw: RawInbound) -> Option<InboundConfig> {
        let listen = self.socket_addr("inbound.listen", &raw.listen);
        let upstream = self.http_uri("inbound.upstream", &raw.upstream);
        let upstream_protocol =
            self.upstream_protocol("inbound.protocol", raw.protocol.as_ref(), upstream.as_ref());
        let tls = raw.tls.map(|t| TlsFiles {
            cert_file: PathBuf::from(
                self.text("inbound.tls.cert_file", &t.cert_file)
                    .unwrap_or_default(),
            ),
            key_file: PathBuf::from(
                self.text("inbound.tls.key_file", &t.key_file)
                    .unwrap_or_default(),
            ),
            clients: self.client_certs(&t),
        });
        let timeouts = self.timeouts("inbound.timeouts", &raw.timeouts);
        let guard = self.guard(
            "inbound",
            RawGuard {
                mode: raw.mode,
                issuers: raw.issuers,
                rules: raw.rules,
                forward: raw.forward,
                limits: raw.limits,
                token_cache: raw.token_cache,
                dpop: raw.dpop,
            },
        );
        let client_certificate_header = raw
            .client_certificate_header
            .as_ref()
            .and_then(|h| self.cert_header(h));
        Some(InboundConfig {
            listen: listen?,
            tls,
            upstream: upstream?,
            upstream_protocol,
            timeouts,
            guard,
            client_certificate_header,
        })
    }

    /// `inbound.client_certificate_header`: a header name and the peers
    /// (addresses or CIDR ranges; at least one) allowed to set it.
    fn cert_header(&mut self, raw: &RawCertHeader) -> Option<CertHeader> {
        let path = "inbound.client_certificate_header";
        let name = hyper::header::HeaderName::from_bytes(raw.name.as_bytes());
        if name.is_err() {
            self.error(
                format!("{path}.name"),
                format!("{:?} is not a header name", raw.name),
            );
        }
        if raw.trusted_peers.is_empty() {
            self.error(
                format!("{path}.trusted_peers"),
                "name the peers allowed to set it (the proxy in front): anyone else could claim any certificate",
            );
        }
        let trusted_peers: Vec<ipnet::IpNet> = raw
            .trusted_peers
            .iter()
            .enumerate()
            .filter_map(|(i, peer)| {
                let parsed = peer
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| peer.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                if parsed.is_err() {
                    self.error(
                        format!("{path}.trusted_peers[{i}]"),
                        format!("{peer:?} is not an address or CIDR range"),
                    );
                }
                parsed.ok()
            })
            .collect();
        Some(CertHeader {
            name: name.ok()?,
            trusted_peers,
        })
    }

    /// `inbound.tls`'s client certificates: none asked for unless
    /// `client_ca_file` or `client_certificates` is set; optional unless
    /// `client_certificates: required`.
    fn client_certs(&mut self, raw: &RawTls) -> ClientCerts {
        let required = match raw.client_certificates.as_deref() {
            None => None,
            Some(mode) => self.one_of(
                "inbound.tls.client_certificates",
                mode,
                &[("optional", false), ("required", true)],
            ),
        };
        let ca_file = raw.client_ca_file.as_ref().and_then(|f| {
            self.text("inbound.tls.client_ca_file", f)
                .map(PathBuf::from)
        });
        match (ca_file, required) {
            (Some(ca_file), required) => ClientCerts::Ca {
                ca_file,
                required: required.unwrap_or(false),
            },
            (None, Some(required)) => ClientCerts::Any { required },
            (None, None) => ClientCerts::None,
        }
    }

    /// The `authz` section: `inbound` without forwarding. What the inbound
    /// guard strips before forwarding reaches the app through the fronting
    /// proxy instead, so override headers are always checked, never
    /// stripped: the listener reads them as namings of the original request,
    /// which must agree with it (`authz::original`), and its guard keeps them.
    pub(super) fn authz(&mut self, raw: RawAuthz) -> Option<AuthzConfig> {
        let listen = match &raw.listen {
            Some(l) => self.socket_addr("authz.listen", l),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9191))),
        };
        let grpc_listen = raw
            .grpc_listen
            .as_ref()
            .and_then(|l| self.socket_addr("authz.grpc_listen", l));
        let timeouts = self.timeouts("authz.timeouts", &raw.timeouts);
        let forwarding = [
            ("upstream_connect", raw.timeouts.upstream_connect.is_some()),
            (
                "upstream_response",
                raw.timeouts.upstream_response.is_some(),
            ),
            ("tunnel_idle", raw.timeouts.tunnel_idle.is_some()),
        ];
        for (field, _) in forwarding.iter().filter(|(_, set)| *set) {
            self.error(
                format!("authz.timeouts.{field}"),
                "authz forwards nothing: only header_read and drain apply",
            );
        }
        if raw.forward.authorization.is_some() {
            self.error(
                "authz.forward.authorization",
                "authz forwards nothing: the fronting proxy decides what the app gets",
            );
        }
        if raw.forward.override_headers.is_some() {
            self.error(
                "authz.forward.override_headers",
                "authz cannot strip headers from what the app gets: override headers are always checked",
            );
        }
        let mut guard = self.guard(
            "authz",
            RawGuard {
                mode: raw.mode,
                issuers: raw.issuers,
                rules: raw.rules,
                forward: raw.forward,
                limits: raw.limits,
                token_cache: raw.token_cache,
                dpop: raw.dpop,
            },
        );
        guard.forward.keep_override_headers = true;
        Some(AuthzConfig {
            listen: listen?,
            grpc_listen,
            timeouts,
            guard,
        })
    }
}
