//! Template text → [`ast::Block`](super::ast::Block), following Velocity 1.7's lexer rules.
//!
//! Input: the template source. Output: the tree, or a [`ParseError`] with 1-based line and column.
//! Runs once per template at configuration load, so it favours clarity; it still must not overflow
//! the stack on hostile input, hence [`MAX_PARSE_DEPTH`](super::MAX_PARSE_DEPTH).
//!
//! Velocity's lexer decides what is text and what is code, and its token shapes decide the whitespace
//! rules (see the module docs of `mapping`). The parts that matter, from 1.7's `Parser.jjt`:
//! - text runs up to `$`, `#` or `\`; each of those starts a new token;
//! - `#set` is lexed as `[ \t]*#set *(`, so blanks before it vanish when they start a token;
//! - a directive's `)` is lexed as `)([ \t]*\n)?`, `#else`/`#end` as `else([ \t]*\n)?`: the newline of a
//!   line ending in a directive vanishes;
//! - identifiers are `[a-zA-Z_][a-zA-Z0-9_-]*` (a `-` is part of the name: `$a-b` is one reference);
//! - a `.` continues a reference only before a letter, a `(` only right after the method name;
//! - string literals have no backslash escapes except `\uXXXX`; `""` inside `"..."` is a quote;
//!   double-quoted literals holding `$` or `#` are templates themselves.

use super::ast::{BinOp, Block, Expr, Foreach, Method, Node, Part, Precompiled, Reference};
use super::{MAX_EXPR_DEPTH, MAX_PARSE_DEPTH, ParseError, apigw, methods};

/// Directives Velocity 1.7 knows; an escaped one (`\#if`) loses one backslash, others keep them all.
const KNOWN_DIRECTIVES: &[&str] = &[
    "if", "elseif", "else", "end", "set", "foreach", "break", "stop", "macro", "parse", "include",
    "evaluate", "define",
];

/// Directives API Gateway templates cannot use here (they need a resource loader or macros).
const UNSUPPORTED_DIRECTIVES: &[&str] = &["macro", "parse", "include", "evaluate", "define"];

pub(super) fn parse_template(src: &str) -> Result<Block, ParseError> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        pos: 0,
        depth: 0,
        tree: 0,
        origin: None,
    };
    p.template()
}

/// How a block ended.
enum Term {
    Eof,
    End,
    Else,
    ElseIf(Expr),
}

struct Parser<'s> {
    src: &'s str,
    b: &'s [u8],
    pos: usize,
    /// Blocks and expressions open around the position (at most [`MAX_PARSE_DEPTH`]).
    depth: usize,
    /// Depth of the tree being built there: `depth` plus the operator links of open chains (at
    /// most [`MAX_EXPR_DEPTH`]).
    tree: usize,
    /// Inside a double-quoted literal, the literal's offset in the template: references in it
    /// are placed there (the literal's text is not the template's, after `\uXXXX` and `""`).
    origin: Option<usize>,
}

struct Fail {
    pos: usize,
    message: String,
}

type PResult<T> = Result<T, Fail>;

fn fail<T>(pos: usize, message: impl Into<String>) -> PResult<T> {
    Err(Fail {
        pos,
        message: message.into(),
    })
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'@'
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'@'
}

fn flush(nodes: &mut Block, text: &mut String) {
    if !text.is_empty() {
        nodes.push(Node::Text(std::mem::take(text).into_boxed_str()));
    }
}

impl<'s> Parser<'s> {
    fn template(&mut self) -> Result<Block, ParseError> {
        let result = self.block().and_then(|(block, term, at)| match term {
            Term::Eof => Ok(block),
            Term::End => fail(at, "#end without an open #if or #foreach"),
            Term::Else => fail(at, "#else without an open #if"),
            Term::ElseIf(_) => fail(at, "#elseif without an open #if"),
        });
        result.map_err(|f| self.error(f))
    }

    fn error(&self, f: Fail) -> ParseError {
        let (line, col) = line_col(self.src, f.pos);
        ParseError {
            line,
            col,
            message: f.message,
        }
    }

