//! What an import tells the operator: what could not be carried over (with its JSON pointer in the
//! input and what to do instead), notes on what changed meaning on the way, and every input added to
//! a cache key.

use std::fmt::Write;

/// One thing the operator should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which input file (`export`, `get-stages`, ...).
    pub file: &'static str,
    /// JSON pointer of the node in that file (RFC 6901, `""` = the whole document).
    pub pointer: String,
    /// What it is and why it is not (or differently) carried over.
    pub what: String,
    /// What to do instead.
    pub instead: String,
    /// Whether it is left out (`--strict` refuses those); a note otherwise.
    pub left_out: bool,
}

impl Finding {
    /// Something the import leaves out.
    pub fn left_out(
        file: &'static str,
        pointer: impl Into<String>,
        what: impl Into<String>,
        instead: impl Into<String>,
    ) -> Finding {
        Finding {
            file,
            pointer: pointer.into(),
            what: what.into(),
            instead: instead.into(),
            left_out: true,
        }
    }

    /// Something carried over whose meaning the operator should check.
    pub fn note(
        file: &'static str,
        pointer: impl Into<String>,
        what: impl Into<String>,
        instead: impl Into<String>,
    ) -> Finding {
        Finding {
            left_out: false,
            ..Finding::left_out(file, pointer, what, instead)
        }
    }

    /// `file#pointer: what; instead`, on one line.
    pub fn line(&self) -> String {
        let instead = if self.instead.is_empty() {
            String::new()
        } else {
            format!(" -> {}", self.instead)
        };
        if self.pointer.is_empty() {
            format!("{}: {}{instead}", self.file, self.what)
        } else {
            format!("{}#{}: {}{instead}", self.file, self.pointer, self.what)
        }
    }
}

/// An input a cached route reads that its exported `cacheKeyParameters` did not hold, added to the
/// route's key (or, when no key can hold it, caching turned off for the route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAddition {
    /// `GET /path`.
    pub route: String,
    /// The key parameter added; `None` when caching was turned off instead.
    pub part: Option<String>,
    /// The input, in words.
    pub what: String,
}

impl KeyAddition {
    /// One line for the report and the comment above the key.
    pub fn line(&self) -> String {
        match &self.part {
            Some(part) => format!("{}: added {part} ({})", self.route, self.what),
            None => format!(
                "{}: caching turned off: it reads {}, which no cache key can hold",
                self.route, self.what
            ),
        }
    }
}

/// The report printed after an import.
pub fn render(findings: &[Finding], additions: &[KeyAddition]) -> String {
    let mut out = String::new();
    let (left_out, notes): (Vec<&Finding>, Vec<&Finding>) =
        findings.iter().partition(|f| f.left_out);
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "{title} ({}):", lines.len());
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
    };
    section(
        "not carried over",
        left_out.iter().map(|f| f.line()).collect(),
    );
    section(
        "cache keys extended",
        additions.iter().map(KeyAddition::line).collect(),
    );
    section("notes", notes.iter().map(|f| f.line()).collect());
    out
}
