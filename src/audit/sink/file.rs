//! The JSON-lines file sink: one rendered record per line, appended and
//! synced before the cursor moves. Rotated files are followed: the path is
//! opened again for every batch.

use super::{Rendered, Sink, SinkError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn deliver(&mut self, batch: &[Rendered]) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.line.len() + 1).sum());
        for r in batch {
            buf.extend_from_slice(&r.line);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)?;
            // A line cut by a crash mid-write is ended first, so the batch
            // sent again starts on a line of its own.
            if ends_mid_line(&mut f)? {
                f.write_all(b"\n")?;
            }
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| SinkError(e.to_string()))?
        .map_err(|e| SinkError(format!("{}: {e}", self.path.display())))
    }
}

/// Whether the file's last byte is not a newline (a torn last line).
fn ends_mid_line(f: &mut std::fs::File) -> std::io::Result<bool> {
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_last_line_is_ended_before_the_next_batch() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        std::fs::write(&path, "{\"seq\":1}\n{\"se").unwrap();
        let mut sink = FileSink::new(path.clone());
        let r = Rendered {
            seq: 2,
            kind: "event",
            msgid: "access".into(),
            failure: false,
            time_ms: 0,
            line: b"{\"seq\":2}".to_vec(),
        };
        sink.deliver(&[r]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"seq\":1}\n{\"se\n{\"seq\":2}\n");
    }
}
