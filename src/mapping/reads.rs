//! What a template reads from the request: computed once, at configuration load, from the parsed
//! template, so the stage cache can refuse a route whose answer depends on something outside its
//! key (`crate::config::cache_key`).
//!
//! Input: a parsed template. Output: every request input it can read ([`Input`]), each with the
//! position of the first reference that reads it. A pure walk over the tree; nothing is rendered.
//!
//! Invariant (security): the result *over*-approximates. Whatever a render can read appears here,
//! possibly more. Where the name of what is read is only known at run time (`$input.params($n)`,
//! `$input.params().header[$h]`, `.keySet()`, iterating a section, printing it whole) the read is
//! [`Name::All`] of that source. A value read into a variable counts where it is read (`#set($p =
//! $input.params())` reads every parameter, whatever `$p` is later used for). A member of `$input`
//! or `$input.params()` this walk does not know is taken as reading the whole request, so a new
//! template object cannot silently escape it. The template's own writes
//! (`$context.requestOverride.*`, `$context.responseOverride.*`) are not input.

use super::Template;
use super::apigw::getter_property;
use super::ast::{Block, Expr, Node, Part, Reference};
use super::parse::line_col;

/// Which names of a source are read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Name {
    /// This one name (as written; header names compare case-insensitively).
    One(String),
    /// Every name, or one known only at run time.
    All,
}

/// How the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyUse {
    /// As text: `$input.body`.
    Raw,
    /// As JSON: `$input.json(..)`, `$input.path(..)`.
    Parsed,
}

/// One request input a template reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    /// `$input.params(name)`: the path parameter, else the query parameter, else the header.
    Param(Name),
    /// `$input.params().path`.
    Path(Name),
    /// `$input.params().querystring`.
    Query(Name),
    /// `$input.params().header`.
    Header(Name),
    /// `$input.body`, `$input.json`, `$input.path`.
    Body(BodyUse),
    /// `$context.identity.*`: who the caller is.
    Identity(Name),
    /// `$context.authorizer.*`.
    Authorizer(Name),
    /// Any other `$context` field by its top-level name (`requestId`, `httpMethod`, `path`...);
    /// [`Name::All`] is `$context` itself.
    Context(Name),
    /// `$stageVariables.*`.
    StageVariable(Name),
}

/// An input and where it is first read: 1-based line and column (characters) in the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// What is read.
    pub input: Input,
    /// Line of the reading reference.
    pub line: u32,
    /// Column of its `$`.
    pub col: u32,
}

impl Template {
    /// Every request input the template can read, first occurrence first (see the module docs).
    pub fn reads(&self) -> Vec<Read> {
        let mut walk = Walk {
            src: &self.inner.source,
            reads: Vec::new(),
        };
        walk.block(&self.inner.body);
        walk.reads
    }
}

struct Walk<'t> {
    src: &'t str,
    reads: Vec<Read>,
}

/// What one part of a reference selects.
enum Select<'a> {
    /// A member by a name written in the template: `.name`, `['name']`, `.get('name')`, `.getName()`.
    Name(String),
    /// A member by a name computed at run time: `[$x]`, `.get($x)`.
    Dynamic,
    /// Any other method call.
    Call(&'a str, &'a [Expr]),
}

fn select(part: &Part) -> Select<'_> {
    match part {
        Part::Prop(name) => Select::Name(name.to_string()),
        Part::Index(Expr::Str(s)) => Select::Name(s.to_string()),
        Part::Index(Expr::Int(i)) => Select::Name(i.to_string()),
        Part::Index(_) => Select::Dynamic,
        Part::Method(m) => match (&*m.name, m.args.as_slice()) {
            ("get", [Expr::Str(s)]) => Select::Name(s.to_string()),
            ("get", _) => Select::Dynamic,
            (name, []) if getter_property(name) != name => Select::Name(getter_property(name)),
            (name, args) => Select::Call(name, args),
        },
    }
}

