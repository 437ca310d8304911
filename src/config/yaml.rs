//! YAML → JSON value with source positions, and `${env:NAME}` interpolation.
//!
//! Input: a file name and its text. Output: a [`Doc`]: the document as a `serde_json::Value` (so typed
//! structs deserialize from it with serde) plus an index from every node's dotted path to its line and
//! column, which is how validation errors found *after* parsing still point at the right place.
//!
//! Plain (unquoted) scalars are typed the YAML 1.2 core-schema way (null, bool, int, float, string) after
//! `${env:NAME}` / `${env:NAME:-default}` are substituted, so `port: ${env:PORT:-8080}` is a number.
//! Quoted scalars stay strings. Other `${...}` forms (e.g. `${stageVariables.x}`) are left for later stages.
//!
//! A diagnostic never quotes a value that came from the environment (it may be a secret read from
//! Secrets Manager): [`Doc::error`] writes `<from the environment>` in its place.
//!
//! [`Doc::parse_data`] reads a file that is data, not configuration (the keys source, often written
//! by automation): nothing is interpolated, and any `${` is an error located at it, so a writer of
//! that file can never make the gateway read its environment (DESIGN "Edge rules").

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::Diagnostic;

/// The environment `${env:NAME}` reads (injected, so tests and fuzzing read nothing real).
type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// A parsed YAML document with positions.
#[derive(Debug, Clone)]
pub struct Doc {
    /// File name used in diagnostics.
    pub file: String,
    /// The document as JSON (an empty document is `null`).
    pub value: Value,
    spans: HashMap<String, (usize, usize)>,
    lines: Vec<String>,
    /// Scalars `${env:…}` changed, by path: the text they became.
    from_env: HashMap<String, String>,
}

/// What a diagnostic says instead of a value read from the environment.
const FROM_ENV: &str = "<from the environment>";

/// The length from which a value read from the environment is hidden in every diagnostic, not
/// only in its own node's.
const MIN_REDACTED_ELSEWHERE: usize = 6;

/// `message` with `value` (as written, and as serde quotes it: `string "a\"b"`) replaced by
/// [`FROM_ENV`].
fn redact(message: &str, value: &str) -> String {
    let quoted = format!("{value:?}");
    let escaped = &quoted[1..quoted.len() - 1];
    message.replace(escaped, FROM_ENV).replace(value, FROM_ENV)
}

