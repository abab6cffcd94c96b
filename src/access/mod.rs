//! Access control: who the caller is ([`identity`]), what policies allow ([`crate::policy`]), and the
//! [`Gate`] every request passes, which decides before any hardware call and audits every
//! request, allowed or refused.

mod gate;
pub mod grants;
pub mod identity;
pub mod tls;

pub use gate::{Access, Caller, Gate, GateCounters, GateError, Pass, Target};
