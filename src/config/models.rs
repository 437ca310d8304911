//! `models:` of `gateway.yaml`: API Gateway's models, JSON Schema draft 4, compiled once at load
//! for the validate stage ([`crate::validate`]).
//!
//! ```yaml
//! models:
//!   RecommendationRequest:                 # letters, digits, `_`, `-`, `.`
//!     type: object
//!     required: [user_id, k]
//!     properties:
//!       user_id: { type: string, minLength: 1 }
//!       k: { type: integer, minimum: 1, maximum: 100 }
//!       context: { $ref: "#/definitions/Context" }   # another model
//!   Context: { type: object }
//! routes:
//!   - method: POST
//!     path: /recommendations
//!     validation:
//!       body: { application/json: RecommendationRequest }   # by Content-Type; `$default`: any other
//! ```
//!
//! A model refers to another as `#/definitions/NAME` (how Swagger exports write it),
//! `#/components/schemas/NAME` (OpenAPI 3 exports) or by API Gateway's model URL
//! `https://apigateway.amazonaws.com/restapis/ID/models/NAME`; other `#/...` pointers stay inside the
//! model. Nothing is ever fetched: a `$ref` to another document is a load error, as is a `$ref` to
//! a model that does not exist, a schema draft 4 does not accept, or a regex the engine refuses,
//! each located at the offending node (`file:line:col: models.NAME.properties.k.type: ...`).
//!
//! Invariants: every model is compiled (used or not), so a bad one fails the load, not a request;
//! a route's `validation.body` names only compiled models.
//!
//! Security: `pattern` and `patternProperties` run on the `regex` crate, whose matching is linear in
//! the input: no body can make a model's regex backtrack exponentially. Patterns that need a
//! backtracking engine (look-around, back-references) are refused at load.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::diag::Diagnostic;
use super::yaml::Doc;

/// Where the models sit in `gateway.yaml`.
const MODELS: &str = "models";
/// The prefixes a `$ref` to another model may use, before the model's name.
const MODEL_REF_PREFIXES: [&str; 2] = ["#/definitions/", "#/components/schemas/"];
/// API Gateway's own spelling of a model reference: `{this}{rest api id}/models/{name}`.
const APIGW_MODEL_URL: &str = "https://apigateway.amazonaws.com/restapis/";

/// One compiled model.
pub struct Model {
    /// Its name under `models:`.
    pub name: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).finish()
    }
}

impl Model {
    /// Checks `instance`; the error describes the first violation found, with its place in the
    /// instance (`/price: ...`) and without the instance's values (they are the caller's data and
    /// end up in the access log).
    pub fn check(&self, instance: &Value) -> Result<(), String> {
        // `is_valid` allocates nothing; only a failing body pays for one error (never the list of
        // all of them, which a large body could make as large as itself).
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        match self.validator.validate(instance) {
            Ok(()) => Ok(()),
            Err(e) => {
                let at = e.instance_path().as_str();
                let what = e.masked().to_string();
                Err(if at.is_empty() {
                    what
                } else {
                    format!("{at}: {what}")
                })
            }
        }
    }
}

/// Every model of the file by name.
#[derive(Debug, Default, Clone)]
pub struct Models(BTreeMap<String, Arc<Model>>);

impl Models {
    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.0.get(name)
    }

    /// Model names, sorted (for error messages).
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Whether `name` may name a model (it becomes part of JSON pointers).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The model a `$ref` names, when it is a reference to a model (in any of the accepted spellings).
pub fn referenced_model(reference: &str) -> Option<&str> {
    let name = MODEL_REF_PREFIXES
        .iter()
        .find_map(|p| reference.strip_prefix(p))
        .or_else(|| {
            let rest = reference.strip_prefix(APIGW_MODEL_URL)?;
            let (_api, name) = rest.split_once("/models/")?;
            Some(name)
        })?;
    (!name.contains('/')).then_some(name)
}