impl Doc {
    /// Parses `text`; a syntax error, a duplicate key or an unset environment variable is a diagnostic.
    pub fn parse(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Doc, Vec<Diagnostic>> {
        Doc::build(file, text, Some(env))
    }

    /// Parses `text` as data: no interpolation, and a `${` anywhere in a key or value is a
    /// diagnostic (never quoting the value, which may be a secret).
    pub fn parse_data(file: &str, text: &str) -> Result<Doc, Vec<Diagnostic>> {
        Doc::build(file, text, None)
    }

    fn build(file: &str, text: &str, env: Option<&Env<'_>>) -> Result<Doc, Vec<Diagnostic>> {
        let mut builder = Builder {
            file,
            text,
            env,
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            spans: HashMap::new(),
            from_env: HashMap::new(),
            errors: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, false) {
            let m = e.marker();
            return Err(vec![Diagnostic {
                file: file.to_owned(),
                line: m.line(),
                col: m.col() + 1,
                path: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            }]);
        }
        if !builder.errors.is_empty() {
            return Err(builder.errors);
        }
        Ok(Doc {
            file: file.to_owned(),
            value: builder.root.unwrap_or(Value::Null),
            spans: builder.spans,
            lines: text.lines().map(str::to_owned).collect(),
            from_env: builder.from_env,
        })
    }

    /// Line and column of the node at `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.spans.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.spans.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// A diagnostic for a position inside the string scalar at `path` (`line`/`col` 1-based within the
    /// string), e.g. a template syntax error, mapped back to the file.
    pub fn error_in_scalar(
        &self,
        path: &str,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (vline, vcol) = self.locate(path);
        let text = self
            .lines
            .get(vline.saturating_sub(1))
            .map_or("", String::as_str);
        let start = text
            .char_indices()
            .nth(vcol.saturating_sub(1))
            .map_or("", |(i, _)| &text[i..]);
        let previous = self
            .lines
            .get(vline.saturating_sub(2))
            .map_or("", |t| t.trim_end());
        let block = previous
            .trim_end_matches(['-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
            .ends_with(['|', '>']);
        let (line, col) = if block && !start.starts_with(['"', '\'']) {
            // Block scalar: positioned at its first content line, whose indentation every line
            // shares; spaces beyond it on later lines are template text, counted in `col`.
            let l = vline + line - 1;
            let indent = self
                .lines
                .get(vline.saturating_sub(1))
                .map_or(0, |t| t.len() - t.trim_start().len());
            (l, indent + col)
        } else if line == 1 {
            let quote = usize::from(start.starts_with(['"', '\'']));
            (vline, vcol + quote + col - 1)
        } else {
            (vline + line - 1, col)
        };
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// A diagnostic for the node at `path`; a value the node read from the environment is not
    /// quoted (a type error would otherwise print a secret).
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(path);
        let mut message = message.into();
        if let Some(value) = self.from_env.get(path).filter(|v| !v.trim().is_empty()) {
            message = redact(&message, value);
        }
        // A value read from the environment reaches other nodes' messages too (a stage variable
        // resolved into an endpoint name): every one long enough to be a secret is hidden, the
        // longest first. Short ones (`30`, `true`) would blank unrelated words.
        let mut others: Vec<&String> = self
            .from_env
            .values()
            .filter(|v| v.trim().chars().count() >= MIN_REDACTED_ELSEWHERE)
            .collect();
        others.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in others {
            message = redact(&message, value);
        }
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            path: path.to_owned(),
            message,
        }
    }

    /// The node at `path` (dotted, with `[i]` for sequence items) if present.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut v = &self.value;
        for seg in split_path(path) {
            v = match seg {
                Seg::Key(k) => v.get(k)?,
                Seg::Index(i) => v.get(i)?,
            };
        }
        Some(v)
    }

    /// Deserializes the node at `path` into `T`; a failure is located at the innermost offending node.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Diagnostic> {
        let value = self.get(path).cloned().unwrap_or(Value::Null);
        serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
            let inner = e.path().to_string();
            let full = join_path(path, if inner == "." { "" } else { &inner });
            self.error(&full, e.into_inner().to_string())
        })
    }
}

/// Joins a parent path and a child path (`serde_path_to_error` style: `a.b[0].c`).
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (_, true) => parent.to_owned(),
        (true, false) => child.to_owned(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|s| !s.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

enum Frame {
    Seq {
        path: String,
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        path: String,
        anchor: usize,
        map: Map<String, Value>,
        key: Option<String>,
    },
}

struct Builder<'a> {
    file: &'a str,
    text: &'a str,
    /// `None`: a data file, where `${` is refused.
    env: Option<&'a Env<'a>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    root: Option<Value>,
    spans: HashMap<String, (usize, usize)>,
    from_env: HashMap<String, String>,
    errors: Vec<Diagnostic>,
}

