//! `sagegate keys new|disable|enable|rotate|remove --keys SOURCE`: edits of a keys file's *text*,
//! spliced in at the node they change, so comments, order, quoting and layout everywhere else stay
//! as the operator (or their review) wrote them.
//!
//! Input: the file's text and one [`Edit`]. Output: the edited text ([`apply`]), or an
//! [`EditError`] saying why not (an unknown id or plan, a duplicate id, a layout the splice cannot
//! handle). The result is never a re-serialisation of the document.
//!
//! How: the text is parsed once more for positions (yaml-rust2's events give where each node
//! starts; where it ends follows from its style), the change is written in that node's style
//! (block or flow), and the result is parsed again and compared with the original document plus
//! the intended change. An edit that would change anything else (an unusual layout the splice
//! misjudged) is refused rather than written. Checking the result against the gateway's rules
//! (plans, stages, unique values) is the caller's job, with [`super::parse_keys`].
//!
//! Security: no key value passes through here: a new or rotated key arrives as its SHA-256. Ids and
//! names are written as YAML scalars, quoted whenever a plain scalar could be read as something
//! else; control characters and `${` are refused (the keys source is never interpolated).

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::config::diag::Diagnostics;
use crate::config::yaml::Doc;

/// One change to a keys file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Appends a key in one usage plan, stored as the SHA-256 of its value.
    Add {
        /// Key id; must not exist yet.
        id: String,
        /// Display name; the id when `None`.
        name: Option<String>,
        /// Usage plan id; must exist.
        plan: String,
        /// Hex SHA-256 of the key value.
        value_sha256: String,
    },
    /// Sets `enabled` (a missing field means `true`).
    SetEnabled {
        /// Key id.
        id: String,
        /// The new state.
        enabled: bool,
    },
    /// Replaces the key's value (`value` or `value_sha256`) by `value_sha256`.
    SetHash {
        /// Key id.
        id: String,
        /// Hex SHA-256 of the new key value.
        value_sha256: String,
    },
    /// Deletes the key's entry (and the comment lines directly above it).
    Remove {
        /// Key id.
        id: String,
    },
}

impl Edit {
    /// The key id the edit is about.
    pub fn id(&self) -> &str {
        match self {
            Edit::Add { id, .. }
            | Edit::SetEnabled { id, .. }
            | Edit::SetHash { id, .. }
            | Edit::Remove { id } => id,
        }
    }
}

/// Why an edit was not made. Nothing was changed in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not YAML (or holds a `${`).
    #[error("{0}")]
    Unparsable(Diagnostics),
    /// No key has this id.
    #[error("no key with id `{id}` (keys: {known})")]
    UnknownId {
        /// The id asked for.
        id: String,
        /// The ids in the file, comma-separated.
        known: String,
    },
    /// `keys new` with a plan the file does not define.
    #[error("no usage plan `{plan}` (usage plans: {known})")]
    UnknownPlan {
        /// The plan asked for.
        plan: String,
        /// The plan ids in the file, comma-separated.
        known: String,
    },
    /// `keys new` with an id that exists.
    #[error(
        "a key with id `{0}` exists already (ids are unique; use `keys rotate` for a new value)"
    )]
    DuplicateId(String),
    /// An id or name that cannot go into the file.
    #[error("{0}")]
    BadInput(String),
    /// The change is already in force (`disable` of a disabled key): nothing to write.
    #[error("key `{id}` is already {state}")]
    Unchanged {
        /// The key id.
        id: String,
        /// `enabled` or `disabled`.
        state: &'static str,
    },
    /// The file's layout around the change is one this splice does not handle.
    #[error(
        "cannot change the file in place at {at}: {why}; edit it by hand (or rewrite that part in block style)"
    )]
    Layout {
        /// Where, as a path (`keys[2]`).
        at: String,
        /// What is unusual.
        why: String,
    },
}

