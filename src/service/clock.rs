//! Time as the domain sees it, so deletion windows can be tested without waiting days. The
//! clock lives in the bottom layer, `crate::time`, so the audit trail can read the same one.

pub use crate::time::{Clock, ManualClock, SECONDS_PER_DAY, SystemClock};
