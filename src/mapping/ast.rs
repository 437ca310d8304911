//! The parsed form of a template: what the parser builds once and the renderer walks per request.
//!
//! Everything a render can precompute lives here: literal regexes and JSONPaths are compiled at parse
//! time (`Method::pre`), so a request never recompiles them.

use regex::Regex;
use serde_json_path::JsonPath;

/// A sequence of nodes (the template, or the body of a directive).
pub(super) type Block = Vec<Node>;

#[derive(Debug)]
pub(super) enum Node {
    /// Output as is.
    Text(Box<str>),
    /// `$ref` in text.
    Ref(Box<Reference>),
    /// `#set($target = value)`.
    Set(Box<Reference>, Expr),
    /// `#if(c) .. #elseif(c) .. #else .. #end`.
    If(Vec<(Expr, Block)>, Option<Block>),
    /// `#foreach($var in iter) body #end`.
    Foreach(Box<Foreach>),
    /// `#break`.
    Break,
    /// `#stop`.
    Stop,
}

#[derive(Debug)]
pub(super) struct Foreach {
    /// Byte offset of `#foreach` in the template (for error positions).
    pub at: usize,
    pub var: Box<str>,
    pub iter: Expr,
    pub body: Block,
}

#[derive(Debug)]
pub(super) struct Reference {
    pub root: Box<str>,
    /// Byte offset of its `$` in the template (of the enclosing literal, inside a `"..."`).
    pub at: usize,
    pub parts: Vec<Part>,
    /// `$!x`: renders nothing when null. Under API Gateway every null renders as nothing, so the
    /// renderer no longer needs it; kept for readers of the tree.
    #[allow(dead_code)]
    pub quiet: bool,
    /// Source text without leading backslashes, output for an escaped reference (`\$x`).
    pub literal: Box<str>,
    /// Backslashes output before the reference (half of those written).
    pub prefix_backslashes: u32,
    /// An odd number of backslashes: `\$x` outputs `$x` (or `\$x` when `$x` is null).
    pub escaped: bool,
    /// Position of the first `add`/`put`/... call in `parts`: such a reference changes its variable.
    pub mutator: Option<usize>,
}

#[derive(Debug)]
pub(super) enum Part {
    Prop(Box<str>),
    Method(Box<Method>),
    Index(Expr),
}

#[derive(Debug)]
pub(super) struct Method {
    pub name: Box<str>,
    pub args: Vec<Expr>,
    /// Compiled from a literal first argument, when the method takes a regex or a JSONPath.
    pub pre: Precompiled,
}

#[derive(Debug)]
pub(super) enum Precompiled {
    None,
    /// For `split`, `replaceAll`, `replaceFirst` (as written) and `matches` (anchored).
    Regex(Result<Regex, String>),
    /// For `json`/`path`: the path and whether it is definite (one value, not a list).
    Path(Result<(JsonPath, bool), String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug)]
pub(super) enum Expr {
    Str(Box<str>),
    /// A double-quoted literal with `$` or `#` inside: a template of its own.
    Interp(Block),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Range(Box<Expr>, Box<Expr>),
    Ref(Box<Reference>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
}
