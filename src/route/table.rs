//! The compiled route table: template parsing, the segment trie and `resolve`.

use std::collections::HashMap;

use super::RouteError;
use super::path::{check_segment, decode, decode_to_string};

/// One route as configured: method, path template and the operator's value for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec<T> {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` or `ANY` (upper case).
    pub method: String,
    /// A resource path template such as `/recommended-movies/{user_id}` or `/files/{proxy+}`.
    pub path: String,
    pub value: T,
}

impl<T> RouteSpec<T> {
    pub fn new(method: impl Into<String>, path: impl Into<String>, value: T) -> Self {
        RouteSpec {
            method: method.into(),
            path: path.into(),
            value,
        }
    }
}

/// An invalid entry given to [`RouteTable::build`]: its index in the input and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routes[{index}]: {message}")]
pub struct RouteSpecError {
    pub index: usize,
    pub message: String,
}

/// A resolved route.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a, T> {
    pub value: &'a T,
    /// The matched template, e.g. `/recommended-movies/{user_id}` (`$context.resourcePath`);
    /// normalised: no trailing slash, `/` for the root.
    pub resource_path: &'a str,
    /// The method the route was declared with (`ANY` when it matched through `ANY`), for keys
    /// such as a usage plan's `"{resourcePath}/{METHOD}"` throttle override.
    pub route_method: &'static str,
    /// Path parameters in template order, decoded or raw as asked.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Any,
}

const METHOD_NAMES: [(&str, Method); 8] = [
    ("GET", Method::Get),
    ("POST", Method::Post),
    ("PUT", Method::Put),
    ("PATCH", Method::Patch),
    ("DELETE", Method::Delete),
    ("HEAD", Method::Head),
    ("OPTIONS", Method::Options),
    ("ANY", Method::Any),
];

impl Method {
    fn parse(name: &str) -> Option<Method> {
        METHOD_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, method)| method)
    }

    fn name(self) -> &'static str {
        METHOD_NAMES
            .iter()
            .find(|(_, method)| *method == self)
            .map_or("ANY", |(name, _)| name)
    }
}

/// Route indices per method for one path, indexed by `Method as usize`.
type Slots = [Option<u32>; METHOD_NAMES.len()];

/// The route for `method` on this path: the exact method first, else `ANY`.
fn pick(slots: &Slots, method: Method) -> Option<u32> {
    slots
        .get(method as usize)
        .copied()
        .flatten()
        .or_else(|| slots.get(Method::Any as usize).copied().flatten())
}

#[derive(Debug, Default)]
struct Node {
    /// Static children, sorted by segment for binary search.
    statics: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    /// Routes whose template ends in `{name+}` here.
    greedy: Slots,
    /// Routes whose template ends here.
    end: Slots,
}

impl Node {
    fn static_child(&self, segment: &str) -> Option<&Node> {
        if segment.contains('%') {
            // Rare: compare the decoded bytes in place rather than allocating a decoded copy.
            // Template statics hold no `%`, so at most one can be equal.
            return self
                .statics
                .iter()
                .find(|(name, _)| decode(segment, false).eq(name.bytes()))
                .map(|(_, node)| node);
        }
        self.statics
            .binary_search_by(|(name, _)| name.as_ref().cmp(segment))
            .ok()
            .and_then(|at| self.statics.get(at))
            .map(|(_, node)| node)
    }

    fn static_child_mut(&mut self, segment: &str) -> &mut Node {
        let at = match self
            .statics
            .binary_search_by(|(name, _)| name.as_ref().cmp(segment))
        {
            Ok(at) => at,
            Err(at) => {
                self.statics.insert(at, (segment.into(), Node::default()));
                at
            }
        };
        // `at` is in range: it was found or just inserted.
        &mut self.statics[at].1
    }

