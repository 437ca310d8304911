//! The cache-key rule, table-driven: what each template, integration parameter and passthrough
//! setting needs from a cached route's key, and where the refusal points.

use super::*;
use crate::config::GatewayConfig;

/// A cached `GET /r/{id}` (query `k` required) whose one request template is `template` (line
/// 16 of the file, column 11 for the template's column 1), keyed by `keys`.
fn config(template: &str, keys: &str) -> String {
    format!(
        r#"stages:
  prod:
    variables: {{ endpoint: ep }}
    cache: {{ enabled: true }}
routes:
  - method: GET
    path: /r/{{id}}
    validation: {{ required_query: [k] }}
    cache:
      key_parameters: [{keys}]
    integration:
      endpoint_name: ep
      passthrough_behavior: NEVER
      request_templates:
        application/json: |
          {template}
"#
    )
}

fn errors(text: &str) -> String {
    match GatewayConfig::parse("g.yaml", text, &|_| None) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

const T: &str = "g.yaml:16:";
const AT: &str = "routes[0].integration.request_templates.application/json";

#[test]
fn templates_are_refused_until_the_key_holds_what_they_read() {
    // (template, key parameters, expected errors: each `col: message start`; none = loads)
    let table: &[(&str, &str, &[&str])] = &[
        ("{}", "", &[]),
        ("$input.params('id')", "method.request.path.id", &[]),
        (
            "$input.params('id')",
            "",
            &[
                "11: AT: the cached answer depends on path parameter `id`, which the cache key does not hold: add `method.request.path.id` to routes[0].cache.key_parameters, or turn caching off for this route (routes[0].cache.enabled: false)",
            ],
        ),
        // Required, so never looked up in the headers.
        ("$input.params('k')", "method.request.querystring.k", &[]),
        (
            "x $input.params('seed')",
            "method.request.querystring.seed",
            &[
                "13: AT: the cached answer depends on header `seed` ($input.params('seed') reads it when the query string has no `seed`), which the cache key does not hold: add `method.request.header.seed` to routes[0].cache.key_parameters; read the query string only with \"$!input.params().querystring.get('seed')\", or turn",
            ],
        ),
        (
            "$input.params('seed')",
            "method.request.querystring.seed, method.request.header.Seed",
            &[],
        ),
        (
            "$input.params('seed')",
            "",
            &[
                "11: AT: the cached answer depends on query parameter `seed`",
                "11: AT: the cached answer depends on header `seed`",
            ],
        ),
        (
            "$input.params().querystring.get('seed')",
            "method.request.querystring.seed",
            &[],
        ),
        (
            "#set($s = \"$!input.params().querystring.get('seed')\")$s",
            "method.request.querystring.*",
            &[],
        ),
        (
            "$input.params().querystring",
            "method.request.querystring.seed",
            &[
                "11: AT: the cached answer depends on every query parameter, which the cache key does not hold: add `method.request.querystring.*`",
            ],
        ),
        (
            "#set($n = 'seed')$input.params($n)",
            "method.request.path.id, method.request.querystring.*",
            &[
                "28: AT: the cached answer depends on every request header, which no cache key can hold (headers include per-request ids and the API key); read headers by name",
            ],
        ),
        (
            "$input.params()",
            "method.request.path.id, method.request.querystring.*",
            &["11: AT: the cached answer depends on every request header"],
        ),
        (
            "$input.params().header.X-Tenant",
            "method.request.header.x-tenant",
            &[],
        ),
        (
            "$input.params().header.x-tenant",
            "",
            &[
                "11: AT: the cached answer depends on header `x-tenant`, which the cache key does not hold: add `method.request.header.x-tenant`",
            ],
        ),
        (
            "$input.params().header.get('x-api-key')",
            "",
            &[
                "11: AT: the cached answer depends on header `x-api-key`, which no cache key can hold (the API key is never kept in a cache key); key by caller with context.identity.apiKeyId instead of reading the key; or turn caching off",
            ],
        ),
        (
            "$input.body",
            "",
            &[
                "11: AT: the cached answer depends on the request body, which the cache key does not hold: add `method.request.body`",
            ],
        ),
        (
            "$input.json('$.a') $util.parseJson($input.body)",
            "method.request.body",
            &[],
        ),
        (
            "$context.identity.apiKeyId",
            "",
            &[
                "11: AT: the cached answer depends on `$context.identity.apiKeyId`, which the cache key does not hold: add `context.identity.apiKeyId`",
            ],
        ),
        (
            "$context.identity.apiKeyId",
            "context.identity.apiKeyId",
            &[],
        ),
        (
            "$context.identity",
            "context.identity.sourceIp",
            &[
                "11: AT: the cached answer depends on `$context.identity.apiKeyId`",
                "11: AT: the cached answer depends on `$context.identity.userAgent`",
            ],
        ),
        (
            "$context.identity.caller",
            "",
            &[
                "11: AT: the cached answer depends on `$context.identity.caller`, which no cache key can hold (sagegate does not provide it)",
            ],
        ),
        (
            "$context.authorizer.principalId",
            "",
            &[
                "11: AT: the cached answer depends on `$context.authorizer.principalId`, which no cache key can hold (sagegate has no authorizers)",
            ],
        ),
        // Per-request ids, what the key always holds, and what sagegate leaves null.
        (
            "$context.requestId $context.extendedRequestId $context.requestTime $context.requestTimeEpoch $context.stage $context.resourcePath $context.httpMethod $context.protocol $context.domainName $stageVariables.endpoint",
            "",
            &[],
        ),
        (
            "$context.path",
            "",
            &[
                "11: AT: the cached answer depends on `$context.path`, which the cache key does not hold: add `context.path`",
            ],
        ),
        ("$context.path", "context.path", &[]),
        // The caller writes the trace id (X-Amzn-Trace-Id): not a per-request id.
        (
            "$context.xrayTraceId",
            "context.path",
            &[
                "11: AT: the cached answer depends on `$context.xrayTraceId`, which no cache key can hold (the caller chooses it with its X-Amzn-Trace-Id header); use `$context.requestId` for a per-request id",
            ],
        ),
        (
            "$context",
            "context.path, context.identity.apiKeyId, context.identity.sourceIp, context.identity.userAgent",
            &[],
        ),
        (
            "$context",
            "context.path, context.identity.apiKeyId, context.identity.sourceIp",
            &["11: AT: the cached answer depends on `$context.identity.userAgent`"],
        ),
    ];
    for (template, keys, expected) in table {
        let err = errors(&config(template, keys));
        for e in *expected {
            let e = format!("{T}{}", e.replace("AT", AT));
            assert!(
                err.contains(&e),
                "{template} keyed by [{keys}]:\nmissing `{e}` in:\n{err}"
            );
        }
        assert_eq!(
            err.lines().count(),
            expected.len(),
            "{template} keyed by [{keys}]:\n{err}"
        );
    }
}

#[test]
fn passthrough_and_template_selection_need_the_body_and_content_type() {
    let base = config("{}", "");
    let refused = |text: &str, expected: &[&str]| {
        let err = errors(text);
        for e in expected {
            assert!(err.contains(e), "missing `{e}` in:\n{err}\nfor:\n{text}");
        }
        assert_eq!(err.lines().count(), expected.len(), "{err}\nfor:\n{text}");
    };
    refused(&base, &[]);
    // WHEN_NO_MATCH (the default): other content types pass the body through.
    let no_match = base.replace("      passthrough_behavior: NEVER\n", "");
    refused(
        &no_match,
        &[
            "g.yaml:13:7: routes[0].integration.request_templates: the cached answer depends on the request body (passed through to SageMaker when no request template matches), which the cache key does not hold: add `method.request.body` to routes[0].cache.key_parameters; or set passthrough_behavior: NEVER (415 for other content types), or turn",
            "g.yaml:13:7: routes[0].integration.request_templates: the cached answer depends on header `content-type` (sent with the body passed through",
        ],
    );
    let when_no_match = base.replace("NEVER", "WHEN_NO_MATCH");
    refused(
        &when_no_match,
        &[
            "g.yaml:13:29: routes[0].integration.passthrough_behavior: the cached answer depends on the request body",
            "g.yaml:13:29: routes[0].integration.passthrough_behavior: the cached answer depends on header `content-type`",
        ],
    );
    refused(
        &when_no_match.replace(
            "key_parameters: []",
            "key_parameters: [method.request.body, method.request.header.Content-Type]",
        ),
        &[],
    );
    refused(&base.replace("NEVER", "WHEN_NO_TEMPLATES"), &[]);
    // Two templates: Content-Type picks one.
    let two = base.replace(
        "        application/json: |",
        "        text/plain: \"{}\"\n        application/json: |",
    );
    refused(
        &two,
        &[
            "g.yaml:14:7: routes[0].integration.request_templates: the cached answer depends on header `content-type`, which selects the request template",
        ],
    );
    refused(
        &two.replace(
            "key_parameters: []",
            "key_parameters: [method.request.header.content-type]",
        ),
        &[],
    );
    // Binary media types always pass through.
    refused(
        &format!("binary_media_types: [image/png]\n{base}"),
        &[
            "g.yaml:1:1: binary_media_types: the cached answer depends on the request body (passed through for the binary media types)",
            "g.yaml:1:1: binary_media_types: the cached answer depends on header `content-type`",
        ],
    );
}

#[test]
fn a_route_without_templates_sends_every_parameter_and_the_body() {
    let bare = config("{}", "").replace(
        "      passthrough_behavior: NEVER\n      request_templates:\n        application/json: |\n          {}\n",
        "",
    );
    let err = errors(&bare);
    for e in [
        "g.yaml:11:5: routes[0].integration: the cached answer depends on the request body (passed through to SageMaker when no request template matches), which the cache key does not hold: add `method.request.body` to routes[0].cache.key_parameters; or add a request template with passthrough_behavior: NEVER, or turn",
        "g.yaml:11:5: routes[0].integration: the cached answer depends on header `content-type`",
        "g.yaml:11:5: routes[0].integration: the cached answer depends on path parameter `id` (without request templates the body is a JSON object of them)",
        "g.yaml:11:5: routes[0].integration: the cached answer depends on every query parameter (without request templates",
    ] {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }
    assert_eq!(err.lines().count(), 4, "{err}");
    let keyed = bare.replace(
        "key_parameters: []",
        "key_parameters: [method.request.path.id, method.request.querystring.*, method.request.body, method.request.header.content-type]",
    );
    assert_eq!(errors(&keyed), "");
    // NEVER without templates answers 415 to everything: nothing is read.
    let never = bare.replace(
        "      endpoint_name: ep\n",
        "      endpoint_name: ep\n      passthrough_behavior: NEVER\n",
    );
    assert_eq!(errors(&never), "");
}

#[test]
fn integration_parameters_are_inputs_too() {
    let base = config("{}", "");
    let with = |line: &str| {
        base.replace(
            "      endpoint_name: ep\n",
            &format!("      endpoint_name: ep\n{line}\n"),
        )
    };
    assert_eq!(
        errors(&with(
            "      custom_attributes: method.request.header.x-tenant"
        )),
        "g.yaml:13:26: routes[0].integration.custom_attributes: the cached answer depends on header `x-tenant`, which the cache key does not hold: add `method.request.header.x-tenant` to routes[0].cache.key_parameters, or turn caching off for this route (routes[0].cache.enabled: false)"
    );
    let err = errors(&with(
        "      request_parameters:\n        integration.request.header.X-Amzn-SageMaker-Target-Variant: method.request.querystring.v",
    ));
    assert!(
        err.starts_with("g.yaml:14:69: routes[0].integration.request_parameters.integration.request.header.X-Amzn-SageMaker-Target-Variant: the cached answer depends on query parameter `v`"),
        "{err}"
    );
    for fine in [
        "      custom_attributes: context.requestId",
        "      inference_id: context.extendedRequestId",
        "      target_variant: stageVariables.endpoint",
        "      target_variant: \"'AllTraffic'\"",
        "      target_variant: method.request.path.id\n      cache: {}",
    ] {
        let text = with(fine).replace(
            "key_parameters: []",
            "key_parameters: [method.request.path.id]",
        );
        let text = text.replace("\n      cache: {}", "");
        assert_eq!(errors(&text), "", "{fine}");
    }
    assert!(
        errors(&with("      target_variant: context.identity.sourceIp"))
            .contains("add `context.identity.sourceIp`")
    );
}

#[test]
fn only_cached_routes_are_checked_and_when_parameters_are_in_the_key() {
    let template = "$input.params().querystring.inference_type $input.body";
    assert_ne!(errors(&config(template, "")), "");
    let off = config(template, "").replace("    cache:\n", "    cache:\n      enabled: false\n");
    assert_eq!(errors(&off), "");
    let post = config(template, "").replace("method: GET", "method: POST");
    assert_eq!(errors(&post), "", "POST routes do not cache by default");
    let stage_off =
        config(template, "").replace("cache: { enabled: true }", "cache: { enabled: false }");
    assert_eq!(errors(&stage_off), "");
    let when = config(template, "method.request.body").replace(
        "      key_parameters: [method.request.body]\n",
        "      key_parameters: [method.request.body]\n      when: { method.request.querystring.inference_type: [deterministic] }\n",
    );
    assert_eq!(errors(&when), "");
}

#[test]
fn key_parameters_accept_the_new_forms_and_refuse_the_api_key() {
    let err = errors(&config(
        "{}",
        "method.request.header.X-Api-Key, context.requestId, stageVariables.x, method.request.querystring.*, method.request.body, context.identity.userAgent, context.path",
    ));
    assert!(
        err.contains("g.yaml:10:24: routes[0].cache.key_parameters[0]: `method.request.header.X-Api-Key`: the API key is never kept in a cache key; use context.identity.apiKeyId"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].cache.key_parameters[1]: `context.requestId`: use method.request.path.NAME, method.request.querystring.NAME, method.request.querystring.*, method.request.header.NAME, method.request.body or context.identity.apiKeyId, context.identity.sourceIp, context.identity.userAgent, context.path"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].cache.key_parameters[2]: `stageVariables.x`: use"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn the_shipped_config_loads_and_its_earlier_template_is_refused_where_it_reads_headers() {
    let shipped = include_str!("../../../config/gateway.yaml");
    let env = |_: &str| None;
    let config = match GatewayConfig::parse("config/gateway.yaml", shipped, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    // It sends `seed` from the query string, never from a header.
    let template = config.routes[0]
        .integration
        .request_templates
        .get("application/json")
        .unwrap();
    let render = |query: &[(&str, &str)], header: &[(&str, &str)]| {
        let own = |l: &[(&str, &str)]| -> Vec<(String, String)> {
            l.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let params = crate::mapping::Params {
            path: own(&[("user_id", "U:1")]),
            querystring: own(query),
            header: own(header),
        };
        let input = crate::mapping::RenderInput {
            body: b"",
            params: &params,
            context: &serde_json::json!({}),
            stage_variables: &BTreeMap::new(),
        };
        template.render(&input, &Default::default()).unwrap().body
    };
    let base = [("k", "3"), ("inference_type", "deterministic")];
    let plain = "{\"user_id\": \"U:1\", \"k\": 3, \"inference_type\": \"deterministic\"}\n";
    assert_eq!(render(&base, &[]), plain);
    assert_eq!(render(&base, &[("seed", "4242"), ("epsilon", "1")]), plain);
    let with_seed = [base[0], base[1], ("seed", "4242"), ("epsilon", "0.5")];
    assert_eq!(
        render(&with_seed, &[]),
        "{\"user_id\": \"U:1\", \"k\": 3, \"inference_type\": \"deterministic\", \"seed\": \"4242\", \"epsilon\": 0.5}\n"
    );
    // The template as shipped before: `seed`, `temperature` and `epsilon` fell back to headers.
    let names = ["seed", "temperature", "epsilon"];
    let mut before = shipped.to_owned();
    for name in names {
        before = before.replace(
            &format!("#set(${name} = \"$!input.params().querystring.get('{name}')\")"),
            &format!("#set(${name} = $input.params('{name}'))"),
        );
    }
    // Twice: the streaming route carries the same template (it is never cached, so it adds no
    // error below).
    assert_eq!(
        before.matches("= $input.params('").count(),
        8,
        "the shipped template changed shape"
    );
    let err = GatewayConfig::parse("config/gateway.yaml", &before, &env)
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (line, name) in lines.iter().zip(names) {
        assert!(
            line.contains(&format!("routes[0].integration.request_templates.application/json: the cached answer depends on header `{name}`")),
            "{err}"
        );
        // The position is the reference's, in the file.
        let (file_line, col) = position(line);
        let text_line = shipped.lines().nth(file_line - 1).unwrap_or_default();
        let before_line = before.lines().nth(file_line - 1).unwrap_or_default();
        assert!(
            before_line
                .chars()
                .skip(col - 1)
                .collect::<String>()
                .starts_with(&format!("$input.params('{name}')")),
            "{line}\n{before_line}\n(now: {text_line})"
        );
    }
}

fn position(diagnostic: &str) -> (usize, usize) {
    let mut parts = diagnostic.split(':').skip(1);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (line, col)
}

#[test]
fn gaps_name_the_parts_to_add_when_nothing_else_is_wrong() {
    let text = config(
        "$input.params('seed') $input.body $context.authorizer.claims",
        "method.request.querystring.k",
    );
    let gaps = GatewayConfig::cache_key_gaps("g.yaml", &text, &|_| None).unwrap();
    let parts: Vec<String> = gaps
        .iter()
        .map(|g| match &g.part {
            Ok(p) => format!("{}: {p}", g.route),
            Err(why) => format!("{}: none ({why})", g.route),
        })
        .collect();
    assert_eq!(
        parts,
        [
            "0: method.request.querystring.seed",
            "0: method.request.header.seed",
            "0: method.request.body",
            "0: none (sagegate has no authorizers)",
        ]
    );
    // Each gap is exactly one error of the file, the same one `parse` reports.
    let parse = errors(&text);
    assert_eq!(parse.lines().count(), gaps.len(), "{parse}");
    for gap in &gaps {
        assert!(parse.contains(&gap.diagnostic.to_string()), "{parse}");
    }
    // Any other error is reported instead, without the gaps.
    let broken = text.replace(
        "endpoint_name: ep",
        "endpoint_name: ep\n      timeout_ms: 1",
    );
    let err = GatewayConfig::cache_key_gaps("g.yaml", &broken, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("timeout_ms: must be between"), "{err}");
    assert!(!err.contains("cache key"), "{err}");
}
