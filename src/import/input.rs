//! The input files of `sagegate import`: read as JSON or YAML by their extension (what
//! `aws apigateway get-export --accepts application/json|application/yaml` and `aws ... --output
//! json|yaml` write), and the list inside each AWS CLI output.
//!
//! Every problem here is bad input ([`BadInput`], exit status 2): a missing file, an unknown
//! extension, text that does not parse, a document of the wrong kind.

use std::path::Path;

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Input `sagegate import` cannot use; the message names the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Reads `path` (`.json`, `.yaml` or `.yml`) into a JSON value; `what` names it in errors
/// ("the export", "the get-stages output").
pub fn read_document(path: &Path, what: &str) -> Result<Value, BadInput> {
    let shown = path.display();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let yaml = match extension.as_deref() {
        Some("json") => false,
        Some("yaml" | "yml") => true,
        other => {
            return Err(BadInput(format!(
                "{shown}: unknown extension {}: {what} must be a .json, .yaml or .yml file",
                other.map_or_else(|| "(none)".to_owned(), |e| format!("`.{e}`"))
            )));
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("{shown}: cannot read {what}: {e}")))?;
    if yaml {
        parse_yaml(&text).map_err(|e| BadInput(format!("{shown}: {what} is not YAML: {e}")))
    } else {
        serde_json::from_str(&text)
            .map_err(|e| BadInput(format!("{shown}: {what} is not JSON: {e}")))
    }
}

/// A YAML document as JSON: keys as strings, YAML 1.2 core-schema scalars.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [doc] => to_json(doc),
        _ => Err("more than one document".to_owned()),
    }
}

fn to_json(y: &Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Null => "null".to_owned(),
                    _ => return Err("a mapping key is not a scalar".to_owned()),
                };
                map.insert(key, to_json(v)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("aliases are not supported".to_owned()),
    })
}

/// The list of an AWS CLI output: `items` (usage plans, keys, plan keys) or `item` (get-stages),
/// or a bare list, each entry an object with a string `field` (`id`, `stageName`). `what` and
/// `command` name the file and the command that writes it.
pub fn cli_items<'a>(
    doc: &'a Value,
    path: &Path,
    (what, command, field): (&str, &str, &str),
) -> Result<&'a [Value], BadInput> {
    let list = match doc {
        Value::Array(items) => Some(items),
        Value::Object(map) => map
            .get("items")
            .or_else(|| map.get("item"))
            .and_then(Value::as_array),
        _ => None,
    };
    let list = list.ok_or_else(|| {
        BadInput(format!(
            "{}: not {what}: expected the JSON that `{command}` prints (an object with `items`)",
            path.display()
        ))
    })?;
    if let Some(i) = list
        .iter()
        .position(|v| !v.get(field).is_some_and(Value::is_string))
    {
        return Err(BadInput(format!(
            "{}: not {what}: entry {i} has no {field}",
            path.display()
        )));
    }
    Ok(list)
}

/// A JSON pointer segment (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `base` + `/segment` for each segment.
pub fn pointer(base: &str, segments: &[&str]) -> String {
    let mut out = base.to_owned();
    for s in segments {
        out.push('/');
        out.push_str(&escape(s));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_read_alike() {
        let yaml = "openapi: \"3.0.1\"\npaths:\n  /a:\n    get:\n      responses:\n        200: { description: ok }\n        \"4\\\\d{2}\": {}\n      x-ratio: 0.5\n";
        assert_eq!(
            parse_yaml(yaml).unwrap(),
            json!({"openapi": "3.0.1", "paths": {"/a": {"get": {
                "responses": {"200": {"description": "ok"}, "4\\d{2}": {}}, "x-ratio": 0.5}}}})
        );
        assert_eq!(
            parse_yaml("a: &x 1\nb: *x\n").unwrap(),
            json!({"a": 1, "b": 1})
        );
    }

    #[test]
    fn bad_files_are_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("export.json");
        let err = read_document(&missing, "the export").unwrap_err().0;
        assert!(
            err.contains("export.json: cannot read the export:"),
            "{err}"
        );
        let txt = dir.path().join("export.txt");
        std::fs::write(&txt, "{}").unwrap();
        let err = read_document(&txt, "the export").unwrap_err().0;
        assert!(
            err.ends_with("export.txt: unknown extension `.txt`: the export must be a .json, .yaml or .yml file"),
            "{err}"
        );
        let broken = dir.path().join("export.yaml");
        std::fs::write(&broken, "a: [").unwrap();
        let err = read_document(&broken, "the export").unwrap_err().0;
        assert!(
            err.contains("export.yaml: the export is not YAML:"),
            "{err}"
        );
    }

    #[test]
    fn cli_lists_under_items_or_item() {
        let p = Path::new("plans.json");
        let plans = ("usage plans", "aws apigateway get-usage-plans", "id");
        let doc = json!({"items": [{"id": "a"}]});
        assert_eq!(cli_items(&doc, p, plans).unwrap().len(), 1);
        let doc = json!({"item": [{"stageName": "prod"}]});
        assert_eq!(
            cli_items(&doc, p, ("stages", "get-stages", "stageName"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            cli_items(&doc, p, plans).unwrap_err().0,
            "plans.json: not usage plans: entry 0 has no id"
        );
        let err = cli_items(&json!({"openapi": "3.0.1"}), p, plans)
            .unwrap_err()
            .0;
        assert_eq!(
            err,
            "plans.json: not usage plans: expected the JSON that `aws apigateway get-usage-plans` prints (an object with `items`)"
        );
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(
            pointer("", &["paths", "/a/{b}", "get", "x~y"]),
            "/paths/~1a~1{b}/get/x~0y"
        );
    }
}
