//! Java methods on template values: `String`, `List`, `Map`, numbers and booleans.
//!
//! Input: a receiver, the method name and evaluated arguments. Output: the result, `Null` when Java
//! has no such method (Velocity then prints the reference as written), or a render error for what
//! throws in Java (index out of range, bad regex). Costs are charged by input length, and every built
//! string is checked against the output limit before it is returned.
//!
//! Strings are indexed in UTF-16 units, like Java. Regex arguments use the `regex` crate (linear
//! time, compiled with a size limit); Java replacement syntax (`$1`, `\$`) is translated.

use std::borrow::Cow;
use std::rc::Rc;

use regex::{Regex, RegexBuilder};

use super::RenderError;
use super::ast::{Method, Part, Precompiled, Reference};
use super::eval::{COMPILE_COST, Eval, map_get, map_put};
use super::value::{List, Map, Value};

/// Compiled program size allowed for one regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn is_mutator(name: &str) -> bool {
    matches!(
        name,
        "add" | "put" | "addAll" | "putAll" | "remove" | "clear" | "set"
    )
}

/// Compiles a template regex; `anchored` for `matches` (the whole string must match).
pub(super) fn compile_regex(pattern: &str, anchored: bool) -> Result<Regex, String> {
    let owned;
    let p = if anchored {
        owned = format!("^(?:{pattern})$");
        &owned
    } else {
        pattern
    };
    RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
}

/// A JSON array/object as a template container, one level deep (children stay borrowed), so it can
/// be changed copy-on-write.
pub(super) fn thaw<'r>(j: &'r serde_json::Value) -> Value<'r> {
    match j {
        serde_json::Value::Array(a) => Value::List(Rc::new(List {
            items: a.iter().map(Value::from_json).collect(),
            json_style: true,
            depth: 2,
        })),
        serde_json::Value::Object(o) => Value::Map(Rc::new(Map {
            entries: o
                .iter()
                .map(|(k, v)| (Value::Str(k), Value::from_json(v)))
                .collect(),
            depth: 2,
        })),
        other => Value::from_json(other),
    }
}

