//! The syslog sink: RFC 5424 messages framed by octet counting (RFC 6587
//! §3.4.1) over TCP, or over TLS as RFC 5425 asks.
//!
//! ```text
//! 312 <110>1 2026-12-05T13:02:11.482Z host phigate 4242 access - {"class_uid":6003,…}
//! ```
//!
//! Facility 13 (log audit); severity informational, or warning for a
//! failure outcome. Syslog has no acknowledgement: a batch counts as taken
//! once written and flushed on a connection that is still open, and a
//! connection found closed before the next batch makes that batch go again
//! (at least once). A receiver that crashes with records in its socket
//! buffer can still lose them; receivers with acknowledgements (HEC,
//! Kafka) close that gap.

use super::{Rendered, Sink, SinkError};
use crate::audit::config::SinkConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub struct SyslogSink {
    address: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    app_name: String,
    hostname: String,
    conn: Option<Box<dyn Stream>>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl SyslogSink {
    pub fn from_config(c: &SinkConfig) -> Result<SyslogSink, String> {
        let address = c.address.clone().ok_or("a syslog sink needs `address`")?;
        let tls = if c.tls {
            let roots = match &c.ca {
                Some(p) => {
                    let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    Some(certs)
                }
                None => None,
            };
            let config = crate::proxy::client::tls_client_config(roots)?;
            let host = c.server_name.clone().unwrap_or_else(|| {
                address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']'])
                    .to_string()
            });
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
            Some((tokio_rustls::TlsConnector::from(Arc::clone(&config)), name))
        } else {
            None
        };
        Ok(SyslogSink {
            address,
            tls,
            app_name: printable(c.app_name.as_deref().unwrap_or("phigate"), 48),
            hostname: hostname(),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SinkError> {
        let err = |e: std::io::Error| SinkError(format!("{}: {e}", self.address));
        let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&self.address))
            .await
            .map_err(|_| SinkError(format!("{}: connect timed out", self.address)))?
            .map_err(err)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| SinkError(format!("{}: TLS handshake timed out", self.address)))?
                    .map_err(err)?;
                Ok(Box::new(tls))
            }
        }
    }

    /// One framed message.
    pub fn frame(&self, r: &Rendered, out: &mut Vec<u8>) {
        let severity = if r.failure { 4 } else { 6 };
        let pri = 13 * 8 + severity;
        let ts = jiff::Timestamp::from_millisecond(r.time_ms)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut msg = format!(
            "<{pri}>1 {ts} {} {} {} {} - ",
            self.hostname,
            self.app_name,
            std::process::id(),
            printable(&r.msgid, 32)
        )
        .into_bytes();
        msg.extend_from_slice(&r.line);
        out.extend_from_slice(format!("{} ", msg.len()).as_bytes());
        out.extend_from_slice(&msg);
    }
}

/// PRINTUSASCII only, at most `max` characters (RFC 5424: MSGID 32,
/// APP-NAME 48, HOSTNAME 255).
fn printable(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| printable(h.trim(), 255))
        .filter(|h| h != "-")
        .unwrap_or_else(|| "-".into())
}

/// Whether the peer closed (or broke) the connection: a syslog receiver
/// never sends, so anything readable means the end.
async fn closed(conn: &mut Box<dyn Stream>) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(1), conn.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    async fn deliver(&mut self, batch: &[Rendered]) -> Result<(), SinkError> {
        if let Some(conn) = self.conn.as_mut() {
            if closed(conn).await {
                self.conn = None;
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut buf = Vec::new();
        for r in batch {
            self.frame(r, &mut buf);
        }
        let write = async {
            conn.write_all(&buf).await?;
            conn.flush().await
        };
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SinkError(format!("{}: {e}", self.address))),
            Err(_) => return Err(SinkError(format!("{}: write timed out", self.address))),
        }
        if closed(&mut conn).await {
            return Err(SinkError(format!(
                "{}: the receiver closed the connection",
                self.address
            )));
        }
        self.conn = Some(conn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_octet_counted_rfc5424() {
        let c: SinkConfig =
            toml::from_str("name = \"s\"\nkind = \"syslog\"\naddress = \"127.0.0.1:1\"").unwrap();
        let s = SyslogSink::from_config(&c).unwrap();
        let r = Rendered {
            seq: 3,
            kind: "event",
            msgid: "access".into(),
            failure: true,
            time_ms: 1_780_000_000_123,
            line: b"{\"a\":\"\xc3\xa9\"}".to_vec(),
        };
        let mut out = Vec::new();
        s.frame(&r, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<108>1 2026-05-28T"), "{msg}");
        assert!(
            msg.contains(" phigate ") && msg.contains(" access - {\"a\""),
            "{msg}"
        );
    }
}
