//! The fidelity suite: template cases whose expected output is what API Gateway renders, each taken
//! from a named source — an AWS documentation page, a recording of real API Gateway output (the
//! AWS-validated snapshots LocalStack keeps, AWS console findings), or, for plain language rules, the
//! Velocity and Java references AWS's documentation points to. The cases are data: one row per case
//! in `fidelity.txt`; the expected bytes were read off the source, never produced by this renderer.
//!
//! Row format (a case starts at `=== name`; header lines, then sections; lines starting with `//`
//! are comments and end a section):
//!
//! ```text
//! === name
//! source: https://… (what in the source the row is read from)
//! body: one-line payload            (or a `--- body` section)
//! path: name=value                  (repeatable; also query:, stage:)
//! header: Name: value               (repeatable; seen through mapping::template_headers)
//! compare: json                     (compare output as JSON values, not bytes)
//! expected: "a JSON string"         (exact bytes with escapes, instead of a section)
//! status: 444                       (expected $context.responseOverride.status)
//! response-header: name: value      (expected responseOverride header; request-header: likewise)
//! --- request-template              (rendered first; the template starts from its overrides)
//! --- template
//! --- expected                      (section lines joined with \n; trailing blank lines dropped)
//! ```

use std::collections::BTreeMap;

use super::{Bounds, Overrides, Params, RenderInput, Rendered, parse, template_headers};

const CASES: &str = include_str!("fidelity.txt");

#[derive(Default, Debug)]
struct Case {
    name: String,
    source: String,
    body: String,
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    header: Vec<(String, String)>,
    stage: BTreeMap<String, String>,
    compare_json: bool,
    request_template: Option<String>,
    template: String,
    expected: Option<String>,
    status: Option<u16>,
    response_headers: Vec<(String, String)>,
    request_headers: Vec<(String, String)>,
}

fn pair(v: &str, sep: &str) -> (String, String) {
    let (k, v) = v.split_once(sep).unwrap_or((v, ""));
    (k.trim().to_owned(), v.to_owned())
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = CASES.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("=== ") else {
            assert!(
                line.trim().is_empty() || line.starts_with("//"),
                "stray line outside a case: {line:?}"
            );
            continue;
        };
        let mut case = Case {
            name: name.to_owned(),
            ..Case::default()
        };
        // Header lines.
        while let Some(&l) = lines.peek() {
            if l.starts_with("--- ") || l.starts_with("=== ") {
                break;
            }
            lines.next();
            if l.trim().is_empty() || l.starts_with("//") {
                continue;
            }
            let (key, value) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("{name}: bad header line {l:?}"));
            match key {
                "source" => case.source = value.to_owned(),
                "body" => case.body = value.to_owned(),
                "path" => case.path.push(pair(value, "=")),
                "query" => case.query.push(pair(value, "=")),
                "header" => case.header.push(pair(value, ": ")),
                "stage" => {
                    let (k, v) = pair(value, "=");
                    case.stage.insert(k, v);
                }
                "compare" => case.compare_json = value == "json",
                "expected" => {
                    case.expected = Some(
                        serde_json::from_str(value)
                            .unwrap_or_else(|e| panic!("{name}: expected: {e}")),
                    )
                }
                "status" => case.status = value.parse().ok(),
                "response-header" => case.response_headers.push(pair(value, ": ")),
                "request-header" => case.request_headers.push(pair(value, ": ")),
                other => panic!("{name}: unknown header {other:?}"),
            }
        }
        // Sections.
        while let Some(&l) = lines.peek() {
            let Some(section) = l.strip_prefix("--- ") else {
                break;
            };
            lines.next();
            let mut content: Vec<&str> = Vec::new();
            while let Some(&l) = lines.peek() {
                if l.starts_with("--- ") || l.starts_with("=== ") || l.starts_with("//") {
                    break;
                }
                content.push(l);
                lines.next();
            }
            while content.last().is_some_and(|l| l.is_empty()) {
                content.pop();
            }
            let text = content.join("\n");
            match section {
                "body" => case.body = text,
                "request-template" => case.request_template = Some(text),
                "template" => case.template = text,
                "expected" => case.expected = Some(text),
                other => panic!("{name}: unknown section {other:?}"),
            }
        }
        cases.push(case);
    }
    cases
}

