//! Imports of the fixtures (`fixtures/`): the seed API in both OpenAPI versions, AWS's request
//! validation sample, and an export of everything that cannot come over; bad input of each kind.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::config::yaml::Doc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/import/fixtures")
        .join(name)
}

fn args(openapi: &str) -> ImportArgs {
    ImportArgs {
        openapi: fixture(openapi),
        stages: None,
        usage_plans: None,
        usage_plan_keys: Vec::new(),
        api_keys: None,
        out: PathBuf::from("out"),
        strict: false,
        force: false,
    }
}

fn seed(export: &str) -> ImportArgs {
    ImportArgs {
        stages: Some(fixture("seed/stages.json")),
        usage_plans: Some(fixture("seed/usage-plans.json")),
        usage_plan_keys: vec![fixture("seed/plan-keys-u7v8w9.json").display().to_string()],
        api_keys: Some(fixture("seed/api-keys.json")),
        ..args(export)
    }
}

fn config(imported: &Imported) -> GatewayConfig {
    GatewayConfig::parse("gateway.yaml", &imported.gateway_yaml, &|_| None).unwrap()
}

/// The document without comments: what it means.
fn value(text: &str) -> serde_json::Value {
    Doc::parse("x.yaml", text, &|_| None).unwrap().value
}

fn bad_input(args: &ImportArgs) -> String {
    match import(args) {
        Err(Failure::BadInput(m)) => m,
        other => panic!("expected bad input, got {other:?}"),
    }
}

#[test]
fn the_seed_api_imports_like_the_hand_written_config() {
    let imported = import(&seed("seed/export.oas30.json")).unwrap();
    let ours = config(&imported);
    let shipped_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml"))
            .unwrap();
    let shipped = GatewayConfig::parse("gateway.yaml", &shipped_text, &|_| None).unwrap();
    let (a, b) = (&ours.routes[0], &shipped.routes[0]);
    assert_eq!(
        (&a.method, &a.path, a.api_key_required),
        (&b.method, &b.path, b.api_key_required)
    );
    assert_eq!(a.validation.required_query, b.validation.required_query);
    let (ia, ib) = (&a.integration, &b.integration);
    assert_eq!(ia.endpoint_by_stage, ib.endpoint_by_stage);
    assert_eq!(
        (&ia.content_type, &ia.accept, ia.timeout, ia.passthrough),
        (&ib.content_type, &ib.accept, ib.timeout, ib.passthrough)
    );
    assert_eq!(ia.custom_attributes, ib.custom_attributes);
    assert_eq!(ia.inference_id, ib.inference_id);
    // The same template text, so the same reads.
    let reads = |r: &crate::config::gateway::Route| {
        r.integration.request_templates.0[0]
            .1
            .reads()
            .into_iter()
            .map(|r| r.input)
            .collect::<Vec<_>>()
    };
    assert_eq!(reads(a), reads(b));
    // The key is what the shipped config keys, found by the gateway's own analysis.
    let keys = |r: &crate::config::gateway::Route| {
        r.cache
            .key_parameters
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(a), keys(b));
    let added: Vec<String> = imported.additions.iter().map(KeyAddition::line).collect();
    assert_eq!(
        added,
        [
            "GET /recommended-movies/{user_id}: added method.request.querystring.seed (query parameter `seed`)",
            "GET /recommended-movies/{user_id}: added method.request.querystring.temperature (query parameter `temperature`)",
            "GET /recommended-movies/{user_id}: added method.request.querystring.epsilon (query parameter `epsilon`)",
        ]
    );
    for stage in ["temp", "prod"] {
        let (s, t) = (&ours.stages[stage], &shipped.stages[stage]);
        assert_eq!(
            (s.throttle, s.cache.enabled, s.cache.ttl),
            (t.throttle, t.cache.enabled, t.cache.ttl)
        );
    }
    assert!(
        imported.findings.iter().all(|f| !f.left_out),
        "{:#?}",
        imported.findings
    );
}

#[test]
fn swagger_yaml_and_openapi_json_exports_give_the_same_files() {
    let oas = import(&seed("seed/export.oas30.json")).unwrap();
    let swagger = import(&seed("seed/export.swagger.yaml")).unwrap();
    let mut a = value(&oas.gateway_yaml);
    let b = value(&swagger.gateway_yaml);
    // Only the name of the models' section in the export differs, and it is in comments.
    a["models"] = b["models"].clone();
    assert_eq!(a, b);
    assert_eq!(value(&oas.keys_yaml), value(&swagger.keys_yaml));
    assert!(swagger.gateway_yaml.contains("export#/definitions/Empty"));
}

