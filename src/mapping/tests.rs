//! Template cases with their exact expected output, and property tests.
//!
//! The expected bytes were worked out by hand from Velocity 1.7's grammar and API Gateway's documented
//! behaviour (see the module docs), never by running this renderer.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

struct Req {
    body: &'static str,
    path: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
    header: Vec<(&'static str, &'static str)>,
    stage: Vec<(&'static str, &'static str)>,
}

fn req() -> Req {
    Req {
        body: "",
        path: vec![],
        query: vec![],
        header: vec![],
        stage: vec![],
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn context() -> serde_json::Value {
    serde_json::json!({
        "requestId": "c0ffee00-0000-4000-8000-000000000001",
        "stage": "temp",
        "resourcePath": "/recommended-movies/{user_id}",
        "httpMethod": "GET",
        "path": "/temp/recommended-movies/U:114521",
        "identity": {"sourceIp": "203.0.113.7", "apiKeyId": "partner-a", "userAgent": "curl/8.5.0"},
        "requestTimeEpoch": 1764158400000u64,
        "error": {"message": "Forbidden", "messageString": "\"Forbidden\"", "responseType": "INVALID_API_KEY"}
    })
}

/// Renders a parsed template over `r`, from the overrides `prior`.
fn render_full(
    t: &Template,
    r: &Req,
    bounds: &Bounds,
    prior: &Overrides,
) -> Result<Rendered, RenderFailure> {
    render_reserving(t, r, bounds, prior, &Unmetered)
}

fn render_reserving(
    t: &Template,
    r: &Req,
    bounds: &Bounds,
    prior: &Overrides,
    reserve: &dyn Reserve,
) -> Result<Rendered, RenderFailure> {
    let params = Params {
        path: pairs(&r.path),
        querystring: pairs(&r.query),
        header: pairs(&r.header),
    };
    let ctx = context();
    let stage: BTreeMap<String, String> = pairs(&r.stage).into_iter().collect();
    let input = RenderInput {
        body: r.body.as_bytes(),
        params: &params,
        context: &ctx,
        stage_variables: &stage,
    };
    t.render_with(&input, bounds, prior, reserve)
}

fn render_req(template: &str, r: &Req) -> Result<Rendered, RenderError> {
    let t = parse(template).unwrap_or_else(|e| panic!("parse error {e} in {template:?}"));
    render_full(&t, r, &Bounds::default(), &Overrides::default()).map_err(|f| f.error)
}

fn render(template: &str, r: &Req) -> String {
    match render_req(template, r) {
        Ok(out) => out.body,
        Err(e) => panic!("render error {e} in {template:?}"),
    }
}

/// Each case: template, request, expected output.
fn check(cases: &[(&str, Req, &str)]) {
    for (template, r, expected) in cases {
        assert_eq!(render(template, r), *expected, "template {template:?}");
    }
}

fn seed_req() -> Req {
    Req {
        path: vec![("user_id", "U:114521")],
        query: vec![("k", "10"), ("inference_type", "deterministic")],
        header: vec![
            ("Accept", "application/json"),
            ("x-api-key", "secret-key-value-123456"),
        ],
        ..req()
    }
}

/// The shipped request template: optional fields only when the client sent them.
const SEED_TEMPLATE: &str = r##"{"user_id": "$util.escapeJavaScript($input.params('user_id'))", "k": $input.params('k'), "inference_type": "$util.escapeJavaScript($input.params('inference_type'))"#if($input.params('seed') != ""), "seed": $input.params('seed')#end#if($input.params('temperature') != ""), "temperature": $input.params('temperature')#end#if($input.params('epsilon') != ""), "epsilon": $input.params('epsilon')#end}"##;

#[test]
fn seed_template_without_optional_fields() {
    assert_eq!(
        render(SEED_TEMPLATE, &seed_req()),
        r#"{"user_id": "U:114521", "k": 10, "inference_type": "deterministic"}"#
    );
}

#[test]
fn seed_template_with_optional_fields() {
    let mut r = seed_req();
    r.query = vec![
        ("k", "5"),
        ("inference_type", "stochastic_epsilon_greedy"),
        ("seed", "42"),
        ("epsilon", "0.1"),
    ];
    assert_eq!(
        render(SEED_TEMPLATE, &r),
        r#"{"user_id": "U:114521", "k": 5, "inference_type": "stochastic_epsilon_greedy", "seed": 42, "epsilon": 0.1}"#
    );
    r.query.push(("temperature", "0.7"));
    assert_eq!(
        render(SEED_TEMPLATE, &r),
        r#"{"user_id": "U:114521", "k": 5, "inference_type": "stochastic_epsilon_greedy", "seed": 42, "temperature": 0.7, "epsilon": 0.1}"#
    );
}

#[test]
fn seed_template_escapes_hostile_user_id() {
    let mut r = seed_req();
    r.path = vec![("user_id", "U\"1\\2</x>\n")];
    let out = render(SEED_TEMPLATE, &r);
    assert_eq!(
        out,
        r#"{"user_id": "U\"1\\2<\/x>\n", "k": 10, "inference_type": "deterministic"}"#
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user_id"], "U\"1\\2</x>\n");
}

/// The same template written one directive per line: the lines holding only `#if`/`#end` vanish.
#[test]
fn seed_template_multiline_form() {
    let template = r#"{
  "user_id": "$util.escapeJavaScript($input.params('user_id'))",
  "k": $input.params('k'),
#if($input.params('seed') != "")
  "seed": $input.params('seed'),
#end
  "inference_type": "$util.escapeJavaScript($input.params('inference_type'))"
}"#;
    let mut r = seed_req();
    assert_eq!(
        render(template, &r),
        "{\n  \"user_id\": \"U:114521\",\n  \"k\": 10,\n  \"inference_type\": \"deterministic\"\n}"
    );
    r.query.push(("seed", "7"));
    assert_eq!(
        render(template, &r),
        "{\n  \"user_id\": \"U:114521\",\n  \"k\": 10,\n  \"seed\": 7,\n  \"inference_type\": \"deterministic\"\n}"
    );
}

/// Reference §4.9 (a): the AWS construct's request template (Object2Vec batch).
#[test]
fn aws_construct_request_template() {
    let template = "{\n    \"instances\": [\n#set( $user_id = $input.params(\"user_id\") )\n#set( $items = $input.params(\"items\") )\n#foreach( $item in $items.split(\",\") )\n    {\"in0\": [$user_id], \"in1\": [$item]}#if( $foreach.hasNext ),#end\n    $esc.newline\n#end\n    ]\n}";
    let r = Req {
        path: vec![("user_id", "321")],
        query: vec![("items", "101,131,162")],
        ..req()
    };
    let expected = "{\n    \"instances\": [\n    {\"in0\": [321], \"in1\": [101]},    \n\n    {\"in0\": [321], \"in1\": [131]},    \n\n    {\"in0\": [321], \"in1\": [162]}    \n\n    ]\n}";
    let out = render(template, &r);
    assert_eq!(out, expected);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["instances"][2]["in1"][0], 162);
}

