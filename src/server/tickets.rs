//! TLS session tickets with a lifetime phigate enforces: how long a client
//! may resume a TLS session without a full handshake.
//!
//! rustls's own ticketer fixes the lifetime at 12 hours and forgets old keys
//! only when traffic happens to arrive, so [`SessionTickets`] does both
//! itself: each ticket carries its issue time under the AEAD tag and is
//! refused once older than the lifetime, and the keys rotate every lifetime
//! and are dropped after two (the last moment a ticket of theirs can still be
//! valid), also on a timer ([`SessionTickets::erase_expired`]).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY_ID_LEN: usize = 16;
const ISSUED_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = KEY_ID_LEN + ISSUED_LEN + NONCE_LEN;

/// Longest lifetime a TLS 1.3 server may announce (RFC 8446, 4.6.1).
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// One ticket key: a random ChaCha20-Poly1305 key and its random name.
struct TicketKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
    /// When it started issuing tickets (ms since the epoch).
    created_ms: u64,
}

impl TicketKey {
    fn generate(rng: &SystemRandom, created_ms: u64) -> Option<TicketKey> {
        let mut secret = [0u8; 32];
        let mut id = [0u8; KEY_ID_LEN];
        rng.fill(&mut secret).ok()?;
        rng.fill(&mut id).ok()?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &secret).ok()?;
        secret.fill(0);
        Some(TicketKey {
            id,
            key: LessSafeKey::new(key),
            created_ms,
        })
    }
}

struct Keys {
    /// Issues new tickets; `None` if a fresh key could not be made when one
    /// was due (then no tickets are issued rather than an old key reused).
    current: Option<TicketKey>,
    /// The one before, kept only to open tickets it issued.
    previous: Option<TicketKey>,
}

/// Stateless TLS session tickets whose lifetime is enforced, not just hinted.
///
/// Ticket layout: key id (16) ‖ issue time in ms, big-endian (8) ‖ nonce
/// (12) ‖ ChaCha20-Poly1305 ciphertext and tag; the key id and issue time
/// are authenticated as associated data.
pub struct SessionTickets {
    lifetime_ms: u64,
    keys: RwLock<Keys>,
    rng: SystemRandom,
    /// The largest ticket issued: anything longer is refused unopened.
    longest: AtomicUsize,
}