/// Compiles `models:`; every problem is a located diagnostic.
pub(super) fn compile(doc: &Doc, errors: &mut Vec<Diagnostic>) -> Models {
    let raw = match doc.get(MODELS) {
        None | Some(Value::Null) => return Models::default(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.push(doc.error(MODELS, "a mapping of model name to JSON Schema"));
            return Models::default();
        }
    };
    compile_map(raw, &mut |path, message| {
        errors.push(doc.error(path, message))
    })
}

/// What is wrong with `models` (name → schema), as (path under `models:`, message): what loading
/// them in `gateway.yaml` would report. Empty when they all compile.
pub fn problems(models: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    compile_map(models, &mut |path, message| {
        out.push((path.to_owned(), message))
    });
    out
}

/// Where a problem is reported: the node's path and what is wrong.
type Report<'a> = dyn FnMut(&str, String) + 'a;

fn compile_map(raw: &Map<String, Value>, report: &mut Report<'_>) -> Models {
    let failed = std::cell::Cell::new(false);
    let mut report = |path: &str, message: String| {
        failed.set(true);
        report(path, message);
    };
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    for (name, schema) in raw {
        let path = format!("{MODELS}.{name}");
        if !valid_name(name) {
            report(
                &path,
                "model names use letters, digits, `_`, `-` and `.` (at most 128)".to_owned(),
            );
            continue;
        }
        let Value::Object(_) = schema else {
            report(&path, "a model is a JSON Schema object".to_owned());
            continue;
        };
        let mut schema = schema.clone();
        rewrite_refs(&path, raw, &mut schema, &mut report);
        if let Err(e) = jsonschema::draft4::meta::validate(&schema) {
            let at = doc_path(&path, &schema, e.instance_path().as_str());
            report(&at, format!("not a JSON Schema draft 4: {e}"));
            continue;
        }
        schemas.insert(name.clone(), schema);
    }
    // One bad model would fail every model that embeds it below: report each problem once.
    if failed.get() {
        return Models::default();
    }
    let mut models = BTreeMap::new();
    for (name, schema) in &schemas {
        match build(schema, &schemas) {
            Ok(validator) => {
                let model = Model {
                    name: name.clone(),
                    validator,
                };
                models.insert(name.clone(), Arc::new(model));
            }
            Err((pointer, message)) => {
                let at = doc_path(&format!("{MODELS}.{name}"), schema, &pointer);
                report(&at, message);
            }
        }
    }
    Models(models)
}

/// Compiles `schema` with every model reachable as `#/definitions/NAME` and
/// `#/components/schemas/NAME` inside its own document, so `$ref`s resolve with nothing fetched.
/// The error is the JSON pointer of the offending node in `schema` and what is wrong.
fn build(
    schema: &Value,
    all: &BTreeMap<String, Value>,
) -> Result<jsonschema::Validator, (String, String)> {
    let mut root = schema.clone();
    let Value::Object(map) = &mut root else {
        return Err((String::new(), "a model is a JSON Schema object".to_owned()));
    };
    // API Gateway's models are draft 4 whatever they declare.
    map.remove("$schema");
    let mut definitions: Map<String, Value> =
        all.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
    if let Some(Value::Object(own)) = map.get("definitions") {
        for (n, s) in own {
            if all.contains_key(n) && all.get(n) != Some(s) {
                return Err((
                    format!("/definitions/{n}"),
                    format!("has the name of model `{n}`; rename one of them"),
                ));
            }
            definitions.insert(n.clone(), s.clone());
        }
    }
    map.insert("definitions".to_owned(), Value::Object(definitions));
    map.entry("components").or_insert_with(|| {
        let schemas: Map<String, Value> = all.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
        serde_json::json!({ "schemas": schemas })
    });
    jsonschema::draft4::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&root)
        .map_err(|e| {
            let hint = if e.to_string().ends_with("is not a \"regex\"") {
                " (patterns run on a linear-time engine: no look-around or back-references)"
            } else {
                ""
            };
            let pointer = e.instance_path().as_str();
            // A failure inside another model's embedded copy is that model's: say so here.
            let other = all.keys().find(|n| {
                MODEL_REF_PREFIXES.iter().any(|p| {
                    let inside = format!("{}{n}", &p[1..]);
                    pointer == inside || pointer.starts_with(&format!("{inside}/"))
                })
            });
            match other {
                Some(n) => (
                    String::new(),
                    format!("refers to model `{n}`, which cannot be compiled: {e}{hint}"),
                ),
                None => (pointer.to_owned(), format!("cannot be compiled: {e}{hint}")),
            }
        })
}

