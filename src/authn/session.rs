//! Browser sessions: server-side state behind the session cookie, with idle
//! and absolute timeouts (HIPAA automatic logoff).
//!
//! [`SessionStore`] is the seam for shared stores across replicas; the
//! embedded default keeps sessions in memory.

use super::principal::Principal;
use async_trait::async_trait;
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub principal: Arc<Principal>,
    /// Unix seconds.
    pub created_at: u64,
    pub last_seen: u64,
    /// For revalidation with the IdP, when it issued one.
    pub refresh_token: Option<String>,
    pub last_refreshed: u64,
    /// For the IdP's end-session endpoint.
    pub id_token: Option<String>,
}

/// Why a session is no longer usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
}

/// Per-route session limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(15 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

impl Session {
    /// Whether the session is still usable at `now` under `limits`.
    pub fn check(&self, limits: SessionLimits, now: u64) -> Result<(), Expiry> {
        if now.saturating_sub(self.created_at) > limits.absolute.as_secs() {
            return Err(Expiry::Absolute);
        }
        if now.saturating_sub(self.last_seen) > limits.idle.as_secs() {
            return Err(Expiry::Idle);
        }
        Ok(())
    }
}

/// A fresh 256-bit session id.
pub fn new_session_id() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where sessions live.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn get(&self, id: &str) -> Option<Session>;
    async fn put(&self, session: Session);
    async fn touch(&self, id: &str, now: u64);
    async fn remove(&self, id: &str);
}

/// The embedded default: sessions in memory, bounded in number and age.
pub struct MemoryStore {
    cache: moka::future::Cache<String, Session>,
}

impl MemoryStore {
    pub fn new(max_sessions: u64, max_age: Duration) -> MemoryStore {
        MemoryStore {
            cache: moka::future::Cache::builder()
                .max_capacity(max_sessions)
                .time_to_live(max_age)
                .build(),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, id: &str) -> Option<Session> {
        self.cache.get(id).await
    }
    async fn put(&self, session: Session) {
        self.cache.insert(session.id.clone(), session).await;
    }
    async fn touch(&self, id: &str, now: u64) {
        if let Some(mut s) = self.cache.get(id).await {
            s.last_seen = now;
            self.cache.insert(id.to_string(), s).await;
        }
    }
    async fn remove(&self, id: &str) {
        self.cache.invalidate(id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::AuthMethod;

    fn session(created: u64, seen: u64) -> Session {
        Session {
            id: new_session_id(),
            principal: Arc::new(Principal::service("a", "i", AuthMethod::Session, vec![])),
            created_at: created,
            last_seen: seen,
            refresh_token: None,
            last_refreshed: created,
            id_token: None,
        }
    }

    #[test]
    fn idle_and_absolute_timeouts() {
        let l = SessionLimits {
            idle: Duration::from_secs(900),
            absolute: Duration::from_secs(43200),
        };
        assert_eq!(session(0, 1000).check(l, 1800), Ok(()));
        assert_eq!(session(0, 1000).check(l, 1901), Err(Expiry::Idle));
        assert_eq!(session(0, 43000).check(l, 43201), Err(Expiry::Absolute));
    }

    #[tokio::test]
    async fn store_roundtrip() {
        let store = MemoryStore::new(100, Duration::from_secs(60));
        let s = session(10, 10);
        store.put(s.clone()).await;
        store.touch(&s.id, 20).await;
        assert_eq!(store.get(&s.id).await.unwrap().last_seen, 20);
        store.remove(&s.id).await;
        assert!(store.get(&s.id).await.is_none());
        assert_eq!(new_session_id().len(), 64);
    }
}