impl Builder<'_> {
    /// Path of the node about to be produced, or `None` when the next scalar is a mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { path, items, .. }) => Some(format!("{path}[{}]", items.len())),
            Some(Frame::Map {
                path, key: Some(k), ..
            }) => Some(join_path(path, k)),
            Some(Frame::Map { key: None, .. }) => None,
        }
    }

    fn error(&mut self, mark: Marker, path: &str, message: String) {
        self.errors.push(Diagnostic {
            file: self.file.to_owned(),
            line: mark.line(),
            col: mark.col() + 1,
            path: path.to_owned(),
            message,
        });
    }

    /// In a data file, reports a `${` in `text` (a scalar starting at `mark`) at its position.
    fn refuse_placeholder(&mut self, mark: Marker, path: &str, text: &str) {
        if self.env.is_some() || !text.contains(DATA_PLACEHOLDER) {
            return;
        }
        // Point at the `${` when it is on the scalar's first line (plain or quoted), else at the
        // scalar.
        let line = self
            .text
            .lines()
            .nth(mark.line().saturating_sub(1))
            .unwrap_or("");
        let rest: String = line.chars().skip(mark.col()).collect();
        let col = rest.find(DATA_PLACEHOLDER).map_or(mark.col() + 1, |at| {
            mark.col() + 1 + rest[..at].chars().count()
        });
        self.errors.push(Diagnostic {
            file: self.file.to_owned(),
            line: mark.line(),
            col,
            path: path.to_owned(),
            message: "`${` is not allowed: this file is data and is never interpolated \
                      (`${env:…}` works in gateway.yaml only)"
                .to_owned(),
        });
    }

    fn push_value(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn scalar(&mut self, text: String, style: TScalarStyle, anchor: usize, mark: Marker) {
        let path = self.next_path();
        let Some(path) = path else {
            // A mapping key.
            if let Some(Frame::Map { path, .. }) = self.stack.last() {
                let full = join_path(path, &text);
                self.refuse_placeholder(mark, &full, &text);
            }
            if let Some(Frame::Map { path, map, key, .. }) = self.stack.last_mut() {
                let full = join_path(path, &text);
                if map.contains_key(&text) {
                    let msg = format!("duplicate key `{text}`");
                    let file = self.file.to_owned();
                    self.errors.push(Diagnostic {
                        file,
                        line: mark.line(),
                        col: mark.col() + 1,
                        path: full.clone(),
                        message: msg,
                    });
                }
                self.spans.insert(full, (mark.line(), mark.col() + 1));
                *key = Some(text);
            }
            return;
        };
        // The value's own position beats its key's: type errors point at the value.
        self.spans
            .insert(path.clone(), (mark.line(), mark.col() + 1));
        let text = match self.env {
            Some(env) => match interpolate_env(&text, env) {
                Ok(t) if t != text => {
                    self.from_env.insert(path.clone(), t.clone());
                    t
                }
                Ok(t) => t,
                Err(msg) => {
                    self.error(mark, &path, msg);
                    text
                }
            },
            None => {
                self.refuse_placeholder(mark, &path, &text);
                text
            }
        };
        let value = if style == TScalarStyle::Plain {
            plain_scalar(&text)
        } else {
            Value::String(text)
        };
        self.push_value(value, anchor);
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, _) => self.scalar(text, style, anchor, mark),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let Some(path) = self.next_path() else {
                    self.error(mark, "", "mapping keys must be plain strings".to_owned());
                    return;
                };
                self.spans
                    .entry(path.clone())
                    .or_insert((mark.line(), mark.col() + 1));
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        path,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        path,
                        anchor,
                        map: Map::new(),
                        key: None,
                    }
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => {
                    self.push_value(Value::Array(items), anchor)
                }
                Some(Frame::Map { map, anchor, .. }) => self.push_value(Value::Object(map), anchor),
                None => {}
            },
            Event::Alias(id) => {
                let value = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                if self.next_path().is_none() {
                    self.error(mark, "", "an alias cannot be a mapping key".to_owned());
                    return;
                }
                self.push_value(value, 0);
            }
            _ => {}
        }
    }
}

/// What a data file may not contain (the start of every placeholder).
const DATA_PLACEHOLDER: &str = "${";

