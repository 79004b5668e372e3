//! The forwarding step shared by both directions: a connection pool per
//! upstream, URI rewrite, hop-by-hop removal, `X-Forwarded-*` and `Forwarded`,
//! timeouts, WebSocket upgrades and their tunnels.

mod pool;
mod tunnel;

use crate::body::{from_upstream, streamed, Body, GiveBack};
use crate::client::{Alpn, HttpClient};
use crate::config::UpstreamProtocol;
use crate::error::ProxyError;
use crate::grpc::{grpc_timeout, Protocol, GRPC_TIMEOUT};
use crate::headers::{
    strip_hop_by_hop, Hop, FORWARDED, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use crate::server::Downstream;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use pool::Pool;
use std::time::Duration;
use tunnel::tunnel;

/// PURE: whether a request offering `upgrade` (the `Upgrade` value
/// [`strip_hop_by_hop`] returned) may switch to WebSocket (RFC 6455: an HTTP/1.1
/// GET), the one protocol tokengate splices. Every other offer is dropped and
/// the request goes on as plain HTTP, as RFC 9110 §7.8 lets a server ignore
/// `Upgrade`: an h2c tunnel would carry HTTP/2 requests no rule ever saw, and an
/// unknown protocol is a tunnel nobody checked. A list naming WebSocket among
/// others (`websocket, h2c`) is offered as WebSocket alone.
pub fn offers_websocket(method: &Method, version: Version, upgrade: Option<&HeaderValue>) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && upgrade.and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// PURE: a 101 switches to WebSocket: exactly one `Upgrade`, naming it. A 101
/// naming another protocol or none would open a tunnel that was never asked for.
fn switched_to_websocket(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let first = upgrades.next();
    upgrades.next().is_none()
        && first
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");
/// An upstream URL that cannot be dialled (config validation catches these first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamUrlError {
    #[error("upstream URL needs host:port")]
    NoAuthority,
    #[error("upstream URL: {0}")]
    Invalid(String),
}

/// Where requests are forwarded.
pub struct Upstream {
    pool: Pool,
    direction: Direction,
    /// The upstream's `host[:port]` as a Host header value.
    host: HeaderValue,
    /// Path prefix of the upstream URL without a trailing slash ("" for none).
    base_path: String,
    /// The upstream's origin, normalized as a DPoP proof's `htu` names it,
    /// and the base path: where a request's path goes on.
    base_url: String,
    response_timeout: Duration,
    /// An upgraded connection with no traffic either way this long is closed.
    tunnel_idle: Duration,
}

/// Which side of the app a forward serves; decides Host and `X-Forwarded-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the app on loopback: keep the Host the guard settled on, and set
    /// `X-Forwarded-For/Proto/Host` and `Forwarded`, which tokengate owns (the
    /// caller's were removed before the rules ran).
    Inbound,
    /// From the app to an API: Host becomes the upstream's, and nothing about the
    /// app's network is added.
    Outbound,
}