/// Applies `edit` to the keys file `text` (`file` names it in diagnostics).
pub fn apply(file: &str, text: &str, edit: &Edit) -> Result<String, EditError> {
    check_text(edit)?;
    let doc = Doc::parse_data(file, text).map_err(|d| EditError::Unparsable(Diagnostics(d)))?;
    let tree = Tree::parse(text).ok_or_else(|| layout("(root)", "the file does not parse"))?;
    let keys = doc.value.get("keys").and_then(Value::as_array);
    let index = keys.and_then(|k| {
        k.iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(edit.id()))
    });
    let expected = expected(&doc.value, edit, index)?;
    let edited = Splice { text, tree: &tree }.apply(edit, index)?;
    match Doc::parse_data(file, &edited) {
        Ok(after) if after.value == expected => Ok(edited),
        _ => Err(layout(
            &index.map_or_else(|| "keys".to_owned(), |i| format!("keys[{i}]")),
            "the edit would change more than the entry",
        )),
    }
}

fn layout(at: &str, why: &str) -> EditError {
    EditError::Layout {
        at: at.to_owned(),
        why: why.to_owned(),
    }
}

/// Refuses ids and names that cannot be written into a data file.
fn check_text(edit: &Edit) -> Result<(), EditError> {
    let mut fields = vec![("id", edit.id())];
    if let Edit::Add { name: Some(n), .. } = edit {
        fields.push(("name", n));
    }
    for (what, s) in fields {
        if s.is_empty() && what == "id" {
            return Err(EditError::BadInput(
                "the key id must not be empty".to_owned(),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(EditError::BadInput(format!(
                "the key {what} must not contain control characters"
            )));
        }
        if s.contains("${") {
            return Err(EditError::BadInput(format!(
                "the key {what} must not contain `${{` (the keys file is never interpolated)"
            )));
        }
    }
    Ok(())
}

/// The document `edit` should produce, checking ids and plans on the way.
fn expected(doc: &Value, edit: &Edit, index: Option<usize>) -> Result<Value, EditError> {
    let ids = |v: &Value, field: &str| -> String {
        let list: Vec<&str> = v
            .get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|e| e.get("id")?.as_str()).collect())
            .unwrap_or_default();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    let mut out = doc.clone();
    let Some(root) = out.as_object_mut() else {
        return Err(layout("(root)", "the file is not a mapping"));
    };
    if let Edit::Add {
        id,
        name,
        plan,
        value_sha256,
    } = edit
    {
        if index.is_some() {
            return Err(EditError::DuplicateId(id.clone()));
        }
        let has_plan = doc
            .get("usage_plans")
            .and_then(Value::as_array)
            .is_some_and(|p| {
                p.iter()
                    .any(|p| p.get("id").and_then(Value::as_str) == Some(plan))
            });
        if !has_plan {
            return Err(EditError::UnknownPlan {
                plan: plan.clone(),
                known: ids(doc, "usage_plans"),
            });
        }
        let entry = serde_json::json!({
            "id": id,
            "name": name.as_deref().unwrap_or(id),
            "enabled": true,
            "usage_plans": [plan],
            "value_sha256": value_sha256,
        });
        match root.get_mut("keys") {
            Some(Value::Array(keys)) => keys.push(entry),
            Some(Value::Null) | None => {
                root.insert("keys".to_owned(), Value::Array(vec![entry]));
            }
            Some(_) => return Err(layout("keys", "`keys` is not a list")),
        }
        return Ok(out);
    }
    let (Some(i), Some(Value::Array(keys))) = (index, root.get_mut("keys")) else {
        return Err(EditError::UnknownId {
            id: edit.id().to_owned(),
            known: ids(doc, "keys"),
        });
    };
    let Some(key) = keys.get_mut(i).and_then(Value::as_object_mut) else {
        return Err(layout(&format!("keys[{i}]"), "the entry is not a mapping"));
    };
    match edit {
        Edit::SetEnabled { id, enabled } => {
            let now = key.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            if now == *enabled {
                return Err(EditError::Unchanged {
                    id: id.clone(),
                    state: if now { "enabled" } else { "disabled" },
                });
            }
            key.insert("enabled".to_owned(), Value::Bool(*enabled));
        }
        Edit::SetHash { value_sha256, .. } => {
            key.remove("value");
            key.insert(
                "value_sha256".to_owned(),
                Value::String(value_sha256.clone()),
            );
        }
        Edit::Remove { .. } => {
            keys.remove(i);
        }
        Edit::Add { .. } => {}
    }
    Ok(out)
}

/// A node of the file with its byte span.
#[derive(Debug)]
struct Node {
    /// First byte (a block mapping: its first key; a block sequence: its first `-`).
    start: usize,
    /// One past the last byte, when the style makes it certain.
    end: Option<usize>,
    shape: Shape,
}

#[derive(Debug)]
enum Shape {
    Scalar(String),
    Seq {
        flow: bool,
        items: Vec<Node>,
    },
    Map {
        flow: bool,
        entries: Vec<(Node, Node)>,
    },
}

impl Node {
    fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.shape {
            Shape::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| matches!(&k.shape, Shape::Scalar(s) if s == key)),
            _ => None,
        }
    }
}

