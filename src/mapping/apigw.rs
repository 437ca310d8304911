//! API Gateway's template objects: `$input`, `$util`, `$esc`, `$stageVariables` (methods), and the
//! JSONPath glue.
//!
//! Input: the request carried by [`Eval`]. Output: template values. The body is read as JSON at most
//! once per render (see [`super::json`] for how text that is not JSON reads, and the memory bound),
//! and only if `$input.json`/`$input.path` runs; `$input.params(name)` borrows the parameter string,
//! so the common request template allocates nothing here.
//!
//! JSONPath: `serde_json_path` (RFC 9535). API Gateway uses Jayway JsonPath, whose *definite* paths
//! (no wildcard, deep scan, filter, union or slice) return one value and the others a list; we follow
//! that split. A definite path that matches nothing (or a JSON null, or an empty body) gives null:
//! `$input.path` is then null (rendered as nothing) and `$input.json` is `""`, the JSON form of the
//! empty string null stands for — both as API Gateway answers.

use std::rc::Rc;

use base64::Engine as _;
use serde_json_path::JsonPath;

use super::RenderError;
use super::ast::{Method, Precompiled};
use super::escape;
use super::eval::{COMPILE_COST, Eval, map_put};
use super::json::{self, Doc, JsonError};
use super::value::{Builtin, List, Map, Value};

/// What `$input.json` gives for nothing: the empty string, as JSON.
const JSON_NOTHING: &str = "\"\"";

impl From<JsonError> for RenderError {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Malformed(why) => RenderError::BadPayload(why),
            JsonError::TooLarge => RenderError::JsonTooLarge,
            JsonError::OverBudget => RenderError::OverBudget,
        }
    }
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Parses a template JSONPath, accepting Jayway's leniencies (no leading `$`, `-` in dotted names).
pub(super) fn compile_path(text: &str) -> Result<(JsonPath, bool), String> {
    let normalized = normalize_path(text);
    let path =
        JsonPath::parse(&normalized).map_err(|e| format!("invalid JSONPath {text:?}: {e}"))?;
    Ok((path, is_definite(&normalized)))
}

