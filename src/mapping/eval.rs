//! The renderer: walks a parsed template for one request.
//!
//! Input: the tree, the request ([`RenderInput`]) and the [`Bounds`]. Output: [`Rendered`] or the
//! first [`RenderError`]. Every node and expression costs a step; loops count iterations; every string
//! that grows is checked against the output limit before it grows; containers carry their depth. So a
//! hostile template ends with an error after bounded work and memory, and nothing here panics.
//!
//! Variables live in a small vector (templates have a handful); a `#foreach` saves and restores its
//! loop variable, as Velocity 1.7 does. `#set` on `$context.requestOverride.*` and
//! `$context.responseOverride.*` lands in [`Overrides`] (a response render starts from the request
//! render's, so it reads them); `$context` itself is read-only.
//!
//! A failure carries the byte offset of the innermost reference or `#foreach` being evaluated, so the
//! caller can name its line and column.

use std::cell::OnceCell;
use std::rc::Rc;

use regex::Regex;

use super::ast::{BinOp, Block, Expr, Node, Part, Reference};
use super::json::{self, Doc, JsonError, Link, Meter};
use super::value::{Builtin, List, Map, OverrideKind, Value};
use super::{Bounds, Overrides, RenderError, RenderInput, Rendered, Reserve};

/// What a block asks of its enclosing blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Stop,
}

pub(super) struct LoopFrame {
    pub index: usize,
    pub has_next: bool,
}

/// The state of one render.
pub(super) struct Eval<'r> {
    pub input: RenderInput<'r>,
    /// The payload read as JSON, once, when a template first asks.
    pub body_json: &'r OnceCell<Result<Doc, JsonError>>,
    /// Bytes held by JSON parsed in this render (body and `$util.parseJson`), and their charge.
    pub json: Meter<'r>,
    /// Where the next `$util.parseJson` value is kept until the render ends.
    pub json_tail: &'r OnceCell<Box<Link>>,
    /// Offset of the reference or directive being evaluated (error positions).
    pub at: usize,
    pub bounds: &'r Bounds,
    pub out: String,
    pub steps: usize,
    pub vars: Vec<(&'r str, Value<'r>)>,
    pub loops: Vec<LoopFrame>,
    pub overrides: Overrides,
    /// Regexes compiled at run time (non-literal patterns), by pattern and anchoring.
    pub regex_cache: Vec<(String, bool, Regex)>,
}

/// Extra steps charged for compiling a regex or JSONPath at run time.
pub(super) const COMPILE_COST: usize = 1000;
/// Run-time compiled regexes kept per render.
pub(super) const REGEX_CACHE_SIZE: usize = 16;

/// Renders `block`, starting from the overrides `prior` (a request render's, for a response render).
/// A failure comes with the byte offset where it happened.
pub(super) fn render(
    block: &Block,
    size_hint: usize,
    input: &RenderInput<'_>,
    bounds: &Bounds,
    prior: &Overrides,
    reserve: &dyn Reserve,
) -> Result<Rendered, (RenderError, usize)> {
    let parsed = Parsed::default();
    run(block, size_hint, *input, bounds, prior, &parsed, reserve)
}

/// JSON one render parses, kept until it ends so template values can borrow it.
#[derive(Default)]
struct Parsed {
    /// The payload, read once when a template first asks.
    body: OnceCell<Result<Doc, JsonError>>,
    /// Every `$util.parseJson` value.
    arena: json::Arena,
}

fn run<'r>(
    block: &'r Block,
    size_hint: usize,
    input: RenderInput<'r>,
    bounds: &'r Bounds,
    prior: &Overrides,
    parsed: &'r Parsed,
    reserve: &'r dyn Reserve,
) -> Result<Rendered, (RenderError, usize)> {
    let mut ev = Eval {
        input,
        body_json: &parsed.body,
        json: Meter::new(bounds.max_json_bytes, reserve),
        json_tail: parsed.arena.tail(),
        at: 0,
        bounds,
        out: String::with_capacity(size_hint.min(bounds.max_output_bytes)),
        steps: 0,
        vars: Vec::new(),
        loops: Vec::new(),
        overrides: prior.clone(),
        regex_cache: Vec::new(),
    };
    if let Err(e) = ev.block(block) {
        return Err((e, ev.at));
    }
    Ok(Rendered {
        body: ev.out,
        overrides: ev.overrides,
        json_bytes: ev.json.used(),
    })
}

