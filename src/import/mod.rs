//! `sagegate import`: an API Gateway REST API, as the AWS CLI exports it, into `gateway.yaml` and
//! `keys.yaml` that `check-config` accepts and `serve` runs.
//!
//! Input: the export (`get-export --export-type oas30|swagger --parameters extensions='apigateway'`,
//! OpenAPI 3.0 or Swagger 2.0, JSON or YAML) and optionally the stages (`get-stages`), usage plans
//! (`get-usage-plans`), each plan's keys (`get-usage-plan-keys`) and the keys with their values
//! (`get-api-keys --include-values`). Output: the two files in `--out`, and a report of what was
//! left out (each with its JSON pointer in its input and what to do instead), what changed meaning,
//! and every input added to a cache key.
//!
//! Layout, in the order an import runs:
//! - `input`: files → JSON values (by extension), the lists in CLI outputs, bad input (exit 2).
//! - `export` and `sagemaker`: the export → routes, validators and models, gateway responses.
//! - `stages`: get-stages → stage variables, throttles, caches.
//! - `keys`: usage plans and keys → `keys.yaml` entries, values hashed.
//! - `output` and [`yaml`]: the files as commented YAML.
//! - `report`: findings and cache-key additions.
//!
//! Invariants: the files are written only when both load (`GatewayConfig::parse`, `parse_keys`) and,
//! under `--strict`, nothing was left out; existing files are never overwritten without `--force`.
//! A cached route's key is extended by the gateway's own load-time analysis
//! ([`GatewayConfig::cache_key_gaps`]), never by a second one, so what `check-config` demands is
//! exactly what import adds. A method whose caller check sagegate cannot do (authorizers, IAM) is
//! left out, never imported unprotected.
//!
//! Security: key values are read only to be hashed (`value_sha256`); no value is written or
//! printed. A `${env:` in the export is refused: `gateway.yaml` would read the environment there.
//!
//! Exit statuses: 0 written; 1 refused (`--strict` with something left out, nothing to import, or a
//! result that does not load); 2 bad input (missing or unreadable file, unknown extension, not an
//! export or CLI output, inconsistent arguments).

mod export;
mod input;
mod keys;
mod output;
mod report;
mod sagemaker;
mod stages;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

pub use input::BadInput;
pub use report::{Finding, KeyAddition};

use crate::auth::{KeysContext, parse_keys};
use crate::config::GatewayConfig;

/// `sagegate import` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The export (.json, .yaml or .yml): `aws apigateway get-export --rest-api-id ID
    /// --stage-name STAGE --export-type oas30 --parameters extensions='apigateway' EXPORT.json`
    /// (or `--export-type swagger`).
    #[arg(long, value_name = "EXPORT")]
    pub openapi: PathBuf,
    /// `aws apigateway get-stages --rest-api-id ID` (stage variables, method settings, caches);
    /// without it, the export's own stage with no variables or settings.
    #[arg(long, value_name = "STAGES.json")]
    pub stages: Option<PathBuf>,
    /// `aws apigateway get-usage-plans`.
    #[arg(long, value_name = "PLANS.json")]
    pub usage_plans: Option<PathBuf>,
    /// `aws apigateway get-usage-plan-keys --usage-plan-id ID`, one file per plan, as
    /// `ID=FILE` (or `FILE` when its name holds the plan id, or there is one plan).
    #[arg(long, value_name = "[PLAN_ID=]FILE", num_args = 1..)]
    pub usage_plan_keys: Vec<String>,
    /// `aws apigateway get-api-keys --include-values` (values are hashed, never written).
    #[arg(long, value_name = "KEYS.json")]
    pub api_keys: Option<PathBuf>,
    /// Directory for gateway.yaml and keys.yaml (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write nothing (exit 1) when anything cannot be carried over.
    #[arg(long)]
    pub strict: bool,
    /// Overwrite gateway.yaml and keys.yaml already in DIR.
    #[arg(long)]
    pub force: bool,
}