impl std::fmt::Debug for SessionTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("SessionTickets")
            .field("lifetime_ms", &self.lifetime_ms)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SessionTickets {
    /// Tickets valid for `lifetime` (whole seconds, 1 s to 7 days).
    pub fn new(lifetime: Duration) -> Result<SessionTickets, String> {
        if lifetime < Duration::from_secs(1) || lifetime > MAX_TICKET_LIFETIME {
            return Err(format!(
                "a session ticket lifetime must be between 1s and 7 days, not {lifetime:?}"
            ));
        }
        Self::starting_at(lifetime, now_ms())
    }

    fn starting_at(lifetime: Duration, now: u64) -> Result<SessionTickets, String> {
        let rng = SystemRandom::new();
        let current = TicketKey::generate(&rng, now)
            .ok_or("the system random number generator failed to make a ticket key")?;
        Ok(SessionTickets {
            lifetime_ms: lifetime.as_secs() * 1000,
            keys: RwLock::new(Keys {
                current: Some(current),
                previous: None,
            }),
            rng,
            longest: AtomicUsize::new(0),
        })
    }

    /// Drops keys whose tickets have all expired and starts a new key when
    /// the current one has issued for a whole lifetime. Called on every
    /// ticket operation and on a timer, so keys go even without traffic.
    pub fn erase_expired(&self) {
        self.roll(now_ms());
    }

    fn roll(&self, now: u64) {
        let life = self.lifetime_ms;
        let due = |k: &Option<TicketKey>, after: u64| {
            k.as_ref()
                .is_some_and(|k| now >= k.created_ms.saturating_add(after))
        };
        {
            let Ok(keys) = self.keys.read() else { return };
            let rotate = keys.current.is_none() || due(&keys.current, life);
            if !rotate && !due(&keys.previous, 2 * life) {
                return;
            }
        }
        let fresh = TicketKey::generate(&self.rng, now);
        let Ok(mut keys) = self.keys.write() else {
            return;
        };
        if keys.current.is_none() || due(&keys.current, life) {
            let old = std::mem::replace(&mut keys.current, fresh);
            keys.previous = old;
        }
        if due(&keys.previous, 2 * life) {
            keys.previous = None;
        }
    }

    fn encrypt_at(&self, now: u64, plain: &[u8]) -> Option<Vec<u8>> {
        self.roll(now);
        let keys = self.keys.read().ok()?;
        let key = keys.current.as_ref()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&now.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut aad = [0u8; KEY_ID_LEN + ISSUED_LEN];
        aad.copy_from_slice(&out[..KEY_ID_LEN + ISSUED_LEN]);
        let tag = key
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        self.longest.fetch_max(out.len(), Ordering::Relaxed);
        Some(out)
    }

    /// Opens a ticket, or `None`: forged, from another process or an erased
    /// key, issued in the future, or older than the lifetime.
    fn decrypt_at(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEADER_LEN + TAG_LEN
            || ticket.len() > self.longest.load(Ordering::Relaxed)
        {
            return None;
        }
        let (header, sealed) = ticket.split_at(HEADER_LEN);
        let (key_id, rest) = header.split_at(KEY_ID_LEN);
        let (issued, nonce) = rest.split_at(ISSUED_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        // Checked before the tag, and again after by the tag (the issue
        // time is associated data): an altered time fails to open.
        if issued > now || now - issued >= self.lifetime_ms {
            return None;
        }
        self.roll(now);
        let keys = self.keys.read().ok()?;
        let key = [keys.current.as_ref(), keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| same_id(&k.id, key_id))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let aad = Aad::from(&header[..KEY_ID_LEN + ISSUED_LEN]);
        let len = key.key.open_in_place(nonce, aad, &mut buf).ok()?.len();
        buf.truncate(len);
        Some(buf)
    }
}

/// Constant-time comparison of key ids.
fn same_id(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl rustls::server::ProducesTickets for SessionTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        (self.lifetime_ms / 1000).min(u64::from(u32::MAX)) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(now_ms(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(now_ms(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    const T0: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn tickets() -> SessionTickets {
        SessionTickets::starting_at(Duration::from_secs(3600), T0).unwrap()
    }

    #[test]
    fn a_ticket_opens_within_its_lifetime_and_never_after() {
        let t = tickets();
        assert_eq!(t.lifetime(), 3600);
        let sealed = t.encrypt_at(T0 + 10, b"session state").unwrap();
        assert_eq!(
            t.decrypt_at(T0 + 10, &sealed).as_deref(),
            Some(&b"session state"[..])
        );
        assert!(t.decrypt_at(T0 + 10 + HOUR - 1, &sealed).is_some());
        // One millisecond past the lifetime: refused, though its key (now
        // the previous one) is still held for younger tickets.
        assert_eq!(t.decrypt_at(T0 + 10 + HOUR, &sealed), None);
        assert!(t.keys.read().unwrap().previous.is_some());
        // Issued "in the future" (the clock stepped back): refused.
        assert_eq!(t.decrypt_at(T0 + 9, &sealed), None);
    }

    #[test]
    fn keys_rotate_every_lifetime_and_are_erased_after_two() {
        let t = tickets();
        let first = t.encrypt_at(T0 + HOUR - 1, b"a").unwrap();
        // A whole lifetime on: a new key issues, the old one still opens
        // its last ticket until that ticket expires.
        let second = t.encrypt_at(T0 + HOUR, b"b").unwrap();
        assert_ne!(first[..KEY_ID_LEN], second[..KEY_ID_LEN]);
        assert!(t.decrypt_at(T0 + 2 * HOUR - 2, &first).is_some());
        // Erased on a timer after two lifetimes, with no traffic in between.
        t.roll(T0 + 2 * HOUR);
        let keys = t.keys.read().unwrap();
        assert!(keys
            .previous
            .as_ref()
            .is_some_and(|k| k.created_ms == T0 + HOUR));
        assert!(keys
            .current
            .as_ref()
            .is_some_and(|k| k.created_ms == T0 + 2 * HOUR));
        drop(keys);
        t.roll(T0 + 10 * HOUR);
        let keys = t.keys.read().unwrap();
        assert!(keys.previous.is_none(), "a key past two lifetimes is kept");
    }

    #[test]
    fn altered_or_foreign_tickets_are_refused() {
        let t = tickets();
        let sealed = t.encrypt_at(T0, b"state").unwrap();
        for i in [
            0,
            KEY_ID_LEN,
            KEY_ID_LEN + ISSUED_LEN - 1,
            HEADER_LEN,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(t.decrypt_at(T0 + 1, &bad), None, "flipped byte {i}");
        }
        // A backdated issue time (younger-looking) does not open either.
        let mut younger = sealed.clone();
        younger[KEY_ID_LEN..KEY_ID_LEN + ISSUED_LEN].copy_from_slice(&(T0 + 5).to_be_bytes());
        assert_eq!(t.decrypt_at(T0 + 6, &younger), None);
        // Another process's keys, a truncated or an over-long ticket.
        let other = tickets();
        let _ = other.encrypt_at(T0, b"state").unwrap();
        assert_eq!(other.decrypt_at(T0 + 1, &sealed), None);
        assert_eq!(t.decrypt_at(T0 + 1, &sealed[..HEADER_LEN + 3]), None);
        let mut long = sealed.clone();
        long.push(0);
        assert_eq!(t.decrypt_at(T0 + 1, &long), None);
    }

    #[test]
    fn lifetimes_outside_the_protocol_limits_are_refused() {
        assert!(SessionTickets::new(Duration::from_millis(500)).is_err());
        assert!(SessionTickets::new(MAX_TICKET_LIFETIME + Duration::from_secs(1)).is_err());
        assert!(SessionTickets::new(MAX_TICKET_LIFETIME).is_ok());
    }
}
