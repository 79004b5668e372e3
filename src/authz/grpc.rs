//! Envoy's `ext_authz` gRPC service (`envoy.service.auth.v3.Authorization/Check`,
//! the published protos from the `envoy-types` crate, served by tonic on
//! `authz.grpc_listen`, h2c). The request Envoy describes is decided and answered as
//! on the HTTP listener; the answer is then carried in Envoy's message: an allow
//! as gRPC OK with an `OkHttpResponse` (the identity headers set, the unset
//! ones in `headers_to_remove`), a refusal as a non-OK status with a
//! `DeniedHttpResponse` (its HTTP status, `WWW-Authenticate` and JSON body).

use super::original::{self, Asked, Face, Unread};
use super::{Authz, HEADERS_TO_REMOVE};
use crate::body::Body;
use crate::grpc::grpc_status;
use crate::guard::decide::{Connection, Decision};
use crate::server::{Downstream, Handler};
use crate::swap::Swap;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tower_service::Service;

/// The gRPC face of the authz listener's current handler.
pub struct Check(pub Arc<Swap<Authz>>);

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let authz = self.0.current();
        let started = std::time::Instant::now();
        let (req, decision) = match described(request.get_ref(), &authz.identity) {
            Ok((mut req, connection)) => {
                let decision = authz.guard.decide(&mut req, connection).await;
                (req, decision)
            }
            Err(unread) => (Request::new(()), Decision::refused(unread.into())),
        };
        let resp = authz.complete(&req, decision, started);
        Ok(tonic::Response::new(carried(resp).await))
    }
}

/// PURE: the request an Envoy `CheckRequest` describes, as a request the
/// guard decides. Its method, path (which holds the query too) and host name
/// the original request, and so does every header that is a naming
/// ([`original::read`]: they must agree); pseudo-headers are left out. The
/// headers come as a map (lines of one name joined with `,`) or, with
/// Envoy's `encode_raw_headers`, as `header_map` (each line as sent).
fn described(
    check: &CheckRequest,
    identity: &[HeaderName],
) -> Result<(Request<()>, Connection<'static>), Unread> {
    let unknown = |why: &'static str| Unread::Unknown(why.into());
    let http = check
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .ok_or_else(|| unknown("the CheckRequest describes no HTTP request"))?;
    let method = Method::from_bytes(http.method.as_bytes())
        .map_err(|_| unknown("the CheckRequest's method is not a method"))?;
    let lines = http.header_map.as_ref().map_or(&[][..], |m| &m.headers[..]);
    if !lines.is_empty() && !http.headers.is_empty() {
        return Err(unknown("the CheckRequest has both headers and header_map"));
    }
    let raw_lines = lines.iter().map(|h| {
        let value = match h.raw_value.is_empty() {
            true => h.value.as_bytes(),
            false => &h.raw_value[..],
        };
        (h.key.as_str(), value)
    });
    let joined = http.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let mut headers = HeaderMap::with_capacity(lines.len() + http.headers.len());
    for (name, value) in raw_lines.chain(joined) {
        if name.starts_with(':') || name == "host" {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| unknown("the CheckRequest has a header name that is not one"))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| unknown("the CheckRequest has a header value that is not one"))?;
        headers.append(name, value);
    }
    if !http.headers.is_empty() {
        original::unjoined_targets(&headers)?;
    }
    let asked = Asked::Itself {
        method: &method,
        target: http.path.as_str().into(),
        host: Some(http.host.as_bytes()),
        face: Face::Grpc,
    };
    let read = original::read(&asked, &headers, identity)?;
    let mut req = Request::new(());
    *req.headers_mut() = headers;
    let mut connection = original::into_original(&mut req, read);
    // Envoy says the scheme of the connection the request came over.
    connection.https |= http.scheme.eq_ignore_ascii_case("https");
    Ok((req, connection))
}

/// The HTTP answer, carried as Envoy reads it.
async fn carried(resp: Response<Body>) -> CheckResponse {
    let (parts, body) = resp.into_parts();
    if parts.status == StatusCode::OK {
        let mut ok = OkHttpResponseBuilder::new();
        for (name, value) in &parts.headers {
            if *name == HEADERS_TO_REMOVE {
                let names = value.to_str().unwrap_or_default().split(',');
                for unset in names.filter(|n| !n.is_empty()) {
                    ok.remove_header(unset);
                }
            } else if let Ok(value) = value.to_str() {
                let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
                ok.add_header(name.as_str(), value, overwrite, false);
            }
        }
        let mut check = CheckResponse::with_status(tonic::Status::ok(""));
        check.set_http_response(ok);
        return check;
    }
    let mut denied = DeniedHttpResponseBuilder::new();
    denied.set_http_status(
        HttpStatusCode::try_from(i32::from(parts.status.as_u16()))
            .unwrap_or(HttpStatusCode::Forbidden),
    );
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            denied.add_header(name.as_str(), value, None, false);
        }
    }
    // A local answer's body is whole already: collecting it cannot fail.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    denied.set_body(String::from_utf8_lossy(&body));
    let code = tonic::Code::from(i32::from(grpc_status(parts.status)));
    let mut check = CheckResponse::with_status(tonic::Status::new(code, "denied"));
    check.set_http_response(denied);
    check
}

/// The `Check` service as tonic generates it, answering on a tokengate listener.
pub struct GrpcCheck(AuthorizationServer<Check>);

impl GrpcCheck {
    pub fn new(authz: Arc<Swap<Authz>>) -> Arc<GrpcCheck> {
        Arc::new(GrpcCheck(AuthorizationServer::new(Check(authz))))
    }
}

impl Handler<tonic::body::Body> for GrpcCheck {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _: Downstream,
    ) -> Response<tonic::body::Body> {
        // tonic's generated service is always ready, and never fails: its
        // errors are gRPC statuses in the response.
        match self.0.clone().call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}
