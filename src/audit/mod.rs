//! The audit trail: what happened, recorded before PHI leaves, in a form no
//! one can alter, remove or reorder without detection.
//!
//! ```text
//! event ─▶ spool (CRC32C, hash chain, group commit) ─▶ cursor per sink ─▶ file, syslog
//!             └─ signed checkpoints (C2SP signed note, Ed25519)
//! ```
//!
//! The pure parts — the event model, record framing, checkpoints,
//! verification, renderers, the accounting of disclosures — know nothing of
//! the data plane; the proxy hands events to [`Spool`] and awaits their
//! durability at the exit.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod event;
pub mod frame;
pub mod metrics;
pub mod render;
pub mod report;
pub mod retention;
pub mod segment;
pub mod sink;
pub mod spool;
pub mod trail;
pub mod verify;

#[cfg(test)]
mod spool_tests;

pub use event::{AuditEvent, EventKind, Outcome};
pub use spool::{Spool, SpoolError, SpoolOptions, SyncPolicy, Ticket};
pub use trail::Audit;