/// Substitutes `${env:NAME}` and `${env:NAME:-default}`; other `${...}` are kept verbatim.
pub fn interpolate_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    const OPEN: &str = "${env:";
    if !text.contains(OPEN) {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `{OPEN}` in `{text}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid environment variable name `{name}`"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (use ${{env:{name}:-default}} for a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    let numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if numeric
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn positions_and_types() {
        let text = "a:\n  b: 1\n  c: [x, \"2\", 2.5]\nd: ~\n";
        let doc = Doc::parse("f.yaml", text, &no_env).unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"a": {"b": 1, "c": ["x", "2", 2.5]}, "d": null})
        );
        assert_eq!(doc.locate("a.b"), (2, 6));
        assert_eq!(doc.locate("a.c[1]"), (3, 10));
        assert_eq!(doc.locate("a.zzz"), doc.locate("a"));
    }

    #[test]
    fn positions_inside_scalars() {
        let text = "t: |\n  line one\n  bad $x\nq: 'ab $y'\n";
        let doc = Doc::parse("f", text, &no_env).unwrap();
        let d = doc.error_in_scalar("t", 2, 5, "here");
        assert_eq!((d.line, d.col), (3, 7));
        let d = doc.error_in_scalar("q", 1, 4, "here");
        assert_eq!((d.line, d.col), (4, 8));
        // A template line indented beyond the block's indentation: the extra spaces are text.
        let text = "t: |\n  a\n   #if\n";
        let doc = Doc::parse("f", text, &no_env).unwrap();
        let d = doc.error_in_scalar("t", 2, 2, "here");
        assert_eq!((d.line, d.col), (3, 4));
    }

    #[test]
    fn diagnostics_never_quote_a_value_from_the_environment() {
        for secret in ["hunter2-supersecret", "with \"quotes\" and \\"] {
            let env = |n: &str| (n == "SECRET").then(|| secret.to_owned());
            let doc = Doc::parse("f.yaml", "a:\n  hops: ${env:SECRET}\n", &env).unwrap();
            let d = doc.deserialize::<u8>("a.hops").unwrap_err();
            assert!(!d.message.contains("hunter2"), "{}", d.message);
            assert!(!d.message.contains("quotes"), "{}", d.message);
            assert!(d.message.contains(FROM_ENV), "{}", d.message);
            assert_eq!((d.line, d.col), (2, 9));
        }
        // A value that reaches another node (a stage variable resolved into a name) is hidden
        // there too; a short one elsewhere is not (it would blank unrelated words).
        let env = |n: &str| match n {
            "SECRET" => Some("hunter2-supersecret".to_owned()),
            "HOPS" => Some("1".to_owned()),
            _ => None,
        };
        let text = "v:\n  ep: \"${env:SECRET}\"\n  hops: ${env:HOPS}\nname: x\n";
        let doc = Doc::parse("f.yaml", text, &env).unwrap();
        let d = doc.error("name", "`hunter2-supersecret` is not a name, 1 of 1");
        assert_eq!(d.message, format!("`{FROM_ENV}` is not a name, 1 of 1"));
        // A value written in the file is still quoted.
        let doc = Doc::parse("f.yaml", "hops: many\n", &no_env).unwrap();
        let d = doc.deserialize::<u8>("hops").unwrap_err();
        assert!(d.message.contains("many"), "{}", d.message);
    }

    #[test]
    fn env_interpolation() {
        let env = |n: &str| (n == "PORT").then(|| "9000".to_owned());
        let doc = Doc::parse(
            "f",
            "p: ${env:PORT}\nq: ${env:NOPE:-x}\nr: '${env:PORT}'\ns: ${stageVariables.e}\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"p": 9000, "q": "x", "r": "9000", "s": "${stageVariables.e}"})
        );
        let err = Doc::parse("f", "a:\n  p: ${env:NOPE}\n", &env).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "f:2:6: a.p: environment variable NOPE is not set (use ${env:NOPE:-default} for a default)"
        );
    }

    #[test]
    fn data_files_are_never_interpolated_and_refuse_placeholders() {
        let text = "a: ${env:HOME}\nb: [x, \"ab ${env:PATH}\"]\n\"${k}\": 1\nc: |\n  ${x}\nd: $ {not one}\n";
        let err = Doc::parse_data("k.yaml", text).unwrap_err();
        let got: Vec<String> = err.iter().map(ToString::to_string).collect();
        let why = "`${` is not allowed: this file is data and is never interpolated (`${env:…}` works in gateway.yaml only)";
        assert_eq!(
            got,
            [
                format!("k.yaml:1:4: a: {why}"),
                format!("k.yaml:2:12: b[1]: {why}"),
                format!("k.yaml:3:2: ${{k}}: {why}"),
                format!("k.yaml:5:3: c: {why}"),
            ]
        );
        // Without a placeholder the same text is plain data, `$` and all.
        let doc = Doc::parse_data("k.yaml", "a: $HOME\nb: '$ {x}'\n").unwrap();
        assert_eq!(doc.value, serde_json::json!({"a": "$HOME", "b": "$ {x}"}));
    }

    #[test]
    fn syntax_errors_and_duplicates_are_located() {
        let err = Doc::parse("f", "a: [1, 2\n", &no_env).unwrap_err();
        assert!(err[0].to_string().starts_with("f:"), "{}", err[0]);
        let err = Doc::parse("f", "a: 1\nb: 2\na: 3\n", &no_env).unwrap_err();
        assert_eq!(err[0].to_string(), "f:3:1: a: duplicate key `a`");
    }

    #[test]
    fn deserialize_errors_point_inside() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            x: u32,
        }
        let doc = Doc::parse("f", "items:\n  - x: 1\n  - x: nope\n", &no_env).unwrap();
        let err = doc.deserialize::<Vec<S>>("items").unwrap_err();
        assert_eq!(
            (err.line, err.col, err.path.as_str()),
            (3, 8, "items[1].x"),
            "{err}"
        );
    }
}
