//! A synthetic chronic-care-management FHIR R4 upstream, so `phigate demo`,
//! the integration tests and the benchmarks need nothing external to run.
//! Every record is generated from a seed and is obviously fake: never real PHI.

pub mod data;
pub mod entities;
pub mod fhir;
pub mod issuer;

pub use data::DemoData;
pub use fhir::serve;

mod run;
pub mod side_by_side;
pub use run::{render_config, run, DemoArgs, DEMO_CONFIG};
