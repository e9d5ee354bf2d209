//! Policy and entity files, watched: the kernel says when something in the
//! policy directory or beside the entities file changed (inotify, through
//! the `notify` crate), and a slow safety poll catches what events miss
//! (network filesystems, a watch that failed to start, a ConfigMap's
//! symlink swap). Either way the authorizer re-hashes the files and
//! reloads only if their content changed.

use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Editors and deploy tools write in several steps: events closer together
/// than this are one change.
const SETTLE: Duration = Duration::from_millis(150);

/// File-change events for a set of paths.
pub struct FileEvents {
    rx: mpsc::Receiver<()>,
    _watcher: notify::RecommendedWatcher,
}

impl FileEvents {
    /// Watches each directory (recursively when asked).
    pub fn watch(paths: &[(PathBuf, bool)]) -> Result<FileEvents, notify::Error> {
        let (tx, rx) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(e) => !e.kind.is_access(),
                    // An overflowed or failed watch: look anyway.
                    Err(_) => true,
                };
                if relevant {
                    // A pending notice already says "look": drop the rest.
                    let _ = tx.try_send(());
                }
            })?;
        for (path, recursive) in paths {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            watcher.watch(path, mode)?;
        }
        Ok(FileEvents {
            rx,
            _watcher: watcher,
        })
    }

    /// Waits for a change, then for the writes to settle.
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_none() {
            return std::future::pending().await;
        }
        loop {
            match tokio::time::timeout(SETTLE, self.rx.recv()).await {
                Ok(Some(())) => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_is_noticed_once_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = FileEvents::watch(&[(dir.path().to_path_buf(), true)]).unwrap();
        let nested = dir.path().join("ccm");
        std::fs::create_dir(&nested).unwrap();
        tokio::time::timeout(Duration::from_secs(5), events.changed())
            .await
            .expect("a new directory is a change");
        std::fs::write(nested.join("a.cedar"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), events.changed())
            .await
            .expect("a file written in a subdirectory is a change");
        // Nothing more happened: no event.
        assert!(
            tokio::time::timeout(Duration::from_millis(400), events.changed())
                .await
                .is_err()
        );
    }
}
