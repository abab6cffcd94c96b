//! Domain logic: AWS KMS semantics over a root of trust and a store. No tonic, no sled, no
//! hardware crate here: handlers in `api/` convert requests into calls on these services, and
//! any other front door (the AWS JSON protocol later) calls the same methods.

pub mod clock;
pub mod error;
pub mod kms;
pub mod paging;
pub mod rotation;
pub mod secrets;
#[cfg(test)]
mod tests;

pub use clock::{Clock, SystemClock};
pub use error::KmsError;
pub use kms::KmsService;
