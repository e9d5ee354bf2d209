//! Service identities from TLS client certificates (mTLS) against a real
//! rustls client: listed certificates become service principals, unlisted
//! or foreign ones are refused, and `required` listeners demand one.

mod common;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    px: Phigate,
    server_ca: TestCa,
    client_ca: TestCa,
    _up: Upstream,
}

fn setup(client_auth: &str) -> Setup {
    let server_ca = TestCa::new();
    let client_ca = TestCa::new();
    let up = Upstream::demo();
    let (cert, key) = server_ca.issue("server", &["localhost"]);
    let port = free_port();
    let listener = tls_listener(
        port,
        &cert,
        &key,
        &format!(
            "client_ca = \"{}\"\nclient_auth = \"{client_auth}\"",
            client_ca.ca_pem.display()
        ),
    );
    let px = Phigate::start_with(
        &listener,
        port,
        &format!(
            r#"[[service_certificates]]
id = "rpm-gateway"
subject_cn = "rpm-gateway.devices.test"
roles = ["device_gateway"]

[[routes]]
name = "obs"
path_prefix = "/__echo"
upstream = "obs"
auth = {{ kind = "api", accept = ["client_certificate"] }}
{}

[upstreams.obs]
origins = ["{}"]
[upstreams.obs.health_check]
path = "/healthz"
{}"#,
            PAGE_ROUTE_AUTHZ,
            up.origin(),
            page_policies()
        ),
    );
    Setup {
        px,
        server_ca,
        client_ca,
        _up: up,
    }
}

/// One HTTPS GET with an optional client certificate; Err if the handshake fails.
fn get(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    client: Option<(&Path, &Path)>,
) -> Result<Response, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
            let cfg = match client {
                Some((cert, key)) => {
                    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect();
                    let key = PrivateKeyDer::from_pem_file(key).unwrap();
                    builder.with_client_auth_cert(certs, key).unwrap()
                }
                None => builder.with_no_client_auth(),
            };
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(
                b"GET /__echo/obs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
            parse_response(&buf).ok_or_else(|| format!("no HTTP response ({} bytes)", buf.len()))
        })
}

#[test]
fn listed_certificates_become_service_principals() {
    let s = setup("optional");
    let (cert, key) = s
        .client_ca
        .issue_client("gw", "rpm-gateway.devices.test", &[]);
    let r = get(s.px.addr, s.server_ca.root_store(), Some((&cert, &key))).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, s.px.logs());
    assert_eq!(r.echoed("x-phigate-user"), vec!["rpm-gateway".to_string()]);
    assert_eq!(
        r.echoed("x-phigate-roles"),
        vec!["device_gateway".to_string()]
    );

    // Optional mode: no certificate is a missing credential (401), not a handshake error.
    let r = get(s.px.addr, s.server_ca.root_store(), None).unwrap();
    assert_eq!(r.status, 401);

    // Signed by the CA but not listed: refused.
    let (cert, key) = s
        .client_ca
        .issue_client("other", "thermostat.devices.test", &[]);
    let r = get(s.px.addr, s.server_ca.root_store(), Some((&cert, &key))).unwrap();
    assert_eq!(r.status, 401);
    // Exactly one: this test caused exactly one such event.
    let series = "phigate_auth_events_total{event=\"certificate_rejected\",reason=\"not_listed\"}";
    let m = s.px.metrics_when(series, 1.0);
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");

    // Same name, foreign CA: the handshake itself fails.
    let rogue = TestCa::new();
    let (cert, key) = rogue.issue_client("rogue", "rpm-gateway.devices.test", &[]);
    assert!(get(s.px.addr, s.server_ca.root_store(), Some((&cert, &key))).is_err());
}

#[test]
fn required_listeners_refuse_clients_without_certificates() {
    let s = setup("required");
    assert!(get(s.px.addr, s.server_ca.root_store(), None).is_err());
    let (cert, key) = s
        .client_ca
        .issue_client("gw", "rpm-gateway.devices.test", &[]);
    assert_eq!(
        get(s.px.addr, s.server_ca.root_store(), Some((&cert, &key)))
            .unwrap()
            .status,
        200
    );
}