    /// The route index for `method` below this node, for the remaining path `rest`
    /// (`None` once every segment is consumed). Visits every trie node at most once.
    fn walk(&self, rest: Option<&str>, method: Method) -> Option<u32> {
        let Some(rest) = rest else {
            return pick(&self.end, method);
        };
        let (segment, tail) = match rest.split_once('/') {
            Some((segment, tail)) => (segment, Some(tail)),
            None => (rest, None),
        };
        if let Some(found) = self
            .static_child(segment)
            .and_then(|child| child.walk(tail, method))
        {
            return Some(found);
        }
        if let Some(found) = self
            .param
            .as_ref()
            .and_then(|child| child.walk(tail, method))
        {
            return Some(found);
        }
        pick(&self.greedy, method)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Static(&'a str),
    Param(&'a str),
    Greedy(&'a str),
}

/// A path parameter of a route: the segment position it starts at and its name.
#[derive(Debug)]
struct Capture {
    position: usize,
    name: Box<str>,
    greedy: bool,
}

#[derive(Debug)]
struct Route<T> {
    value: T,
    template: Box<str>,
    method: Method,
    captures: Box<[Capture]>,
}

/// A compiled route table; build it once at config load with [`RouteTable::build`].
#[derive(Debug)]
pub struct RouteTable<T> {
    root: Node,
    routes: Vec<Route<T>>,
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'$' | b'-'))
}

/// Parses a template into its parts and its normalised spelling (no trailing slash).
fn parse_template(template: &str) -> Result<(String, Vec<Part<'_>>), String> {
    let Some(body) = template.strip_prefix('/') else {
        return Err(format!("path {template:?}: must start with '/'"));
    };
    let body = match body.strip_suffix('/') {
        Some("") => return Err(format!("path {template:?}: empty segment")),
        Some(stripped) => stripped,
        None => body,
    };
    let mut parts = Vec::new();
    if body.is_empty() {
        return Ok(("/".to_owned(), parts));
    }
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (position, segment) in segments.iter().copied().enumerate() {
        let part = if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
        {
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if name.is_empty() {
                return Err(format!(
                    "path {template:?}: empty parameter name in {segment:?}"
                ));
            }
            if !valid_param_name(name) {
                return Err(format!(
                    "path {template:?}: parameter name {name:?} must match ^[a-zA-Z0-9._$-]+$"
                ));
            }
            if greedy && position != last {
                return Err(format!(
                    "path {template:?}: greedy parameter {segment:?} must be the last segment"
                ));
            }
            if parts
                .iter()
                .any(|p| matches!(p, Part::Param(n) | Part::Greedy(n) if *n == name))
            {
                return Err(format!(
                    "path {template:?}: duplicate parameter name {name:?}"
                ));
            }
            if greedy {
                Part::Greedy(name)
            } else {
                Part::Param(name)
            }
        } else {
            check_static(template, segment)?;
            Part::Static(segment)
        };
        parts.push(part);
    }
    Ok((format!("/{body}"), parts))
}

fn check_static(template: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("path {template:?}: empty segment"));
    }
    if segment.contains(['{', '}']) {
        return Err(format!(
            "path {template:?}: a parameter must be a whole segment ({{name}} or {{name+}}), got {segment:?}"
        ));
    }
    if segment.contains('%') {
        return Err(format!(
            "path {template:?}: write static segment {segment:?} decoded (no '%'); requests are matched after decoding"
        ));
    }
    if segment.chars().any(char::is_control) {
        return Err(format!(
            "path {template:?}: control character in {segment:?}"
        ));
    }
    if segment == "." || segment == ".." {
        return Err(format!(
            "path {template:?}: dot segment {segment:?} (requests with one are refused)"
        ));
    }
    Ok(())
}