/// `$context` as the gateway builds it (`integration::template_context`), with fixed values.
fn context() -> serde_json::Value {
    serde_json::json!({
        "requestId": "c0ffee00-0000-4000-8000-000000000001",
        "extendedRequestId": "c0ffee00-0000-4000-8000-000000000001",
        "stage": "prod",
        "resourcePath": "/pets/{petId}",
        "httpMethod": "POST",
        "path": "/prod/pets/1",
        "protocol": "HTTP/1.1",
        "requestTime": "26/Nov/2025:12:00:00 +0000",
        "requestTimeEpoch": 1764158400000u64,
        "xrayTraceId": "Root=1-69270a00-0123456789abcdef01234567",
        "isCanaryRequest": false,
        "identity": {"sourceIp": "192.0.2.1", "userAgent": "curl/8.5.0", "apiKeyId": "k-1"},
    })
}

fn run(case: &Case) -> Result<Rendered, String> {
    let params = Params {
        path: case.path.clone(),
        querystring: case.query.clone(),
        header: template_headers(&case.header),
    };
    let context = context();
    let input = RenderInput {
        body: case.body.as_bytes(),
        params: &params,
        context: &context,
        stage_variables: &case.stage,
    };
    let bounds = Bounds::default();
    let prior = match &case.request_template {
        Some(t) => {
            let t = parse(t).map_err(|e| format!("request template: {e}"))?;
            t.render(&input, &bounds)
                .map_err(|e| format!("request template: {e}"))?
                .overrides
        }
        None => Overrides::default(),
    };
    let t = parse(&case.template).map_err(|e| format!("template: {e}"))?;
    t.render_with(&input, &bounds, &prior, &super::Unmetered)
        .map_err(|e| format!("template: {e}"))
}

fn check(case: &Case) -> Result<(), String> {
    if !case.source.starts_with("https://") {
        return Err("names no source URL".to_owned());
    }
    let out = run(case)?;
    if let Some(expected) = &case.expected {
        let same = if case.compare_json {
            let got: serde_json::Value = serde_json::from_str(&out.body)
                .map_err(|e| format!("output is not JSON ({e}): {:?}", out.body))?;
            let want: serde_json::Value =
                serde_json::from_str(expected).map_err(|e| format!("expected is not JSON: {e}"))?;
            got == want
        } else {
            out.body == *expected
        };
        if !same {
            return Err(format!("output {:?}, expected {expected:?}", out.body));
        }
    }
    if case.status.is_some() && out.overrides.status != case.status {
        return Err(format!(
            "status {:?}, expected {:?}",
            out.overrides.status, case.status
        ));
    }
    for (expected, got, what) in [
        (
            &case.response_headers,
            &out.overrides.response_headers,
            "response",
        ),
        (
            &case.request_headers,
            &out.overrides.request_headers,
            "request",
        ),
    ] {
        for (name, value) in expected {
            let found = got
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            if found != Some(value) {
                return Err(format!(
                    "{what} header {name}: {found:?}, expected {value:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn templates_render_what_api_gateway_renders() {
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check(c)
                .err()
                .map(|e| format!("{}\n    {e}\n    source: {}", c.name, c.source))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from API Gateway:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_case_names_a_source_and_a_unique_name() {
    let cases = cases();
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(c.source.starts_with("https://"), "{}: no source", c.name);
        assert!(!c.template.is_empty(), "{}: no template", c.name);
        assert!(
            c.expected.is_some() || c.status.is_some() || !c.request_headers.is_empty(),
            "{}: expects nothing",
            c.name
        );
        assert!(names.insert(c.name.as_str()), "{}: duplicate name", c.name);
    }
}