/// Checks every `$ref` of the model at `path` and turns API Gateway's model URLs into
/// `#/definitions/NAME`.
fn rewrite_refs(
    path: &str,
    models: &Map<String, Value>,
    node: &mut Value,
    report: &mut dyn FnMut(&str, String),
) {
    match node {
        Value::Object(map) => {
            let own_definitions: Vec<String> = map
                .get("definitions")
                .and_then(Value::as_object)
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            for (key, value) in map.iter_mut() {
                let child = format!("{path}.{key}");
                match value {
                    Value::String(reference) if key == "$ref" => {
                        if let Some(name) = referenced_model(reference) {
                            if !models.contains_key(name)
                                && !own_definitions.iter().any(|d| d == name)
                            {
                                let known: Vec<&str> = models.keys().map(String::as_str).collect();
                                report(
                                    &child,
                                    format!("no model `{name}` (models: {})", known.join(", ")),
                                );
                            } else if reference.starts_with(APIGW_MODEL_URL) {
                                *reference = format!("{}{name}", MODEL_REF_PREFIXES[0]);
                            }
                        } else if !reference.starts_with('#') {
                            report(
                                &child,
                                format!(
                                    "`{reference}` is another document, which is never fetched: put the schema under `models` and refer to it as #/definitions/NAME"
                                ),
                            );
                        }
                    }
                    _ => rewrite_refs(&child, models, value, report),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                rewrite_refs(&format!("{path}[{i}]"), models, item, report);
            }
        }
        _ => {}
    }
}

/// The `gateway.yaml` path of the node at JSON `pointer` inside `value`, which sits at `base`.
fn doc_path(base: &str, value: &Value, pointer: &str) -> String {
    let mut path = base.to_owned();
    let mut node = Some(value);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{seg}]"));
                node = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                path.push('.');
                path.push_str(&seg);
                node = other.and_then(|v| v.get(&seg));
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile_text(text: &str) -> (Models, Vec<String>) {
        let doc = Doc::parse("g.yaml", text, &|_| None).unwrap();
        let mut errors = Vec::new();
        let models = compile(&doc, &mut errors);
        (models, errors.iter().map(ToString::to_string).collect())
    }

    const PETS: &str = r##"
models:
  Pet:
    type: object
    required: [type, name, price]
    properties:
      type: { type: string, enum: [dog, cat, fish] }
      name: { type: string }
      price: { type: number, minimum: 25, maximum: 500 }
      owner: { $ref: "#/definitions/Owner" }
      tags: { type: array, items: { $ref: "#/components/schemas/Tag" } }
  Owner:
    type: object
    properties:
      email: { type: string, pattern: "^[^@]+@[^@]+$" }
  Tag:
    $ref: "https://apigateway.amazonaws.com/restapis/a1b2c3/models/Label"
  Label: { type: string, maxLength: 8 }
"##;

    #[test]
    fn models_compile_and_refer_to_each_other_in_every_spelling() {
        let (models, errors) = compile_text(PETS);
        assert!(errors.is_empty(), "{errors:?}");
        let pet = models.get("Pet").unwrap();
        let good = json!({"type": "dog", "name": "Rex", "price": 30,
            "owner": {"email": "a@b"}, "tags": ["good"]});
        assert_eq!(pet.check(&good), Ok(()));
        for (bad, at) in [
            (json!({"type": "bird", "name": "Rex", "price": 30}), "/type"),
            (
                json!({"type": "dog", "name": "Rex", "price": 501}),
                "/price",
            ),
            (json!({"type": "dog", "price": 30}), ""),
            (
                json!({"type": "dog", "name": "R", "price": 30, "owner": {"email": "nope"}}),
                "/owner/email",
            ),
            (
                json!({"type": "dog", "name": "R", "price": 30, "tags": ["far-too-long"]}),
                "/tags/0",
            ),
        ] {
            let err = pet.check(&bad).unwrap_err();
            assert!(err.starts_with(at), "{bad}: {err}");
        }
        assert_eq!(models.names(), ["Label", "Owner", "Pet", "Tag"]);
    }

    #[test]
    fn a_violation_never_quotes_the_callers_value() {
        let (models, _) = compile_text(PETS);
        let secret = "4111-1111-1111-1111";
        let err = models
            .get("Pet")
            .unwrap()
            .check(&json!({"type": secret, "name": "R", "price": 30}))
            .unwrap_err();
        assert!(!err.contains(secret), "{err}");
    }

    #[test]
    fn bad_models_are_located_errors() {
        let text = r##"
models:
  Bad name: { type: object }
  NotAnObject: [1, 2]
  WrongType:
    type: object
    properties:
      k: { type: 5 }
  Dangling:
    properties:
      x: { $ref: "#/definitions/Missing" }
  Remote:
    $ref: "https://example.com/schema.json"
"##;
        let (_, errors) = compile_text(text);
        let expected = [
            "g.yaml:3:3: models.Bad name: model names use letters",
            "g.yaml:4:3: models.NotAnObject: a model is a JSON Schema object",
            "g.yaml:8:18: models.WrongType.properties.k.type: not a JSON Schema draft 4",
            "g.yaml:11:18: models.Dangling.properties.x.$ref: no model `Missing`",
            "g.yaml:13:11: models.Remote.$ref: `https://example.com/schema.json` is another document",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, want) in errors.iter().zip(expected) {
            assert!(e.starts_with(want), "{e}\nwant: {want}");
        }
    }

    #[test]
    fn backtracking_patterns_are_refused_at_load() {
        let (_, errors) = compile_text("models:\n  M: { type: string, pattern: \"^(?=a)a$\" }\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors,
            [
                "g.yaml:2:31: models.M.pattern: cannot be compiled: \"^(?=a)a$\" is not a \"regex\" \
              (patterns run on a linear-time engine: no look-around or back-references)"
            ]
        );
    }

    #[test]
    fn a_model_failing_inside_another_is_reported_as_that_model() {
        let text = "models:\n  Bad: { type: string, pattern: \"(a)\\\\1\" }\n  Uses: { $ref: \"#/definitions/Bad\" }\n  Fine: { type: object }\n";
        let problems = problems(
            Doc::parse("g.yaml", text, &|_| None).unwrap().value["models"]
                .as_object()
                .unwrap(),
        );
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["models.Bad.pattern", "models.Uses"], "{problems:?}");
        assert!(
            problems[1]
                .1
                .starts_with("refers to model `Bad`, which cannot be compiled")
        );
    }

    #[test]
    fn references_in_each_spelling_name_a_model() {
        assert_eq!(referenced_model("#/definitions/Pet"), Some("Pet"));
        assert_eq!(referenced_model("#/components/schemas/Pet"), Some("Pet"));
        assert_eq!(
            referenced_model("https://apigateway.amazonaws.com/restapis/x1/models/Pet"),
            Some("Pet")
        );
        assert_eq!(referenced_model("#/definitions/Pet/properties/a"), None);
        assert_eq!(referenced_model("#/properties/a"), None);
    }
}