fn int_arg(args: &[Value<'_>], i: usize) -> Option<i64> {
    match args.get(i)? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn out_of_range(what: &str) -> RenderError {
    RenderError::Invalid(format!("{what}: index out of range"))
}

fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

/// Byte offset of UTF-16 position `idx` (rounded up past a split surrogate pair).
fn byte_at_utf16(s: &str, idx: usize) -> usize {
    if s.is_ascii() {
        return idx.min(s.len());
    }
    let mut units = 0;
    for (b, c) in s.char_indices() {
        if units >= idx {
            return b;
        }
        units += c.len_utf16();
    }
    s.len()
}

fn utf16_at_byte(s: &str, b: usize) -> usize {
    if s.is_ascii() {
        b
    } else {
        s[..b].encode_utf16().count()
    }
}

fn substring(s: &str, begin: i64, end: Option<i64>) -> Result<String, RenderError> {
    let len = utf16_len(s);
    let end = end.unwrap_or(len as i64);
    let (Ok(b), Ok(e)) = (usize::try_from(begin), usize::try_from(end)) else {
        return Err(out_of_range("substring"));
    };
    if b > e || e > len {
        return Err(out_of_range("substring"));
    }
    if s.is_ascii() {
        return Ok(s[b..e].to_owned());
    }
    let units: Vec<u16> = s.encode_utf16().collect();
    Ok(String::from_utf16_lossy(&units[b..e]))
}

/// Java `trim()`: strips every char <= U+0020 from both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Java's `String.split(regex, limit)`.
fn java_split(re: &Regex, s: &str, limit: i64) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut index = 0;
    let mut matched = false;
    for m in re.find_iter(s) {
        if limit > 0 && out.len() as i64 >= limit - 1 {
            break;
        }
        if m.end() == 0 && m.start() == 0 {
            // A zero-width match at the start never yields a leading empty string.
            continue;
        }
        if m.start() < index {
            continue;
        }
        matched = true;
        out.push(s[index..m.start()].to_owned());
        index = m.end();
    }
    if !matched {
        return vec![s.to_owned()];
    }
    out.push(s[index..].to_owned());
    if limit == 0 {
        while out.last().is_some_and(String::is_empty) {
            out.pop();
        }
    }
    out
}

/// Java `Matcher.replaceAll` replacement syntax → the `regex` crate's.
fn java_replacement(repl: &str, groups: usize) -> Result<String, RenderError> {
    let bad = |m: &str| RenderError::Invalid(format!("replacement {repl:?}: {m}"));
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(n) => out.push(n),
                None => return Err(bad("character to be escaped is missing")),
            },
            '$' => {
                if chars.peek() == Some(&'{') {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(n) if n.is_ascii_alphanumeric() => name.push(n),
                            _ => return Err(bad("malformed named group reference")),
                        }
                    }
                    out.push_str("${");
                    out.push_str(&name);
                    out.push('}');
                    continue;
                }
                let Some(first) = chars.peek().and_then(|d| d.to_digit(10)) else {
                    return Err(bad("illegal group reference"));
                };
                chars.next();
                let mut group = first as usize;
                if group > groups {
                    return Err(bad("no such group"));
                }
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    let next = group * 10 + d as usize;
                    if next > groups {
                        break;
                    }
                    group = next;
                    chars.next();
                }
                out.push_str(&format!("${{{group}}}"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl<'r> Eval<'r> {
    /// The regex for a method call: precompiled from a literal, or compiled now (charged, cached).
    fn regex_for(
        &mut self,
        m: &'r Method,
        pattern: &str,
        anchored: bool,
    ) -> Result<Regex, RenderError> {
        if let Precompiled::Regex(pre) = &m.pre {
            return pre.clone().map_err(RenderError::Invalid);
        }
        if let Some((_, _, re)) = self
            .regex_cache
            .iter()
            .find(|(p, a, _)| p == pattern && *a == anchored)
        {
            return Ok(re.clone());
        }
        self.step(COMPILE_COST.saturating_add(pattern.len()))?;
        let re = compile_regex(pattern, anchored).map_err(RenderError::Invalid)?;
        if self.regex_cache.len() >= super::eval::REGEX_CACHE_SIZE {
            self.regex_cache.remove(0);
        }
        self.regex_cache
            .push((pattern.to_owned(), anchored, re.clone()));
        Ok(re)
    }

    fn new_string(&self, s: String) -> Result<Value<'r>, RenderError> {
        self.check_len(s.len())?;
        Ok(Value::string(s))
    }

    /// Calls a method that is not a mutation of a variable.
    pub fn call(
        &mut self,
        recv: Value<'r>,
        m: &'r Method,
        args: &[Value<'r>],
    ) -> Result<Value<'r>, RenderError> {
        let name = &*m.name;
        match &recv {
            Value::Object(b) => return self.builtin_call(*b, m, args),
            Value::Str(_) | Value::String(_) => {
                let s: Rc<str> = match &recv {
                    Value::String(s) => s.clone(),
                    _ => Rc::from(recv.as_str().unwrap_or_default()),
                };
                return self.string_method(&s, m, args);
            }
            _ => {}
        }
        let limit = self.limit();
        if let Some(n) = container_len(&recv) {
            self.charge_len(n)?;
        }
        Ok(match (name, args) {
            ("toString", []) => self.new_string(recv.to_text(limit)?.into_owned())?,
            ("equals", [other]) => Value::Bool(java_equals(&recv, other, limit)?),
            // `count()` is what AWS's reference calls on `$input.path('$.pets')`.
            ("size", []) | ("count", []) => match container_len(&recv) {
                Some(n) => Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                None => Value::Null,
            },
            ("isEmpty", []) => match container_len(&recv) {
                Some(n) => Value::Bool(n == 0),
                None => Value::Null,
            },
            ("get", [key]) => match &recv {
                Value::List(_) | Value::Json(serde_json::Value::Array(_)) => {
                    let Value::Int(i) = key else {
                        return Ok(Value::Null);
                    };
                    let item = usize::try_from(*i).ok().and_then(|i| list_get(&recv, i));
                    item.ok_or_else(|| out_of_range("get"))?
                }
                _ => {
                    let k = key.to_text(limit)?;
                    self.property(&recv, &k)
                }
            },
            ("containsKey", [key]) => {
                let k = key.to_text(limit)?;
                match &recv {
                    Value::Map(m) => {
                        Value::Bool(m.entries.iter().any(|(e, _)| e.as_str() == Some(&*k)))
                    }
                    Value::Json(serde_json::Value::Object(o)) => Value::Bool(o.contains_key(&*k)),
                    _ => Value::Null,
                }
            }
            ("contains", [x]) | ("containsValue", [x]) => {
                let items = self.elements(&recv, name == "containsValue");
                let mut found = false;
                for item in &items {
                    self.step(1)?;
                    if java_equals(item, x, limit)? {
                        found = true;
                        break;
                    }
                }
                Value::Bool(found)
            }
            ("indexOf", [x]) => {
                let items = self.elements(&recv, false);
                let mut at = -1;
                for (i, item) in items.iter().enumerate() {
                    self.step(1)?;
                    if java_equals(item, x, limit)? {
                        at = i64::try_from(i).unwrap_or(i64::MAX);
                        break;
                    }
                }
                Value::Int(at)
            }
            ("keySet", []) => {
                let keys: Vec<Value<'r>> = match &recv {
                    Value::Map(m) => m.entries.iter().map(|(k, _)| k.clone()).collect(),
                    Value::Json(serde_json::Value::Object(o)) => {
                        o.keys().map(|k| Value::Str(k)).collect()
                    }
                    _ => return Ok(Value::Null),
                };
                self.step(keys.len())?;
                Value::List(Rc::new(List {
                    items: keys,
                    json_style: false,
                    depth: 1,
                }))
            }
            ("values", []) => {
                let items = match &recv {
                    Value::Map(_) | Value::Json(serde_json::Value::Object(_)) => {
                        self.elements(&recv, true)
                    }
                    _ => return Ok(Value::Null),
                };
                self.step(items.len())?;
                let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
                Value::List(Rc::new(List {
                    items,
                    json_style: false,
                    depth,
                }))
            }
            ("intValue", []) | ("longValue", []) => match recv {
                Value::Int(i) => Value::Int(i),
                Value::Float(f) => Value::Int(f as i64),
                _ => Value::Null,
            },
            ("doubleValue", []) | ("floatValue", []) => match recv.as_f64() {
                Some(f) => Value::Float(f),
                None => Value::Null,
            },
            ("booleanValue", []) => match recv {
                Value::Bool(b) => Value::Bool(b),
                _ => Value::Null,
            },
            // Mutators reached on a value that is not held by a variable (e.g. `$input.path(..).add(1)`)
            // act on a copy, as the result is unreachable afterwards.
            (n, _) if is_mutator(n) => {
                let mut copy = match &recv {
                    Value::Json(j) => thaw(j),
                    other => other.clone(),
                };
                self.apply_mutator(&mut copy, n, args)?
            }
            _ => Value::Null,
        })
    }

    /// List items or map values (`values`), bounded by steps.
    fn elements(&mut self, v: &Value<'r>, map_values: bool) -> Vec<Value<'r>> {
        match v {
            Value::List(l) if !map_values => l.items.clone(),
            Value::Json(serde_json::Value::Array(a)) if !map_values => {
                a.iter().map(Value::from_json).collect()
            }
            Value::Map(m) => m.entries.iter().map(|(_, v)| v.clone()).collect(),
            Value::Json(serde_json::Value::Object(o)) => o.values().map(Value::from_json).collect(),
            _ => Vec::new(),
        }
    }

    fn string_method(
        &mut self,
        s: &str,
        m: &'r Method,
        args: &[Value<'r>],
    ) -> Result<Value<'r>, RenderError> {
        self.step(1 + s.len() / 64)?;
        let limit = self.limit();
        let name = &*m.name;
        let text = |i: usize| -> Result<Option<Cow<'_, str>>, RenderError> {
            match args.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.to_text(limit).map(Some),
            }
        };
        Ok(match (name, args.len()) {
            ("length", 0) => Value::Int(i64::try_from(utf16_len(s)).unwrap_or(i64::MAX)),
            ("isEmpty", 0) => Value::Bool(s.is_empty()),
            ("toString", 0) | ("intern", 0) => self.new_string(s.to_owned())?,
            ("trim", 0) => self.new_string(java_trim(s).to_owned())?,
            ("toLowerCase", 0) => self.new_string(s.to_lowercase())?,
            ("toUpperCase", 0) => self.new_string(s.to_uppercase())?,
            ("substring", 1 | 2) => {
                let Some(b) = int_arg(args, 0) else {
                    return Ok(Value::Null);
                };
                let e = if args.len() == 2 {
                    match int_arg(args, 1) {
                        Some(e) => Some(e),
                        None => return Ok(Value::Null),
                    }
                } else {
                    None
                };
                self.new_string(substring(s, b, e)?)?
            }
            ("charAt", 1) => {
                let Some(i) = int_arg(args, 0) else {
                    return Ok(Value::Null);
                };
                let c = substring(s, i, Some(i.saturating_add(1)))
                    .map_err(|_| out_of_range("charAt"))?;
                self.new_string(c)?
            }
            ("indexOf", 1 | 2) | ("lastIndexOf", 1 | 2) => {
                let Some(needle) = text(0)? else {
                    return Ok(Value::Null);
                };
                let from = if args.len() == 2 {
                    match int_arg(args, 1) {
                        Some(f) => Some(f),
                        None => return Ok(Value::Null),
                    }
                } else {
                    None
                };
                let found = if name == "indexOf" {
                    let start = byte_at_utf16(
                        s,
                        usize::try_from(from.unwrap_or(0).max(0)).unwrap_or(usize::MAX),
                    );
                    s[start..].find(&*needle).map(|b| b + start)
                } else {
                    let end = match from {
                        Some(f) if f < 0 => return Ok(Value::Int(-1)),
                        Some(f) => byte_at_utf16(s, usize::try_from(f).unwrap_or(usize::MAX))
                            .saturating_add(needle.len())
                            .min(s.len()),
                        None => s.len(),
                    };
                    let end = (0..=end)
                        .rev()
                        .find(|&e| s.is_char_boundary(e))
                        .unwrap_or(0);
                    s[..end].rfind(&*needle)
                };
                Value::Int(found.map_or(-1, |b| {
                    i64::try_from(utf16_at_byte(s, b)).unwrap_or(i64::MAX)
                }))
            }
            ("contains", 1) => match text(0)? {
                Some(n) => Value::Bool(s.contains(&*n)),
                None => Value::Null,
            },
            ("startsWith", 1) => match text(0)? {
                Some(p) => Value::Bool(s.starts_with(&*p)),
                None => Value::Null,
            },
            ("startsWith", 2) => match (text(0)?, int_arg(args, 1)) {
                (Some(p), Some(off)) => {
                    let ok = usize::try_from(off)
                        .ok()
                        .filter(|&o| o <= utf16_len(s))
                        .is_some_and(|o| {
                            let b = byte_at_utf16(s, o);
                            s[b..].starts_with(&*p)
                        });
                    Value::Bool(ok)
                }
                _ => Value::Null,
            },
            ("endsWith", 1) => match text(0)? {
                Some(p) => Value::Bool(s.ends_with(&*p)),
                None => Value::Null,
            },
            ("equals", 1) => Value::Bool(args[0].as_str() == Some(s)),
            ("equalsIgnoreCase", 1) => Value::Bool(
                args[0]
                    .as_str()
                    .is_some_and(|o| o.to_lowercase() == s.to_lowercase()),
            ),
            ("compareTo", 1) => match args[0].as_str() {
                Some(o) => {
                    let a: Vec<u16> = s.encode_utf16().collect();
                    let b: Vec<u16> = o.encode_utf16().collect();
                    let diff = a
                        .iter()
                        .zip(&b)
                        .find(|(x, y)| x != y)
                        .map(|(x, y)| i64::from(*x) - i64::from(*y))
                        .unwrap_or(a.len() as i64 - b.len() as i64);
                    Value::Int(diff)
                }
                None => Value::Null,
            },
            ("concat", 1) => match args[0].as_str() {
                Some(o) => {
                    self.check_len(s.len().saturating_add(o.len()))?;
                    Value::string(format!("{s}{o}"))
                }
                None => Value::Null,
            },
            ("replace", 2) => {
                let (Some(from), Some(to)) = (text(0)?, text(1)?) else {
                    return Ok(Value::Null);
                };
                let count = if from.is_empty() {
                    utf16_len(s) + 1
                } else {
                    s.matches(&*from).count()
                };
                let grow = to.len().saturating_sub(from.len()).saturating_mul(count);
                self.check_len(s.len().saturating_add(grow))?;
                self.new_string(s.replace(&*from, &to))?
            }
            ("replaceAll", 2) | ("replaceFirst", 2) => {
                let (Some(pattern), Some(repl)) = (text(0)?, text(1)?) else {
                    return Ok(Value::Null);
                };
                let re = self.regex_for(m, &pattern, false)?;
                let repl = java_replacement(&repl, re.captures_len().saturating_sub(1))?;
                let replaced = if name == "replaceAll" {
                    bounded_replace(&re, s, &repl, usize::MAX, limit)?
                } else {
                    bounded_replace(&re, s, &repl, 1, limit)?
                };
                self.new_string(replaced)?
            }
            ("matches", 1) => {
                let Some(pattern) = text(0)? else {
                    return Ok(Value::Null);
                };
                let re = self.regex_for(m, &pattern, true)?;
                Value::Bool(re.is_match(s))
            }
            ("split", 1 | 2) => {
                let Some(pattern) = text(0)? else {
                    return Ok(Value::Null);
                };
                let limit_arg = if args.len() == 2 {
                    match int_arg(args, 1) {
                        Some(l) => l,
                        None => return Ok(Value::Null),
                    }
                } else {
                    0
                };
                let re = self.regex_for(m, &pattern, false)?;
                let parts = java_split(&re, s, limit_arg);
                self.step(parts.len())?;
                Value::List(Rc::new(List {
                    items: parts.into_iter().map(Value::string).collect(),
                    json_style: false,
                    depth: 1,
                }))
            }
            ("hashCode", 0) => {
                let h = s
                    .encode_utf16()
                    .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
                Value::Int(i64::from(h))
            }
            _ => Value::Null,
        })
    }

    /// `$var.a.b.add(x)` and friends: changes the container held by the variable, copy-on-write.
    pub fn mutate(&mut self, r: &'r Reference, at: usize) -> Result<Value<'r>, RenderError> {
        let Some(Part::Method(m)) = r.parts.get(at) else {
            return Ok(Value::Null);
        };
        let mut args = Vec::with_capacity(m.args.len());
        for a in &m.args {
            args.push(self.expr(a)?);
        }
        self.step(1)?;
        let added = args.iter().map(Value::depth).max().unwrap_or(0);
        // The container at level `at` grows to at most `added + 2` (addAll adds a level), its
        // ancestors one more each.
        let needed = at + added + 2;
        self.check_depth(needed)?;
        let Some(i) = self.var_index(&r.root) else {
            return Ok(Value::Null);
        };
        let name: &str = &m.name;
        let limit = self.bounds.max_output_bytes;
        let mut cur = &mut self.vars[i].1;
        let mut level_need = needed;
        for part in &r.parts[..at] {
            let Part::Prop(key) = part else {
                return Ok(Value::Null);
            };
            if let Value::Json(j) = *cur {
                *cur = thaw(j);
            }
            let Value::Map(map) = cur else {
                return Ok(Value::Null);
            };
            let map = Rc::make_mut(map);
            map.depth = map.depth.max(level_need);
            level_need -= 1;
            match map
                .entries
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
            {
                Some((_, next)) => cur = next,
                None => return Ok(Value::Null),
            }
        }
        if let Value::Json(j) = *cur {
            *cur = thaw(j);
        }
        // Copy-on-write may clone the container, and map keys are found by scanning.
        let len = match &*cur {
            Value::List(l) => l.items.len(),
            Value::Map(m) => m.entries.len(),
            _ => 0,
        };
        self.steps = self.steps.saturating_add(1 + len / 16);
        if self.steps > self.bounds.max_total_steps {
            return Err(RenderError::TooManySteps);
        }
        apply_mutator_on(cur, name, &args, limit)
    }

    fn apply_mutator(
        &mut self,
        target: &mut Value<'r>,
        name: &str,
        args: &[Value<'r>],
    ) -> Result<Value<'r>, RenderError> {
        let added = args.iter().map(Value::depth).max().unwrap_or(0);
        self.check_depth(added + 2)?;
        apply_mutator_on(target, name, args, self.bounds.max_output_bytes)
    }
}