/// Reference §4.9 (a): the AWS construct's response template.
#[test]
fn aws_construct_response_template() {
    let template = "{\n    \"ratings\": [\n#set( $predictions = $input.path(\"$.predictions\") )\n#foreach( $item in $predictions )\n    $item.scores[0]#if( $foreach.hasNext ),#end\n    $esc.newline\n#end\n    ]\n}";
    let r = Req {
        body: r#"{"predictions":[{"scores":[0.5]},{"scores":[0.25]},{"scores":[3]}]}"#,
        ..req()
    };
    let expected = "{\n    \"ratings\": [\n    0.5,    \n\n    0.25,    \n\n    3    \n\n    ]\n}";
    let out = render(template, &r);
    assert_eq!(out, expected);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ratings"][1], 0.25);
}

/// Reference §4.9 (b): the AWS doc template passing every parameter through.
#[test]
fn aws_doc_all_params_template() {
    let template = r#"#set($allParams = $input.params())
{
  "params" : {
    #foreach($type in $allParams.keySet())
    #set($params = $allParams.get($type))
    "$type" : {
      #foreach($paramName in $params.keySet())
      "$paramName" : "$util.escapeJavaScript($params.get($paramName))"
      #if($foreach.hasNext),#end
      #end
    }
    #if($foreach.hasNext),#end
    #end
  }
}"#;
    let r = Req {
        path: vec![("id", "abc")],
        query: vec![("k", "10"), ("q", "it's")],
        header: vec![("Accept", "application/json")],
        ..req()
    };
    let expected = concat!(
        "{\n  \"params\" : {\n    ",
        // path
        "    \"path\" : {\n      ",
        "      \"id\" : \"abc\"\n      ",
        "      ",
        "    }\n    ,    ",
        // querystring
        "    \"querystring\" : {\n      ",
        "      \"k\" : \"10\"\n      ,      ",
        "      \"q\" : \"it\\'s\"\n      ",
        "      ",
        "    }\n    ,    ",
        // header
        "    \"header\" : {\n      ",
        "      \"Accept\" : \"application\\/json\"\n      ",
        "      ",
        "    }\n        ",
        "  }\n}"
    );
    assert_eq!(render(template, &r), expected);
}

/// Reference §4.9 (c). AWS's page shows `"things":{"1":{},...}` unescaped, which contradicts
/// `escapeJavaScript` escaping `"` (which the Step Functions `"input": "$util.escapeJavaScript(..)"`
/// template relies on); we keep the function's documented escaping.
#[test]
fn aws_doc_mixing_functions_template() {
    let template = r#"{"id":"$input.params('id')","count":"$input.path('$.things').size()","things":$util.escapeJavaScript($input.json('$.things'))}"#;
    let r = Req {
        body: r#"{"things":{"1":{},"2":{},"3":{}}}"#,
        path: vec![("id", "abc")],
        ..req()
    };
    assert_eq!(
        render(template, &r),
        r#"{"id":"abc","count":"3","things":{\"1\":{},\"2\":{},\"3\":{}}}"#
    );
}

