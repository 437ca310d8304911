//! Run-time values of the renderer and how Velocity/Java print and compare them.
//!
//! Values borrow what the request already holds (parameter strings, `$context`, the parsed body, the
//! template's literals) for the lifetime `'r` of one render, so reading input copies nothing. Built
//! values (lists, maps, strings) are reference-counted and immutable; a container records its nesting
//! depth so the renderer can refuse values deeper than `Bounds::max_depth` before anything recursive
//! (printing, comparing, dropping) walks them.

use std::fmt::Write as _;
use std::rc::Rc;

use super::RenderError;

#[derive(Clone, Debug)]
pub(super) enum Value<'r> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'r str),
    String(Rc<str>),
    /// A JSON array or object from the body or `$context` (primitives are converted on access).
    Json(&'r serde_json::Value),
    List(Rc<List<'r>>),
    Map(Rc<Map<'r>>),
    Object(Builtin),
}

#[derive(Clone, Debug, Default)]
pub(super) struct List<'r> {
    pub items: Vec<Value<'r>>,
    /// Lists from JSON print as compact JSON, lists made by the template print Java-style.
    pub json_style: bool,
    pub depth: usize,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Map<'r> {
    pub entries: Vec<(Value<'r>, Value<'r>)>,
    pub depth: usize,
}

/// The API Gateway objects and helper views that are not plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Builtin {
    Input,
    Util,
    Esc,
    Context,
    /// `$context.requestOverride` / `.responseOverride`.
    RequestOverride,
    ResponseOverride,
    /// `$context.requestOverride.header` etc.
    OverrideMap(OverrideKind),
    StageVariables,
    /// `$foreach` of the loop at this nesting level (0 = outermost).
    Foreach(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OverrideKind {
    RequestHeader,
    RequestQuerystring,
    RequestPath,
    ResponseHeader,
}

impl OverrideKind {
    /// Whether two names are the same entry: header names compare case-insensitively.
    pub fn same_name(self, a: &str, b: &str) -> bool {
        match self {
            OverrideKind::RequestHeader | OverrideKind::ResponseHeader => a.eq_ignore_ascii_case(b),
            OverrideKind::RequestQuerystring | OverrideKind::RequestPath => a == b,
        }
    }
}

impl<'r> Value<'r> {
    pub fn from_json(v: &'r serde_json::Value) -> Value<'r> {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number(n),
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => Value::Json(v),
        }
    }

    pub fn string(s: String) -> Value<'r> {
        Value::String(Rc::from(s))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Velocity's `#if` truth: null and false are false, everything else (even "") is true.
    pub fn truthy(&self) -> bool {
        !matches!(self, Value::Null | Value::Bool(false))
    }

    /// Nesting depth of a container (0 for scalars).
    pub fn depth(&self) -> usize {
        match self {
            Value::List(l) => l.depth,
            Value::Map(m) => m.depth,
            Value::Json(_) => 1,
            _ => 0,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Java `toString()`, into `out`, failing once `out` would pass `limit` bytes.
    pub fn write_to(&self, out: &mut String, limit: usize) -> Result<(), RenderError> {
        match self {
            Value::Null => push(out, "null", limit),
            Value::Bool(b) => push(out, if *b { "true" } else { "false" }, limit),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
                check(out, limit)
            }
            Value::Float(f) => {
                java_double(*f, out);
                check(out, limit)
            }
            Value::Str(s) => push(out, s, limit),
            Value::String(s) => push(out, s, limit),
            Value::Json(j) => write_json_java(j, out, limit),
            Value::List(l) => {
                if l.json_style {
                    push(out, "[", limit)?;
                    for (i, item) in l.items.iter().enumerate() {
                        if i > 0 {
                            push(out, ",", limit)?;
                        }
                        item.write_json(out, limit)?;
                    }
                    push(out, "]", limit)
                } else {
                    push(out, "[", limit)?;
                    for (i, item) in l.items.iter().enumerate() {
                        if i > 0 {
                            push(out, ", ", limit)?;
                        }
                        item.write_to(out, limit)?;
                    }
                    push(out, "]", limit)
                }
            }
            Value::Map(m) => {
                push(out, "{", limit)?;
                for (i, (k, v)) in m.entries.iter().enumerate() {
                    if i > 0 {
                        push(out, ", ", limit)?;
                    }
                    k.write_to(out, limit)?;
                    push(out, "=", limit)?;
                    v.write_to(out, limit)?;
                }
                push(out, "}", limit)
            }
            Value::Object(b) => push(out, builtin_name(*b), limit),
        }
    }

    /// JSON text of the value (lists from JSON print this way).
    pub fn write_json(&self, out: &mut String, limit: usize) -> Result<(), RenderError> {
        match self {
            Value::Null => push(out, "null", limit),
            Value::Bool(_) | Value::Int(_) => self.write_to(out, limit),
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{}", serde_json::Value::from(*f));
                check(out, limit)
            }
            Value::Float(_) => push(out, "null", limit),
            Value::Str(s) => write_json_str(s, out, limit),
            Value::String(s) => write_json_str(s, out, limit),
            Value::Json(j) => write_json_text(j, out, limit),
            Value::List(l) => {
                push(out, "[", limit)?;
                for (i, item) in l.items.iter().enumerate() {
                    if i > 0 {
                        push(out, ",", limit)?;
                    }
                    item.write_json(out, limit)?;
                }
                push(out, "]", limit)
            }
            Value::Map(m) => {
                push(out, "{", limit)?;
                for (i, (k, v)) in m.entries.iter().enumerate() {
                    if i > 0 {
                        push(out, ",", limit)?;
                    }
                    let mut key = String::new();
                    k.write_to(&mut key, limit)?;
                    write_json_str(&key, out, limit)?;
                    push(out, ":", limit)?;
                    v.write_json(out, limit)?;
                }
                push(out, "}", limit)
            }
            Value::Object(b) => write_json_str(builtin_name(*b), out, limit),
        }
    }

    /// `toString()` as a new string (bounded).
    pub fn to_text(&self, limit: usize) -> Result<std::borrow::Cow<'_, str>, RenderError> {
        if let Some(s) = self.as_str() {
            return Ok(std::borrow::Cow::Borrowed(s));
        }
        let mut s = String::new();
        self.write_to(&mut s, limit)?;
        Ok(std::borrow::Cow::Owned(s))
    }
}

fn builtin_name(b: Builtin) -> &'static str {
    // Java would print a class name and hash here; the name of the object is as useful.
    match b {
        Builtin::Input => "$input",
        Builtin::Util => "$util",
        Builtin::Esc => "$esc",
        Builtin::Context => "$context",
        Builtin::RequestOverride => "$context.requestOverride",
        Builtin::ResponseOverride => "$context.responseOverride",
        Builtin::OverrideMap(_) => "$context.override",
        Builtin::StageVariables => "$stageVariables",
        Builtin::Foreach(_) => "$foreach",
    }
}

