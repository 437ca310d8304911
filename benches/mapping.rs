//! Mapping-template rendering cost (`sagegate::mapping`), run per request by the gateway.
//!
//! `cargo bench --bench mapping`. Each group puts the real thing beside a naive baseline:
//! - `seed`: the shipped request template, rendered from a parsed `Template`; beside it the same JSON
//!   built by hand with `format!` (the floor), and parse + render on every request (what caching the
//!   parsed template saves).
//! - `passthrough`: `$input.json('$')` over a 4 KiB body (JSON parse + JSONPath + serialisation),
//!   beside `serde_json` parse + serialise alone.
//! - `response`: the AWS construct's response template over 100 predictions (`#foreach`).

// A benchmark's fixtures are constants; failing loudly on a broken one is the point.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sagegate::mapping::{Bounds, Params, RenderInput, escape_javascript, parse};

const SEED: &str = r##"{"user_id": "$util.escapeJavaScript($input.params('user_id'))", "k": $input.params('k'), "inference_type": "$util.escapeJavaScript($input.params('inference_type'))"#if($input.params('seed') != ""), "seed": $input.params('seed')#end#if($input.params('temperature') != ""), "temperature": $input.params('temperature')#end#if($input.params('epsilon') != ""), "epsilon": $input.params('epsilon')#end}"##;

const RESPONSE: &str = "{\n    \"ratings\": [\n#set( $predictions = $input.path(\"$.predictions\") )\n#foreach( $item in $predictions )\n    $item.scores[0]#if( $foreach.hasNext ),#end\n    $esc.newline\n#end\n    ]\n}";

fn seed_params() -> Params {
    Params {
        path: vec![("user_id".into(), "U:114521".into())],
        querystring: vec![
            ("k".into(), "10".into()),
            ("inference_type".into(), "deterministic".into()),
        ],
        header: vec![
            ("accept".into(), "application/json".into()),
            ("content-type".into(), "application/json".into()),
            ("x-api-key".into(), "0123456789abcdef0123456789".into()),
        ],
    }
}

fn context() -> serde_json::Value {
    serde_json::json!({"requestId": "c0ffee00-0000-4000-8000-000000000001", "stage": "temp"})
}

fn bench_seed(c: &mut Criterion) {
    let template = parse(SEED).expect("seed template parses");
    let params = seed_params();
    let ctx = context();
    let stage = BTreeMap::new();
    let input = RenderInput {
        body: b"",
        params: &params,
        context: &ctx,
        stage_variables: &stage,
    };
    let bounds = Bounds::default();
    let mut g = c.benchmark_group("seed");
    g.bench_function("render", |b| {
        b.iter(|| {
            template
                .render(black_box(&input), &bounds)
                .expect("renders")
        })
    });
    g.bench_function("format_baseline", |b| {
        b.iter(|| {
            let p = black_box(&params);
            let get = |name: &str| {
                p.path
                    .iter()
                    .chain(&p.querystring)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            };
            format!(
                "{{\"user_id\": \"{}\", \"k\": {}, \"inference_type\": \"{}\"}}",
                escape_javascript(get("user_id")),
                get("k"),
                escape_javascript(get("inference_type"))
            )
        })
    });
    g.bench_function("parse_and_render", |b| {
        b.iter(|| {
            parse(black_box(SEED))
                .expect("parses")
                .render(&input, &bounds)
                .expect("renders")
        })
    });
    g.finish();
}

fn bench_passthrough(c: &mut Criterion) {
    let items: Vec<serde_json::Value> = (0..64)
        .map(|i| serde_json::json!({"item_id": format!("M:{i}"), "title": "A Movie Title (1999)", "score": 0.5 + f64::from(i)}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"recommendations": items})).expect("json");
    let template = parse("$input.json('$')").expect("parses");
    let params = Params::default();
    let ctx = context();
    let stage = BTreeMap::new();
    let input = RenderInput {
        body: &body,
        params: &params,
        context: &ctx,
        stage_variables: &stage,
    };
    let bounds = Bounds::default();
    let mut g = c.benchmark_group("passthrough");
    g.bench_function("render", |b| {
        b.iter(|| {
            template
                .render(black_box(&input), &bounds)
                .expect("renders")
        })
    });
    g.bench_function("serde_baseline", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("json");
            serde_json::to_string(&v).expect("json")
        })
    });
    g.finish();
}

fn bench_response(c: &mut Criterion) {
    let preds: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"scores": [f64::from(i) / 100.0]}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"predictions": preds})).expect("json");
    let template = parse(RESPONSE).expect("parses");
    let params = Params::default();
    let ctx = context();
    let stage = BTreeMap::new();
    let input = RenderInput {
        body: &body,
        params: &params,
        context: &ctx,
        stage_variables: &stage,
    };
    let bounds = Bounds::default();
    c.bench_function("response/foreach_100", |b| {
        b.iter(|| {
            template
                .render(black_box(&input), &bounds)
                .expect("renders")
        })
    });
}

criterion_group!(benches, bench_seed, bench_passthrough, bench_response);
criterion_main!(benches);
