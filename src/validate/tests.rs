use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::GatewayConfig;
use crate::memory::MemoryBudget;
use crate::message::GatewayRequest;

const CONFIG: &str = r##"
stages:
  prod: {}
models:
  Pet:
    type: object
    required: [type, price]
    properties:
      type: { type: string, enum: [dog, cat, fish] }
      price: { type: number, minimum: 25, maximum: 500 }
  Anything: { type: object }
routes:
  - method: POST
    path: /pets
    validation:
      required_query: [q1]
      required_headers: [H1]
      body: { application/json: Pet, $default: Anything }
    integration: { endpoint_name: ep }
  - method: POST
    path: /json-only
    validation:
      body: { application/json: Pet }
    integration: { endpoint_name: ep }
"##;

struct Case {
    config: GatewayConfig,
    budget: MemoryBudget,
}

impl Case {
    fn new() -> Case {
        Case {
            config: GatewayConfig::parse("g.yaml", CONFIG, &|_| None).unwrap(),
            budget: MemoryBudget::new(1 << 20),
        }
    }

    /// Runs the stage on route `i` with `query`, `headers` and `body`; returns the outcome and
    /// the context's `validationErrorString`.
    fn run(
        &self,
        i: usize,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &str,
    ) -> (Result<(), GatewayError>, Option<String>) {
        let req = GatewayRequest {
            method: "POST".into(),
            path: "/prod/pets".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
        };
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        let held = self.budget.account();
        let input = MappingInput {
            params: crate::mapping::Params {
                path: Vec::new(),
                querystring: pairs(query),
                header: pairs(headers),
            },
            stage: &self.config.stages["prod"],
            req: &req,
            body: Bytes::from(body.to_owned()),
            memory: &held,
        };
        let mut ctx = RequestContext::new(
            "id".into(),
            "trace".into(),
            "127.0.0.1".parse().unwrap(),
            "POST",
            "/prod/pets",
        );
        let out = request(&self.config.routes[i], &input, &mut ctx);
        assert_eq!(held.bytes(), 0, "the parsed body's charge is given back");
        (out, ctx.validation_error)
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const GOOD: &str = r#"{"type": "dog", "price": 30}"#;

#[test]
fn a_valid_request_passes() {
    let case = Case::new();
    let (out, detail) = case.run(0, &[("q1", "x")], &[JSON, ("h1", "v")], GOOD);
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(detail, None);
}

#[test]
fn missing_or_blank_parameters_are_listed_query_first_and_checked_before_the_body() {
    let case = Case::new();
    for query in [&[][..], &[("q1", "")][..]] {
        let (out, detail) = case.run(0, query, &[JSON], "not json");
        assert!(
            matches!(&out, Err(GatewayError::MissingParameters(m)) if m == &["q1", "h1"]),
            "{out:?}"
        );
        assert_eq!(
            detail.as_deref(),
            Some("Missing required request parameters: [q1, h1]")
        );
    }
}

#[test]
fn a_body_against_its_model_fails_with_where_and_why() {
    let case = Case::new();
    let params = [("q1", "x")];
    let (out, detail) = case.run(
        0,
        &params,
        &[JSON, ("h1", "v")],
        r#"{"type": "bird", "price": 30}"#,
    );
    assert!(matches!(out, Err(GatewayError::InvalidBody(_))), "{out:?}");
    let detail = detail.unwrap();
    assert!(detail.starts_with("[/type: "), "{detail}");
    assert!(!detail.contains("bird"), "no caller value: {detail}");
    let (_, detail) = case.run(0, &params, &[JSON, ("h1", "v")], r#"{"type": "dog"#);
    assert_eq!(
        detail.as_deref(),
        Some("[the body is not JSON: it ends too early at line 1 column 13]")
    );
}

#[test]
fn the_model_is_picked_by_media_type_then_default_and_a_type_without_one_is_not_checked() {
    let case = Case::new();
    let params = [("q1", "x")];
    let xml = ("content-type", "application/xml");
    // `$default` (any object) takes other types: a JSON array is not an object.
    let (out, _) = case.run(0, &params, &[xml, ("h1", "v")], "[1]");
    assert!(matches!(out, Err(GatewayError::InvalidBody(_))), "{out:?}");
    // No model for the type and no `$default`: not checked at all (API Gateway's rule).
    let (out, _) = case.run(1, &[], &[xml], "<pet/>");
    assert!(out.is_ok(), "{out:?}");
    // No Content-Type is application/json, parameters included.
    let (out, _) = case.run(1, &[], &[], r#"{"type": "cat"}"#);
    assert!(matches!(out, Err(GatewayError::InvalidBody(_))), "{out:?}");
    let (out, _) = case.run(
        1,
        &[],
        &[("content-type", "Application/JSON; charset=utf-8")],
        GOOD,
    );
    assert!(out.is_ok(), "{out:?}");
}

#[test]
fn an_empty_body_is_checked_as_an_empty_object() {
    let case = Case::new();
    let (out, detail) = case.run(1, &[], &[JSON], "");
    assert!(matches!(out, Err(GatewayError::InvalidBody(_))), "{out:?}");
    assert!(detail.unwrap().contains("required"));
    let (out, _) = case.run(
        0,
        &[("q1", "x")],
        &[("h1", "v"), ("content-type", "text/plain")],
        "",
    );
    assert!(out.is_ok(), "`{{}}` is an object: {out:?}");
}

#[test]
fn parsing_a_body_past_the_memory_budget_is_refused() {
    let mut case = Case::new();
    case.budget = MemoryBudget::new(parse_bound(GOOD.as_bytes()) as u64 - 1);
    let (out, _) = case.run(1, &[], &[JSON], GOOD);
    assert!(
        matches!(out, Err(GatewayError::Unavailable { .. })),
        "{out:?}"
    );
    case.budget = MemoryBudget::new(parse_bound(GOOD.as_bytes()) as u64);
    let (out, _) = case.run(1, &[], &[JSON], GOOD);
    assert!(out.is_ok(), "{out:?}");
}

#[test]
fn the_detail_is_bounded() {
    let long = GatewayError::InvalidBody("x".repeat(10_000));
    assert_eq!(detail(&long).unwrap().chars().count(), MAX_DETAIL_CHARS);
}

/// JSON values of any shape, small enough to generate quickly.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values and object keys in `v`: what parsing it allocates a node for.
fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(|v| 1 + nodes(v)).sum(),
        _ => 0,
    }
}

proptest! {
    /// The charge covers a node for every value and key of any body, compact or pretty.
    #[test]
    fn the_parse_bound_counts_every_node(v in json()) {
        for text in [serde_json::to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap()] {
            let bound = parse_bound(&text);
            prop_assert!(bound >= 2 * text.len() + nodes(&v) * NODE_BYTES);
        }
    }
}