pub(super) fn number<'r>(n: &serde_json::Number) -> Value<'r> {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else {
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn check(out: &str, limit: usize) -> Result<(), RenderError> {
    if out.len() > limit {
        Err(RenderError::OutputTooLarge)
    } else {
        Ok(())
    }
}

pub(super) fn push(out: &mut String, s: &str, limit: usize) -> Result<(), RenderError> {
    if out.len().saturating_add(s.len()) > limit {
        return Err(RenderError::OutputTooLarge);
    }
    out.push_str(s);
    Ok(())
}

/// A JSON object prints as a Java map (`{a=1, b=x}`), an array as compact JSON (API Gateway's
/// JSONPath objects: `LinkedHashMap` and json-smart's `JSONArray`).
fn write_json_java(
    j: &serde_json::Value,
    out: &mut String,
    limit: usize,
) -> Result<(), RenderError> {
    match j {
        serde_json::Value::Object(map) => {
            push(out, "{", limit)?;
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    push(out, ", ", limit)?;
                }
                push(out, k, limit)?;
                push(out, "=", limit)?;
                write_json_java(v, out, limit)?;
            }
            push(out, "}", limit)
        }
        serde_json::Value::Array(_) => write_json_text(j, out, limit),
        other => Value::from_json(other).write_to(out, limit),
    }
}

fn write_json_text(
    j: &serde_json::Value,
    out: &mut String,
    limit: usize,
) -> Result<(), RenderError> {
    let mut w = Bounded { out, limit };
    serde_json::to_writer(&mut w, j).map_err(|_| RenderError::OutputTooLarge)
}