impl Walk<'_> {
    fn push(&mut self, input: Input, at: usize) {
        if self.reads.iter().any(|r| r.input == input) {
            return;
        }
        let (line, col) = line_col(self.src, at);
        self.reads.push(Read { input, line, col });
    }

    fn block(&mut self, block: &Block) {
        for node in block {
            match node {
                Node::Text(_) | Node::Break | Node::Stop => {}
                Node::Ref(r) => self.reference(r),
                Node::Set(target, value) => {
                    // The target is written, not read; only what its indexes and arguments compute.
                    self.part_exprs(&target.parts);
                    self.expr(value);
                }
                Node::If(branches, otherwise) => {
                    for (cond, body) in branches {
                        self.expr(cond);
                        self.block(body);
                    }
                    if let Some(body) = otherwise {
                        self.block(body);
                    }
                }
                Node::Foreach(f) => {
                    self.expr(&f.iter);
                    self.block(&f.body);
                }
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Str(_) | Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) => {}
            Expr::Interp(block) => self.block(block),
            Expr::List(items) => items.iter().for_each(|i| self.expr(i)),
            Expr::Map(entries) => {
                for (k, v) in entries {
                    self.expr(k);
                    self.expr(v);
                }
            }
            Expr::Range(a, b) => {
                self.expr(a);
                self.expr(b);
            }
            Expr::Bin(..) => {
                // `a + b + c ...` nests to the left without a depth bound: walk it as a list.
                let mut operands = Vec::new();
                let mut left = e;
                while let Expr::Bin(_, l, r) = left {
                    operands.push(&**r);
                    left = l;
                }
                self.expr(left);
                operands.iter().rev().for_each(|r| self.expr(r));
            }
            Expr::Not(inner) => self.expr(inner),
            Expr::Ref(r) => self.reference(r),
        }
    }

    fn part_exprs(&mut self, parts: &[Part]) {
        for part in parts {
            match part {
                Part::Prop(_) => {}
                Part::Index(e) => self.expr(e),
                Part::Method(m) => m.args.iter().for_each(|a| self.expr(a)),
            }
        }
    }

    fn reference(&mut self, r: &Reference) {
        self.part_exprs(&r.parts);
        match &*r.root {
            "input" => self.input(&r.parts, r.at),
            "context" => self.context(&r.parts, r.at),
            "stageVariables" => {
                let name = match r.parts.first().map(select) {
                    Some(Select::Name(n)) => Name::One(n),
                    _ => Name::All,
                };
                self.push(Input::StageVariable(name), r.at);
            }
            // Variables, `$util`, `$esc`, `$foreach`: what they hold was counted where it was read.
            _ => {}
        }
    }

    fn everything(&mut self, at: usize) {
        for input in [
            Input::Path(Name::All),
            Input::Query(Name::All),
            Input::Header(Name::All),
            Input::Body(BodyUse::Raw),
        ] {
            self.push(input, at);
        }
    }

    fn all_params(&mut self, at: usize) {
        self.push(Input::Path(Name::All), at);
        self.push(Input::Query(Name::All), at);
        self.push(Input::Header(Name::All), at);
    }

    /// `$input...`
    fn input(&mut self, parts: &[Part], at: usize) {
        let Some(first) = parts.first() else {
            return self.everything(at);
        };
        if let Part::Method(m) = first
            && &*m.name == "params"
        {
            return match m.args.as_slice() {
                [] => self.params(&parts[1..], at),
                [Expr::Str(name)] => self.push(Input::Param(Name::One(name.to_string())), at),
                _ => self.push(Input::Param(Name::All), at),
            };
        }
        match select(first) {
            Select::Name(n) if n == "body" => self.push(Input::Body(BodyUse::Raw), at),
            Select::Name(n) if n == "params" => self.all_params(at),
            Select::Call("json" | "path", _) => self.push(Input::Body(BodyUse::Parsed), at),
            _ => self.everything(at),
        }
    }

    /// What follows `$input.params()`.
    fn params(&mut self, rest: &[Part], at: usize) {
        let source = match rest.first().map(select) {
            Some(Select::Name(n)) => n,
            _ => return self.all_params(at),
        };
        let make: fn(Name) -> Input = match source.as_str() {
            "path" => Input::Path,
            "querystring" => Input::Query,
            "header" => Input::Header,
            _ => return self.all_params(at),
        };
        let name = match rest.get(1).map(select) {
            Some(Select::Name(n)) => Name::One(n),
            Some(Select::Call("containsKey", [Expr::Str(n)])) => Name::One(n.to_string()),
            _ => Name::All,
        };
        self.push(make(name), at);
    }

    /// `$context...`
    fn context(&mut self, parts: &[Part], at: usize) {
        let field = match parts.first().map(select) {
            Some(Select::Name(n)) => n,
            _ => return self.push(Input::Context(Name::All), at),
        };
        let sub = || match parts.get(1).map(select) {
            Some(Select::Name(n)) => Name::One(n),
            _ => Name::All,
        };
        let input = match field.as_str() {
            "requestOverride" | "responseOverride" => return,
            "identity" => Input::Identity(sub()),
            "authorizer" => Input::Authorizer(sub()),
            _ => Input::Context(Name::One(field)),
        };
        self.push(input, at);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::mapping::{Bounds, Params, RenderInput};

    fn one(n: &str) -> Name {
        Name::One(n.to_owned())
    }

    fn reads(src: &str) -> Vec<Input> {
        let mut inputs: Vec<Input> = crate::mapping::parse(src)
            .unwrap()
            .reads()
            .into_iter()
            .map(|r| r.input)
            .collect();
        inputs.sort();
        inputs
    }

    #[test]
    fn every_way_of_reading_the_request_is_found() {
        use BodyUse::{Parsed, Raw};
        use Input::*;
        let all_params = vec![Path(Name::All), Query(Name::All), Header(Name::All)];
        let table: Vec<(&str, Vec<Input>)> = vec![
            ("plain text, $util.escapeJavaScript('x') $esc.d", vec![]),
            ("$input.params('seed')", vec![Param(one("seed"))]),
            ("${input.params(\"k\")}", vec![Param(one("k"))]),
            ("#set($n = 'seed')$input.params($n)", vec![Param(Name::All)]),
            ("$input.params()", all_params.clone()),
            ("$input.params", all_params.clone()),
            ("$input.params().header", vec![Header(Name::All)]),
            (
                "$input.params().header.get('x-tenant')",
                vec![Header(one("x-tenant"))],
            ),
            (
                "$input.params().header.x-tenant",
                vec![Header(one("x-tenant"))],
            ),
            (
                "$input.params().header['x-tenant']",
                vec![Header(one("x-tenant"))],
            ),
            (
                "$input.params().get('header').get('a')",
                vec![Header(one("a"))],
            ),
            ("$input.params().header.get($h)", vec![Header(Name::All)]),
            ("$input.params().header.keySet()", vec![Header(Name::All)]),
            (
                "#foreach($h in $input.params().header.keySet())$h#end",
                vec![Header(Name::All)],
            ),
            (
                "$input.params().header.containsKey('a')",
                vec![Header(one("a"))],
            ),
            (
                "$input.params().querystring.get('seed')",
                vec![Query(one("seed"))],
            ),
            (
                "\"$!input.params().querystring.seed\"",
                vec![Query(one("seed"))],
            ),
            ("$input.params().path.user_id", vec![Path(one("user_id"))]),
            ("$input.params().nosuch", all_params.clone()),
            ("$input.params()[$s]", all_params.clone()),
            ("$input.body", vec![Body(Raw)]),
            ("$input.getBody()", vec![Body(Raw)]),
            ("$input.json('$.a')", vec![Body(Parsed)]),
            ("$input.path('$')", vec![Body(Parsed)]),
            ("$util.parseJson($input.body).a", vec![Body(Raw)]),
            (
                "$input",
                vec![
                    Path(Name::All),
                    Query(Name::All),
                    Header(Name::All),
                    Body(Raw),
                ],
            ),
            (
                "$input.nosuch()",
                vec![
                    Path(Name::All),
                    Query(Name::All),
                    Header(Name::All),
                    Body(Raw),
                ],
            ),
            (
                "$context.identity.apiKeyId",
                vec![Identity(one("apiKeyId"))],
            ),
            (
                "$context.identity.getSourceIp()",
                vec![Identity(one("sourceIp"))],
            ),
            (
                "$context['identity']['userAgent']",
                vec![Identity(one("userAgent"))],
            ),
            ("$context.identity", vec![Identity(Name::All)]),
            (
                "$context.authorizer.principalId",
                vec![Authorizer(one("principalId"))],
            ),
            ("$context.httpMethod $context.resourcePath", {
                let mut v = vec![Context(one("httpMethod")), Context(one("resourcePath"))];
                v.sort();
                v
            }),
            ("$context.requestId", vec![Context(one("requestId"))]),
            ("$context", vec![Context(Name::All)]),
            ("$context[$x]", vec![Context(Name::All)]),
            ("#set($context.requestOverride.header.a = 'b')", vec![]),
            ("$context.responseOverride.status", vec![]),
            ("$stageVariables.model", vec![StageVariable(one("model"))]),
            (
                "$stageVariables.get('model')",
                vec![StageVariable(one("model"))],
            ),
            (
                "#foreach($v in $stageVariables)$v#end",
                vec![StageVariable(Name::All)],
            ),
            // Reads inside arguments, indexes, conditions, loops, literals and #set targets.
            (
                "$util.escapeJavaScript($input.params('a'))",
                vec![Param(one("a"))],
            ),
            ("#if($input.params('a') == '1')x#end", vec![Param(one("a"))]),
            (
                "#foreach($i in [1..$input.params('n')])#end",
                vec![Param(one("n"))],
            ),
            (
                "#set($m = {})#set($m[$input.params('k')] = 1)",
                vec![Param(one("k"))],
            ),
            ("{\"a\": \"$input.params('a')\"}", vec![Param(one("a"))]),
            ("#set($s = \"x${input.body}y\")", vec![Body(Raw)]),
            (
                "#set($l = [])$l.add($context.identity.sourceIp)",
                vec![Identity(one("sourceIp"))],
            ),
            // A variable holding a read counts where it was read.
            (
                "#set($p = $input.params())$p.querystring.get('seed')",
                all_params.clone(),
            ),
            (
                "#set($q = $input.params().querystring)$q.seed",
                vec![Query(Name::All)],
            ),
            // Comments read nothing; an escaped reference prints as written but is still evaluated.
            ("## $input.body\n#* $input.params() *#", vec![]),
            ("\\$input.body", vec![Body(Raw)]),
        ];
        for (src, mut expected) in table {
            expected.sort();
            assert_eq!(reads(src), expected, "{src}");
        }
    }

    #[test]
    fn each_input_is_reported_once_where_it_is_first_read() {
        let src = "{\n  \"a\": \"$input.params('seed')\",\n  \"b\": \"$input.params('seed')\",\n  #if($context.identity.apiKeyId)x#end\n}";
        let reads = crate::mapping::parse(src).unwrap().reads();
        assert_eq!(
            reads,
            vec![
                Read {
                    input: Input::Param(one("seed")),
                    line: 2,
                    col: 9
                },
                Read {
                    input: Input::Identity(one("apiKeyId")),
                    line: 4,
                    col: 7
                },
            ]
        );
        // Inside a string literal, the position is the literal's.
        let reads = crate::mapping::parse("#set($a = 1)\n#set($s = \"-$input.body\")")
            .unwrap()
            .reads();
        assert_eq!((reads[0].line, reads[0].col), (2, 11));
    }

    /// Template pieces that read the request in every way `reads` knows, and some it must not miss.
    const PIECES: &[&str] = &[
        "$input.params('a')",
        "$input.params('b')",
        "$input.params('c')",
        "$input.params('x')",
        "$input.params()",
        "$input.params().header",
        "$input.params().header.a",
        "$input.params().header.get('x')",
        "$input.params().header.containsKey('x')",
        "#foreach($h in $input.params().header.keySet())$h,#end",
        "#foreach($h in $input.params().querystring)$h,#end",
        "$input.params().querystring",
        "$input.params().querystring.c",
        "$input.params().querystring.size()",
        "$input.params().path.b",
        "$input.params().get('path')",
        "#set($v = $input.params())$v.querystring.a",
        "#set($n = 'c')$input.params($n)",
        "#set($q = $input.params().querystring)$q.get('b')",
        "$input.body",
        "$input.json('$.a')",
        "$input.path('$').a",
        "$util.parseJson($input.body).a",
        "$context.identity.sourceIp",
        "$context.identity",
        "$context.identity.apiKeyId",
        "$context.path",
        "$context",
        "#set($k = 'path')$context[$k]",
        "#set($k = 'identity')$context.get($k).apiKeyId",
        "$context.httpMethod",
        "$stageVariables.a",
        "#foreach($s in $stageVariables)$s#end",
        "#if($input.params('b') == '1')one#else other#end",
        "$util.escapeJavaScript($input.params().header.b)",
        "#set($m = {})#set($m.k = $context.identity.userAgent)$m",
        "\\$input.params('c')",
    ];

    /// One thing a request can vary in.
    #[derive(Clone, Copy, Debug)]
    enum Slot {
        Path(&'static str),
        Query(&'static str),
        Header(&'static str),
        Body,
        Identity(&'static str),
        ContextPath,
        StageVariable(&'static str),
    }

    const SLOTS: &[Slot] = &[
        Slot::Path("a"),
        Slot::Path("b"),
        Slot::Query("a"),
        Slot::Query("b"),
        Slot::Query("c"),
        Slot::Header("a"),
        Slot::Header("b"),
        Slot::Header("x"),
        Slot::Body,
        Slot::Identity("sourceIp"),
        Slot::Identity("apiKeyId"),
        Slot::Identity("userAgent"),
        Slot::ContextPath,
        Slot::StageVariable("a"),
        Slot::StageVariable("b"),
    ];

    /// Whether `reads` admits that `slot` may change the output.
    fn covered(reads: &[Read], slot: Slot) -> bool {
        let named = |name: &Name, n: &str| match name {
            Name::One(x) => x.eq_ignore_ascii_case(n),
            Name::All => true,
        };
        reads.iter().any(|r| match (&r.input, slot) {
            (Input::Param(name), Slot::Path(n) | Slot::Query(n) | Slot::Header(n)) => {
                named(name, n)
            }
            (Input::Path(name), Slot::Path(n))
            | (Input::Query(name), Slot::Query(n))
            | (Input::Header(name), Slot::Header(n))
            | (Input::Identity(name), Slot::Identity(n))
            | (Input::StageVariable(name), Slot::StageVariable(n)) => named(name, n),
            (Input::Body(_), Slot::Body) => true,
            (Input::Context(Name::All), Slot::Identity(_) | Slot::ContextPath) => true,
            (Input::Context(Name::One(c)), Slot::ContextPath) => c == "path",
            _ => false,
        })
    }

    /// A request where every slot holds `v`, except `changed`, which holds `w` (or is absent).
    fn render(
        template: &crate::mapping::Template,
        changed: Option<(Slot, Option<&str>)>,
    ) -> String {
        let value = |slot: Slot| -> Option<String> {
            match changed {
                Some((c, w))
                    if std::mem::discriminant(&c) == std::mem::discriminant(&slot)
                        && format!("{c:?}") == format!("{slot:?}") =>
                {
                    w.map(str::to_owned)
                }
                _ => Some("1".to_owned()),
            }
        };
        let list = |make: fn(&'static str) -> Slot, names: &[&'static str]| {
            names
                .iter()
                .filter_map(|n| Some(((*n).to_owned(), value(make(n))?)))
                .collect::<Vec<_>>()
        };
        let params = Params {
            path: list(Slot::Path, &["a", "b"]),
            querystring: list(Slot::Query, &["a", "b", "c"]),
            header: list(Slot::Header, &["a", "b", "x"]),
        };
        let body = format!("{{\"a\": \"{}\"}}", value(Slot::Body).unwrap_or_default());
        let mut identity = serde_json::Map::new();
        for f in ["sourceIp", "apiKeyId", "userAgent"] {
            if let Some(v) = value(Slot::Identity(f)) {
                identity.insert(f.to_owned(), v.into());
            }
        }
        let context = serde_json::json!({
            "requestId": "r",
            "httpMethod": "GET",
            "path": value(Slot::ContextPath),
            "identity": identity,
        });
        let vars: BTreeMap<String, String> = ["a", "b"]
            .iter()
            .filter_map(|n| Some(((*n).to_owned(), value(Slot::StageVariable(n))?)))
            .collect();
        let input = RenderInput {
            body: body.as_bytes(),
            params: &params,
            context: &context,
            stage_variables: &vars,
        };
        match template.render(&input, &Bounds::default()) {
            Ok(r) => r.body,
            Err(e) => format!("error: {e}"),
        }
    }

    proptest! {
        // Cheap (a few small renders a case), and a piece meets its slot in ~1 % of cases.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The analysis is sound: changing any input it does not report never changes the output.
        #[test]
        fn what_reads_leaves_out_never_changes_the_output(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 1..5),
            slot in prop::sample::select(SLOTS),
            new_value in prop::option::of(Just("2")),
        ) {
            let src = pieces.join(" | ");
            let template = crate::mapping::parse(&src).unwrap();
            let reads = template.reads();
            if !covered(&reads, slot) {
                prop_assert_eq!(
                    render(&template, None),
                    render(&template, Some((slot, new_value))),
                    "{} changed the output of {} (reads: {:?})", format!("{slot:?}"), src, reads
                );
            }
        }
    }
}