/// The template with parameter names erased, so `/a/{x}` and `/a/{y}` compare equal.
fn shape(parts: &[Part<'_>]) -> String {
    let mut key = String::new();
    for part in parts {
        key.push('/');
        match part {
            Part::Static(name) => key.push_str(name),
            Part::Param(_) => key.push_str("{}"),
            Part::Greedy(_) => key.push_str("{+}"),
        }
    }
    key
}

impl<T> RouteTable<T> {
    /// Compiles the routes, or reports every invalid entry (by index into `entries`).
    pub fn build(entries: Vec<RouteSpec<T>>) -> Result<RouteTable<T>, Vec<RouteSpecError>> {
        let mut errors = Vec::new();
        let mut seen: HashMap<(String, &'static str), usize> = HashMap::new();
        let mut table = RouteTable {
            root: Node::default(),
            routes: Vec::with_capacity(entries.len()),
        };
        for (index, spec) in entries.into_iter().enumerate() {
            let mut error = |message: String| errors.push(RouteSpecError { index, message });
            let method = Method::parse(&spec.method);
            if method.is_none() {
                error(format!(
                    "method {:?}: must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY",
                    spec.method
                ));
            }
            let parsed = parse_template(&spec.path).map_err(&mut error).ok();
            let (Some(method), Some((template, parts))) = (method, parsed) else {
                continue;
            };
            if let Some(first) = seen.insert((shape(&parts), method.name()), index) {
                error(format!(
                    "{} {template}: same method and path as routes[{first}]",
                    method.name()
                ));
                continue;
            }
            let Ok(route_index) = u32::try_from(table.routes.len()) else {
                error("too many routes".to_owned());
                continue;
            };
            let mut node = &mut table.root;
            let mut captures = Vec::new();
            let mut slots = None;
            for (position, part) in parts.iter().enumerate() {
                match *part {
                    Part::Static(name) => node = node.static_child_mut(name),
                    Part::Param(name) => {
                        captures.push(Capture {
                            position,
                            name: name.into(),
                            greedy: false,
                        });
                        node = node.param.get_or_insert_with(Box::default);
                    }
                    Part::Greedy(name) => {
                        captures.push(Capture {
                            position,
                            name: name.into(),
                            greedy: true,
                        });
                        slots = Some(&mut node.greedy);
                        break; // greedy is last (checked by parse_template)
                    }
                }
            }
            let slots = slots.unwrap_or(&mut node.end);
            if let Some(slot) = slots.get_mut(method as usize) {
                *slot = Some(route_index);
            }
            let template = template.into_boxed_str();
            table.routes.push(Route {
                value: spec.value,
                template,
                method,
                captures: captures.into_boxed_slice(),
            });
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route as `(method, normalised template, value)`, in build order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str, &T)> {
        self.routes
            .iter()
            .map(|route| (route.method.name(), route.template.as_ref(), &route.value))
    }

    /// Finds the most specific route for `method` and `resource_path` (the path after the stage,
    /// starting with `/`, without the query string). `decode` chooses decoded or raw parameter
    /// values; see the module doc for every rule.
    pub fn resolve(
        &self,
        method: &str,
        resource_path: &str,
        decode: bool,
    ) -> Result<Matched<'_, T>, RouteError> {
        let Some(body) = resource_path.strip_prefix('/') else {
            return Err(RouteError::NotFound);
        };
        // One trailing slash is ignored; "//" is the root plus an empty segment, not the root.
        let body = match body.strip_suffix('/') {
            Some("") => return Err(RouteError::NotFound),
            Some(stripped) => stripped,
            None => body,
        };
        let rest = if body.is_empty() {
            None
        } else {
            // Check every segment first, so a bad path is refused the same way whatever the table.
            let mut empty_segment = false;
            for segment in body.split('/') {
                if segment.is_empty() {
                    empty_segment = true;
                } else {
                    check_segment(segment, decode)?;
                }
            }
            if empty_segment {
                return Err(RouteError::NotFound);
            }
            Some(body)
        };
        // `ANY` is a route wildcard, not a method a client can send.
        let method = match Method::parse(method) {
            Some(Method::Any) | None => return Err(RouteError::NotFound),
            Some(method) => method,
        };
        let route = self
            .root
            .walk(rest, method)
            .and_then(|index| self.routes.get(index as usize))
            .ok_or(RouteError::NotFound)?;
        Ok(Matched {
            value: &route.value,
            resource_path: &route.template,
            route_method: route.method.name(),
            params: extract_params(&route.captures, body, decode)?,
        })
    }
}

/// Reads the parameter values out of a path the route is known to match.
fn extract_params(
    captures: &[Capture],
    body: &str,
    decode: bool,
) -> Result<Vec<(String, String)>, RouteError> {
    let mut params = Vec::with_capacity(captures.len());
    let mut rest = body;
    let mut position = 0;
    for capture in captures {
        while position < capture.position {
            rest = rest.split_once('/').map_or("", |(_, tail)| tail);
            position += 1;
        }
        let raw = if capture.greedy {
            rest
        } else {
            rest.split_once('/').map_or(rest, |(segment, _)| segment)
        };
        // Decoding the greedy rest in one go equals decoding each segment: `/` is never an escape.
        let value = if decode {
            decode_to_string(raw, false)?
        } else {
            raw.to_owned()
        };
        params.push((capture.name.to_string(), value));
    }
    Ok(params)
}