impl<'r> Eval<'r> {
    pub fn step(&mut self, n: usize) -> Result<(), RenderError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.bounds.max_total_steps {
            Err(RenderError::TooManySteps)
        } else {
            Ok(())
        }
    }

    /// Charges for work proportional to `bytes` of data (comparing, copying, scanning), so repeating
    /// a cheap-looking operation on a large value runs out of steps instead of time.
    pub fn charge_bytes(&mut self, bytes: usize) -> Result<(), RenderError> {
        self.step(1 + bytes / 64)
    }

    /// Charges for a linear scan of a template-built container.
    pub fn charge_len(&mut self, len: usize) -> Result<(), RenderError> {
        self.step(1 + len / 16)
    }

    pub fn limit(&self) -> usize {
        self.bounds.max_output_bytes
    }

    /// Fails when a built string is over the output limit.
    pub fn check_len(&self, len: usize) -> Result<(), RenderError> {
        if len > self.bounds.max_output_bytes {
            Err(RenderError::OutputTooLarge)
        } else {
            Ok(())
        }
    }

    pub fn check_depth(&self, depth: usize) -> Result<(), RenderError> {
        if depth > self.bounds.max_depth {
            Err(RenderError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn block(&mut self, block: &'r Block) -> Result<Flow, RenderError> {
        for node in block {
            self.step(1)?;
            let flow = self.node(node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, node: &'r Node) -> Result<Flow, RenderError> {
        match node {
            Node::Text(t) => super::value::push(&mut self.out, t, self.bounds.max_output_bytes)?,
            Node::Ref(r) => self.output_ref(r)?,
            Node::Set(target, value) => {
                self.at = target.at;
                let v = self.expr(value)?;
                // Velocity 1.7: a null right-hand side leaves the variable as it was.
                if !v.is_null() {
                    self.assign(target, v)?;
                }
            }
            Node::If(branches, otherwise) => {
                for (cond, body) in branches {
                    if self.expr(cond)?.truthy() {
                        return self.block(body);
                    }
                }
                if let Some(body) = otherwise {
                    return self.block(body);
                }
            }
            Node::Foreach(f) => {
                self.at = f.at;
                let iterable = self.expr(&f.iter)?;
                self.at = f.at;
                return self.foreach(&f.var, iterable, &f.body);
            }
            Node::Break => return Ok(Flow::Break),
            Node::Stop => return Ok(Flow::Stop),
        }
        Ok(Flow::Normal)
    }

    fn output_ref(&mut self, r: &'r Reference) -> Result<(), RenderError> {
        let v = self.reference(r)?;
        let limit = self.bounds.max_output_bytes;
        for _ in 0..r.prefix_backslashes {
            super::value::push(&mut self.out, "\\", limit)?;
        }
        if r.escaped {
            if v.is_null() {
                super::value::push(&mut self.out, "\\", limit)?;
            }
            super::value::push(&mut self.out, &r.literal, limit)
        } else if v.is_null() {
            // API Gateway renders a null or undefined reference as nothing, `$!` or not.
            Ok(())
        } else {
            v.write_to(&mut self.out, limit)
        }
    }

    fn foreach(
        &mut self,
        var: &'r str,
        iterable: Value<'r>,
        body: &'r Block,
    ) -> Result<Flow, RenderError> {
        let max = self.bounds.max_loop_iterations;
        let at = self.at;
        let items = self.iteration_items(&iterable, max.saturating_add(1));
        let saved = self.var_index(var).map(|i| self.vars[i].1.clone());
        let depth = self.loops.len();
        self.loops.push(LoopFrame {
            index: 0,
            has_next: false,
        });
        let mut flow = Flow::Normal;
        let mut result = Ok(());
        for (i, item) in items.iter().enumerate() {
            if i >= max {
                self.at = at;
                result = Err(RenderError::TooManyIterations);
                break;
            }
            if let Err(e) = self.step(1) {
                result = Err(e);
                break;
            }
            if let Some(frame) = self.loops.get_mut(depth) {
                frame.index = i;
                frame.has_next = i + 1 < items.len();
            }
            if item.is_null() {
                self.remove_var(var);
            } else {
                self.set_var(var, item.clone());
            }
            match self.block(body) {
                Ok(Flow::Normal) => {}
                Ok(Flow::Break) => break,
                Ok(Flow::Stop) => {
                    flow = Flow::Stop;
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.loops.truncate(depth);
        match saved {
            Some(v) => self.set_var(var, v),
            None => self.remove_var(var),
        }
        result.map(|()| flow)
    }

    /// The elements `#foreach` visits (up to `cap`): list items, map values; nothing for a scalar.
    fn iteration_items(&self, v: &Value<'r>, cap: usize) -> Vec<Value<'r>> {
        match v {
            Value::Json(serde_json::Value::Array(a)) => {
                a.iter().take(cap).map(Value::from_json).collect()
            }
            Value::Json(serde_json::Value::Object(o)) => {
                o.values().take(cap).map(Value::from_json).collect()
            }
            Value::List(l) => l.items.iter().take(cap).cloned().collect(),
            Value::Map(m) => m.entries.iter().take(cap).map(|(_, v)| v.clone()).collect(),
            Value::Object(Builtin::StageVariables) => self
                .input
                .stage_variables
                .values()
                .take(cap)
                .map(|s| Value::Str(s))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn var_index(&self, name: &str) -> Option<usize> {
        self.vars.iter().position(|(n, _)| *n == name)
    }

    fn set_var(&mut self, name: &'r str, v: Value<'r>) {
        match self.var_index(name) {
            Some(i) => self.vars[i].1 = v,
            None => self.vars.push((name, v)),
        }
    }

    fn remove_var(&mut self, name: &str) {
        if let Some(i) = self.var_index(name) {
            self.vars.swap_remove(i);
        }
    }

    fn root(&self, name: &str) -> Value<'r> {
        if let Some(i) = self.var_index(name) {
            return self.vars[i].1.clone();
        }
        match name {
            "input" => Value::Object(Builtin::Input),
            "util" => Value::Object(Builtin::Util),
            "context" => Value::Object(Builtin::Context),
            "stageVariables" => Value::Object(Builtin::StageVariables),
            "esc" => Value::Object(Builtin::Esc),
            "foreach" if !self.loops.is_empty() => {
                Value::Object(Builtin::Foreach(self.loops.len() - 1))
            }
            "velocityCount" => match self.loops.last() {
                Some(f) => Value::Int(i64::try_from(f.index).unwrap_or(i64::MAX).saturating_add(1)),
                None => Value::Null,
            },
            "velocityHasNext" => match self.loops.last() {
                Some(f) => Value::Bool(f.has_next),
                None => Value::Null,
            },
            _ => Value::Null,
        }
    }

    pub fn reference(&mut self, r: &'r Reference) -> Result<Value<'r>, RenderError> {
        // On failure `at` stays on the innermost reference; on success it is put back.
        let outer = std::mem::replace(&mut self.at, r.at);
        // `$list.add(x)`, `$map.put(k, v)` on a variable change the variable itself.
        let v = if let Some(i) = r.mutator
            && r.parts[..i].iter().all(|p| matches!(p, Part::Prop(_)))
            && self.var_index(&r.root).is_some()
        {
            let v = self.mutate(r, i)?;
            self.parts(v, &r.parts[i + 1..])?
        } else {
            let root = self.root(&r.root);
            self.parts(root, &r.parts)?
        };
        self.at = outer;
        Ok(v)
    }

    fn parts(&mut self, mut v: Value<'r>, parts: &'r [Part]) -> Result<Value<'r>, RenderError> {
        for part in parts {
            if v.is_null() {
                return Ok(Value::Null);
            }
            match &v {
                Value::Map(m) => self.charge_len(m.entries.len())?,
                _ => self.step(1)?,
            }
            v = match part {
                Part::Prop(name) => self.property(&v, name),
                Part::Index(e) => {
                    let key = self.expr(e)?;
                    self.index(&v, &key)?
                }
                Part::Method(m) if m.args.len() <= 2 => {
                    // Most calls take one or two arguments: keep them on the stack.
                    let mut args = [Value::Null, Value::Null];
                    for (slot, a) in args.iter_mut().zip(&m.args) {
                        *slot = self.expr(a)?;
                    }
                    self.call(v, m, &args[..m.args.len()])?
                }
                Part::Method(m) => {
                    let mut args = Vec::with_capacity(m.args.len());
                    for a in &m.args {
                        args.push(self.expr(a)?);
                    }
                    self.call(v, m, &args)?
                }
            };
        }
        Ok(v)
    }

    /// `$v[key]`: lists by (negative from the end) position, maps by key.
    fn index(&mut self, v: &Value<'r>, key: &Value<'r>) -> Result<Value<'r>, RenderError> {
        let pos = |len: usize| -> Option<usize> {
            let i = match key {
                Value::Int(i) => *i,
                _ => key.as_str().and_then(|s| s.trim().parse().ok())?,
            };
            let len = i64::try_from(len).ok()?;
            let i = if i < 0 { i + len } else { i };
            if (0..len).contains(&i) {
                usize::try_from(i).ok()
            } else {
                None
            }
        };
        Ok(match v {
            Value::List(l) => pos(l.items.len())
                .and_then(|i| l.items.get(i).cloned())
                .unwrap_or(Value::Null),
            Value::Json(serde_json::Value::Array(a)) => pos(a.len())
                .and_then(|i| a.get(i))
                .map(Value::from_json)
                .unwrap_or(Value::Null),
            Value::Map(_) | Value::Json(serde_json::Value::Object(_)) | Value::Object(_) => {
                let k = key.to_text(self.limit())?.into_owned();
                self.property(v, &k)
            }
            _ => Value::Null,
        })
    }

    /// `$v.name`: a map entry, an object's property, `empty` on strings and lists.
    pub fn property(&self, v: &Value<'r>, name: &str) -> Value<'r> {
        match v {
            Value::Map(m) => map_get(m, name),
            Value::Json(serde_json::Value::Object(o)) => {
                o.get(name).map(Value::from_json).unwrap_or(Value::Null)
            }
            Value::Json(serde_json::Value::Array(a)) if name == "empty" => {
                Value::Bool(a.is_empty())
            }
            Value::List(l) if name == "empty" => Value::Bool(l.items.is_empty()),
            Value::Str(_) | Value::String(_) if name == "empty" => {
                Value::Bool(v.as_str().is_some_and(str::is_empty))
            }
            Value::Object(b) => self.builtin_property(*b, name),
            _ => Value::Null,
        }
    }

    fn builtin_property(&self, b: Builtin, name: &str) -> Value<'r> {
        match b {
            Builtin::Input => match name {
                "body" => self.body_text(),
                _ => Value::Null,
            },
            Builtin::Context => match name {
                "requestOverride" => Value::Object(Builtin::RequestOverride),
                "responseOverride" => Value::Object(Builtin::ResponseOverride),
                _ => match self.input.context {
                    serde_json::Value::Object(o) => {
                        o.get(name).map(Value::from_json).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                },
            },
            Builtin::RequestOverride => match name {
                "header" => Value::Object(Builtin::OverrideMap(OverrideKind::RequestHeader)),
                "querystring" => {
                    Value::Object(Builtin::OverrideMap(OverrideKind::RequestQuerystring))
                }
                "path" => Value::Object(Builtin::OverrideMap(OverrideKind::RequestPath)),
                other => self.other_override("requestOverride", other),
            },
            Builtin::ResponseOverride => match name {
                "header" => Value::Object(Builtin::OverrideMap(OverrideKind::ResponseHeader)),
                "status" => self
                    .overrides
                    .status
                    .map(|s| Value::Int(i64::from(s)))
                    .unwrap_or(Value::Null),
                other => self.other_override("responseOverride", other),
            },
            Builtin::OverrideMap(kind) => self
                .override_list(kind)
                .iter()
                .find(|(k, _)| kind.same_name(k, name))
                .map(|(_, v)| Value::string(v.clone()))
                .unwrap_or(Value::Null),
            Builtin::StageVariables => self
                .input
                .stage_variables
                .get(name)
                .map(|s| Value::Str(s))
                .unwrap_or(Value::Null),
            Builtin::Esc => super::apigw::esc_property(name),
            Builtin::Foreach(level) => match self.loops.get(level) {
                Some(f) => match name {
                    "hasNext" => Value::Bool(f.has_next),
                    "index" => Value::Int(i64::try_from(f.index).unwrap_or(i64::MAX)),
                    "count" => {
                        Value::Int(i64::try_from(f.index).unwrap_or(i64::MAX).saturating_add(1))
                    }
                    "first" => Value::Bool(f.index == 0),
                    "last" => Value::Bool(!f.has_next),
                    "parent" if level > 0 => Value::Object(Builtin::Foreach(level - 1)),
                    _ => Value::Null,
                },
                None => Value::Null,
            },
            Builtin::Util => Value::Null,
        }
    }

    pub fn override_list(&self, kind: OverrideKind) -> &Vec<(String, String)> {
        match kind {
            OverrideKind::RequestHeader => &self.overrides.request_headers,
            OverrideKind::RequestQuerystring => &self.overrides.request_querystring,
            OverrideKind::RequestPath => &self.overrides.request_path,
            OverrideKind::ResponseHeader => &self.overrides.response_headers,
        }
    }

    /// `$context.requestOverride.<name>` / `.responseOverride.<name>` for a name API Gateway does
    /// not act on: kept and readable, as AWS does.
    fn other_override(&self, section: &str, name: &str) -> Value<'r> {
        self.overrides
            .other
            .iter()
            .find(|(k, _)| k.strip_prefix(section).and_then(|k| k.strip_prefix('.')) == Some(name))
            .map(|(_, v)| Value::string(v.clone()))
            .unwrap_or(Value::Null)
    }

    /// Sets an override (a name set again keeps its first position); returns the previous value.
    pub fn set_override(&mut self, kind: OverrideKind, key: &str, value: String) -> Option<String> {
        let list = match kind {
            OverrideKind::RequestHeader => &mut self.overrides.request_headers,
            OverrideKind::RequestQuerystring => &mut self.overrides.request_querystring,
            OverrideKind::RequestPath => &mut self.overrides.request_path,
            OverrideKind::ResponseHeader => &mut self.overrides.response_headers,
        };
        match list.iter_mut().find(|(k, _)| kind.same_name(k, key)) {
            Some(slot) => Some(std::mem::replace(&mut slot.1, value)),
            None => {
                list.push((key.to_owned(), value));
                None
            }
        }
    }

    /// `#set($target = v)` with `v` not null.
    fn assign(&mut self, target: &'r Reference, v: Value<'r>) -> Result<(), RenderError> {
        if target.parts.is_empty() {
            self.set_var(&target.root, v);
            return Ok(());
        }
        if self.var_index(&target.root).is_none() {
            if &*target.root == "context" {
                return self.assign_override(&target.parts, v);
            }
            return Ok(());
        }
        // `#set($m.a.b = v)`: copy-on-write down a chain of maps held in a variable.
        let (last, path) = match target.parts.split_last() {
            Some(x) => x,
            None => return Ok(()),
        };
        let key: Value<'r> = match last {
            Part::Prop(name) => Value::Str(name),
            Part::Index(e) => self.expr(e)?,
            Part::Method(_) => return Ok(()),
        };
        let needed = path.len() + 1 + v.depth();
        self.check_depth(needed)?;
        let Some(i) = self.var_index(&target.root) else {
            return Ok(());
        };
        let mut cur = &mut self.vars[i].1;
        let mut remaining = needed;
        for part in path {
            let Part::Prop(name) = part else {
                return Ok(());
            };
            if let Value::Json(j) = *cur {
                *cur = super::methods::thaw(j);
            }
            let Value::Map(m) = cur else { return Ok(()) };
            let m = Rc::make_mut(m);
            m.depth = m.depth.max(remaining);
            remaining -= 1;
            match m.entries.iter_mut().find(|(k, _)| k.as_str() == Some(name)) {
                Some((_, next)) => cur = next,
                None => return Ok(()),
            }
        }
        if let Value::Json(j) = *cur {
            *cur = super::methods::thaw(j);
        }
        match cur {
            Value::Map(m) => {
                let m = Rc::make_mut(m);
                m.depth = m.depth.max(v.depth() + 1);
                map_put(m, key, v);
            }
            Value::List(l) => {
                if let Value::Int(idx) = key {
                    let l = Rc::make_mut(l);
                    if let Some(slot) = usize::try_from(idx).ok().and_then(|i| l.items.get_mut(i)) {
                        l.depth = l.depth.max(v.depth() + 1);
                        *slot = v;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `#set($context.<section>.<map>.<name> = v)`, names written `.x` or `["x"]`/`[$x]`.
    fn assign_override(&mut self, parts: &'r [Part], v: Value<'r>) -> Result<(), RenderError> {
        let mut names: Vec<String> = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Part::Prop(n) => names.push(n.to_string()),
                Part::Index(e) => {
                    let key = self.expr(e)?;
                    names.push(key.to_text(self.limit())?.into_owned());
                }
                Part::Method(_) => return Ok(()),
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (kind, key) = match names.as_slice() {
            ["responseOverride", "status"] => {
                let status = match &v {
                    Value::Int(i) => Some(*i),
                    Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
                    other => other.as_str().and_then(|s| s.trim().parse::<i64>().ok()),
                };
                if let Some(s) = status.filter(|s| (100..=599).contains(s)) {
                    self.overrides.status = u16::try_from(s).ok();
                }
                return Ok(());
            }
            ["requestOverride", "header", key] => (OverrideKind::RequestHeader, *key),
            ["requestOverride", "querystring", key] => (OverrideKind::RequestQuerystring, *key),
            ["requestOverride", "path", key] => (OverrideKind::RequestPath, *key),
            ["responseOverride", "header", key] => (OverrideKind::ResponseHeader, *key),
            [section @ ("requestOverride" | "responseOverride"), name] => {
                let key = format!("{section}.{name}");
                let value = v.to_text(self.limit())?.into_owned();
                let other = &mut self.overrides.other;
                match other.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = value,
                    None => other.push((key, value)),
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let value = override_text(&v, self.limit())?;
        self.set_override(kind, key, value);
        Ok(())
    }

    pub fn expr(&mut self, e: &'r Expr) -> Result<Value<'r>, RenderError> {
        self.step(1)?;
        Ok(match e {
            Expr::Str(s) => Value::Str(s),
            Expr::Interp(block) => {
                let saved = std::mem::take(&mut self.out);
                let flow = self.block(block);
                let text = std::mem::replace(&mut self.out, saved);
                flow?;
                Value::string(text)
            }
            Expr::Int(i) => Value::Int(*i),
            Expr::Float(f) => Value::Float(*f),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::List(items) => {
                let mut list = List::default();
                for item in items {
                    let v = self.expr(item)?;
                    list.depth = list.depth.max(v.depth() + 1);
                    list.items.push(v);
                }
                list.depth = list.depth.max(1);
                self.check_depth(list.depth)?;
                Value::List(Rc::new(list))
            }
            Expr::Map(entries) => {
                let mut map = Map {
                    entries: Vec::with_capacity(entries.len()),
                    depth: 1,
                };
                for (k, v) in entries {
                    let k = self.expr(k)?;
                    let v = self.expr(v)?;
                    map.depth = map.depth.max(v.depth() + 1).max(k.depth() + 1);
                    map_put(&mut map, k, v);
                }
                self.check_depth(map.depth)?;
                Value::Map(Rc::new(map))
            }
            Expr::Range(a, b) => {
                let a = self.expr(a)?;
                let b = self.expr(b)?;
                self.range(&a, &b)?
            }
            Expr::Ref(r) => self.reference(r)?,
            Expr::Not(inner) => Value::Bool(!self.expr(inner)?.truthy()),
            Expr::Bin(op, l, r) => self.binary(*op, l, r)?,
        })
    }

    /// `[a..b]`: integers from a to b, counting down when b < a.
    fn range(&mut self, a: &Value<'r>, b: &Value<'r>) -> Result<Value<'r>, RenderError> {
        let int = |v: &Value<'r>| match v {
            Value::Int(i) => Some(*i),
            Value::Float(f) => Some(*f as i64),
            other => other.as_str().and_then(|s| s.trim().parse().ok()),
        };
        let (Some(a), Some(b)) = (int(a), int(b)) else {
            return Ok(Value::Null);
        };
        let len = a.abs_diff(b).saturating_add(1);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.step(len)?;
        let items = if a <= b {
            (a..=b).map(Value::Int).collect()
        } else {
            (b..=a).rev().map(Value::Int).collect()
        };
        Ok(Value::List(Rc::new(List {
            items,
            json_style: false,
            depth: 1,
        })))
    }

    fn binary(&mut self, op: BinOp, l: &'r Expr, r: &'r Expr) -> Result<Value<'r>, RenderError> {
        match op {
            BinOp::Or => {
                return Ok(Value::Bool(
                    self.expr(l)?.truthy() || self.expr(r)?.truthy(),
                ));
            }
            BinOp::And => {
                return Ok(Value::Bool(
                    self.expr(l)?.truthy() && self.expr(r)?.truthy(),
                ));
            }
            _ => {}
        }
        let a = self.expr(l)?;
        let b = self.expr(r)?;
        let limit = self.limit();
        Ok(match op {
            BinOp::Eq | BinOp::Ne => {
                self.charge_bytes(data_size(&a).saturating_add(data_size(&b)))?;
                let eq = super::value::equals(&a, &b, limit)?;
                Value::Bool(if op == BinOp::Eq { eq } else { !eq })
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ord = match (&a, &b) {
                    (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
                    _ => match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => x.partial_cmp(&y),
                        _ => None,
                    },
                };
                let Some(ord) = ord else {
                    // Velocity compares numbers only; anything else is false.
                    return Ok(Value::Bool(false));
                };
                Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            BinOp::Add if a.as_str().is_some() || b.as_str().is_some() => {
                // String `+` concatenates; a null side is empty, as a null renders.
                let text = |v: &Value<'r>| -> Result<String, RenderError> {
                    if v.is_null() {
                        Ok(String::new())
                    } else {
                        Ok(v.to_text(limit)?.into_owned())
                    }
                };
                let mut s = text(&a)?;
                let t = text(&b)?;
                self.charge_bytes(s.len().saturating_add(t.len()))?;
                self.check_len(s.len().saturating_add(t.len()))?;
                s.push_str(&t);
                Value::string(s)
            }
            _ => arithmetic(op, &a, &b),
        })
    }
}

/// An override's value as API Gateway sends it: a list is its items joined by commas (one
/// multi-valued header), anything else its text.
fn override_text(v: &Value<'_>, limit: usize) -> Result<String, RenderError> {
    let items: Vec<Value<'_>> = match v {
        Value::List(l) => l.items.clone(),
        Value::Json(serde_json::Value::Array(a)) => a.iter().map(Value::from_json).collect(),
        other => return Ok(other.to_text(limit)?.into_owned()),
    };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            super::value::push(&mut out, ",", limit)?;
        }
        item.write_to(&mut out, limit)?;
    }
    Ok(out)
}

/// `+ - * / %` on numbers, Java-style: integers stay integers (falling back to doubles on overflow),
/// division truncates, division by zero and non-numbers give null.
fn arithmetic<'r>(op: BinOp, a: &Value<'r>, b: &Value<'r>) -> Value<'r> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let (x, y) = (*x, *y);
        let r = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Div if y == 0 => return Value::Null,
            BinOp::Div => x.checked_div(y),
            BinOp::Mod if y == 0 => return Value::Null,
            BinOp::Mod => Some(x.wrapping_rem(y)),
            _ => return Value::Null,
        };
        if let Some(r) = r {
            return Value::Int(r);
        }
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Value::Null;
    };
    match op {
        BinOp::Add => Value::Float(x + y),
        BinOp::Sub => Value::Float(x - y),
        BinOp::Mul => Value::Float(x * y),
        BinOp::Div if y == 0.0 => Value::Null,
        BinOp::Div => Value::Float(x / y),
        BinOp::Mod if y == 0.0 => Value::Null,
        BinOp::Mod => Value::Float(x % y),
        _ => Value::Null,
    }
}

/// Bytes a comparison may have to look at: string length, or a container's printed size bound.
fn data_size(v: &Value<'_>) -> usize {
    match v {
        Value::Str(s) => s.len(),
        Value::String(s) => s.len(),
        Value::List(l) => l.items.len().saturating_mul(8),
        Value::Map(m) => m.entries.len().saturating_mul(16),
        Value::Json(j) => match j {
            serde_json::Value::Array(a) => a.len().saturating_mul(8),
            serde_json::Value::Object(o) => o.len().saturating_mul(16),
            _ => 0,
        },
        _ => 0,
    }
}

pub(super) fn map_get<'r>(m: &Map<'r>, key: &str) -> Value<'r> {
    m.entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key) || (k.as_str().is_none() && key_text_eq(k, key)))
        .map(|(_, v)| v.clone())
        .unwrap_or(Value::Null)
}

fn key_text_eq(k: &Value<'_>, key: &str) -> bool {
    match k {
        Value::Int(i) => key.parse::<i64>().ok() == Some(*i),
        Value::Bool(b) => key == if *b { "true" } else { "false" },
        _ => false,
    }
}

/// Inserts or replaces (keeping the first position), returning the previous value.
pub(super) fn map_put<'r>(m: &mut Map<'r>, k: Value<'r>, v: Value<'r>) -> Value<'r> {
    let same = |a: &Value<'r>| match (a.as_str(), k.as_str()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, &k) {
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            _ => false,
        },
    };
    match m.entries.iter_mut().find(|(a, _)| same(a)) {
        Some(slot) => std::mem::replace(&mut slot.1, v),
        None => {
            m.entries.push((k, v));
            Value::Null
        }
    }
}
