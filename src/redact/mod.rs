//! Minimum necessary in the response: what of an allowed answer a person
//! may see. The core is a streaming JSON transformer ([`stream`]) that
//! copies what it does not change, drops or captures what a plan selects,
//! and works chunk by chunk with memory bounded by the largest record.
//! Record decisions and masking build on it.

pub mod body;
pub mod classes;
pub mod links;
pub mod mask;
pub mod offline;
pub mod record;
pub mod rules;
pub mod safe_harbor;
pub mod stream;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod property_tests;

pub use stream::{Action, Captured, Plan, Step, StreamError, Transformer, MAX_DEPTH};
