//! Domain values of Chinese credit and IP data, validated where they enter: the unified social
//! credit code (USCC, GB 32100-2015), CN patent application numbers, calendar dates and reporting
//! periods. Each parser returns the normalised form or a rule a person can act on.

mod calendar;
mod patent;
mod uscc;

pub use calendar::{Date, Period};
pub use patent::{PatentKind, PatentNumber};
pub use uscc::Uscc;