#[test]
fn input_json_and_path() {
    let body = r#"{"a":1,"b":[{"c":5}],"s":"x'y","n":null,"f":1.5,"big":1e21,"user-id":"u1"}"#;
    check(&[
        (
            "$input.json('$')",
            Req { body, ..req() },
            r#"{"a":1,"b":[{"c":5}],"s":"x'y","n":null,"f":1.5,"big":1e+21,"user-id":"u1"}"#,
        ),
        ("$input.json('$.b')", Req { body, ..req() }, r#"[{"c":5}]"#),
        ("$input.json('$.s')", Req { body, ..req() }, r#""x'y""#),
        // Nothing (a missing path, a JSON null) is the empty string, as JSON.
        ("$input.json('$.missing')", Req { body, ..req() }, r#""""#),
        ("$input.json('$.n')", Req { body, ..req() }, r#""""#),
        ("$input.json('$.b[*].c')", Req { body, ..req() }, "[5]"),
        ("$input.json('$.user-id')", Req { body, ..req() }, r#""u1""#),
        ("$input.json('a')", Req { body, ..req() }, "1"),
        // Java-map style for objects, compact JSON for lists.
        (
            "$input.path('$')",
            Req {
                body: r#"{"a":1,"b":[{"c":5}]}"#,
                ..req()
            },
            r#"{a=1, b=[{"c":5}]}"#,
        ),
        ("$input.path('$.b')", Req { body, ..req() }, r#"[{"c":5}]"#),
        ("$input.path('$.b[0]')", Req { body, ..req() }, "{c=5}"),
        ("$input.path('$.b').size()", Req { body, ..req() }, "1"),
        ("$input.path('$.b')[0].c", Req { body, ..req() }, "5"),
        ("$input.path('$.f')", Req { body, ..req() }, "1.5"),
        ("$input.path('$.big')", Req { body, ..req() }, "1.0E21"),
        ("[$input.path('$.missing')]", Req { body, ..req() }, "[]"),
        ("[$!input.path('$.n')]", Req { body, ..req() }, "[]"),
        ("$input.path('$.a') + 1", Req { body, ..req() }, "1 + 1"),
        (
            "#set($x = $input.path('$.a') + 1)$x",
            Req { body, ..req() },
            "2",
        ),
        // An empty body: `$input.body` is `{}`, but there is no document to read.
        (
            "$input.body|$input.json('$')|$input.path('$')|$input.path('$').size()",
            req(),
            r#"{}|""||"#,
        ),
        (
            "$input.body",
            Req {
                body: "raw text",
                ..req()
            },
            "raw text",
        ),
    ]);
}

#[test]
fn input_params() {
    let r = || Req {
        path: vec![("id", "p")],
        query: vec![("id", "q"), ("k", "1"), ("k", "2")],
        header: vec![("X-Thing", "h"), ("id", "hid")],
        ..req()
    };
    check(&[
        ("$input.params('id')", r(), "p"),
        ("$input.params('k')", r(), "2"),
        ("$input.params('x-thing')", r(), "h"),
        ("[$input.params('nope')]", r(), "[]"),
        (
            "$input.params()",
            r(),
            "{path={id=p}, querystring={id=q, k=2}, header={X-Thing=h, id=hid}}",
        ),
        ("$input.params().header.get('X-Thing')", r(), "h"),
        ("$input.params().querystring.keySet()", r(), "[id, k]"),
        ("$input.params().path.size()", r(), "1"),
    ]);
}

#[test]
fn util_functions() {
    check(&[
        (
            r#"$util.escapeJavaScript("it's ""q"" / \ é")"#,
            req(),
            r#"it\'s \"q\" \/ \\ \u00E9"#,
        ),
        (
            r#"$util.escapeJavaScript("it's").replaceAll("\\'", "'")"#,
            req(),
            "it's",
        ),
        ("$util.urlEncode('a b&c/é')", req(), "a+b%26c%2F%C3%A9"),
        ("$util.urlDecode('a+b%26c%2F%C3%A9')", req(), "a b&c/é"),
        (
            "$util.base64Encode('hello, world')",
            req(),
            "aGVsbG8sIHdvcmxk",
        ),
        (
            "$util.base64Decode('aGVsbG8sIHdvcmxk')",
            req(),
            "hello, world",
        ),
        ("$util.base64Decode('aGk')", req(), "hi"),
        (
            r#"#set($o = $util.parseJson('{"k":{"arr":[1,"two",{"x":true}]}}'))$o.k.arr[1] $o.k.arr $o.k"#,
            req(),
            r#"two [1,"two",{"x":true}] {arr=[1,"two",{"x":true}]}"#,
        ),
        ("[$util.escapeJavaScript($undefined)]", req(), "[]"),
    ]);
    assert!(matches!(
        render_req("$util.base64Decode('***')", &req()),
        Err(RenderError::Invalid(_))
    ));
    assert!(matches!(
        render_req("$util.parseJson('{')", &req()),
        Err(RenderError::BadPayload(_))
    ));
    assert!(matches!(
        render_req("$util.urlDecode('%G1')", &req()),
        Err(RenderError::Invalid(_))
    ));
    assert!(matches!(
        render_req(
            "$input.json('$')",
            &Req {
                body: "{not json",
                ..req()
            }
        ),
        Err(RenderError::BadPayload(_))
    ));
    assert!(matches!(
        render_req("$input.json('$[')", &req()),
        Err(RenderError::Invalid(_))
    ));
}

#[test]
fn context_stage_variables_and_esc() {
    let r = || Req {
        stage: vec![("endpoint", "movies-prod"), ("alias", "live")],
        ..req()
    };
    check(&[
        (
            "$context.requestId $context.stage $context.identity.sourceIp",
            r(),
            "c0ffee00-0000-4000-8000-000000000001 temp 203.0.113.7",
        ),
        ("$context.requestTimeEpoch", r(), "1764158400000"),
        (
            r#"{"message":$context.error.messageString}"#,
            r(),
            r#"{"message":"Forbidden"}"#,
        ),
        ("$context.error.responseType", r(), "INVALID_API_KEY"),
        ("[$context.nope]", r(), "[]"),
        (
            "$stageVariables.endpoint ${stageVariables.alias} $stageVariables.get('alias')",
            r(),
            "movies-prod live live",
        ),
        ("$stageVariables.keySet()", r(), "[alias, endpoint]"),
        ("[$stageVariables.nope]", r(), "[]"),
        ("a${esc.newline}b$esc.d$esc.h$esc.tab", r(), "a\nb$#"),
    ]);
}

#[test]
fn overrides_are_returned() {
    let template = "#set($context.requestOverride.header.X-Model = 'v2')\n#set($context.requestOverride.querystring.k = 3)\n#set($context.requestOverride.path.user_id = 'U:1')\n#set($context.responseOverride.status = 418)\n#set($context.responseOverride.header.Cache-Control = \"max-age=$input.params('k')\")\n#set($context.responseOverride.header.cache-control = 'no-store')\nstatus=$context.responseOverride.status model=$context.requestOverride.header.X-Model";
    let out = render_req(
        template,
        &Req {
            query: vec![("k", "9")],
            ..req()
        },
    )
    .unwrap();
    assert_eq!(out.body, "status=418 model=v2");
    assert_eq!(out.overrides.status, Some(418));
    assert_eq!(out.overrides.request_headers, pairs(&[("X-Model", "v2")]));
    assert_eq!(out.overrides.request_querystring, pairs(&[("k", "3")]));
    assert_eq!(out.overrides.request_path, pairs(&[("user_id", "U:1")]));
    assert_eq!(
        out.overrides.response_headers,
        pairs(&[("Cache-Control", "no-store")])
    );
    // Out-of-range statuses are ignored; a numeric string is accepted.
    let out = render_req("#set($context.responseOverride.status = 700)", &req()).unwrap();
    assert_eq!(out.overrides.status, None);
    let out = render_req("#set($context.responseOverride.status = '503')", &req()).unwrap();
    assert_eq!(out.overrides.status, Some(503));
}

#[test]
fn references() {
    check(&[
        ("[$foo]", req(), "[]"),
        ("$!foo|$!{foo}|${foo}", req(), "||"),
        (
            "#set($a = 'x')$a ${a}b $!a $a.length() [$a.nope]",
            req(),
            "x xb x 1 []",
        ),
        (
            "#set($m = {'k': 'v', 'n': 2})$m.k $m['k'] $m.get('n') $m",
            req(),
            "v v 2 {k=v, n=2}",
        ),
        (
            "#set($l = [1, 'two', 3.0])$l $l[1] $l[-1] $l.size() $l.get(0)",
            req(),
            "[1, two, 3.0] two 3.0 3 1",
        ),
        ("#set($a-b = 1)$a-b", req(), "1"),
        ("$1.50 costs $", req(), "$1.50 costs $"),
        ("#set($a = 'x')$a.", req(), "x."),
        ("#set($a = 'x')$a.1", req(), "x.1"),
        (
            "#set($s = 'abc')$s.substring(1) $s.substring(0, 1).toUpperCase()",
            req(),
            "bc A",
        ),
        ("#set($i = 2)#set($s = 'abcd')$s.substring($i)", req(), "cd"),
        ("#set($x = \"a $foo b\")$x", req(), "a  b"),
        (
            "#set($n = 'N')#set($x = \"a $n b ${n}c\")$x",
            req(),
            "a N b Nc",
        ),
        ("#set($x = 'a $n b')$x", req(), "a $n b"),
        ("#set($x = \"say \"\"hi\"\"\")$x", req(), "say \"hi\""),
        ("#set($x = 'it''s')$x", req(), "it's"),
        ("#set($x = \"\\u00e9\\t\")$x", req(), "é\\t"),
    ]);
}

#[test]
fn escapes_comments_and_raw_text() {
    check(&[
        // An escaped reference prints as written (with its backslash when null); a null one after
        // an even run of backslashes renders as nothing, like any null.
        (
            "#set($a = 1)\\$a \\\\$a \\$b \\\\$b",
            req(),
            "$a \\1 \\$b \\",
        ),
        ("\\#set(x)", req(), "#set(x)"),
        // The escaped directive is text; the reference after it is still a (null) reference.
        ("\\#set($a = 1)", req(), "#set( = 1)"),
        ("\\#foo \\#if", req(), "\\#foo #if"),
        ("a ## comment\nb", req(), "a b"),
        ("a #* block\n comment *#b", req(), "a b"),
        ("#[[ $raw #if( ]]#!", req(), " $raw #if( !"),
        ("color: #fff; # x #", req(), "color: #fff; # x #"),
        ("\\n stays", req(), "\\n stays"),
        ("#{if}(true)yes#{else}no#{end}", req(), "yes"),
        // Pairs of backslashes before a live directive print as one each; an odd one escapes it.
        ("\\\\#if(true)x#end", req(), "\\x"),
        ("\\\\\\#if(true)", req(), "\\#if(true)"),
        // Java getters work as method calls too.
        (
            "#foreach($i in [1, 2])$i$foreach.hasNext()$velocityHasNext #end$esc.getNewline()",
            req(),
            "1truetrue 2falsefalse \n",
        ),
    ]);
}

#[test]
fn whitespace_follows_velocity_1_7() {
    check(&[
        // A line with only #set disappears, including its indentation when it starts a token.
        ("a\n#set($x = 1)\nb$x", req(), "a\nb1"),
        ("  #set($x = 1)\nb", req(), "b"),
        // Indentation before #if/#end is kept; the newline after the directive is not.
        ("a\n  #if(true)\n  b\n  #end\nc", req(), "a\n    b\n  c"),
        ("#if(true)x#end\ny", req(), "xy"),
        ("#if(true) \t\nx#end", req(), "x"),
        ("#if(false)x#else\ny#end", req(), "y"),
        ("#if(true)x#end  y", req(), "x  y"),
        ("#foreach($i in [1..3])\n$i\n#end\n", req(), "1\n2\n3\n"),
        ("#foreach($i in [1..2])$i#end\r\nz", req(), "12z"),
        // #set right after a reference takes the blanks between them.
        ("#set($a = 1)$a   #set($b = 2)$b", req(), "12"),
        ("x  #set($b = 2)$b", req(), "x  2"),
    ]);
}

#[test]
fn conditions() {
    check(&[
        ("#if($nope)a#else b#end", req(), " b"),
        (
            "#if('')empty-string-is-true#end",
            req(),
            "empty-string-is-true",
        ),
        ("#if($input.params('x') == '')absent#end", req(), "absent"),
        ("#if(1 == 1.0)num#end", req(), "num"),
        ("#if('1' == 1)str#end", req(), "str"),
        (
            "#if(2 > 1 && 1 < 2 and 3 ge 3 && !(1 gt 2) && not false)all#end",
            req(),
            "all",
        ),
        ("#if(false || 1 == 2 or 'a' eq 'a')or#end", req(), "or"),
        ("#if($x == $y)nulls-equal#end", req(), "nulls-equal"),
        (
            "#if('a' < 'b')x#else cmp-non-numbers-false#end",
            req(),
            " cmp-non-numbers-false",
        ),
        (
            "#set($n = 5)#if($n < 3)a#elseif($n < 10)b#else c#end",
            req(),
            "b",
        ),
        ("#if(1 != 2 && 'a' ne 'b')ne#end", req(), "ne"),
    ]);
}

#[test]
fn arithmetic_and_set() {
    check(&[
        (
            "#set($a = 7)#set($b = 2)$a+$b=#set($c = $a + $b)$c",
            req(),
            "7+2=9",
        ),
        // `#set` takes the blank before it when it follows a reference (it starts a token there).
        (
            "#set($x = 7 / 2)$x #set($y = 7 % 3)$y #set($z = 7.0 / 2)$z #set($w = -3 * 2)$w",
            req(),
            "313.5-6",
        ),
        ("#set($x = 1)#set($x = 1 / 0)$x", req(), "1"),
        ("#set($x = 'a')#set($x = $nope)$x", req(), "a"),
        ("#set($s = 'a' + 1)$s|#set($t = 1 + 'b')$t", req(), "a1|1b"),
        (
            "#set($n = 9223372036854775807 + 1)$n",
            req(),
            "9.223372036854776E18",
        ),
        (
            "#set($m = {})#set($m.k = 'v')#set($m['j'] = 2)$m",
            req(),
            "{k=v, j=2}",
        ),
        (
            "#set($l = [])#set($ok = $l.add('a'))#set($ok = $l.add('b'))$l $ok",
            req(),
            "[a, b] true",
        ),
        // `put` returns the previous value: null (rendered as nothing), then 1.
        (
            "#set($m = {})$m.put('a', 1)$m.put('a', 2) $m",
            req(),
            "1 {a=2}",
        ),
        (
            "#set($m = {'in': []})#set($ok = $m.in.add(1))$m",
            req(),
            "{in=[1]}",
        ),
        // Values are copy-on-write: unlike Java, `$b.add` does not show through `$a` (no shared mutable
        // containers, hence no reference cycles).
        (
            "#set($a = [1])#set($b = $a)#set($ok = $b.add(2))$a $b",
            req(),
            "[1] [1, 2]",
        ),
    ]);
}

#[test]
fn foreach_loops() {
    check(&[
        (
            "#foreach($i in [1, 2, 3])$i#if($foreach.hasNext),#end#end",
            req(),
            "1,2,3",
        ),
        (
            "#foreach($i in ['a','b'])$foreach.index:$foreach.count:$velocityCount:$foreach.first:$foreach.last #end",
            req(),
            "0:1:1:true:false 1:2:2:false:true ",
        ),
        ("#foreach($i in [3..1])$i#end", req(), "321"),
        (
            "#foreach($i in [1..5])#if($i == 3)#break#end$i#end",
            req(),
            "12",
        ),
        (
            "#foreach($i in [1..2])#foreach($j in ['a','b'])$i$j$foreach.parent.index #end#end",
            req(),
            "1a0 1b0 2a1 2b1 ",
        ),
        (
            "#set($i = 'keep')#foreach($i in [1])$i#end$i",
            req(),
            "1keep",
        ),
        ("#foreach($i in [1])$i#end[$i]", req(), "1[]"),
        (
            "#foreach($v in $input.path('$'))$v;#end",
            Req {
                body: r#"{"a":1,"b":"x"}"#,
                ..req()
            },
            "1;x;",
        ),
        ("#foreach($c in 'abc')$c#end.", req(), "."),
        ("#foreach($x in $nothing)x#end.", req(), "."),
        ("a#stop b", req(), "a"),
        (
            "#foreach($i in [1..3])$i#if($i == 2)#stop#end#end after",
            req(),
            "12",
        ),
        (
            "#set($str = 'a,b,,c,,')#foreach($s in $str.split(','))[$s]#end",
            req(),
            "[a][b][][c]",
        ),
        ("[$foreach.index]", req(), "[]"),
    ]);
}

#[test]
fn java_string_methods() {
    check(&[
        (
            "#set($s = '  Hello, World  ')[$s.trim()] $s.length() $s.trim().toLowerCase() $s.trim().toUpperCase()",
            req(),
            "[Hello, World] 16 hello, world HELLO, WORLD",
        ),
        (
            "#set($s = 'banana')$s.indexOf('an') $s.indexOf('an', 2) $s.lastIndexOf('an') $s.indexOf('x')",
            req(),
            "1 3 3 -1",
        ),
        (
            "#set($s = 'banana')$s.replace('an', 'AN') $s.replaceAll('a(n)', '<$1>') $s.replaceFirst('a', '_')",
            req(),
            "bANANa b<n><n>a b_nana",
        ),
        (
            "#set($s = 'a.b.c')$s.split('\\.') $s.split('\\.').size()",
            req(),
            "[a, b, c] 3",
        ),
        (
            "#set($s = 'U:114521')$s.startsWith('U:') $s.endsWith('21') $s.contains(':') $s.matches('U:\\d+') $s.matches('\\d+')",
            req(),
            "true true true true false",
        ),
        (
            "#set($s = 'abc')$s.equals('abc') $s.equalsIgnoreCase('ABC') $s.concat('def') $s.charAt(1) $s.isEmpty() $s.empty",
            req(),
            "true true abcdef b false false",
        ),
        (
            "#set($s = 'é😀x')$s.length() $s.substring(1, 3) $s.indexOf('x')",
            req(),
            "4 😀 3",
        ),
        (
            "#set($s = 'a1b22')$s.replaceAll('[0-9]+', '#')",
            req(),
            "a#b#",
        ),
        ("#set($s = 'x')$s.replaceAll('x', '\\$1')", req(), "$1"),
    ]);
    assert!(matches!(
        render_req("#set($s = 'abc')$s.substring(5)", &req()),
        Err(RenderError::Invalid(_))
    ));
    assert!(matches!(
        render_req("#set($s = 'abc')$s.replaceAll('(', 'x')", &req()),
        Err(RenderError::Invalid(_))
    ));
    assert!(matches!(
        render_req("#set($s = 'abc')$s.replaceAll('a', '$2')", &req()),
        Err(RenderError::Invalid(_))
    ));
}

#[test]
fn collections() {
    check(&[
        (
            "#set($m = {'a': 1, 'b': [1, 2]})$m.keySet() $m.values() $m.containsKey('a') $m.containsKey('z') $m.size() $m.isEmpty()",
            req(),
            "[a, b] [1, [1, 2]] true false 2 false",
        ),
        (
            "#set($l = ['x', 'y'])$l.contains('y') $l.contains('z') $l.indexOf('y') $l.isEmpty() $l.empty",
            req(),
            "true false 1 false false",
        ),
        ("#set($l = [])$l.isEmpty() $l.size()", req(), "true 0"),
        (
            "$input.path('$.a').keySet()",
            Req {
                body: r#"{"a":{"x":1,"y":2}}"#,
                ..req()
            },
            "[x, y]",
        ),
        (
            "$input.path('$.a').containsKey('y')",
            Req {
                body: r#"{"a":{"x":1,"y":2}}"#,
                ..req()
            },
            "true",
        ),
    ]);
}

#[test]
fn parse_errors_name_line_and_column() {
    let err = |t: &str| parse(t).err().unwrap_or_else(|| panic!("{t:?} parsed"));
    let e = err("ok\n#if($a\nx");
    assert_eq!((e.line, e.col), (3, 1), "{e}");
    assert_eq!(
        err("#end").to_string(),
        "1:1: #end without an open #if or #foreach"
    );
    let e = err("a\nb #foreach($i in $l)x");
    assert_eq!((e.line, e.col), (2, 3));
    assert!(err("#else").message.contains("#else"));
    assert!(
        err("#if(true)#else#elseif(true)#end")
            .message
            .contains("last branch")
    );
    assert!(err("#set($a = )").message.contains("expected a value"));
    assert!(err("#set($a 1)").message.contains("'='"));
    assert!(err("#* never closed").message.contains("unterminated"));
    assert!(err("#set($x = 'open)").message.contains("unterminated"));
    assert!(err("${a").message.contains('}'));
    assert!(err("#macro(foo)#end").message.contains("not supported"));
    assert!(err("#include('x')").message.contains("not supported"));
    assert!(
        err(&"#if(true)".repeat(100))
            .message
            .contains("nested too deeply")
    );
    assert!(
        err(&format!(
            "#set($a = {}1{})",
            "(".repeat(100),
            ")".repeat(100)
        ))
        .message
        .contains("nested too deeply")
    );
    assert!(
        err(&format!("#set($a = {}true)", "!".repeat(100)))
            .message
            .contains("nested too deeply")
    );
    // Operators in a row nest the tree as parentheses do: bounded too, so rendering and dropping
    // a template never recurse past the stack (100 000 terms overflowed it before).
    for op in ["+", "*", "||", "&&", "==", "<"] {
        let long = format!("#set($a = 1{})", format!(" {op} 1").repeat(100_000));
        assert!(err(&long).message.contains("expression too long"), "{op}");
    }
    let sum = format!("#set($a = 1{})$a", " + 1".repeat(200));
    assert_eq!(render(&sum, &req()), "201");
    // Words that merely look like directives are text.
    assert!(parse("#include #macro #foo(x) #ended #elsewhere").is_ok());
    assert_eq!(render("#foo(x) #ended", &req()), "#foo(x) #ended");
}

#[test]
fn bounds_stop_hostile_templates() {
    let bounds = Bounds {
        max_output_bytes: 1000,
        max_loop_iterations: 10,
        max_total_steps: 10_000,
        max_depth: 8,
        max_json_bytes: 1 << 20,
    };
    let run = |t: &str| {
        let params = Params::default();
        let ctx = context();
        let stage = BTreeMap::new();
        let input = RenderInput {
            body: b"",
            params: &params,
            context: &ctx,
            stage_variables: &stage,
        };
        parse(t).unwrap().render(&input, &bounds)
    };
    assert_eq!(run(&"x".repeat(1001)), Err(RenderError::OutputTooLarge));
    assert_eq!(
        run("#foreach($i in [1..11])#end"),
        Err(RenderError::TooManyIterations)
    );
    assert!(run("#foreach($i in [1..10])#end").is_ok());
    assert_eq!(
        run(
            "#foreach($a in [1..10])#foreach($b in [1..10])#foreach($c in [1..10])#foreach($d in [1..10])#end#end#end#end"
        ),
        Err(RenderError::TooManySteps)
    );
    assert_eq!(
        run("#set($r = [1..100000000])"),
        Err(RenderError::TooManySteps)
    );
    assert_eq!(
        run("#set($s = 'xx')#foreach($i in [1..10])#set($s = \"$s$s\")#end"),
        Err(RenderError::OutputTooLarge)
    );
    assert_eq!(
        run("#set($s = 'xx')#foreach($i in [1..10])#set($s = $s.concat($s))#end"),
        Err(RenderError::OutputTooLarge)
    );
    assert_eq!(
        run("#set($l = [])#foreach($i in [1..10])#set($l = [$l])#end"),
        Err(RenderError::TooDeep)
    );
    assert_eq!(
        run("#set($l = [])#foreach($i in [1..10])#set($ok = $l.add($l))#end"),
        Err(RenderError::TooDeep)
    );
    assert_eq!(
        run("#set($m = {'a': []})#foreach($i in [1..10])#set($ok = $m.a.add($m))#end"),
        Err(RenderError::TooDeep)
    );
    assert_eq!(
        run(
            "#set($s = 'aaaaaaaaaa')#foreach($i in [1..10])#set($s = $s.replace('a', 'aaaaaaaaaa'))#end"
        ),
        Err(RenderError::OutputTooLarge)
    );
}

/// Work that grows with data (map scans, big comparisons, copies) is charged, so these end with an
/// error under the default bounds instead of running for minutes.
#[test]
fn data_proportional_work_runs_out_of_steps() {
    let big = "x".repeat(1 << 20);
    let body: &'static str = Box::leak(format!("{{\"s\":\"{big}\"}}").into_boxed_str());
    let hostile = [
        "#set($m = {})#foreach($i in [1..1000])#foreach($j in [1..1000])#set($ok = $m.put(\"$i-$j\", 1))#end#end",
        "#set($s = $input.body)#foreach($i in [1..1000])#foreach($j in [1..1000])#if($s == 'x')#end#end#end",
        "#set($s = $input.body)#foreach($i in [1..1000])#foreach($j in [1..1000])#set($t = $s.toUpperCase())#end#end",
        "#foreach($i in [1..1000])#foreach($j in [1..1000])#set($r = $input.body.matches(\"x{$i}\"))#end#end",
    ];
    for t in hostile {
        let r = render_req(t, &Req { body, ..req() });
        assert!(
            matches!(r, Err(RenderError::TooManySteps | RenderError::Invalid(_))),
            "{t}: {r:?}"
        );
    }
}

#[test]
fn template_is_shareable_and_keeps_its_source() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<Template>();
    let t = parse("hello $x").unwrap();
    let t2 = t.clone();
    let handle = std::thread::spawn(move || t2.source().to_owned());
    assert_eq!(handle.join().unwrap(), "hello $x");
    assert_eq!(t.source(), "hello $x");
}

fn arb_template() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "$a",
        "$!b",
        "${c}",
        "$input.params('k')",
        "$input.json('$')",
        "$input.path('$.x')",
        "$input.body",
        "$util.escapeJavaScript($a)",
        "$util.parseJson($input.body)",
        "$esc.newline",
        "$foreach.hasNext",
        "#set($a = $a + 1)",
        "#set($a = \"$a$a\")",
        "#set($l = [$l, $l])",
        "#set($ok = $l.add($l))",
        "#if($a)",
        "#elseif($a < 2)",
        "#else",
        "#end",
        "#foreach($i in [1..20])",
        "#foreach($x in $l)",
        "#break",
        "#stop",
        "## c\n",
        "#* c *#",
        "#[[ r ]]#",
        "\\$a",
        "\\#set",
        "text",
        " ",
        "\n",
        "'",
        "\"",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "$a.split(',')",
        "$a.replaceAll('a*', 'bb')",
        "$a.substring(1)",
        "$input.path('$..*')",
        "#set($m = {'k': $m})",
        "$m.k.k",
        "[1..3]",
        "$context.requestId",
        "#set($context.responseOverride.status = 201)",
        "$stageVariables.env",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

/// Reads a commons-lang escapeJavaScript output as JSON string content: `\'` becomes `'`, the other
/// escapes are already JSON.
fn javascript_to_json_body(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\'') => out.push('\''),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rendering_never_panics_and_respects_bounds(template in arb_template(), body in ".{0,64}", value in ".{0,16}") {
        let mut data = template.into_bytes();
        data.push(0);
        data.extend_from_slice(body.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        harness::parse_and_render(&data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        harness::parse_and_render(&data);
    }

    #[test]
    fn arbitrary_text_never_panics(template in "[$#\\\\(){}\\[\\]'\"!.a-z0-9 \n,=<>&|+*/%-]{0,80}") {
        harness::parse_and_render(template.as_bytes());
    }

    #[test]
    fn escape_javascript_is_a_js_string_and_json_once_quotes_unescaped(s in any::<String>()) {
        let e = escape_javascript(&s);
        // A JavaScript string body: printable ASCII only, no raw quote or backslash.
        prop_assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b) || b == 0x7f));
        let json_body = javascript_to_json_body(&e);
        let back: String = serde_json::from_str(&format!("\"{json_body}\"")).map_err(|err| TestCaseError::fail(format!("{err}: {json_body}")))?;
        prop_assert_eq!(back, s);
    }

    #[test]
    fn seed_template_output_is_json_for_any_user_id(user_id in any::<String>(), k in 1u32..100) {
        let mut r = seed_req();
        let uid: &'static str = Box::leak(user_id.clone().into_boxed_str());
        let ks: &'static str = Box::leak(k.to_string().into_boxed_str());
        r.path = vec![("user_id", uid)];
        r.query = vec![("k", ks), ("inference_type", "deterministic")];
        let out = render(SEED_TEMPLATE, &r);
        let json_body = javascript_to_json_body(&out);
        let v: serde_json::Value = serde_json::from_str(&json_body).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        prop_assert_eq!(v["user_id"].as_str(), Some(user_id.as_str()));
        prop_assert_eq!(v["k"].as_u64(), Some(u64::from(k)));
    }
}

fn body_req(body: &'static str) -> Req {
    Req { body, ..req() }
}

#[test]
fn payloads_that_are_not_json() {
    check(&[
        // Not JSON and not meant to be: one string.
        (
            "$input.json('$')|$input.path('$')",
            body_req("a=b&c=d"),
            r#""a=b&c=d"|a=b&c=d"#,
        ),
        ("[$input.path('$.a')]", body_req("a=b"), "[]"),
        (
            "#foreach($kv in $input.path('$').split('&'))$kv;#end",
            body_req("a=1&b=2"),
            "a=1;b=2;",
        ),
        ("$util.parseJson('plain')", req(), "plain"),
        ("[$util.parseJson('')]", req(), "[]"),
    ]);
    for (template, body) in [
        ("$input.json('$')", r#"{"a":"#),
        ("$input.path('$.a')", "[1,2"),
        ("$input.path('$')", r#""unterminated"#),
        ("$util.parseJson('{\"a\":')", ""),
    ] {
        assert!(
            matches!(
                render_req(template, &body_req(body)),
                Err(RenderError::BadPayload(_))
            ),
            "{template} on {body}"
        );
    }
}

#[test]
fn parsed_json_is_bounded_and_charged_as_it_is_built() {
    let bounds = Bounds {
        max_json_bytes: 64 * 1024,
        ..Bounds::default()
    };
    let run = |t: &Template, body: &'static str| {
        render_full(t, &body_req(body), &bounds, &Overrides::default()).map_err(|f| f.error)
    };
    let payload = parse("$input.json('$')").unwrap();
    let big: &'static str = Box::leak(format!("[{}0]", "0,".repeat(10_000)).into_boxed_str());
    assert_eq!(run(&payload, big), Err(RenderError::JsonTooLarge));
    // parseJson values are kept until the render ends, so they count together.
    let repeated =
        parse("#foreach($i in [1..100])#set($v = $util.parseJson($input.body))#end").unwrap();
    let list: &'static str = Box::leak(format!("[{}0]", "0,".repeat(200)).into_boxed_str());
    assert_eq!(run(&repeated, list), Err(RenderError::JsonTooLarge));
    // What a render holds is charged to its reserve in steps, before it is taken; a template that
    // parses nothing charges nothing; a refusal stops the render.
    let counting = |t: &Template, body: &'static str, left: usize| {
        let reserve = crate::mapping::Budgeted::new(left);
        let r = render_reserving(t, &body_req(body), &bounds, &Overrides::default(), &reserve);
        (
            r.map(|r| r.json_bytes).map_err(|f| f.error),
            reserve.granted.get(),
        )
    };
    let plain = parse("$input.params('k') $input.body").unwrap();
    assert_eq!(counting(&plain, "[1, 2]", usize::MAX), (Ok(0), 0));
    for body in [
        r#"{"a": [1, 2, 3], "b": {"c": "ddd"}}"#,
        "[[],[],{},{}]",
        "plain text",
        r#"{"":0,"b":"ccc"}"#,
    ] {
        let (held, granted) = counting(&payload, body, usize::MAX);
        let held = held.unwrap();
        assert!(held > 0, "{body}");
        assert_eq!(
            granted, JSON_CHARGE_STEP,
            "{body}: one step for {held} bytes"
        );
        assert_eq!(
            counting(&payload, body, JSON_CHARGE_STEP - 1),
            (Err(RenderError::OverBudget), 0),
            "{body}"
        );
    }
    let (held, granted) = counting(&repeated, list, usize::MAX);
    assert_eq!(held, Err(RenderError::JsonTooLarge));
    assert!(granted >= bounds.max_json_bytes, "{granted}");
}

/// A reserve that grants up to `left` bytes and counts what it granted.
#[test]
fn failures_name_their_line_and_column() {
    let fail = |t: &str| {
        render_full(
            &parse(t).unwrap(),
            &req(),
            &Bounds::default(),
            &Overrides::default(),
        )
        .unwrap_err()
    };
    let failure = fail("line one\n  #set($x = 1)\n  $x $util.base64Decode('!!')");
    assert_eq!((failure.line, failure.col), (3, 6), "{failure}");
    assert!(matches!(failure.error, RenderError::Invalid(_)));
    let failure = fail("a\n#foreach($i in [1..5000])#end");
    assert_eq!(
        (failure.error, failure.line, failure.col),
        (RenderError::TooManyIterations, 2, 1)
    );
}

#[test]
fn a_response_render_starts_from_the_request_overrides() {
    let request = render_req(
        "#set($context.responseOverride.status = 202)#set($context.requestOverride.querystring['k'] = 'v')#set($context.responseOverride.header.X-A = ['1', '2'])",
        &req(),
    )
    .unwrap();
    assert_eq!(request.overrides.response_headers, pairs(&[("X-A", "1,2")]));
    let t = parse("$context.responseOverride.status $context.requestOverride.querystring.k #set($context.responseOverride.status = 203)").unwrap();
    let out = render_full(&t, &req(), &Bounds::default(), &request.overrides).unwrap();
    assert_eq!(out.body, "202 v");
    assert_eq!(out.overrides.status, Some(203));
    assert_eq!(out.overrides.response_headers, pairs(&[("X-A", "1,2")]));
}