fn apply_mutator_on<'r>(
    target: &mut Value<'r>,
    name: &str,
    args: &[Value<'r>],
    limit: usize,
) -> Result<Value<'r>, RenderError> {
    match target {
        Value::List(l) => {
            let l = Rc::make_mut(l);
            match (name, args) {
                ("add", [x]) => {
                    l.depth = l.depth.max(x.depth() + 1);
                    l.items.push(x.clone());
                    Ok(Value::Bool(true))
                }
                ("add", [Value::Int(i), x]) => {
                    let i = usize::try_from(*i)
                        .ok()
                        .filter(|&i| i <= l.items.len())
                        .ok_or_else(|| out_of_range("add"))?;
                    l.depth = l.depth.max(x.depth() + 1);
                    l.items.insert(i, x.clone());
                    Ok(Value::Null)
                }
                ("addAll", [other]) => {
                    let items: Vec<Value<'r>> = match other {
                        Value::List(o) => o.items.clone(),
                        Value::Json(serde_json::Value::Array(a)) => {
                            a.iter().map(Value::from_json).collect()
                        }
                        _ => return Ok(Value::Null),
                    };
                    let changed = !items.is_empty();
                    for x in items {
                        l.depth = l.depth.max(x.depth() + 1);
                        l.items.push(x);
                    }
                    Ok(Value::Bool(changed))
                }
                ("set", [Value::Int(i), x]) => {
                    let slot = usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.items.get_mut(i))
                        .ok_or_else(|| out_of_range("set"))?;
                    l.depth = l.depth.max(x.depth() + 1);
                    Ok(std::mem::replace(slot, x.clone()))
                }
                ("remove", [Value::Int(i)]) => {
                    let i = usize::try_from(*i)
                        .ok()
                        .filter(|&i| i < l.items.len())
                        .ok_or_else(|| out_of_range("remove"))?;
                    Ok(l.items.remove(i))
                }
                ("remove", [x]) => {
                    let mut at = None;
                    for (i, item) in l.items.iter().enumerate() {
                        if java_equals(item, x, limit)? {
                            at = Some(i);
                            break;
                        }
                    }
                    Ok(Value::Bool(at.map(|i| l.items.remove(i)).is_some()))
                }
                ("clear", []) => {
                    l.items.clear();
                    Ok(Value::Null)
                }
                _ => Ok(Value::Null),
            }
        }
        Value::Map(m) => {
            let m = Rc::make_mut(m);
            match (name, args) {
                ("put", [k, v]) => {
                    m.depth = m.depth.max(v.depth() + 1);
                    Ok(map_put(m, k.clone(), v.clone()))
                }
                ("putAll", [other]) => {
                    let entries: Vec<(Value<'r>, Value<'r>)> = match other {
                        Value::Map(o) => o.entries.clone(),
                        Value::Json(serde_json::Value::Object(o)) => o
                            .iter()
                            .map(|(k, v)| (Value::Str(k), Value::from_json(v)))
                            .collect(),
                        _ => return Ok(Value::Null),
                    };
                    for (k, v) in entries {
                        m.depth = m.depth.max(v.depth() + 1);
                        map_put(m, k, v);
                    }
                    Ok(Value::Null)
                }
                ("remove", [k]) => {
                    let key = k.to_text(limit)?.into_owned();
                    let old = map_get(m, &key);
                    m.entries.retain(|(e, _)| e.as_str() != Some(&key));
                    Ok(old)
                }
                ("clear", []) => {
                    m.entries.clear();
                    Ok(Value::Null)
                }
                _ => Ok(Value::Null),
            }
        }
        _ => Ok(Value::Null),
    }
}