/// The file's nodes with positions.
struct Tree {
    root: Node,
}

impl Tree {
    fn parse(text: &str) -> Option<Tree> {
        let mut builder = TreeBuilder {
            text,
            lines: line_starts(text),
            stack: Vec::new(),
            root: None,
        };
        Parser::new_from_str(text).load(&mut builder, false).ok()?;
        builder.root.map(|root| Tree { root })
    }
}

enum Frame {
    Seq {
        start: usize,
        flow: bool,
        items: Vec<Node>,
    },
    Map {
        start: Option<usize>,
        flow: bool,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct TreeBuilder<'a> {
    text: &'a str,
    lines: Vec<usize>,
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl TreeBuilder<'_> {
    /// The byte offset of a marker, from its line and column (the column counts characters).
    fn offset(&self, mark: Marker) -> usize {
        let Some(&line_start) = self.lines.get(mark.line().saturating_sub(1)) else {
            return self.text.len();
        };
        let line = &self.text[line_start..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        line_start
            + line
                .char_indices()
                .nth(mark.col())
                .map_or(line.len(), |(i, _)| i)
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                start,
                entries,
                key,
                ..
            }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    start.get_or_insert(node.start);
                    *key = Some(node);
                }
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = self.offset(mark);
        match ev {
            Event::Scalar(value, style, ..) => {
                let end = scalar_end(self.text, at, style, &value);
                self.push(Node {
                    start: at,
                    end,
                    shape: Shape::Scalar(value),
                });
            }
            Event::Alias(_) => self.push(Node {
                start: at,
                end: None,
                shape: Shape::Scalar(String::new()),
            }),
            Event::SequenceStart(..) => {
                let flow = self.text[at..].starts_with('[');
                self.stack.push(Frame::Seq {
                    start: at,
                    flow,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(..) => {
                let flow = self.text[at..].starts_with('{');
                // A block mapping's own mark is past its first key: it starts at that key.
                self.stack.push(Frame::Map {
                    start: flow.then_some(at),
                    flow,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq { start, flow, items }) => Node {
                        start,
                        end: if flow {
                            self.text[at..].starts_with(']').then_some(at + 1)
                        } else {
                            items.last().and_then(|n| n.end)
                        },
                        shape: Shape::Seq { flow, items },
                    },
                    Some(Frame::Map {
                        start,
                        flow,
                        entries,
                        ..
                    }) => Node {
                        start: start.unwrap_or(at),
                        end: if flow {
                            self.text[at..].starts_with('}').then_some(at + 1)
                        } else {
                            entries.last().and_then(|(_, v)| v.end)
                        },
                        shape: Shape::Map { flow, entries },
                    },
                    None => return,
                };
                self.push(node);
            }
            _ => {}
        }
    }
}

/// Byte offsets of the starts of lines.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Where a scalar starting at `start` ends, when its style makes that certain: a quoted scalar at
/// its closing quote, a plain one when its text is exactly `value` (one line); block scalars and
/// multi-line plain scalars are left unknown.
fn scalar_end(text: &str, start: usize, style: TScalarStyle, value: &str) -> Option<usize> {
    let rest = &text[start..];
    match style {
        TScalarStyle::Plain => {
            (!value.is_empty() && rest.starts_with(value)).then_some(start + value.len())
        }
        TScalarStyle::SingleQuoted => {
            let mut chars = rest.char_indices().skip(1).peekable();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                    } else {
                        return Some(start + i + 1);
                    }
                }
            }
            None
        }
        TScalarStyle::DoubleQuoted => {
            let mut chars = rest.char_indices().skip(1);
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return Some(start + i + 1),
                    _ => {}
                }
            }
            None
        }
        _ => None,
    }
}