/// The result of an import, before it is written.
#[derive(Debug, Clone)]
pub struct Imported {
    /// `gateway.yaml`.
    pub gateway_yaml: String,
    /// `keys.yaml`.
    pub keys_yaml: String,
    /// What was left out or changed meaning.
    pub findings: Vec<Finding>,
    /// Inputs added to cache keys.
    pub additions: Vec<KeyAddition>,
    /// One line: what was imported.
    pub summary: String,
}

/// Why an import did not write anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Exit 2.
    BadInput(String),
    /// Exit 1.
    Refused(String),
}

impl From<BadInput> for Failure {
    fn from(e: BadInput) -> Self {
        Failure::BadInput(e.0)
    }
}

/// `sagegate import`: imports, writes, prints the report.
pub fn run(args: &ImportArgs) -> ExitCode {
    let result = import(args).and_then(|imported| write(args, &imported).map(|()| imported));
    match result {
        Ok(imported) => {
            println!("{}", imported.summary);
            print!(
                "{}",
                report::render(&imported.findings, &imported.additions)
            );
            println!(
                "next: sagegate check-config --config {0}/gateway.yaml --keys {0}/keys.yaml",
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(Failure::BadInput(message)) => {
            eprintln!("sagegate import: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(message)) => {
            eprintln!("sagegate import: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the inputs of `args` and produces the two files (nothing is written).
pub fn import(args: &ImportArgs) -> Result<Imported, Failure> {
    let export_doc = input::read_document(&args.openapi, "the export")?;
    let mut findings = Vec::new();
    let api = export::read(&export_doc, &mut findings)?;
    refuse_env_references(&export_doc)?;
    let route_keys: Vec<String> = api.routes.iter().map(export::Route::key).collect();
    let mut stages = match &args.stages {
        Some(path) => {
            let doc = input::read_document(path, "the get-stages output")?;
            stages::read(&doc, path, &route_keys, &mut findings)?
        }
        None => match &api.stage {
            Some(name) => stages::from_export(name),
            None => {
                return Err(Failure::BadInput(format!(
                    "{}: the export names no stage (no basePath): pass --stages with the output of `aws apigateway get-stages --rest-api-id ID`",
                    args.openapi.display()
                )));
            }
        },
    };
    check_stage_variables(args, &api, &mut stages, &mut findings)?;
    if api.routes.is_empty() {
        return Err(Failure::Refused(format!(
            "nothing to import: no method of {} calls SageMaker\n{}",
            args.openapi.display(),
            report::render(&findings, &[])
        )));
    }
    if stages.stages.is_empty() {
        return Err(Failure::Refused(format!(
            "nothing to import: no stage can be carried over\n{}",
            report::render(&findings, &[])
        )));
    }
    if api
        .routes
        .iter()
        .any(|r| !r.integration.responses.is_empty())
    {
        findings.push(Finding::note(
            "export",
            "",
            "integration responses: an upstream error no selection pattern matches keeps sagegate's answer (the README's error table), where API Gateway answered with the default response's status",
            "add a selection pattern (424 for a model error, 5\\d{2}) to map it",
        ));
    }
    let stage_names: Vec<String> = stages.stages.iter().map(|s| s.name.clone()).collect();
    let (plans, keys) = read_keys(
        args,
        api.api_id.as_deref(),
        &stage_names,
        &route_keys,
        &mut findings,
    )?;
    let (gateway_yaml, changes) = gateway_with_complete_keys(args, &api, &stages, &findings)?;
    let keys_header = keys_header(args);
    let keys_yaml = output::keys(&plans, &keys, &keys_header);
    check_output(&gateway_yaml, &keys_yaml)?;
    let additions = additions(&api, &changes);
    if args.strict && findings.iter().any(|f| f.left_out) {
        return Err(Failure::Refused(format!(
            "--strict: not everything can be carried over; nothing written\n{}",
            report::render(&findings, &additions)
        )));
    }
    let summary = format!(
        "imported {} routes, {} models, {} stages, {} usage plans and {} keys from {} into {}",
        api.routes.len(),
        api.models.len(),
        stages.stages.len(),
        plans.len(),
        keys.len(),
        args.openapi.display(),
        args.out.display()
    );
    Ok(Imported {
        gateway_yaml,
        keys_yaml,
        findings,
        additions,
        summary,
    })
}

/// Writes the files of `imported` into `args.out`, refusing to replace existing ones without
/// `--force`.
pub fn write(args: &ImportArgs, imported: &Imported) -> Result<(), Failure> {
    let files = [
        ("gateway.yaml", &imported.gateway_yaml),
        ("keys.yaml", &imported.keys_yaml),
    ];
    if !args.force {
        for (name, _) in files {
            let path = args.out.join(name);
            if path.exists() {
                return Err(Failure::BadInput(format!(
                    "{} exists: choose another --out, or pass --force to replace it",
                    path.display()
                )));
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::BadInput(format!("{}: cannot create: {e}", args.out.display())))?;
    for (name, text) in files {
        let path = args.out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Failure::Refused(format!("{}: cannot write: {e}", path.display())))?;
    }
    Ok(())
}

/// Every `${env:` in a string of the export, refused: `gateway.yaml` interpolates them.
fn refuse_env_references(doc: &Value) -> Result<(), BadInput> {
    fn find(v: &Value, at: String) -> Option<String> {
        match v {
            Value::String(s) if s.contains("${env:") => Some(at),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| find(v, format!("{at}/{i}"))),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let here = format!("{at}/{}", input::escape(k));
                if k.contains("${env:") {
                    Some(here)
                } else {
                    find(v, here)
                }
            }),
            _ => None,
        }
    }
    match find(doc, String::new()) {
        Some(at) => Err(BadInput(format!(
            "the export holds `${{env:` at {at}: gateway.yaml would read the environment there; remove it from the API first"
        ))),
        None => Ok(()),
    }
}

/// Every stage must define the stage variables the endpoint names use; a stage that does not
/// would fail every call, and is left out (or, with no get-stages output, the import asks for it).
fn check_stage_variables(
    args: &ImportArgs,
    api: &export::Api,
    stages: &mut stages::Stages,
    findings: &mut Vec<Finding>,
) -> Result<(), BadInput> {
    let mut needed: Vec<(String, String)> = Vec::new();
    for route in &api.routes {
        let mut rest = route.integration.endpoint_name.as_str();
        while let Some(start) = rest.find("${stageVariables.") {
            let after = &rest[start + "${stageVariables.".len()..];
            let end = after.find('}').unwrap_or(after.len());
            needed.push((after[..end].to_owned(), route.key()));
            rest = &after[end..];
        }
    }
    let mut kept = Vec::new();
    for stage in std::mem::take(&mut stages.stages) {
        let missing = needed
            .iter()
            .find(|(var, _)| !stage.variables.contains_key(var));
        match missing {
            None => kept.push(stage),
            Some((var, route)) if args.stages.is_none() => {
                return Err(BadInput(format!(
                    "{route} calls the endpoint named by stage variable `{var}`, which the export does not hold: pass --stages with the output of `aws apigateway get-stages --rest-api-id ID`"
                )));
            }
            Some((var, route)) => findings.push(Finding::left_out(
                "get-stages",
                stage.from.trim_start_matches("get-stages#").to_owned(),
                format!(
                    "stage {}: no variable `{var}`, which {route} needs for its endpoint name",
                    stage.name
                ),
                "add the variable to the stage in gateway.yaml",
            )),
        }
    }
    stages.stages = kept;
    Ok(())
}

/// The plan-keys files of `args` with the plan id each was fetched for.
fn plan_keys_files(
    args: &ImportArgs,
    plan_ids: &[String],
) -> Result<Vec<(String, PathBuf)>, BadInput> {
    let mut out = Vec::new();
    for arg in &args.usage_plan_keys {
        if let Some((id, file)) = arg.split_once('=')
            && plan_ids.iter().any(|p| p == id)
        {
            out.push((id.to_owned(), PathBuf::from(file)));
            continue;
        }
        let path = PathBuf::from(arg);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        let named: Vec<&String> = plan_ids
            .iter()
            .filter(|id| stem.contains(id.as_str()))
            .collect();
        let id = match (named.as_slice(), plan_ids) {
            ([one], _) => (*one).clone(),
            ([], [only]) => only.clone(),
            _ => {
                return Err(BadInput(format!(
                    "--usage-plan-keys {arg}: which usage plan is it for? get-usage-plan-keys does not say: write PLAN_ID={arg} (plans: {})",
                    plan_ids.join(", ")
                )));
            }
        };
        out.push((id, path));
    }
    Ok(out)
}

fn read_keys(
    args: &ImportArgs,
    api_id: Option<&str>,
    stage_names: &[String],
    route_keys: &[String],
    findings: &mut Vec<Finding>,
) -> Result<(Vec<keys::Plan>, Vec<keys::Key>), Failure> {
    let plans_doc = match &args.usage_plans {
        Some(p) => Some((
            p.as_path(),
            input::read_document(p, "the get-usage-plans output")?,
        )),
        None => None,
    };
    let plan_ids: Vec<String> = match &plans_doc {
        Some((path, doc)) => input::cli_items(doc, path, keys::PLANS)?
            .iter()
            .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        None if !args.usage_plan_keys.is_empty() => {
            return Err(Failure::BadInput(
                "--usage-plan-keys needs --usage-plans (the plans the keys are in)".to_owned(),
            ));
        }
        None => Vec::new(),
    };
    let mut plan_keys_docs = Vec::new();
    for (id, path) in plan_keys_files(args, &plan_ids)? {
        let doc = input::read_document(&path, "the get-usage-plan-keys output")?;
        plan_keys_docs.push((id, path, doc));
    }
    let api_keys_doc = match &args.api_keys {
        Some(p) => Some((
            p.as_path(),
            input::read_document(p, "the get-api-keys output")?,
        )),
        None => None,
    };
    let sources = keys::Sources {
        plans: plans_doc.as_ref().map(|(p, d)| (*p, d)),
        plan_keys: plan_keys_docs
            .iter()
            .map(|(id, p, d)| (id.clone(), (p.as_path(), d)))
            .collect(),
        api_keys: api_keys_doc.as_ref().map(|(p, d)| (*p, d)),
    };
    Ok(keys::read(
        &sources,
        api_id,
        stage_names,
        route_keys,
        findings,
    )?)
}

/// `gateway.yaml` whose cached routes' keys hold everything they read: the gateway's load-time
/// analysis names what is missing, it is added (or, when no key can hold it, the route's caching
/// is turned off), until the analysis finds nothing.
fn gateway_with_complete_keys(
    args: &ImportArgs,
    api: &export::Api,
    stages: &stages::Stages,
    findings: &[Finding],
) -> Result<(String, output::KeyChanges), Failure> {
    let mut changes = output::KeyChanges::default();
    // Each round adds what the last text missed; a route's needs do not depend on its key, so
    // the second round finds nothing. The bound only guards against a loop.
    for _ in 0..4 {
        let header = gateway_header(args, api, findings, &changes);
        let text = output::gateway(api, stages, &changes, &header);
        let gaps = GatewayConfig::cache_key_gaps("gateway.yaml", &text, &|_| None)
            .map_err(|d| does_not_load("gateway.yaml", &d.to_string()))?;
        if gaps.is_empty() {
            return Ok((text, changes));
        }
        for gap in gaps {
            match gap.part {
                Ok(part) => changes
                    .added
                    .entry(gap.route)
                    .or_default()
                    .push((part.to_string(), gap.what)),
                Err(_) => {
                    changes.uncached.entry(gap.route).or_insert(gap.what);
                }
            }
        }
    }
    Err(Failure::Refused(
        "the cache keys of the imported routes do not settle (a bug in sagegate import)".to_owned(),
    ))
}

fn does_not_load(file: &str, diagnostics: &str) -> Failure {
    Failure::Refused(format!(
        "the imported {file} does not load, so nothing was written; please report this with the export:\n{diagnostics}"
    ))
}

/// Both files load as `serve` would load them.
fn check_output(gateway_yaml: &str, keys_yaml: &str) -> Result<(), Failure> {
    let config = GatewayConfig::parse("gateway.yaml", gateway_yaml, &|_| None)
        .map_err(|d| does_not_load("gateway.yaml", &d.to_string()))?;
    let ctx = KeysContext::new(config.stage_names(), config.route_keys());
    parse_keys("keys.yaml", keys_yaml, &ctx)
        .map_err(|d| does_not_load("keys.yaml", &d.to_string()))?;
    Ok(())
}

fn additions(api: &export::Api, changes: &output::KeyChanges) -> Vec<KeyAddition> {
    let mut out = Vec::new();
    for (i, route) in api.routes.iter().enumerate() {
        for (part, what) in changes.added.get(&i).into_iter().flatten() {
            out.push(KeyAddition {
                route: route.key(),
                part: Some(part.clone()),
                what: what.clone(),
            });
        }
        if let Some(what) = changes.uncached.get(&i) {
            out.push(KeyAddition {
                route: route.key(),
                part: None,
                what: what.clone(),
            });
        }
    }
    out
}

/// The input files, one line each; `keys_only`: those `keys.yaml` comes from.
fn sources(args: &ImportArgs, keys_only: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut add = |what: &str, path: Option<&Path>| {
        if let Some(p) = path {
            lines.push(format!("  {what:<20} {}", p.display()));
        }
    };
    if !keys_only {
        add("export:", Some(&args.openapi));
        add("get-stages:", args.stages.as_deref());
    }
    add("get-usage-plans:", args.usage_plans.as_deref());
    for k in &args.usage_plan_keys {
        add("get-usage-plan-keys:", Some(Path::new(k)));
    }
    add("get-api-keys:", args.api_keys.as_deref());
    lines
}

fn gateway_header(
    args: &ImportArgs,
    api: &export::Api,
    findings: &[Finding],
    changes: &output::KeyChanges,
) -> Vec<String> {
    let version = match api.version {
        export::Version::Swagger2 => "Swagger 2.0",
        export::Version::OpenApi3 => "OpenAPI 3.0",
    };
    let mut lines = vec![
        format!(
            "sagegate gateway.yaml imported from API Gateway by `sagegate import` ({version}{}{}).",
            api.title
                .as_deref()
                .map_or_else(String::new, |t| format!(", \"{t}\"")),
            api.api_id
                .as_deref()
                .map_or_else(String::new, |id| format!(", REST API {id}")),
        ),
        "Inputs:".to_owned(),
    ];
    lines.extend(sources(args, false));
    lines.push(
        "Each piece names where it came from (file#JSON pointer). Review it, then:".to_owned(),
    );
    lines.push(format!(
        "  sagegate check-config --config {0}/gateway.yaml --keys {0}/keys.yaml",
        args.out.display()
    ));
    let report = report::render(findings, &additions(api, changes));
    if !report.is_empty() {
        lines.push(String::new());
        lines.extend(report.lines().map(str::to_owned));
    }
    lines
}

fn keys_header(args: &ImportArgs) -> Vec<String> {
    let mut lines = vec![
        "sagegate keys.yaml imported from API Gateway by `sagegate import`.".to_owned(),
        "Key values were read only to be hashed: this file holds their SHA-256 (value_sha256)."
            .to_owned(),
        "Inputs:".to_owned(),
    ];
    let inputs = sources(args, true);
    if inputs.is_empty() {
        lines
            .push("  none: no usage plans or keys were given, so every key is refused.".to_owned());
    }
    lines.extend(inputs);
    lines
}

#[cfg(test)]
mod tests;