/// Replaces at most `max` matches, failing as soon as the result passes `limit`.
fn bounded_replace(
    re: &Regex,
    s: &str,
    repl: &str,
    max: usize,
    limit: usize,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (n, caps) in re.captures_iter(s).enumerate() {
        if n >= max {
            break;
        }
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&s[last..m.start()]);
        caps.expand(repl, &mut out);
        last = m.end();
        if out.len() > limit {
            return Err(RenderError::OutputTooLarge);
        }
    }
    out.push_str(&s[last..]);
    if out.len() > limit {
        return Err(RenderError::OutputTooLarge);
    }
    Ok(out)
}

fn container_len(v: &Value<'_>) -> Option<usize> {
    match v {
        Value::List(l) => Some(l.items.len()),
        Value::Map(m) => Some(m.entries.len()),
        Value::Json(serde_json::Value::Array(a)) => Some(a.len()),
        Value::Json(serde_json::Value::Object(o)) => Some(o.len()),
        _ => None,
    }
}

fn list_get<'r>(v: &Value<'r>, i: usize) -> Option<Value<'r>> {
    match v {
        Value::List(l) => l.items.get(i).cloned(),
        Value::Json(serde_json::Value::Array(a)) => a.get(i).map(Value::from_json),
        _ => None,
    }
}