/// A YAML scalar for `s`: plain when it can only be read back as that string, else double-quoted
/// (JSON string syntax is valid YAML, escapes included).
pub fn scalar(s: &str) -> String {
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with(|c: char| c.is_ascii_digit());
    let plain = !s.is_empty()
        && plain_chars
        && !reserved
        && !numeric
        && !s.starts_with(['-', '.', ' '])
        && !s.ends_with(' ')
        && !s.contains("  ");
    if plain {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

/// The fields of a new key entry, in file order, as YAML scalars.
fn entry_fields(
    id: &str,
    name: &str,
    plan: &str,
    value_sha256: &str,
) -> [(&'static str, String); 5] {
    [
        ("id", scalar(id)),
        ("name", scalar(name)),
        ("enabled", "true".to_owned()),
        ("usage_plans", format!("[{}]", scalar(plan))),
        ("value_sha256", format!("\"{value_sha256}\"")),
    ]
}

/// A new key entry as a block sequence item: `dash` spaces before the `-`, `field` before each
/// later field.
pub fn entry_block(
    dash: usize,
    field: usize,
    (id, name, plan, value_sha256): (&str, &str, &str, &str),
) -> String {
    let mut out = String::new();
    for (i, (key, value)) in entry_fields(id, name, plan, value_sha256)
        .iter()
        .enumerate()
    {
        if i == 0 {
            out.push_str(&" ".repeat(dash));
            out.push('-');
            out.push_str(&" ".repeat(field.saturating_sub(dash + 1).max(1)));
        } else {
            out.push_str(&" ".repeat(field));
        }
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}

fn entry_flow(id: &str, name: &str, plan: &str, value_sha256: &str) -> String {
    let fields: Vec<String> = entry_fields(id, name, plan, value_sha256)
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Text changes at byte ranges, applied back to front.
struct Splice<'a> {
    text: &'a str,
    tree: &'a Tree,
}

impl Splice<'_> {
    fn apply(&self, edit: &Edit, index: Option<usize>) -> Result<String, EditError> {
        let root = &self.tree.root;
        let keys = root.entry("keys");
        let changes = match edit {
            Edit::Add {
                id,
                name,
                plan,
                value_sha256,
            } => {
                let fields = (
                    id.as_str(),
                    name.as_deref().unwrap_or(id),
                    plan.as_str(),
                    value_sha256.as_str(),
                );
                self.add(root, keys, fields)?
            }
            _ => {
                let (i, items) = match (index, keys.map(|(_, v)| &v.shape)) {
                    (Some(i), Some(Shape::Seq { items, .. })) => (i, items),
                    _ => return Err(layout("keys", "`keys` is not a list")),
                };
                let at = format!("keys[{i}]");
                let item = items.get(i).ok_or_else(|| layout(&at, "entry not found"))?;
                match edit {
                    Edit::SetEnabled { enabled, .. } => self.set_enabled(&at, item, *enabled)?,
                    Edit::SetHash { value_sha256, .. } => self.set_hash(&at, item, value_sha256)?,
                    _ => self.remove(&at, keys, items, i)?,
                }
            }
        };
        let mut out = self.text.to_owned();
        let mut changes = changes;
        changes.sort_by_key(|c| std::cmp::Reverse(c.0.start));
        for (range, with) in changes {
            out.replace_range(range, &with);
        }
        Ok(out)
    }

    /// The end of the line holding byte `at`, past its newline (or the end of the text).
    fn line_end(&self, at: usize) -> usize {
        self.text[at..]
            .find('\n')
            .map_or(self.text.len(), |i| at + i + 1)
    }

    /// The start of the line holding byte `at`.
    fn line_start(&self, at: usize) -> usize {
        self.text[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// `at`, or one before it when a space separates it from what precedes it.
    fn with_space_before(&self, at: usize) -> usize {
        if self.text[..at].ends_with(' ') {
            at - 1
        } else {
            at
        }
    }

    /// The column (in characters) of byte `at`.
    fn column(&self, at: usize) -> usize {
        self.text[self.line_start(at)..at].chars().count()
    }

    /// Past the comment lines right after byte `at` (a line end) indented deeper than `column`:
    /// they belong to the entry above them.
    fn skip_owned_comments(&self, mut at: usize, column: usize) -> usize {
        while at < self.text.len() {
            let end = self.line_end(at);
            let line = &self.text[at..end];
            let indent = line.len() - line.trim_start().len();
            if line.trim_start().starts_with('#') && indent > column {
                at = end;
            } else {
                break;
            }
        }
        at
    }

    /// Insertion at `at` of `text`, starting a new line first when `at` is the end of a text
    /// without a final newline.
    fn insert_lines(&self, at: usize, text: String) -> Change {
        let text = if at == self.text.len() && !self.text.is_empty() && !self.text.ends_with('\n') {
            format!("\n{text}")
        } else {
            text
        };
        (at..at, text)
    }

    fn add(
        &self,
        root: &Node,
        keys: Option<&(Node, Node)>,
        fields: (&str, &str, &str, &str),
    ) -> Result<Vec<Change>, EditError> {
        let block_root = matches!(root.shape, Shape::Map { flow: false, .. });
        let (id, name, plan, hash) = fields;
        let Some((key, value)) = keys else {
            if !block_root {
                return Err(layout("(root)", "the top level is not a block mapping"));
            }
            let dash = self.sibling_dash(root).unwrap_or(2);
            let text = format!("keys:\n{}", entry_block(dash, dash + 2, fields));
            return Ok(vec![self.insert_lines(self.text.len(), text)]);
        };
        let below_key = self.column(key.start) + 2;
        match &value.shape {
            Shape::Seq { flow: false, items } => {
                let last = items
                    .last()
                    .ok_or_else(|| layout("keys", "empty block list"))?;
                let end = last
                    .end
                    .ok_or_else(|| layout("keys", "the last entry's end is unclear"))?;
                let dash = self.column(value.start);
                let field = self.column(last.start).max(dash + 2);
                let at = self.skip_owned_comments(self.line_end(end), dash);
                Ok(vec![
                    self.insert_lines(at, entry_block(dash, field, fields)),
                ])
            }
            Shape::Seq { flow: true, items } => {
                let end = value
                    .end
                    .ok_or_else(|| layout("keys", "the list's end is unclear"))?;
                match items.last() {
                    Some(last) => {
                        let at = last
                            .end
                            .ok_or_else(|| layout("keys", "the last entry's end is unclear"))?;
                        Ok(vec![(
                            at..at,
                            format!(", {}", entry_flow(id, name, plan, hash)),
                        )])
                    }
                    None if block_root => {
                        // `keys: []` becomes a block list under `keys:`.
                        let at = self.line_end(end);
                        Ok(vec![
                            (self.with_space_before(value.start)..end, String::new()),
                            self.insert_lines(at, entry_block(below_key, below_key + 2, fields)),
                        ])
                    }
                    None => Ok(vec![(
                        value.start + 1..end - 1,
                        entry_flow(id, name, plan, hash),
                    )]),
                }
            }
            Shape::Scalar(s) if s.is_empty() || s == "~" || s == "null" => {
                // `keys:` (or `keys: ~`): the null goes, the list follows the key's line.
                let mut changes = Vec::new();
                if let Some(end) = value.end.filter(|_| !s.is_empty()) {
                    changes.push((self.with_space_before(value.start)..end, String::new()));
                }
                let at = self.line_end(key.start);
                changes.push(self.insert_lines(at, entry_block(below_key, below_key + 2, fields)));
                Ok(changes)
            }
            _ => Err(layout("keys", "`keys` is not a list")),
        }
    }

    /// The dash column of another top-level block list (`usage_plans`), to match its indentation.
    fn sibling_dash(&self, root: &Node) -> Option<usize> {
        match &root.shape {
            Shape::Map { entries, .. } => entries.iter().find_map(|(_, v)| match v.shape {
                Shape::Seq { flow: false, .. } => Some(self.column(v.start)),
                _ => None,
            }),
            _ => None,
        }
    }

    fn set_enabled(&self, at: &str, item: &Node, enabled: bool) -> Result<Vec<Change>, EditError> {
        let word = if enabled { "true" } else { "false" };
        if let Some((_, value)) = item.entry("enabled") {
            let end = value
                .end
                .ok_or_else(|| layout(at, "`enabled` is not a plain value"))?;
            return Ok(vec![(value.start..end, word.to_owned())]);
        }
        let (id_key, id_value) = item.entry("id").ok_or_else(|| layout(at, "no `id`"))?;
        let id_end = id_value
            .end
            .ok_or_else(|| layout(at, "the id's end is unclear"))?;
        match item.shape {
            Shape::Map { flow: true, .. } => {
                Ok(vec![(id_end..id_end, format!(", enabled: {word}"))])
            }
            _ => {
                let line = self.line_end(id_end);
                let indent = " ".repeat(self.column(id_key.start));
                Ok(vec![
                    self.insert_lines(line, format!("{indent}enabled: {word}\n")),
                ])
            }
        }
    }

    fn set_hash(&self, at: &str, item: &Node, hash: &str) -> Result<Vec<Change>, EditError> {
        let quoted = format!("\"{hash}\"");
        if let Some((_, value)) = item.entry("value_sha256") {
            let end = value
                .end
                .ok_or_else(|| layout(at, "`value_sha256` is not a one-line value"))?;
            return Ok(vec![(value.start..end, quoted)]);
        }
        let (key, value) = item
            .entry("value")
            .ok_or_else(|| layout(at, "neither `value` nor `value_sha256`"))?;
        let end = value
            .end
            .ok_or_else(|| layout(at, "`value` is not a one-line value"))?;
        Ok(vec![(key.start..end, format!("value_sha256: {quoted}"))])
    }

    fn remove(
        &self,
        at: &str,
        keys: Option<&(Node, Node)>,
        items: &[Node],
        i: usize,
    ) -> Result<Vec<Change>, EditError> {
        let (key, list) = keys.ok_or_else(|| layout("keys", "no `keys`"))?;
        let item = &items[i];
        let end = item
            .end
            .ok_or_else(|| layout(at, "the entry's end is unclear"))?;
        if let Shape::Seq { flow: true, .. } = list.shape {
            let range = match (
                i.checked_sub(1).and_then(|p| items.get(p)),
                items.get(i + 1),
            ) {
                (_, Some(next)) => item.start..next.start,
                (Some(prev), None) => prev.end.ok_or_else(|| layout(at, "unclear list"))?..end,
                (None, None) => item.start..end,
            };
            return Ok(vec![(range, String::new())]);
        }
        // Block list: the entry's lines, from its `-` to its last line and the comment lines it
        // owns, plus the comment lines directly above it.
        let line = self.line_start(item.start);
        let before = &self.text[line..item.start];
        if before.trim() != "-" {
            return Err(layout(at, "the entry does not start its own line with `-`"));
        }
        let dash = self.column(line + before.find('-').unwrap_or(0));
        let mut start = line;
        while start > 0 {
            let above = self.line_start(start - 1);
            let text = &self.text[above..start];
            let indent = text.len() - text.trim_start().len();
            if text.trim_start().starts_with('#') && indent >= dash && above > key.start {
                start = above;
            } else {
                break;
            }
        }
        let stop = self.skip_owned_comments(self.line_end(end), dash);
        let mut changes = vec![(start..stop, String::new())];
        if items.len() == 1 {
            // The last key goes: `keys:` must still be a list.
            let colon = key
                .end
                .map(|e| e + self.text[e..].find(':').unwrap_or(0) + 1);
            let colon = colon.ok_or_else(|| layout("keys", "unclear `keys:` line"))?;
            changes.push((colon..colon, " []".to_owned()));
        }
        Ok(changes)
    }
}

/// A byte range of the original text and what replaces it.
type Change = (std::ops::Range<usize>, String);

#[cfg(test)]
mod tests;
