//! The operator's commands beyond `serve`: `sagegate keys …` (the key lifecycle on a keys source)
//! and the `sagegate usage` read-out's table. `main.rs` parses the arguments and calls these.
//!
//! Exit codes (scripts rely on them): 0 done (or nothing to change), 1 failed (a source that cannot
//! be read or written, S3 errors), 2 bad input (unknown id or plan, duplicate id, a result that
//! would not load; nothing was changed), 75 (`EX_TEMPFAIL`) the source changed while the command
//! ran (nothing was written; run it again).

pub mod keys;
mod table;
pub mod usage;

use std::process::ExitCode;

pub use self::table::table;

/// How a command ended, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Done,
    /// 1: the source could not be read or written.
    Failed,
    /// 2: bad input; nothing was changed.
    BadInput,
    /// 75: someone else changed the source first; nothing was written.
    Conflict,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Conflict => 75,
        })
    }
}