    fn peek(&self, at: usize) -> u8 {
        self.b.get(at).copied().unwrap_or(0)
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        self.tree += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return fail(self.pos, "template nested too deeply");
        }
        if self.tree > MAX_EXPR_DEPTH {
            return fail(
                self.pos,
                "expression too long: more operators in a row than allowed",
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
        self.tree -= 1;
    }

    /// Text and statements up to `#end`/`#else`/`#elseif` or the end; returns where the terminator was.
    fn block(&mut self) -> PResult<(Block, Term, usize)> {
        self.enter()?;
        let mut nodes = Vec::new();
        let mut text = String::new();
        let (term, at) = loop {
            // A token starts here: `[ \t]*#set *(` takes its leading blanks with it.
            if let Some((hash, after)) = self.set_at(self.pos) {
                flush(&mut nodes, &mut text);
                self.pos = after;
                nodes.push(self.set_body(hash)?);
                continue;
            }
            let start = self.pos;
            while self.pos < self.b.len() && !matches!(self.b[self.pos], b'$' | b'#' | b'\\') {
                self.pos += 1;
            }
            text.push_str(&self.src[start..self.pos]);
            if self.pos >= self.b.len() {
                break (Term::Eof, self.pos);
            }
            match self.b[self.pos] {
                b'\\' => self.backslashes(&mut nodes, &mut text)?,
                b'$' => match self.reference(self.pos)? {
                    Some(r) => {
                        flush(&mut nodes, &mut text);
                        nodes.push(Node::Ref(Box::new(r)));
                    }
                    None => {
                        text.push('$');
                        self.pos += 1;
                    }
                },
                _ => {
                    let at = self.pos;
                    if let Some(term) = self.hash(&mut nodes, &mut text)? {
                        break (term, at);
                    }
                }
            }
        };
        flush(&mut nodes, &mut text);
        self.leave();
        Ok((nodes, term, at))
    }

    /// Matches `[ \t]*(#set|#{set}) *(` at `at`: returns the position of `#` and after `(`.
    fn set_at(&self, at: usize) -> Option<(usize, usize)> {
        let mut i = at;
        while matches!(self.peek(i), b' ' | b'\t') {
            i += 1;
        }
        let rest = &self.b[i.min(self.b.len())..];
        let word_len = if rest.starts_with(b"#set") {
            4
        } else if rest.starts_with(b"#{set}") {
            6
        } else {
            return None;
        };
        let mut j = i + word_len;
        while self.peek(j) == b' ' {
            j += 1;
        }
        (self.peek(j) == b'(').then_some((i, j + 1))
    }

    /// A run of backslashes before `$`, `#` or anything else.
    fn backslashes(&mut self, nodes: &mut Block, text: &mut String) -> PResult<()> {
        let start = self.pos;
        let mut after = start;
        while self.peek(after) == b'\\' {
            after += 1;
        }
        let n = after - start;
        match self.peek(after) {
            b'$' => {
                if let Some(mut r) = self.reference(after)? {
                    r.prefix_backslashes = u32::try_from(n / 2).unwrap_or(u32::MAX);
                    r.escaped = n % 2 == 1;
                    flush(nodes, text);
                    nodes.push(Node::Ref(Box::new(r)));
                    return Ok(());
                }
            }
            b'#' => {
                if let Some((word, wend)) = self.directive_word(after + 1) {
                    let known = KNOWN_DIRECTIVES.contains(&word);
                    if n % 2 == 1 {
                        // `\#if`: the directive becomes text; a known one loses one backslash.
                        let keep = if known { (n - 1) / 2 } else { n };
                        text.extend(std::iter::repeat_n('\\', keep));
                        text.push_str(&self.src[after..wend]);
                        self.pos = wend;
                    } else {
                        // `\\#if`: pairs of backslashes before a live directive print as one each.
                        let keep = if known { n / 2 } else { n };
                        text.extend(std::iter::repeat_n('\\', keep));
                        self.pos = after;
                    }
                    return Ok(());
                }
            }
            _ => {}
        }
        text.push_str(&self.src[start..after]);
        self.pos = after;
        Ok(())
    }

    /// `word` or `{word}` after a `#`: the name and the position after it.
    fn directive_word(&self, at: usize) -> Option<(&'s str, usize)> {
        let (start, bracketed) = if self.peek(at) == b'{' {
            (at + 1, true)
        } else {
            (at, false)
        };
        if !is_word_start(self.peek(start)) {
            return None;
        }
        let mut end = start + 1;
        while is_word_char(self.peek(end)) {
            end += 1;
        }
        if bracketed {
            if self.peek(end) != b'}' {
                return None;
            }
            Some((&self.src[start..end], end + 1))
        } else {
            Some((&self.src[start..end], end))
        }
    }

    /// Skips `[ \t]*` + one newline, only when the newline is there (Velocity's directive-end tokens).
    fn eat_line_end(&mut self) {
        let mut i = self.pos;
        while matches!(self.peek(i), b' ' | b'\t') {
            i += 1;
        }
        match self.peek(i) {
            b'\n' => self.pos = i + 1,
            b'\r' => {
                self.pos = if self.peek(i + 1) == b'\n' {
                    i + 2
                } else {
                    i + 1
                }
            }
            _ => {}
        }
    }

    fn hash(&mut self, nodes: &mut Block, text: &mut String) -> PResult<Option<Term>> {
        let at = self.pos;
        match self.peek(at + 1) {
            b'#' => {
                // `## comment`: up to and including the newline.
                let mut i = at + 2;
                while i < self.b.len() && !matches!(self.b[i], b'\n' | b'\r') {
                    i += 1;
                }
                if self.peek(i) == b'\r' && self.peek(i + 1) == b'\n' {
                    i += 1;
                }
                self.pos = (i + 1).min(self.b.len());
                return Ok(None);
            }
            b'*' => {
                let Some(end) = find(self.b, at + 2, b"*#") else {
                    return fail(at, "unterminated #* comment *#");
                };
                self.pos = end + 2;
                return Ok(None);
            }
            b'[' if self.peek(at + 2) == b'[' => {
                let Some(end) = find(self.b, at + 3, b"]]#") else {
                    return fail(at, "unterminated #[[ text ]]#");
                };
                text.push_str(&self.src[at + 3..end]);
                self.pos = end + 3;
                return Ok(None);
            }
            _ => {}
        }
        let Some((word, wend)) = self.directive_word(at + 1) else {
            text.push('#');
            self.pos = at + 1;
            return Ok(None);
        };
        match word {
            "if" => {
                self.pos = wend;
                let cond = self.paren_condition(at, "#if")?;
                flush(nodes, text);
                let node = self.if_chain(at, cond)?;
                nodes.push(node);
            }
            "elseif" => {
                self.pos = wend;
                let cond = self.paren_condition(at, "#elseif")?;
                return Ok(Some(Term::ElseIf(cond)));
            }
            "else" => {
                self.pos = wend;
                self.eat_line_end();
                return Ok(Some(Term::Else));
            }
            "end" => {
                self.pos = wend;
                self.eat_line_end();
                return Ok(Some(Term::End));
            }
            "set" => {
                let mut j = wend;
                while self.peek(j) == b' ' {
                    j += 1;
                }
                if self.peek(j) == b'(' {
                    flush(nodes, text);
                    self.pos = j + 1;
                    let node = self.set_body(at)?;
                    nodes.push(node);
                } else {
                    text.push_str(&self.src[at..wend]);
                    self.pos = wend;
                }
            }
            "foreach" => {
                self.pos = wend;
                flush(nodes, text);
                let node = self.foreach(at)?;
                nodes.push(node);
            }
            "break" | "stop" => {
                flush(nodes, text);
                nodes.push(if word == "break" {
                    Node::Break
                } else {
                    Node::Stop
                });
                self.pos = wend;
            }
            _ => {
                if UNSUPPORTED_DIRECTIVES.contains(&word) {
                    let mut j = wend;
                    while matches!(self.peek(j), b' ' | b'\t' | b'\n' | b'\r') {
                        j += 1;
                    }
                    if self.peek(j) == b'(' {
                        return fail(at, format!("#{word} is not supported in mapping templates"));
                    }
                }
                // Not a directive: Velocity prints it as written.
                text.push_str(&self.src[at..wend]);
                self.pos = wend;
            }
        }
        Ok(None)
    }

    /// `[ws] ( expr )` of `#if`/`#elseif`, then the line end.
    fn paren_condition(&mut self, at: usize, what: &str) -> PResult<Expr> {
        self.skip_ws();
        if self.peek(self.pos) != b'(' {
            return fail(at, format!("{what} needs a condition in parentheses"));
        }
        self.pos += 1;
        let cond = self.expr()?;
        self.skip_ws();
        if self.peek(self.pos) != b')' {
            return fail(self.pos, format!("expected ')' to close {what}"));
        }
        self.pos += 1;
        self.eat_line_end();
        Ok(cond)
    }

    fn if_chain(&mut self, at: usize, first: Expr) -> PResult<Node> {
        let mut branches = Vec::new();
        let mut cond = first;
        loop {
            let (body, term, _) = self.block()?;
            branches.push((cond, body));
            match term {
                Term::ElseIf(c) => cond = c,
                Term::End => return Ok(Node::If(branches, None)),
                Term::Else => {
                    let (body, term, term_at) = self.block()?;
                    return match term {
                        Term::End => Ok(Node::If(branches, Some(body))),
                        Term::Eof => fail(at, "#if without #end"),
                        _ => fail(term_at, "#else must be the last branch of #if"),
                    };
                }
                Term::Eof => return fail(at, "#if without #end"),
            }
        }
    }

    /// After `#set(`: `$ref = expr )`, then the line end.
    fn set_body(&mut self, at: usize) -> PResult<Node> {
        self.skip_ws();
        if self.peek(self.pos) != b'$' {
            return fail(self.pos, "#set needs a reference on the left of '='");
        }
        let Some(target) = self.reference(self.pos)? else {
            return fail(self.pos, "#set needs a reference on the left of '='");
        };
        self.skip_ws();
        if self.peek(self.pos) != b'=' || self.peek(self.pos + 1) == b'=' {
            return fail(self.pos, "expected '=' in #set");
        }
        self.pos += 1;
        let value = self.expr()?;
        self.skip_ws();
        if self.peek(self.pos) != b')' {
            return fail(at, "expected ')' to close #set");
        }
        self.pos += 1;
        self.eat_line_end();
        Ok(Node::Set(Box::new(target), value))
    }

    /// After `#foreach`: `[ws] ( $var in expr )`, the line end, the body and `#end`.
    fn foreach(&mut self, at: usize) -> PResult<Node> {
        self.skip_ws();
        if self.peek(self.pos) != b'(' {
            return fail(at, "#foreach needs ($item in $list)");
        }
        self.pos += 1;
        self.skip_ws();
        let var = match self.reference(self.pos)? {
            Some(r) if r.parts.is_empty() => r.root,
            _ => return fail(self.pos, "#foreach needs a plain $variable before 'in'"),
        };
        self.skip_ws();
        if !self.keyword("in") {
            return fail(self.pos, "expected 'in' in #foreach");
        }
        let iter = self.expr()?;
        self.skip_ws();
        if self.peek(self.pos) != b')' {
            return fail(self.pos, "expected ')' to close #foreach");
        }
        self.pos += 1;
        self.eat_line_end();
        let (body, term, term_at) = self.block()?;
        match term {
            Term::End => Ok(Node::Foreach(Box::new(Foreach {
                at: self.origin.unwrap_or(at),
                var,
                iter,
                body,
            }))),
            Term::Eof => fail(at, "#foreach without #end"),
            _ => fail(term_at, "#else/#elseif inside #foreach without #if"),
        }
    }

    /// A reference at `at` (which holds `$`). `None` when `$` does not start one (it is then text).
    fn reference(&mut self, at: usize) -> PResult<Option<Reference>> {
        let mut i = at + 1;
        let quiet = self.peek(i) == b'!';
        if quiet {
            i += 1;
        }
        let formal = self.peek(i) == b'{';
        if formal {
            i += 1;
        }
        if !is_ident_start(self.peek(i)) {
            return Ok(None);
        }
        self.enter()?;
        let root_start = i;
        while is_ident_char(self.peek(i)) {
            i += 1;
        }
        let root: Box<str> = self.src[root_start..i].into();
        self.pos = i;
        let mut parts = Vec::new();
        loop {
            match self.peek(self.pos) {
                b'[' => {
                    self.pos += 1;
                    let index = self.expr()?;
                    self.skip_ws();
                    if self.peek(self.pos) != b']' {
                        return fail(self.pos, "expected ']' after index");
                    }
                    self.pos += 1;
                    parts.push(Part::Index(index));
                }
                b'.' if self.peek(self.pos + 1).is_ascii_alphabetic() => {
                    let start = self.pos + 1;
                    let mut j = start;
                    while is_ident_char(self.peek(j)) {
                        j += 1;
                    }
                    let name: Box<str> = self.src[start..j].into();
                    self.pos = j;
                    if self.peek(self.pos) == b'(' {
                        self.pos += 1;
                        let args = self.args()?;
                        let pre = precompile(&name, &args);
                        parts.push(Part::Method(Box::new(Method { name, args, pre })));
                    } else {
                        parts.push(Part::Prop(name));
                    }
                }
                _ => break,
            }
        }
        if formal {
            if self.peek(self.pos) != b'}' {
                return fail(at, "expected '}' to close ${...}");
            }
            self.pos += 1;
        }
        self.leave();
        let literal_start = at;
        let mutator = parts
            .iter()
            .position(|p| matches!(p, Part::Method(m) if methods::is_mutator(&m.name)));
        Ok(Some(Reference {
            root,
            at: self.origin.unwrap_or(at),
            mutator,
            parts,
            quiet,
            literal: self.src[literal_start..self.pos].into(),
            prefix_backslashes: 0,
            escaped: false,
        }))
    }

    /// Method arguments after `(` up to and including `)`.
    fn args(&mut self) -> PResult<Vec<Expr>> {
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek(self.pos) == b')' {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            self.skip_ws();
            match self.peek(self.pos) {
                b',' => self.pos += 1,
                b')' => {
                    self.pos += 1;
                    return Ok(args);
                }
                _ => return fail(self.pos, "expected ',' or ')' in method arguments"),
            }
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// Consumes the word `kw` (not followed by a word character) after blanks.
    fn keyword(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let end = self.pos + kw.len();
        if self.b.get(self.pos..end) == Some(kw.as_bytes()) && !is_word_char(self.peek(end)) {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.or();
        self.leave();
        e
    }

    fn or(&mut self) -> PResult<Expr> {
        self.chain(Self::and, |p| {
            (p.symbol("||") || p.keyword("or")).then_some(BinOp::Or)
        })
    }

    fn and(&mut self) -> PResult<Expr> {
        self.chain(Self::equality, |p| {
            (p.symbol("&&") || p.keyword("and")).then_some(BinOp::And)
        })
    }

    fn equality(&mut self) -> PResult<Expr> {
        self.chain(Self::relational, |p| {
            if p.symbol("==") || p.keyword("eq") {
                Some(BinOp::Eq)
            } else if p.symbol("!=") || p.keyword("ne") {
                Some(BinOp::Ne)
            } else {
                None
            }
        })
    }

    fn relational(&mut self) -> PResult<Expr> {
        self.chain(Self::additive, |p| {
            if p.symbol("<=") || p.keyword("le") {
                Some(BinOp::Le)
            } else if p.symbol(">=") || p.keyword("ge") {
                Some(BinOp::Ge)
            } else if p.symbol("<") || p.keyword("lt") {
                Some(BinOp::Lt)
            } else if p.symbol(">") || p.keyword("gt") {
                Some(BinOp::Gt)
            } else {
                None
            }
        })
    }

    fn additive(&mut self) -> PResult<Expr> {
        self.chain(Self::multiplicative, |p| {
            let op = match p.peek(p.pos) {
                b'+' => BinOp::Add,
                b'-' => BinOp::Sub,
                _ => return None,
            };
            p.pos += 1;
            Some(op)
        })
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        self.chain(Self::unary, |p| {
            let op = match p.peek(p.pos) {
                b'*' => BinOp::Mul,
                b'/' => BinOp::Div,
                b'%' => BinOp::Mod,
                _ => return None,
            };
            p.pos += 1;
            Some(op)
        })
    }

    /// A left-associative chain `operand (op operand)*` of one precedence level. Each link nests
    /// the tree one level deeper (`((a + b) + c) + d`), and rendering and dropping it recurse
    /// that deep, so links count against [`MAX_EXPR_DEPTH`] together with nesting.
    fn chain(
        &mut self,
        operand: fn(&mut Self) -> PResult<Expr>,
        op: fn(&mut Self) -> Option<BinOp>,
    ) -> PResult<Expr> {
        let mut left = operand(self)?;
        let mut links = 0;
        let result = loop {
            self.skip_ws();
            let Some(op) = op(self) else {
                break Ok(left);
            };
            links += 1;
            self.tree += 1;
            if self.tree > MAX_EXPR_DEPTH {
                break fail(
                    self.pos,
                    "expression too long: more operators in a row than allowed",
                );
            }
            match operand(self) {
                Ok(right) => left = Expr::Bin(op, Box::new(left), Box::new(right)),
                Err(e) => break Err(e),
            }
        };
        self.tree -= links;
        result
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.skip_ws();
        if (self.peek(self.pos) == b'!' && self.peek(self.pos + 1) != b'=') || self.keyword("not") {
            if self.peek(self.pos) == b'!' {
                self.pos += 1;
            }
            self.enter()?;
            let inner = self.unary();
            self.leave();
            return Ok(Expr::Not(Box::new(inner?)));
        }
        self.primary()
    }

    fn symbol(&mut self, s: &str) -> bool {
        let end = self.pos + s.len();
        if self.b.get(self.pos..end) == Some(s.as_bytes()) {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        self.skip_ws();
        let at = self.pos;
        let c = self.peek(at);
        match c {
            b'"' | b'\'' => self.string_literal(),
            b'0'..=b'9' | b'.' => self.number(),
            b'-' if self.peek(at + 1).is_ascii_digit()
                || (self.peek(at + 1) == b'.' && self.peek(at + 2).is_ascii_digit()) =>
            {
                self.number()
            }
            b'$' => match self.reference(at)? {
                Some(r) => Ok(Expr::Ref(Box::new(r))),
                None => fail(at, "expected a reference after '$'"),
            },
            b'(' => {
                self.pos += 1;
                let e = self.expr()?;
                self.skip_ws();
                if self.peek(self.pos) != b')' {
                    return fail(self.pos, "expected ')'");
                }
                self.pos += 1;
                Ok(e)
            }
            b'[' => self.list(),
            b'{' => self.map(),
            _ => {
                if self.keyword("true") {
                    Ok(Expr::Bool(true))
                } else if self.keyword("false") {
                    Ok(Expr::Bool(false))
                } else if at >= self.b.len() {
                    fail(at, "unexpected end of template in an expression")
                } else {
                    fail(
                        at,
                        "expected a value (string, number, list, map, true, false or $reference)",
                    )
                }
            }
        }
    }

    fn list(&mut self) -> PResult<Expr> {
        self.pos += 1; // '['
        self.enter()?;
        self.skip_ws();
        let mut items = Vec::new();
        if self.peek(self.pos) == b']' {
            self.pos += 1;
            self.leave();
            return Ok(Expr::List(items));
        }
        let first = self.expr()?;
        self.skip_ws();
        if self.symbol("..") {
            let last = self.expr()?;
            self.skip_ws();
            if self.peek(self.pos) != b']' {
                return fail(self.pos, "expected ']' to close the range");
            }
            self.pos += 1;
            self.leave();
            return Ok(Expr::Range(Box::new(first), Box::new(last)));
        }
        items.push(first);
        loop {
            self.skip_ws();
            match self.peek(self.pos) {
                b',' => {
                    self.pos += 1;
                    items.push(self.expr()?);
                }
                b']' => {
                    self.pos += 1;
                    self.leave();
                    return Ok(Expr::List(items));
                }
                _ => return fail(self.pos, "expected ',' or ']' in list"),
            }
        }
    }

    fn map(&mut self) -> PResult<Expr> {
        self.pos += 1; // '{'
        self.enter()?;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek(self.pos) == b'}' {
            self.pos += 1;
            self.leave();
            return Ok(Expr::Map(entries));
        }
        loop {
            let key = self.expr()?;
            self.skip_ws();
            if self.peek(self.pos) != b':' {
                return fail(self.pos, "expected ':' in map");
            }
            self.pos += 1;
            let value = self.expr()?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek(self.pos) {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    self.leave();
                    return Ok(Expr::Map(entries));
                }
                _ => return fail(self.pos, "expected ',' or '}' in map"),
            }
        }
    }

    fn number(&mut self) -> PResult<Expr> {
        let start = self.pos;
        let mut i = start;
        if self.peek(i) == b'-' {
            i += 1;
        }
        let digits = i;
        while self.peek(i).is_ascii_digit() {
            i += 1;
        }
        let int_digits = i > digits;
        let mut float = false;
        if self.peek(i) == b'.' && self.peek(i + 1) != b'.' {
            // `1.` and `1.5` are floats; `1..3` is a range of integers.
            let mut j = i + 1;
            while self.peek(j).is_ascii_digit() {
                j += 1;
            }
            if int_digits || j > i + 1 {
                float = true;
                i = j;
            }
        }
        if !int_digits && !float {
            return fail(start, "expected a number");
        }
        if matches!(self.peek(i), b'e' | b'E') {
            let mut j = i + 1;
            if matches!(self.peek(j), b'+' | b'-') {
                j += 1;
            }
            if self.peek(j).is_ascii_digit() {
                while self.peek(j).is_ascii_digit() {
                    j += 1;
                }
                float = true;
                i = j;
            }
        }
        self.pos = i;
        let text = &self.src[start..i];
        if !float && let Ok(n) = text.parse::<i64>() {
            return Ok(Expr::Int(n));
        }
        match text.parse::<f64>() {
            Ok(f) => Ok(Expr::Float(f)),
            Err(_) => fail(start, "malformed number"),
        }
    }

    fn string_literal(&mut self) -> PResult<Expr> {
        let at = self.pos;
        let quote = self.b[at];
        let mut i = at + 1;
        let mut content = String::new();
        let mut seg = i;
        loop {
            if i >= self.b.len() {
                return fail(at, "unterminated string literal");
            }
            if self.b[i] == quote {
                if self.peek(i + 1) == quote {
                    // A doubled quote stands for one.
                    content.push_str(&self.src[seg..=i]);
                    i += 2;
                    seg = i;
                    continue;
                }
                content.push_str(&self.src[seg..i]);
                break;
            }
            i += 1;
        }
        self.pos = i + 1;
        let content = unescape_unicode(&content);
        if quote == b'"' && (content.contains('$') || content.contains('#')) {
            let mut inner = Parser {
                src: &content,
                b: content.as_bytes(),
                pos: 0,
                depth: self.depth,
                tree: self.tree,
                origin: Some(self.origin.unwrap_or(at)),
            };
            return match inner.block() {
                // `"$.predictions"` holds no reference: fold it to a plain string, so a literal
                // JSONPath or regex in double quotes is still compiled once, here.
                Ok((block, Term::Eof, _)) if block.iter().all(|n| matches!(n, Node::Text(_))) => {
                    let text: String = block
                        .iter()
                        .filter_map(|n| match n {
                            Node::Text(t) => Some(&**t),
                            _ => None,
                        })
                        .collect();
                    Ok(Expr::Str(text.into_boxed_str()))
                }
                Ok((block, Term::Eof, _)) => Ok(Expr::Interp(block)),
                Ok(_) => fail(at, "unbalanced #end/#else inside a string literal"),
                Err(f) => fail(at, format!("in string literal: {}", f.message)),
            };
        }
        Ok(Expr::Str(content.into_boxed_str()))
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `src`.
pub(super) fn line_col(src: &str, pos: usize) -> (u32, u32) {
    let upto = pos.min(src.len());
    // `pos` is always at an ASCII byte or the end, so this slice is on a char boundary; fall back
    // to the whole text if it ever is not.
    let before = src.get(..upto).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(i) => before[i + 1..].chars().count() + 1,
        None => before.chars().count() + 1,
    };
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Velocity's only escape in string literals: `\uXXXX` (UTF-16 units; pairs form one character).
fn unescape_unicode(s: &str) -> String {
    if !s.contains("\\u") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut units: Vec<u16> = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\u") {
        let hex = rest
            .get(i + 2..i + 6)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        let (text, unit, skip) = match hex.and_then(|h| u16::from_str_radix(h, 16).ok()) {
            Some(u) => (&rest[..i], Some(u), i + 6),
            None => (&rest[..i + 2], None, i + 2),
        };
        if !text.is_empty() {
            decode_units(&mut units, &mut out);
            out.push_str(text);
        }
        if let Some(u) = unit {
            units.push(u);
        }
        rest = &rest[skip..];
    }
    decode_units(&mut units, &mut out);
    out.push_str(rest);
    out
}

fn decode_units(units: &mut Vec<u16>, out: &mut String) {
    out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{FFFD}')));
}

/// Compiles a literal regex or JSONPath argument once, at parse time.
fn precompile(name: &str, args: &[Expr]) -> Precompiled {
    let Some(Expr::Str(first)) = args.first() else {
        return Precompiled::None;
    };
    match name {
        "split" | "replaceAll" | "replaceFirst" => {
            Precompiled::Regex(methods::compile_regex(first, false))
        }
        "matches" => Precompiled::Regex(methods::compile_regex(first, true)),
        "json" | "path" if args.len() == 1 => Precompiled::Path(apigw::compile_path(first)),
        _ => Precompiled::None,
    }
}
