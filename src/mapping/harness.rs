//! The fuzzing harness, shared by `fuzz/fuzz_targets/template.rs` and the property tests.
//!
//! Input: arbitrary bytes, read as `template \0 body \0 query-value`. Invariant checked: parsing never
//! panics; rendering a parsed template never panics, and either fails with a [`RenderError`] or returns
//! output within `Bounds::max_output_bytes` having held no more parsed JSON than
//! `Bounds::max_json_bytes`. Small bounds keep each run fast.

use std::collections::BTreeMap;

use super::{Bounds, Params, RenderError, RenderInput};

/// Bounds used by the harness: small, so hostile inputs hit them quickly.
pub fn harness_bounds() -> Bounds {
    Bounds {
        max_output_bytes: 64 * 1024,
        max_loop_iterations: 100,
        max_total_steps: 50_000,
        max_depth: 32,
        max_json_bytes: 256 * 1024,
    }
}

/// Parses and renders `data`; panics only if an invariant is broken.
pub fn parse_and_render(data: &[u8]) {
    let mut pieces = data.splitn(3, |&b| b == 0);
    let template = pieces.next().unwrap_or_default();
    let body = pieces.next().unwrap_or_default();
    let value = String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let Ok(source) = std::str::from_utf8(template) else {
        return;
    };
    let Ok(t) = super::parse(source) else {
        return;
    };
    assert_eq!(t.source(), source);
    let params = Params {
        path: vec![("user_id".into(), value.clone())],
        querystring: vec![("k".into(), "10".into()), ("q".into(), value.clone())],
        header: vec![("Content-Type".into(), "application/json".into())],
    };
    let context = serde_json::json!({"requestId": "r-1", "stage": "temp", "identity": {"sourceIp": "127.0.0.1"}});
    let stage_variables = BTreeMap::from([("env".to_owned(), value)]);
    let input = RenderInput {
        body,
        params: &params,
        context: &context,
        stage_variables: &stage_variables,
    };
    let bounds = harness_bounds();
    match t.render(&input, &bounds) {
        Ok(r) => {
            assert!(
                r.body.len() <= bounds.max_output_bytes,
                "output of {} bytes passed the limit",
                r.body.len()
            );
            assert!(
                r.json_bytes <= bounds.max_json_bytes,
                "parsed JSON held {} bytes, past the limit",
                r.json_bytes
            );
        }
        Err(
            RenderError::OutputTooLarge
            | RenderError::TooManyIterations
            | RenderError::TooManySteps
            | RenderError::TooDeep
            | RenderError::Invalid(_)
            | RenderError::BadPayload(_)
            | RenderError::JsonTooLarge
            | RenderError::OverBudget,
        ) => {}
    }
}
