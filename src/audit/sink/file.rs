//! The JSON-lines file sink: one rendered record per line, appended and
//! synced before the cursor moves. Rotated files are followed: the path is
//! opened again for every batch.

use super::{Rendered, Sink, SinkError};
use std::io::Write;
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
                .append(true)
                .open(&path)?;
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| SinkError(e.to_string()))?
        .map_err(|e| SinkError(format!("{}: {e}", self.path.display())))
    }
}