fn normalize_path(text: &str) -> String {
    let t = text.trim();
    let with_root = if t.is_empty() {
        "$".to_owned()
    } else if t.starts_with('$') {
        t.to_owned()
    } else if t.starts_with('[') {
        format!("${t}")
    } else {
        format!("$.{t}")
    };
    // Dotted names RFC 9535 would reject (`$.user-id`) become bracketed names (`$['user-id']`).
    let chars: Vec<char> = with_root.chars().collect();
    let mut out = String::with_capacity(with_root.len() + 8);
    let mut i = 0;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0
                && chars
                    .get(i + 1)
                    .is_some_and(|&n| n != '.' && n != '[' && n != '*') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && !matches!(chars[end], '.' | '[') {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                let shorthand = name.chars().enumerate().all(|(k, ch)| {
                    ch == '_'
                        || !ch.is_ascii()
                        || ch.is_ascii_alphabetic()
                        || (k > 0 && ch.is_ascii_digit())
                });
                if !shorthand && !name.is_empty() {
                    out.push_str("['");
                    for ch in name.chars() {
                        if ch == '\'' || ch == '\\' {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push_str("']");
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Jayway's "definite path": no wildcard, deep scan, filter, union or slice.
fn is_definite(path: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut prev = '\0';
    let mut escaped = false;
    for c in path.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '*' | '?' => return false,
            '.' if prev == '.' => return false,
            ',' | ':' if depth > 0 => return false,
            _ => {}
        }
        prev = c;
    }
    true
}

/// `$esc.<name>`: Velocity Tools' EscapeTool constants.
pub(super) fn esc_property(name: &str) -> Value<'static> {
    Value::Str(match name {
        "newline" => "\n",
        "d" | "dollar" => "$",
        "h" | "hash" => "#",
        "b" | "backslash" => "\\",
        "q" | "quote" => "\"",
        "s" | "singleQuote" => "'",
        "e" | "exclamation" => "!",
        _ => return Value::Null,
    })
}

/// The property a Java getter call names: `getBody` → `body`, `isEmpty` → `empty`, `hasNext` as is.
pub(super) fn getter_property(name: &str) -> String {
    let stripped = name
        .strip_prefix("get")
        .or_else(|| name.strip_prefix("is"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()));
    match stripped {
        Some(rest) => {
            let mut chars = rest.chars();
            chars
                .next()
                .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
                .unwrap_or_default()
        }
        None => name.to_owned(),
    }
}

impl<'r> Eval<'r> {
    /// `$input.body`: the payload as text; `{}` when empty, as API Gateway does.
    pub fn body_text(&self) -> Value<'r> {
        let body = self.input.body;
        if body.is_empty() {
            return Value::Str("{}");
        }
        match std::str::from_utf8(body) {
            Ok(s) => Value::Str(s),
            Err(_) => Value::string(String::from_utf8_lossy(body).into_owned()),
        }
    }

    /// The payload as JSON; `None` when it is empty.
    fn body_json(&mut self) -> Result<Option<&'r serde_json::Value>, RenderError> {
        let cell = self.body_json;
        if cell.get().is_none() {
            self.step(1 + self.input.body.len() / 256)?;
        }
        let body = self.input.body;
        let meter = &self.json;
        match cell.get_or_init(|| json::read(body, meter)) {
            Ok(Doc::Absent) => Ok(None),
            Ok(Doc::Value(v)) => Ok(Some(v)),
            Err(e) => Err(e.clone().into()),
        }
    }

    fn path_for(
        &mut self,
        m: &'r Method,
        arg: &Value<'r>,
    ) -> Result<(JsonPath, bool), RenderError> {
        if let Precompiled::Path(pre) = &m.pre {
            return pre.clone().map_err(RenderError::Invalid);
        }
        let text = arg.to_text(self.limit())?;
        self.step(COMPILE_COST.saturating_add(text.len()))?;
        compile_path(&text).map_err(RenderError::Invalid)
    }

    /// Methods of the API Gateway objects.
    pub fn builtin_call(
        &mut self,
        b: Builtin,
        m: &'r Method,
        args: &[Value<'r>],
    ) -> Result<Value<'r>, RenderError> {
        let name = &*m.name;
        let limit = self.limit();
        let arg_text = |i: usize| -> Result<Option<std::borrow::Cow<'_, str>>, RenderError> {
            match args.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some(v.to_text(limit)?)),
            }
        };
        match (b, name, args.len()) {
            (Builtin::Input, "json", 1) => {
                let (path, definite) = self.path_for(m, &args[0])?;
                let Some(root) = self.body_json()? else {
                    return Ok(Value::Str(JSON_NOTHING));
                };
                let nodes = path.query(root);
                self.step(1 + nodes.len())?;
                let mut out = String::new();
                let value = if definite {
                    match nodes.first() {
                        Some(j) if !j.is_null() => Value::Json(j),
                        _ => return Ok(Value::Str(JSON_NOTHING)),
                    }
                } else {
                    Value::List(Rc::new(List {
                        items: nodes.all().into_iter().map(Value::Json).collect(),
                        json_style: true,
                        depth: 2,
                    }))
                };
                match value {
                    Value::Json(j) => {
                        let mut w = Vec::new();
                        serde_json::to_writer(&mut w, j)
                            .map_err(|e| RenderError::Invalid(e.to_string()))?;
                        self.check_len(w.len())?;
                        self.charge_bytes(w.len())?;
                        out = String::from_utf8(w)
                            .map_err(|e| RenderError::Invalid(e.to_string()))?;
                    }
                    other => other.write_json(&mut out, limit)?,
                }
                Ok(Value::string(out))
            }
            (Builtin::Input, "path", 1) => {
                let (path, definite) = self.path_for(m, &args[0])?;
                let Some(root) = self.body_json()? else {
                    return Ok(Value::Null);
                };
                let nodes = path.query(root);
                if definite {
                    return Ok(nodes.first().map(Value::from_json).unwrap_or(Value::Null));
                }
                self.step(nodes.len())?;
                Ok(Value::List(Rc::new(List {
                    items: nodes.all().into_iter().map(Value::from_json).collect(),
                    json_style: true,
                    depth: 2,
                })))
            }
            (Builtin::Input, "params", 0) => self.all_params(),
            (Builtin::Input, "params", 1) => {
                let Some(key) = arg_text(0)? else {
                    return Ok(Value::Str(""));
                };
                Ok(Value::Str(self.param(&key)))
            }
            (Builtin::Util, "escapeJavaScript", 1) | (Builtin::Esc, "javascript", 1) => {
                match arg_text(0)? {
                    Some(s) => {
                        self.step(1 + s.len() / 64)?;
                        let e = escape::escape_javascript(&s);
                        self.check_len(e.len())?;
                        Ok(Value::string(e))
                    }
                    None => Ok(Value::Null),
                }
            }
            (Builtin::Esc, "java", 1) => match arg_text(0)? {
                Some(s) => {
                    self.charge_bytes(s.len())?;
                    let e = escape::escape_java(&s);
                    self.check_len(e.len())?;
                    Ok(Value::string(e))
                }
                None => Ok(Value::Null),
            },
            (Builtin::Util, "urlEncode", 1) | (Builtin::Esc, "url", 1) => match arg_text(0)? {
                Some(s) => {
                    self.charge_bytes(s.len())?;
                    let e = escape::url_encode(&s);
                    self.check_len(e.len())?;
                    Ok(Value::string(e))
                }
                None => Ok(Value::Null),
            },
            (Builtin::Util, "urlDecode", 1) => match arg_text(0)? {
                Some(s) => {
                    self.charge_bytes(s.len())?;
                    Ok(Value::string(
                        escape::url_decode(&s).map_err(RenderError::Invalid)?,
                    ))
                }
                None => Ok(Value::Null),
            },
            (Builtin::Util, "base64Encode", 1) => match arg_text(0)? {
                Some(s) => {
                    self.check_len(s.len().saturating_mul(4) / 3 + 4)?;
                    self.charge_bytes(s.len())?;
                    Ok(Value::string(BASE64.encode(s.as_bytes())))
                }
                None => Ok(Value::Null),
            },
            (Builtin::Util, "base64Decode", 1) => match arg_text(0)? {
                Some(s) => {
                    self.charge_bytes(s.len())?;
                    let bytes = BASE64
                        .decode(s.trim().as_bytes())
                        .map_err(|e| RenderError::Invalid(format!("base64Decode: {e}")))?;
                    Ok(Value::string(String::from_utf8_lossy(&bytes).into_owned()))
                }
                None => Ok(Value::Null),
            },
            (Builtin::Util, "parseJson", 1) => match arg_text(0)? {
                Some(s) => {
                    self.step(1 + s.len() / 256)?;
                    match json::read(s.as_bytes(), &self.json)? {
                        Doc::Absent => Ok(Value::Null),
                        Doc::Value(v) => {
                            let (kept, next) = json::store(self.json_tail, v);
                            self.json_tail = next;
                            Ok(Value::from_json(kept))
                        }
                    }
                }
                None => Ok(Value::Null),
            },
            (Builtin::OverrideMap(kind), "put", 2) => {
                let key = args[0].to_text(limit)?.into_owned();
                let value = args[1].to_text(limit)?.into_owned();
                Ok(self
                    .set_override(kind, &key, value)
                    .map_or(Value::Null, Value::string))
            }
            (Builtin::OverrideMap(_), "get", 1) => {
                let key = args[0].to_text(limit)?.into_owned();
                Ok(self.property(&Value::Object(b), &key))
            }
            (Builtin::OverrideMap(_), "containsKey", 1) => {
                let key = args[0].to_text(limit)?.into_owned();
                Ok(Value::Bool(
                    !self.property(&Value::Object(b), &key).is_null(),
                ))
            }
            (Builtin::StageVariables, _, _) => self.string_map_call(name, args),
            (_, _, 0) => {
                // Getter calls (`$foreach.hasNext()`, `$esc.getNewline()`, `$input.getBody()`).
                let prop = getter_property(name);
                Ok(self.property(&Value::Object(b), &prop))
            }
            _ => Ok(Value::Null),
        }
    }

    /// Map methods on `$stageVariables`.
    fn string_map_call(
        &mut self,
        name: &str,
        args: &[Value<'r>],
    ) -> Result<Value<'r>, RenderError> {
        let vars = self.input.stage_variables;
        let limit = self.limit();
        Ok(match (name, args) {
            ("get", [k]) => vars
                .get(&*k.to_text(limit)?)
                .map(|s| Value::Str(s))
                .unwrap_or(Value::Null),
            ("containsKey", [k]) => Value::Bool(vars.contains_key(&*k.to_text(limit)?)),
            ("size", []) => Value::Int(i64::try_from(vars.len()).unwrap_or(i64::MAX)),
            ("isEmpty", []) => Value::Bool(vars.is_empty()),
            ("keySet", []) | ("values", []) => {
                self.step(vars.len())?;
                let items = if name == "keySet" {
                    vars.keys().map(|k| Value::Str(k)).collect()
                } else {
                    vars.values().map(|v| Value::Str(v)).collect()
                };
                Value::List(Rc::new(List {
                    items,
                    json_style: false,
                    depth: 1,
                }))
            }
            _ => Value::Null,
        })
    }

    /// `$input.params(name)`: path, then query string, then header (any case); the last of repeated
    /// names; `""` when absent.
    fn param(&self, name: &str) -> &'r str {
        let p = self.input.params;
        let last = |list: &'r [(String, String)], header: bool| {
            list.iter()
                .rev()
                .find(|(k, _)| {
                    if header {
                        k.eq_ignore_ascii_case(name)
                    } else {
                        k == name
                    }
                })
                .map(|(_, v)| v.as_str())
        };
        last(&p.path, false)
            .or_else(|| last(&p.querystring, false))
            .or_else(|| last(&p.header, true))
            .unwrap_or("")
    }

    /// `$input.params()`: `{path={..}, querystring={..}, header={..}}`.
    fn all_params(&mut self) -> Result<Value<'r>, RenderError> {
        let p = self.input.params;
        self.step(p.path.len() + p.querystring.len() + p.header.len())?;
        let section = |list: &'r [(String, String)]| {
            let mut m = Map {
                entries: Vec::with_capacity(list.len()),
                depth: 1,
            };
            for (k, v) in list {
                map_put(&mut m, Value::Str(k), Value::Str(v));
            }
            Value::Map(Rc::new(m))
        };
        let mut all = Map {
            entries: Vec::with_capacity(3),
            depth: 2,
        };
        all.entries.push((Value::Str("path"), section(&p.path)));
        all.entries
            .push((Value::Str("querystring"), section(&p.querystring)));
        all.entries.push((Value::Str("header"), section(&p.header)));
        Ok(Value::Map(Rc::new(all)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_like_jayway() {
        assert_eq!(normalize_path("$.user-id"), "$['user-id']");
        assert_eq!(normalize_path("things"), "$.things");
        assert_eq!(normalize_path("$.a.b[0]"), "$.a.b[0]");
        assert_eq!(normalize_path("$['a-b'].c"), "$['a-b'].c");
        assert!(is_definite("$.a.b[0]"));
        assert!(is_definite("$['a,b']"));
        assert!(!is_definite("$.a[*]"));
        assert!(!is_definite("$..a"));
        assert!(!is_definite("$.a[?@.b]"));
        assert!(!is_definite("$.a[0,1]"));
        assert!(!is_definite("$.a[0:2]"));
    }
}