fn write_json_str(s: &str, out: &mut String, limit: usize) -> Result<(), RenderError> {
    let mut w = Bounded { out, limit };
    serde_json::to_writer(&mut w, s).map_err(|_| RenderError::OutputTooLarge)
}

/// An `io::Write` into a `String` that refuses to grow past `limit` (serde_json writes UTF-8 only).
struct Bounded<'a> {
    out: &'a mut String,
    limit: usize,
}

impl std::io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.limit {
            return Err(std::io::Error::other("output limit"));
        }
        match std::str::from_utf8(buf) {
            Ok(s) => {
                self.out.push_str(s);
                Ok(buf.len())
            }
            Err(e) => {
                // serde_json may split a multi-byte char across writes: take the valid prefix.
                let valid = e.valid_up_to();
                if valid == 0 {
                    return Err(std::io::Error::other("split utf-8"));
                }
                self.out
                    .push_str(std::str::from_utf8(&buf[..valid]).unwrap_or_default());
                Ok(valid)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Java's `Double.toString`: plain notation for 1e-3 <= |d| < 1e7 (always with a fraction digit),
/// otherwise `d.dddE±n`; digits are the shortest that read back to the same double.
pub(super) fn java_double(d: f64, out: &mut String) {
    if d.is_nan() {
        out.push_str("NaN");
        return;
    }
    if d.is_infinite() {
        out.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if d == 0.0 {
        out.push_str(if d.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e6", "-5e-7".
    let sci = format!("{d:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if neg {
        out.push('-');
    }
    let abs = d.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-exp - 1).unwrap_or(0),
            ));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exp}");
    }
}

/// Velocity's `==`: numbers by value, same kinds by value, otherwise by string form; and API
/// Gateway's rule that null equals the empty string.
pub(super) fn equals(a: &Value<'_>, b: &Value<'_>, limit: usize) -> Result<bool, RenderError> {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        if let (Value::Int(i), Value::Int(j)) = (a, b) {
            return Ok(i == j);
        }
        return Ok(x == y);
    }
    match (a, b) {
        (Value::Null, Value::Null) => Ok(true),
        (Value::Null, other) | (other, Value::Null) => Ok(other.as_str() == Some("")),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        _ => {
            if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
                return Ok(x == y);
            }
            if same_kind(a, b) {
                return structural_eq(a, b, limit);
            }
            Ok(a.to_text(limit)? == b.to_text(limit)?)
        }
    }
}

fn same_kind(a: &Value<'_>, b: &Value<'_>) -> bool {
    let list = |v: &Value<'_>| {
        matches!(v, Value::List(_)) || matches!(v, Value::Json(serde_json::Value::Array(_)))
    };
    let map = |v: &Value<'_>| {
        matches!(v, Value::Map(_)) || matches!(v, Value::Json(serde_json::Value::Object(_)))
    };
    (list(a) && list(b))
        || (map(a) && map(b))
        || matches!((a, b), (Value::Object(x), Value::Object(y)) if x == y)
}

/// Java `List.equals` / `Map.equals` on containers: compared through their JSON text, which is exact
/// for data and bounded by the output limit.
fn structural_eq(a: &Value<'_>, b: &Value<'_>, limit: usize) -> Result<bool, RenderError> {
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        return Ok(x == y);
    }
    let mut x = String::new();
    let mut y = String::new();
    a.write_json(&mut x, limit)?;
    b.write_json(&mut y, limit)?;
    Ok(x == y)
}

#[cfg(test)]
mod tests {
    use super::java_double;

    fn j(d: f64) -> String {
        let mut s = String::new();
        java_double(d, &mut s);
        s
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(j(1.0), "1.0");
        assert_eq!(j(1.5), "1.5");
        assert_eq!(j(100.0), "100.0");
        assert_eq!(j(0.001), "0.001");
        assert_eq!(j(0.0001), "1.0E-4");
        assert_eq!(j(1234567.0), "1234567.0");
        assert_eq!(j(12345678.0), "1.2345678E7");
        assert_eq!(j(1e21), "1.0E21");
        assert_eq!(j(-2.5), "-2.5");
        assert_eq!(j(0.1), "0.1");
        assert_eq!(j(123.456), "123.456");
        assert_eq!(j(-0.0), "-0.0");
        assert_eq!(j(f64::NAN), "NaN");
    }
}