impl Upstream {
    pub fn new(
        client: HttpClient,
        url: &Uri,
        protocol: UpstreamProtocol,
        response_timeout: Duration,
        tunnel_idle: Duration,
        direction: Direction,
    ) -> Result<Self, UpstreamUrlError> {
        let authority = url
            .authority()
            .cloned()
            .ok_or(UpstreamUrlError::NoAuthority)?;
        let origin = Uri::builder()
            .scheme(url.scheme().cloned().unwrap_or(Scheme::HTTP))
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamUrlError::Invalid(e.to_string()))?;
        Ok(Upstream {
            pool: Pool::new(
                client.connector(match protocol {
                    UpstreamProtocol::Http1 => Alpn::Http1,
                    UpstreamProtocol::H2 => Alpn::H2,
                    UpstreamProtocol::Auto => Alpn::Both,
                }),
                origin,
                protocol,
            ),
            direction,
            host: HeaderValue::from_str(authority.as_str())
                .map_err(|e| UpstreamUrlError::Invalid(e.to_string()))?,
            base_path: url.path().trim_end_matches('/').to_string(),
            base_url: format!(
                "{}{}",
                crate::dpop_key::htu_origin(url),
                url.path().trim_end_matches('/')
            ),
            response_timeout,
            tunnel_idle,
        })
    }

    /// Sends `req` upstream and returns the answer (streamed, trailers
    /// included). The caller has already removed hop-by-hop headers with
    /// [`strip_hop_by_hop`] (before adding any header of its own, so
    /// `Connection` cannot name those away) and passes what they asked
    /// ([`Hop`]): a WebSocket upgrade ([`offers_websocket`]) is asked of the
    /// upstream, and spliced through if it switches to WebSocket (any other 101
    /// is a 502); `te: trailers` is said again to an HTTP/2 upstream. Inbound,
    /// `host` is the Host the app receives (the guard's canonical host; `None`:
    /// the upstream's own); outbound ignores it.
    pub async fn forward(
        &self,
        req: Request<Body>,
        from: &Downstream,
        hop: Hop,
        host: Option<HeaderValue>,
    ) -> Result<Response<Body>, ProxyError> {
        let websocket = offers_websocket(req.method(), req.version(), hop.upgrade.as_ref());
        // The rewrite is synchronous and kept out of this future: every request's
        // future is moved (copied) by hyper, and state held here would add to it.
        let mut req = self.upstream_request(req, from, websocket, host)?;
        let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        // A gRPC caller's deadline bounds the wait; it never extends it.
        let deadline = match Protocol::of(req.method(), req.headers()) {
            Protocol::Http => None,
            _ => req.headers().get(&GRPC_TIMEOUT).and_then(grpc_timeout),
        };
        let wait = deadline.map_or(self.response_timeout, |d| d.min(self.response_timeout));
        let sent = self.pool.send(req, hop.te_trailers);
        let (mut resp, lease) = match tokio::time::timeout(wait, sent).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(answer)) => answer,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(downstream) =
                downstream_upgrade.filter(|_| switched_to_websocket(resp.headers()))
            else {
                return Err(ProxyError::UpstreamFailed(
                    "switched protocols without the WebSocket upgrade asked for".into(),
                ));
            };
            let upstream = hyper::upgrade::on(&mut resp);
            // The tunnel keeps the connection, and so its slot.
            let (facts, idle) = (from.clone(), self.tunnel_idle);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream) {
                    tunnel(TokioIo::new(down), TokioIo::new(up), idle).await;
                }
                drop(facts);
            });
            // The connection now carries the upgraded protocol.
            return Ok(resp.map(streamed));
        }
        strip_hop_by_hop(resp.headers_mut());
        let lease = lease.map(|l| Box::new(l) as Box<dyn GiveBack>);
        Ok(resp.map(|body| from_upstream(body, lease)))
    }

    /// `req` as this upstream gets it: Host, `X-Forwarded-*` and `Forwarded` for
    /// the direction, the WebSocket upgrade if it is one, and an origin-form
    /// target under the base path.
    fn upstream_request(
        &self,
        req: Request<Body>,
        from: &Downstream,
        websocket: bool,
        host: Option<HeaderValue>,
    ) -> Result<Request<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        if websocket {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, WEBSOCKET.clone());
        }
        let host = match self.direction {
            Direction::Inbound => {
                let headers = &mut parts.headers;
                headers.insert(X_FORWARDED_FOR.clone(), from.peer_ip().clone());
                headers.insert(
                    X_FORWARDED_PROTO.clone(),
                    HeaderValue::from_static(if from.tls { "https" } else { "http" }),
                );
                headers.insert(FORWARDED.clone(), from.forwarded().clone());
                match host {
                    Some(host) => {
                        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
                        host
                    }
                    None => {
                        headers.remove(&X_FORWARDED_HOST);
                        self.host.clone()
                    }
                }
            }
            Direction::Outbound => self.host.clone(),
        };
        parts.headers.insert(header::HOST, host);
        parts.uri = self.rewrite(&parts.uri)?;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }

    /// The URL a request for `path` reaches here, without query: what a DPoP
    /// proof for it names (`htu`).
    pub fn url_of(&self, path: &str) -> String {
        let path = if path.is_empty() { "/" } else { path };
        format!("{}{path}", self.base_url)
    }

    fn rewrite(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let path_and_query = match uri.path_and_query() {
            // The common case shares the request's bytes instead of re-validating them.
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            pq => PathAndQuery::try_from(format!(
                "{}{}",
                self.base_path,
                pq.map_or("/", PathAndQuery::as_str)
            ))
            .map_err(|_| ProxyError::BadRequest("invalid request target".into()))?,
        };
        // Origin-form: the connection already goes to this upstream.
        Ok(Uri::from(path_and_query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use crate::client::http_client;

    /// Each request's future is copied whole into its connection's task, so state
    /// it carries costs every request. The header rewrite is synchronous and
    /// dialling is boxed; with both inline this future was 2.3 KiB (1.4 KiB now).
    #[test]
    fn forward_future_stays_small() {
        let client = http_client(Duration::from_secs(1), None).unwrap();
        let url = Uri::from_static("http://127.0.0.1:1/base");
        let second = Duration::from_secs(1);
        let up = Upstream::new(
            client,
            &url,
            UpstreamProtocol::Http1,
            second,
            second,
            Direction::Inbound,
        )
        .unwrap();
        let from = Downstream::new(([127, 0, 0, 1], 1).into(), false);
        let forward = up.forward(Request::new(full("")), &from, Hop::default(), None);
        let size = std::mem::size_of_val(&forward);
        assert!(size <= 2048, "forward's future is {size} bytes");
    }

    #[test]
    fn only_websocket_upgrades_on_an_http11_get() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        let cases = [
            (Method::GET, HTTP_11, v("websocket"), true),
            (Method::GET, HTTP_11, v("WebSocket"), true),
            (Method::GET, HTTP_11, v("h2c, websocket"), true),
            (Method::GET, HTTP_11, v("h2c"), false),
            (Method::GET, HTTP_11, v("H2C"), false),
            (Method::GET, HTTP_11, v("echo"), false),
            (Method::GET, HTTP_11, v("websocketx"), false),
            (Method::GET, HTTP_11, v("TLS/1.2"), false),
            (Method::GET, HTTP_11, None, false),
            (Method::POST, HTTP_11, v("websocket"), false),
            (Method::GET, HTTP_10, v("websocket"), false),
            (Method::GET, HTTP_2, v("websocket"), false),
        ];
        for (method, version, upgrade, want) in cases {
            assert_eq!(
                offers_websocket(&method, version, upgrade.as_ref()),
                want,
                "{method} {version:?} {upgrade:?}"
            );
        }
    }

    #[test]
    fn a_101_must_name_websocket_alone() {
        let cases: [(&[&str], bool); 6] = [
            (&["websocket"], true),
            (&["WebSocket"], true),
            (&[], false),
            (&["h2c"], false),
            (&["websocket, h2c"], false),
            (&["websocket", "h2c"], false),
        ];
        for (upgrades, want) in cases {
            let mut h = HeaderMap::new();
            for u in upgrades {
                h.append(header::UPGRADE, HeaderValue::from_static(u));
            }
            assert_eq!(switched_to_websocket(&h), want, "{upgrades:?}");
        }
    }

    #[test]
    fn rewrite_gives_the_origin_form_under_the_base_path() {
        let client = http_client(Duration::from_secs(1), None).unwrap();
        let up = Upstream::new(
            client.clone(),
            &"http://127.0.0.1:8080".parse().unwrap(),
            UpstreamProtocol::Http1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Direction::Inbound,
        )
        .unwrap();
        assert_eq!(
            up.rewrite(&"/a/b?x=1".parse().unwrap()).unwrap(),
            "/a/b?x=1"
        );
        let up = Upstream::new(
            client,
            &"https://app.local/base/".parse().unwrap(),
            UpstreamProtocol::Auto,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Direction::Outbound,
        )
        .unwrap();
        assert_eq!(
            up.rewrite(&"http://front/a?q".parse().unwrap()).unwrap(),
            "/base/a?q"
        );
    }
}
