//! A YAML writer for what `sagegate import` produces: block mappings an operator reads and reviews,
//! comments above entries naming where each piece came from, templates as literal blocks, small
//! mappings and lists of scalars on one line.
//!
//! Invariant (property-tested): reading the text back with the loader of `gateway.yaml`
//! ([`crate::config::yaml::Doc`]) gives back the value written, for every JSON value whose strings
//! hold no `${env:` (which that loader interpolates; the importer refuses such strings first).

use serde_json::Value;

/// A node of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Null, a boolean, a number or a string.
    Scalar(Value),
    /// A block mapping, entries in order.
    Map(Vec<Entry>),
    /// A block sequence.
    List(Vec<Node>),
    /// A value written on one line (`{ a: 1, b: [x, y] }`).
    Flow(Value),
}

/// One entry of a mapping, with comment lines written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub node: Node,
    /// Comment lines (without `# `).
    pub comments: Vec<String>,
}

/// Widest line a flow value may make before it is written as a block.
const FLOW_WIDTH: usize = 96;

impl Node {
    /// `value` as nodes: mappings and lists as blocks, except small ones of scalars, which fit on
    /// a line.
    pub fn from_value(value: &Value) -> Node {
        match value {
            Value::Object(map) if map.is_empty() => Node::Flow(value.clone()),
            Value::Array(items) if items.is_empty() => Node::Flow(value.clone()),
            Value::Object(map) => {
                if map.len() <= 4 && map.values().all(is_scalar) && fits(value) {
                    return Node::Flow(value.clone());
                }
                Node::Map(
                    map.iter()
                        .map(|(k, v)| Entry::new(k, Node::from_value(v)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                if items.iter().all(is_scalar) && fits(value) {
                    return Node::Flow(value.clone());
                }
                Node::List(items.iter().map(Node::from_value).collect())
            }
            scalar => Node::Scalar(scalar.clone()),
        }
    }

    /// A string scalar.
    pub fn text(s: impl Into<String>) -> Node {
        Node::Scalar(Value::String(s.into()))
    }
}

impl Entry {
    /// An entry without comments.
    pub fn new(key: impl Into<String>, node: Node) -> Entry {
        Entry {
            key: key.into(),
            node,
            comments: Vec::new(),
        }
    }

    /// Adds a comment line above the entry.
    pub fn comment(mut self, line: impl Into<String>) -> Entry {
        self.comments.push(line.into());
        self
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn fits(v: &Value) -> bool {
    let mut out = String::new();
    flow(&mut out, v);
    out.len() <= FLOW_WIDTH && !out.contains('\n')
}

/// The document for top-level `entries`, after `header` comment lines.
pub fn document(header: &[String], entries: &[Entry]) -> String {
    let mut out = String::new();
    for line in header {
        comment(&mut out, 0, line);
    }
    map(&mut out, 0, entries);
    out
}

fn comment(out: &mut String, indent: usize, line: &str) {
    // A comment never spans lines: a newline in the text would end it and start YAML.
    for part in line.split(['\n', '\r']) {
        out.push_str(&" ".repeat(indent));
        out.push('#');
        if !part.is_empty() {
            out.push(' ');
            out.push_str(part);
        }
        out.push('\n');
    }
}

fn map(out: &mut String, indent: usize, entries: &[Entry]) {
    for entry in entries {
        for line in &entry.comments {
            comment(out, indent, line);
        }
        out.push_str(&" ".repeat(indent));
        key(out, &entry.key);
        out.push(':');
        value_after(out, indent, &entry.node);
    }
}

/// Writes `node` after `key:` or `- ` (which sit at `indent`), ending with a newline.
fn value_after(out: &mut String, indent: usize, node: &Node) {
    match node {
        Node::Scalar(v) => {
            out.push(' ');
            scalar(out, indent + 2, v);
        }
        Node::Flow(v) => {
            out.push(' ');
            flow(out, v);
            out.push('\n');
        }
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::List(items) if items.is_empty() => out.push_str(" []\n"),
        Node::Map(entries) => {
            out.push('\n');
            map(out, indent + 2, entries);
        }
        Node::List(items) => {
            out.push('\n');
            list(out, indent + 2, items);
        }
    }
}

fn list(out: &mut String, indent: usize, items: &[Node]) {
    for item in items {
        match item {
            Node::Map(entries) if !entries.is_empty() => {
                // The first entry's comments go above the `- `, its key after it.
                for line in &entries[0].comments {
                    comment(out, indent, line);
                }
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                key(out, &entries[0].key);
                out.push(':');
                value_after(out, indent + 2, &entries[0].node);
                map(out, indent + 2, &entries[1..]);
            }
            Node::List(inner) if !inner.is_empty() => {
                out.push_str(&" ".repeat(indent));
                out.push_str("-\n");
                list(out, indent + 2, inner);
            }
            other => {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                value_after(out, indent, other);
            }
        }
    }
}

fn key(out: &mut String, k: &str) {
    if plain_ok(k) {
        out.push_str(k);
    } else {
        quoted(out, k);
    }
}

/// A scalar at the end of a line; a multi-line string as a literal block indented by `indent`.
fn scalar(out: &mut String, indent: usize, v: &Value) {
    match v {
        Value::String(s) if literal_ok(s) => {
            let trailing = s.len() - s.trim_end_matches('\n').len();
            out.push_str(match trailing {
                0 => "|-",
                1 => "|",
                _ => "|+",
            });
            out.push('\n');
            let body = s.strip_suffix('\n').unwrap_or(s);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            flow(out, other);
            out.push('\n');
        }
    }
}

/// `v` on one line.
fn flow(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) if plain_ok(s) => out.push_str(s),
        Value::String(s) => quoted(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(out, item);
            }
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{ ");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                key(out, k);
                out.push_str(": ");
                flow(out, item);
            }
            out.push_str(" }");
        }
    }
}

/// Whether `s` can be written without quotes, in block and flow context alike, and read back as
/// the same string: identifier-like text that no YAML reader takes for a number, boolean or null.
fn plain_ok(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_' || first == '$' || first == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_./$-".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// Whether `s` reads back unchanged from a literal block: several lines, printable, no line of
/// spaces only (a block would shorten it), and not starting with a space (the block's indentation
/// would absorb it).
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.chars().any(|c| c != '\n' && c != '\t' && needs_escape(c))
        && s.split('\n').all(|l| l.is_empty() || !l.trim().is_empty())
}

/// Characters a double-quoted scalar must escape (YAML allows only printable ones raw).
fn needs_escape(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Doc;
    use proptest::prelude::*;
    use serde_json::json;

    fn read(text: &str) -> Value {
        Doc::parse("out.yaml", text, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
            .value
    }

    #[test]
    fn readable_output() {
        let entries = vec![
            Entry::new(
                "stages",
                Node::from_value(&json!({"prod": {"variables": {"endpoint": "ep"}}})),
            )
            .comment("from get-stages"),
            Entry::new(
                "routes",
                Node::List(vec![Node::Map(vec![
                    Entry::new("method", Node::text("GET")).comment("GET /a (paths./a.get)"),
                    Entry::new("path", Node::text("/a/{id}")),
                    Entry::new("template", Node::text("#set($a = 1)\n{\"a\": $a}\n")),
                    Entry::new("required", Node::from_value(&json!(["k", "200", "true"]))),
                ])]),
            ),
        ];
        let text = document(&["sagegate import".to_owned()], &entries);
        assert_eq!(
            text,
            r##"# sagegate import
# from get-stages
stages:
  prod:
    variables: { endpoint: ep }
routes:
  # GET /a (paths./a.get)
  - method: GET
    path: "/a/{id}"
    template: |
      #set($a = 1)
      {"a": $a}
    required: [k, "200", "true"]
"##
        );
    }

    fn json() -> impl Strategy<Value = Value> {
        let text = "(\\PC|[\\n\\t\\r \\u{85}\\u{2028}#:{}\\[\\],'\"&*!|>%@`-]){0,12}"
            .prop_filter("no interpolation", |s: &String| !s.contains("${env:"));
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
            text.clone().prop_map(Value::String),
            prop_oneof![
                Just("true"),
                Just("1e3"),
                Just("~"),
                Just("a\n\nb\n\n"),
                Just("- x"),
                Just(" lead\nx"),
                Just("x\n  \ny"),
                Just("$default"),
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// What is written reads back as the same value, comments and all.
        #[test]
        fn written_values_read_back_unchanged(v in json(), note in "\\PC{0,20}") {
            let doc = document(std::slice::from_ref(&note), &[Entry::new("v", Node::from_value(&v)).comment(note.clone())]);
            prop_assert_eq!(read(&doc), json!({ "v": v }), "{}", doc);
        }
    }
}