#[test]
fn keys_are_hashed_and_never_written_in_clear() {
    let imported = import(&seed("seed/export.oas30.json")).unwrap();
    let value_text = "sagegate-demo-key-0123456789";
    let keys = value(&imported.keys_yaml);
    assert_eq!(
        keys["keys"][0]["value_sha256"],
        hex::encode(Sha256::digest(value_text.as_bytes()))
    );
    assert_eq!(
        keys["keys"][0]["usage_plans"],
        serde_json::json!(["u7v8w9"])
    );
    assert_eq!(
        keys["usage_plans"][0],
        serde_json::json!({"id": "u7v8w9", "stages": ["temp", "prod"],
            "throttle": {"rate_limit": 10.0, "burst_limit": 20}, "quota": {"limit": 10000, "period": "DAY"}})
    );
    for text in [
        &imported.gateway_yaml,
        &imported.keys_yaml,
        &imported.summary,
    ] {
        assert!(!text.contains(value_text));
    }
    // The plan is named by PLAN_ID=FILE as well as by the file's name.
    let mut by_id = seed("seed/export.oas30.json");
    by_id.usage_plan_keys = vec![format!(
        "u7v8w9={}",
        fixture("seed/plan-keys-u7v8w9.json").display()
    )];
    assert_eq!(value(&import(&by_id).unwrap().keys_yaml), keys);
}

#[test]
fn validators_and_models_come_over() {
    let imported = import(&args("validation.oas30.json")).unwrap();
    let c = config(&imported);
    assert_eq!(
        c.stage_names().into_iter().collect::<Vec<_>>(),
        ["testStage"]
    );
    let get = &c.routes[0];
    assert_eq!(
        (
            get.method.as_str(),
            get.validation.required_query.as_slice()
        ),
        ("GET", &["q1".to_owned()][..])
    );
    assert!(get.validation.body.is_empty(), "params-only");
    let post = &c.routes[1];
    assert_eq!(post.validation.required_headers, ["h1"]);
    let body: Vec<(&str, &str)> = post
        .validation
        .body
        .iter()
        .map(|(m, model)| (m.as_str(), model.name.as_str()))
        .collect();
    assert_eq!(body, [("application/json", "RequestBodyModel")]);
    let model = &post.validation.body[0].1;
    assert!(
        model
            .check(&serde_json::json!({"name": "Marco", "type": "dog", "price": 260}))
            .is_ok()
    );
    assert!(
        model
            .check(&serde_json::json!({"name": "Molly", "type": "bird", "price": 269}))
            .is_err()
    );
    let overridden = c
        .gateway_responses
        .get(crate::error::ResponseType::BadRequestBody, 400)
        .unwrap();
    assert_eq!(overridden.status, Some(400));
}

/// (file, pointer) of every finding left out of the `mixed` fixture.
const MIXED_LEFT_OUT: [&str; 16] = [
    "export#/x-amazon-apigateway-policy",
    "export#/x-amazon-apigateway-minimum-compression-size",
    "export#/servers/0/x-amazon-apigateway-endpoint-configuration",
    "export#/components/schemas/Lookahead",
    "export#/components/schemas/Uses",
    "export#/paths/~1predict/post/security",
    "export#/paths/~1admin/get/security",
    "export#/paths/~1streams/get/x-amazon-apigateway-integration/uri",
    "export#/paths/~1{proxy+}/options/x-amazon-apigateway-integration",
    "export#/paths/~1{proxy+}/x-amazon-apigateway-any-method/x-amazon-apigateway-integration",
    "export#/x-amazon-apigateway-gateway-responses/UNAUTHORIZED",
    "export#/x-amazon-apigateway-gateway-responses/THROTTLED/responseParameters/gatewayresponse.querystring.x",
    "export#/x-amazon-apigateway-binary-media-types/0",
    "get-stages#/item/0/webAclArn",
    "get-stages#/item/0/methodSettings/~01predict~1POST",
    "get-stages#/item/1",
];

fn mixed() -> ImportArgs {
    ImportArgs {
        stages: Some(fixture("mixed-stages.json")),
        ..args("mixed.oas30.json")
    }
}

