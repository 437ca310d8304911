//! Configuration diagnostics: every problem found while loading `gateway.yaml` or the keys file, located
//! as `file:line:col: path: message` so an operator can jump straight to it.
//!
//! Loading collects diagnostics instead of stopping at the first one: `check-config` prints them all.

use std::fmt;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given on the command line (or `s3://bucket/key`).
    pub file: String,
    /// 1-based line of the offending node (0 when unknown).
    pub line: usize,
    /// 1-based column of the offending node (0 when unknown).
    pub col: usize,
    /// Dotted path of the node, e.g. `stages.prod.throttle.rate_limit` or `routes[0].path`.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, path, self.message
        )
    }
}

/// A non-empty list of diagnostics, the error type of every loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
