//! Automatic rotation: schedules, rotators and the one background task that runs them.
//!
//! The protocol's state lives with each secret (`service::secrets` records every step); this
//! module decides when to rotate (`schedule`), how a value is made, applied and proven in the
//! target system (`rotators`), and drives both (`scheduler`). KMS keys with automatic rotation
//! rotate on the same task.

mod credentials;
pub mod rotators;
pub mod schedule;
mod scheduler;

pub use credentials::{IssuedCredential, StepCredentials};
pub use rotators::{ExecSettings, RotationError, Rotators};
pub use scheduler::{RotationSettings, Scheduler};