#[test]
fn what_cannot_come_over_is_listed_with_its_pointer_and_the_rest_imports() {
    let imported = import(&mixed()).unwrap();
    let left_out: Vec<String> = imported
        .findings
        .iter()
        .filter(|f| f.left_out)
        .map(|f| format!("{}#{}", f.file, f.pointer))
        .collect();
    assert_eq!(left_out, MIXED_LEFT_OUT);
    for f in imported.findings.iter().filter(|f| f.left_out) {
        assert!(!f.what.is_empty(), "{f:?}");
    }
    // Methods behind an authorizer or IAM are not served at all, let alone without a check.
    let c = config(&imported);
    let routes: Vec<String> = c.routes.iter().map(|r| r.key()).collect();
    assert_eq!(routes, ["GET /recommended-movies/{user_id}"]);
    assert!(c.routes[0].api_key_required);
    assert_eq!(c.binary_media_types, ["image/png"]);
    // Models gateway.yaml would refuse are left out, and so are those that refer to them.
    let models: Vec<String> = value(&imported.gateway_yaml)["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(models, ["Fine"]);
    // Every left-out item is in the file's header too, for the reviewer.
    for line in imported.findings.iter().map(Finding::line) {
        assert!(imported.gateway_yaml.contains(&line), "{line}");
    }
    // The route's per-method cache TTL and throttle came along; passthrough of image/png bodies
    // put the body and its type in the key.
    assert_eq!(
        c.routes[0].cache.ttl,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(c.stages["v1"].route_throttles.len(), 1);
    // The canary's share and cache use came along (its deployment id is a note).
    let canary = c.stages["v1"].canary.as_deref().unwrap();
    assert_eq!(
        (canary.percent_traffic, canary.use_stage_cache),
        (10.0, false)
    );
    let keys: Vec<String> = c.routes[0]
        .cache
        .key_parameters
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        keys,
        [
            "method.request.path.user_id",
            "method.request.body",
            "method.request.header.content-type"
        ]
    );
}

#[test]
fn a_body_model_that_cannot_come_over_takes_only_the_body_check_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.json");
    let export = serde_json::json!({"openapi": "3.0.1",
        "servers": [{"url": "https://x.execute-api.us-east-1.amazonaws.com/{basePath}", "variables": {"basePath": {"default": "/prod"}}}],
        "x-amazon-apigateway-request-validators": {"all": {"validateRequestBody": true, "validateRequestParameters": true}},
        "x-amazon-apigateway-request-validator": "all",
        "paths": {"/p": {"post": {
            "parameters": [{"name": "q", "in": "query", "required": true}],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Bad"}}}},
            "x-amazon-apigateway-integration": {"type": "aws",
                "uri": "arn:aws:apigateway:us-east-1:runtime.sagemaker:path/endpoints/ep/invocations"}}}},
        "components": {"schemas": {"Bad": {"type": "string", "pattern": "(a)\\1"}}}});
    std::fs::write(&path, export.to_string()).unwrap();
    let imported = import(&ImportArgs {
        openapi: path,
        ..args("unused")
    })
    .unwrap();
    let left_out: Vec<String> = imported
        .findings
        .iter()
        .filter(|f| f.left_out)
        .map(|f| format!("{}: {}", f.pointer, f.what))
        .collect();
    assert_eq!(left_out.len(), 2, "{left_out:#?}");
    assert!(
        left_out[0].starts_with(
            "/components/schemas/Bad: model `Bad`: models.Bad.pattern: cannot be compiled:"
        ),
        "{left_out:#?}"
    );
    assert_eq!(
        left_out[1],
        "/paths/~1p/post/requestBody/content/application~1json/schema: POST /p: body validation against model `Bad`, which is left out"
    );
    let c = config(&imported);
    assert_eq!(c.routes[0].validation.required_query, ["q"]);
    assert!(c.routes[0].validation.body.is_empty());
}