/// Java `a.equals(b)`: same kind and same value (an Integer never equals a Double).
fn java_equals(a: &Value<'_>, b: &Value<'_>, limit: usize) -> Result<bool, RenderError> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(_), Value::Float(_)) | (Value::Float(_), Value::Int(_)) => false,
        _ => super::value::equals(a, b, limit)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(p: &str, s: &str) -> Vec<String> {
        java_split(&compile_regex(p, false).unwrap(), s, 0)
    }

    #[test]
    fn split_follows_java() {
        assert_eq!(split(",", "101,131,162"), ["101", "131", "162"]);
        assert_eq!(split(",", "a,b,,"), ["a", "b"]);
        assert_eq!(split(",", ",a"), ["", "a"]);
        assert_eq!(split(",", ""), [""]);
        assert!(split(",", ",,").is_empty());
        assert_eq!(split("", "abc"), ["a", "b", "c"]);
        assert_eq!(
            java_split(&compile_regex(",", false).unwrap(), "a,b,c", 2),
            ["a", "b,c"]
        );
    }

    #[test]
    fn replacement_syntax_is_translated() {
        assert_eq!(java_replacement("$1-\\$", 1).unwrap(), "${1}-$$");
        assert_eq!(java_replacement("$12", 1).unwrap(), "${1}2");
        assert!(java_replacement("$2", 1).is_err());
        assert!(java_replacement("a\\", 0).is_err());
    }
}
