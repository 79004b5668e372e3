//! Forward-auth behind a real nginx (Debian's, installed when missing): nginx
//! asks tokengate's authz listener with `auth_request` before proxying to an
//! echo app, as docs/forward-auth.md's snippet configures it. Judged by what the client
//! gets and what the app receives; requests are raw bytes on a socket.

mod support;

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;
use tokengate::demo::{DevIssuer, Echo, KeyKind, SigningKey};

/// The nginx snippet of docs/forward-auth.md: every request is first asked about at
/// tokengate's `/authz`, with the original method, host, scheme and URI; the
/// identity it answers with replaces whatever the client sent; the app is
/// sent the host and scheme tokengate judged. The client's own headers reach
/// tokengate as they reach the app, so any other naming of the request must
/// agree with nginx's.
fn server_block(port: u16, authz: std::net::SocketAddr, app: std::net::SocketAddr) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{port};

        location / {{
            auth_request /_tokengate;
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            proxy_set_header X-Auth-Subject $auth_subject;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_pass http://{app};
        }}

        location = /_tokengate {{
            internal;
            proxy_pass http://{authz}/authz;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Method $request_method;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Uri $request_uri;
        }}
    }}
"#
    )
}

/// nginx's own `auth_request` example: only `X-Original-URI` names the
/// original request. nginx sends the subrequest as GET whatever the
/// original method, and passes the client's headers to both.
fn nginx_own_example(port: u16, authz: std::net::SocketAddr, app: std::net::SocketAddr) -> String {
    format!(
        r#"
    server {{
        listen 127.0.0.1:{port};

        location / {{
            auth_request /auth;
            proxy_pass http://{app};
        }}

        location = /auth {{
            internal;
            proxy_pass http://{authz}/authz;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}
    }}
"#
    )
}

/// nginx in the foreground, one process, everything under `dir`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// A server block listening on a port, asking `authz`, proxying to `app`.
type ServerBlock = fn(u16, std::net::SocketAddr, std::net::SocketAddr) -> String;

impl Nginx {
    fn start(block: ServerBlock, authz: std::net::SocketAddr, app: std::net::SocketAddr) -> Nginx {
        let binary = process::debian_package(
            "nginx",
            || {
                ["/usr/sbin/nginx", "/usr/bin/nginx"]
                    .iter()
                    .map(std::path::PathBuf::from)
                    .find(|p| p.exists())
            },
            "the nginx auth_request test",
        );
        let dir = tempfile::tempdir().unwrap();
        // A free port for nginx, which cannot report one it picked itself.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{}}}\n",
            block(port, authz, app)
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx {
            child,
            port,
            _dir: dir,
        };
        let listening = eventually_blocking(Duration::from_millis(5000), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !listening {
            let log =
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not listen on {port}:\n{log}");
        }
        nginx
    }

    /// One raw request through nginx.
    async fn send(&self, request_line: &str, headers: &[(&str, String)]) -> RawAnswer {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        raw_request(addr, request_line, "shop.example.com", headers).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_asks_tokengate_and_the_app_sees_the_identity() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = authz_yaml(&issuer.issuer, "");
    let app = start_yaml(&yaml).await;
    wait_ready(&app).await;
    let nginx = Nginx::start(server_block, app.authz_addr.unwrap(), echo.addr);
    let reader = issuer.mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let root = issuer.mint(json!({ "sub": "root", "scope": "admin" }));
    let bearer = |t: &str| ("Authorization", format!("Bearer {t}"));

    // A valid token: the app gets the request, with the identity tokengate named.
    let status = nginx
        .send(
            "GET /orders/7?x=1",
            &[bearer(&reader), ("X-Auth-Subject", "root".into())],
        )
        .await
        .status;
    assert_eq!(status, 200);
    let seen = echo.last_headers().expect("the app was reached");
    assert_eq!(
        seen["x-auth-subject"], "alice",
        "tokengate's identity, not the client's"
    );
    assert_eq!(seen.get_all("x-auth-subject").iter().count(), 1);
    let reached = echo.hits();

    // No token: the client gets tokengate's 401 and challenge; the app nothing.
    let none = nginx.send("GET /orders/7", &[]).await;
    assert_eq!(none.status, 401);
    assert!(
        none.head
            .contains("www-authenticate: bearer realm=\"tokengate\""),
        "{none:?}"
    );
    // Missing scope, by the original method: POST /orders needs orders:write.
    let status = nginx
        .send(
            "POST /orders",
            &[bearer(&reader), ("Content-Length", "0".into())],
        )
        .await
        .status;
    assert_eq!(status, 403);
    // The rule of the original path: /admin needs admin.
    let status = nginx
        .send("GET /admin/users", &[bearer(&reader)])
        .await
        .status;
    assert_eq!(status, 403);
    // A client naming another request in the headers nginx sets changes
    // nothing (nginx replaces them); naming it in any other header, which
    // nginx passes on to tokengate and the app alike, is refused.
    let replaced = [
        bearer(&reader),
        ("X-Forwarded-Uri", "/public".into()),
        ("X-Forwarded-Method", "GET".into()),
        ("X-Forwarded-Host", "other.example".into()),
        ("X-Forwarded-Proto", "https".into()),
    ];
    let status = nginx.send("GET /admin/users", &replaced).await.status;
    assert_eq!(status, 403);
    for other in [
        ("X-Original-URL", "https://shop.example.com/public"),
        ("X-Original-URI", "/public"),
        ("X-Rewrite-URL", "/public"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("Forwarded", "host=other.example"),
        ("X-Forwarded-Scheme", "https"),
    ] {
        let sent = [bearer(&reader), (other.0, other.1.to_string())];
        let r = nginx.send("GET /admin/users", &sent).await;
        // tokengate's 400; nginx turns any auth answer but 401 and 403 into a 500.
        assert_eq!(r.status, 500, "{other:?}: {r:?}");
    }
    assert_eq!(echo.hits(), reached, "no refused request reached the app");

    // Allowed ones do reach it: the admin, and anonymous /public without a
    // client-supplied identity.
    let status = nginx
        .send("GET /admin/users", &[bearer(&root)])
        .await
        .status;
    assert_eq!(status, 200);
    assert_eq!(echo.last_headers().unwrap()["x-auth-subject"], "root");
    let status = nginx
        .send("GET /public/x", &[("X-Auth-Subject", "root".into())])
        .await
        .status;
    assert_eq!(status, 200);
    let seen = echo.last_headers().unwrap();
    assert!(seen.get("x-auth-subject").is_none(), "{seen:?}");
    assert_eq!(echo.hits(), reached + 2);

    drop(nginx);
    app.shutdown().await;
}

/// Issue 25 through a real nginx configured as nginx's own example
/// (`X-Original-URI` alone): a client's `X-Forwarded-Host`, which nginx passes
/// on to the app, is read, so a host rule holds; and since nginx sends the
/// subrequest as GET whatever the method, a method the rules distinguish is
/// refused, never judged as GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_own_example_reads_the_forwarded_host_and_never_guesses_the_method() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = authz_yaml_with_host_rule(&issuer.issuer);
    let app = start_yaml(&yaml).await;
    wait_ready(&app).await;
    let nginx = Nginx::start(nginx_own_example, app.authz_addr.unwrap(), echo.addr);
    let reader = issuer.mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let root = issuer.mint(json!({ "sub": "root", "scope": "admin" }));
    let bearer = |t: &str| ("Authorization", format!("Bearer {t}"));
    let admin_host = || ("X-Forwarded-Host", "admin.internal".to_string());

    // Anonymous /public on the shop's host reaches the app.
    assert_eq!(nginx.send("GET /public/x", &[]).await.status, 200);
    let reached = echo.hits();
    // The app would read X-Forwarded-Host: admin.internal; so does tokengate.
    let r = nginx.send("GET /public/x", &[admin_host()]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        echo.hits(),
        reached,
        "a token-less request for admin.internal reached the app"
    );
    let r = nginx
        .send("GET /public/x", &[admin_host(), bearer(&reader)])
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = nginx
        .send("GET /public/x", &[admin_host(), bearer(&root)])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        echo.last_headers().unwrap()["x-forwarded-host"],
        "admin.internal"
    );
    let reached = echo.hits();

    // /orders has a GET rule (orders:read) and a POST rule (orders:write):
    // a DELETE or POST arrives as GET, so it cannot be judged.
    for line in ["DELETE /orders/7", "POST /orders"] {
        let sent = [bearer(&reader), ("Content-Length", "0".to_string())];
        let r = nginx.send(line, &sent).await;
        // tokengate's 400, as nginx passes it on: a 500.
        assert_eq!(r.status, 500, "{line}: {r:?}");
    }
    assert_eq!(echo.hits(), reached, "no unjudged method reached the app");
    // Where no method matters, it is decided.
    let r = nginx.send("DELETE /admin/x", &[bearer(&root)]).await;
    assert_eq!(r.status, 200, "{r:?}");

    drop(nginx);
    app.shutdown().await;
}