#[test]
fn strict_refuses_when_anything_is_left_out() {
    let strict = ImportArgs {
        strict: true,
        ..mixed()
    };
    match import(&strict) {
        Err(Failure::Refused(m)) => {
            assert!(
                m.starts_with("--strict: not everything can be carried over; nothing written"),
                "{m}"
            );
            assert!(m.contains("export#/x-amazon-apigateway-policy"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing left out: strict is no obstacle.
    let seed_strict = ImportArgs {
        strict: true,
        ..seed("seed/export.oas30.json")
    };
    assert!(import(&seed_strict).is_ok());
}

#[test]
fn an_export_without_sagemaker_methods_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("petstore.json");
    let export = serde_json::json!({"swagger": "2.0", "basePath": "/v1", "paths": {"/pets": {"get": {
        "x-amazon-apigateway-integration": {"type": "http", "uri": "http://petstore-demo-endpoint.execute-api.com/petstore/pets"}}}}});
    std::fs::write(&path, export.to_string()).unwrap();
    let args = ImportArgs {
        openapi: path,
        ..args("unused")
    };
    match import(&args) {
        Err(Failure::Refused(m)) => {
            assert!(m.contains("no method of"), "{m}");
            assert!(m.contains("export#/paths/~1pets/get/x-amazon-apigateway-integration: GET /pets: an HTTP integration"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases: Vec<(ImportArgs, &str)> = vec![
        (
            args("missing.json"),
            "missing.json: cannot read the export:",
        ),
        (
            ImportArgs {
                openapi: write("export.txt", "{}"),
                ..args("x")
            },
            "export.txt: unknown extension `.txt`",
        ),
        (
            ImportArgs {
                openapi: write("gateway.yaml", "stages: {}\nroutes: []\n"),
                ..args("x")
            },
            "not an API Gateway export",
        ),
        (
            ImportArgs {
                openapi: write("v31.json", r#"{"openapi": "3.1.0", "paths": {}}"#),
                ..args("x")
            },
            "OpenAPI 3.1.0 is not an API Gateway REST export",
        ),
        (
            ImportArgs {
                openapi: write(
                    "env.json",
                    r#"{"openapi": "3.0.1", "paths": {"/a": {"get": {"summary": "${env:HOME}"}}}}"#,
                ),
                ..args("x")
            },
            "the export holds `${env:` at /paths/~1a/get/summary",
        ),
        (
            ImportArgs {
                stages: Some(fixture("seed/usage-plans.json")),
                ..args("seed/export.oas30.json")
            },
            "usage-plans.json: not a get-stages output: entry 0 has no stageName",
        ),
        (
            ImportArgs {
                usage_plans: None,
                ..seed("seed/export.oas30.json")
            },
            "--usage-plan-keys needs --usage-plans",
        ),
        (
            ImportArgs {
                usage_plans: Some(fixture("seed/stages.json")),
                ..seed("seed/export.oas30.json")
            },
            "stages.json: not a get-usage-plans output",
        ),
        (
            args("seed/export.oas30.json"),
            "calls the endpoint named by stage variable `endpoint`, which the export does not hold: pass --stages",
        ),
    ];
    for (args, expected) in cases {
        let message = bad_input(&args);
        assert!(message.contains(expected), "{message}\nwanted: {expected}");
    }
    // Two plans, and a file whose name says neither.
    let plans = write(
        "plans.json",
        r#"{"items": [{"id": "p1", "apiStages": [{"stage": "prod"}]}, {"id": "p2", "apiStages": [{"stage": "temp"}]}]}"#,
    );
    let keys = write("keys.json", r#"{"items": []}"#);
    let ambiguous = ImportArgs {
        usage_plans: Some(plans),
        usage_plan_keys: vec![keys.display().to_string()],
        ..seed("seed/export.oas30.json")
    };
    assert!(
        bad_input(&ambiguous).contains(
            "which usage plan is it for? get-usage-plan-keys does not say: write PLAN_ID="
        )
    );
}

#[test]
fn existing_files_are_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let args = ImportArgs {
        out: dir.path().to_owned(),
        ..seed("seed/export.oas30.json")
    };
    let imported = import(&args).unwrap();
    write(&args, &imported).unwrap();
    std::fs::write(dir.path().join("keys.yaml"), "operator's edits").unwrap();
    match write(&args, &imported) {
        Err(Failure::BadInput(m)) => assert!(
            m.ends_with("exists: choose another --out, or pass --force to replace it"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keys.yaml")).unwrap(),
        "operator's edits"
    );
    write(
        &ImportArgs {
            force: true,
            ..args.clone()
        },
        &imported,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keys.yaml")).unwrap(),
        imported.keys_yaml
    );
}
