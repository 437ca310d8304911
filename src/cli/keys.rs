//! `sagegate keys list|new|disable|enable|rotate|remove --keys SOURCE`: the key lifecycle on a
//! keys file or S3 object, API Gateway's `create-api-key` / `update-api-key` / `get-api-keys` from
//! the command line.
//!
//! Each edit reads the source ([`crate::auth::write::Editable`]), checks that it loads as it is,
//! splices the change into its text ([`crate::auth::edit`]), checks the result with the gateway's
//! own validation against `--config`'s stages and routes ([`crate::auth::parse_keys`]), and writes
//! it back only if nobody changed the source meanwhile. A running gateway picks the change up at
//! its next reload (a file: when it changes; S3: at the next poll).
//!
//! Security: a new key's value is printed once, after the write succeeded, and stored nowhere; the
//! file gets its SHA-256. `list` never shows a value or a hash, only how the key is stored.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Exit, table};
use crate::auth::edit::{self, Edit, EditError};
use crate::auth::write::{Editable, WriteError};
use crate::auth::{KeySource, KeysContext, new_value, parse_keys};
use crate::config::GatewayConfig;
use crate::config::yaml::Doc;

/// One `keys` command on a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ids, names, plans, state; never values or hashes.
    List {
        /// JSON instead of a table.
        json: bool,
    },
    /// A new key, its value printed once.
    New {
        /// Key id.
        id: String,
        /// Usage plan id.
        plan: String,
        /// Display name (default: the id).
        name: Option<String>,
    },
    /// `enabled: false`.
    Disable {
        /// Key id.
        id: String,
    },
    /// `enabled: true`.
    Enable {
        /// Key id.
        id: String,
    },
    /// A new value for the same id, printed once.
    Rotate {
        /// Key id.
        id: String,
    },
    /// The entry deleted.
    Remove {
        /// Key id.
        id: String,
    },
}

/// A message and how the command ends.
struct Outcome(Exit, String);

/// Runs `command` on the keys source `keys`, checking edits against the gateway config `config`;
/// prints the outcome (stdout) or the error (stderr).
pub fn run(keys: &str, config: &Path, command: Command) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(Exit::Failed, &e.to_string()),
    };
    let Outcome(exit, message) = runtime.block_on(execute(keys, config, command));
    if exit == Exit::Done {
        print!("{message}");
    } else {
        eprintln!("sagegate keys: {message}");
    }
    exit
}

fn fail(exit: Exit, message: &str) -> Exit {
    eprintln!("sagegate keys: {message}");
    exit
}

async fn execute(keys: &str, config: &Path, command: Command) -> Outcome {
    let source = match KeySource::parse(keys) {
        Ok(s) => s,
        Err(e) => return Outcome(Exit::BadInput, e),
    };
    let editable = match Editable::open(&source).await {
        Ok(e) => e,
        Err(e) => return Outcome(Exit::Failed, format!("{source}: {e}")),
    };
    // A new value is made before the edit and printed only once the edit is written.
    let value = matches!(command, Command::New { .. } | Command::Rotate { .. }).then(new_value);
    let hash = value
        .as_deref()
        .map(|v| hex::encode(Sha256::digest(v.as_bytes())))
        .unwrap_or_default();
    let edit = match &command {
        Command::List { json } => return list(&source, &editable, *json).await,
        Command::New { id, plan, name } => Edit::Add {
            id: id.clone(),
            name: name.clone(),
            plan: plan.clone(),
            value_sha256: hash,
        },
        Command::Disable { id } | Command::Enable { id } => Edit::SetEnabled {
            id: id.clone(),
            enabled: matches!(command, Command::Enable { .. }),
        },
        Command::Rotate { id } => Edit::SetHash {
            id: id.clone(),
            value_sha256: hash,
        },
        Command::Remove { id } => Edit::Remove { id: id.clone() },
    };
    let ctx = match keys_context(config) {
        Ok(ctx) => ctx,
        Err(e) => return Outcome(Exit::BadInput, e),
    };
    if let Err(outcome) = apply(&source, &editable, &ctx, &edit).await {
        return outcome;
    }
    let next_reload = match source {
        KeySource::Path(_) => "when the running gateways reload the file (on change, or SIGHUP)",
        KeySource::S3 { .. } => {
            "at the running gateways' next poll of the object (30 s by default)"
        }
    };
    let id = edit.id();
    let message = match (&command, value) {
        (Command::New { plan, .. }, Some(value)) => format!(
            "API key `{id}` added to {source} in usage plan `{plan}`. The key (shown once; store it now):\n\n    {value}\n\nIt works {next_reload}.\n"
        ),
        (Command::Rotate { .. }, Some(value)) => format!(
            "API key `{id}` in {source} has a new value (shown once; store it now):\n\n    {value}\n\nThe old value stops working and the new one starts {next_reload}.\n"
        ),
        (Command::Disable { .. }, _) => {
            format!("API key `{id}` disabled in {source}; refused (403) {next_reload}.\n")
        }
        (Command::Enable { .. }, _) => {
            format!("API key `{id}` enabled in {source}; accepted {next_reload}.\n")
        }
        _ => format!("API key `{id}` removed from {source}; refused (403) {next_reload}.\n"),
    };
    Outcome(Exit::Done, message)
}

/// Read, check, edit, check, write. `Err` carries how the command ends.
async fn apply(
    source: &KeySource,
    editable: &Editable,
    ctx: &KeysContext,
    edit: &Edit,
) -> Result<(), Outcome> {
    let name = source.name();
    let current = editable
        .read()
        .await
        .map_err(|e| Outcome(Exit::Failed, format!("{source}: {e}")))?;
    if let Err(diags) = parse_keys(&name, &current.text, ctx) {
        return Err(Outcome(
            Exit::BadInput,
            format!(
                "{source} does not load as it is; fix it first (nothing was changed):\n{diags}"
            ),
        ));
    }
    let text = match edit::apply(&name, &current.text, edit) {
        Ok(text) => text,
        Err(EditError::Unchanged { id, state }) => {
            return Err(Outcome(
                Exit::Done,
                format!("API key `{id}` is already {state} in {source}; nothing to change.\n"),
            ));
        }
        Err(e) => {
            return Err(Outcome(
                Exit::BadInput,
                format!("{source}: {e}; nothing was changed"),
            ));
        }
    };
    if let Err(diags) = parse_keys(&name, &text, ctx) {
        return Err(Outcome(
            Exit::BadInput,
            format!("{source}: the edited file would not load; nothing was written:\n{diags}"),
        ));
    }
    editable.write(&current, &text).await.map_err(|e| match e {
        WriteError::Conflict(why) => Outcome(Exit::Conflict, why),
        WriteError::Failed(why) => Outcome(Exit::Failed, format!("{source}: {why}")),
    })
}

/// Stage names and route keys of the gateway config, which a keys file is checked against.
fn keys_context(config: &Path) -> Result<KeysContext, String> {
    let name = config.display().to_string();
    let text = std::fs::read_to_string(config).map_err(|e| {
        format!("{name}: cannot read: {e} (keys are checked against its stages and routes; pass --config FILE)")
    })?;
    let env = |n: &str| std::env::var(n).ok();
    match GatewayConfig::parse(&name, &text, &env) {
        Ok(g) => Ok(KeysContext::new(g.stage_names(), g.route_keys())),
        // A config that needs the deployment's environment still names its stages and routes.
        Err(diags) => GatewayConfig::declared_names(&name, &text, &env)
            .map(|(stages, routes)| KeysContext::new(stages, routes))
            .ok_or_else(|| format!("{name} does not parse:\n{diags}")),
    }
}

/// `keys list`: from the YAML alone (no gateway config needed), so a broken file still lists.
async fn list(source: &KeySource, editable: &Editable, json: bool) -> Outcome {
    let current = match editable.read().await {
        Ok(c) => c,
        Err(e) => return Outcome(Exit::Failed, format!("{source}: {e}")),
    };
    let doc = match Doc::parse_data(&source.name(), &current.text) {
        Ok(d) => d,
        Err(diags) => {
            let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            return Outcome(Exit::BadInput, lines.join("\n"));
        }
    };
    let keys: Vec<Value> = doc
        .value
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().map(listed).collect())
        .unwrap_or_default();
    if json {
        let body = serde_json::json!({ "source": source.name(), "keys": keys });
        return Outcome(Exit::Done, format!("{body:#}\n"));
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let plans: Vec<String> = k["usage_plans"]
                .as_array()
                .map(|p| p.iter().map(text).collect())
                .unwrap_or_default();
            vec![
                text(&k["id"]),
                text(&k["name"]),
                if k["enabled"] == Value::Bool(false) {
                    "no"
                } else {
                    "yes"
                }
                .to_owned(),
                plans.join(", "),
                text(&k["stored_as"]),
            ]
        })
        .collect();
    let header = format!("{} keys in {source}\n", keys.len());
    Outcome(
        Exit::Done,
        header
            + &table(
                &["ID", "NAME", "ENABLED", "USAGE PLANS", "STORED AS"],
                &rows,
            ),
    )
}

/// One key for `list`: everything but its value or hash.
fn listed(key: &Value) -> Value {
    let stored_as = if key.get("value_sha256").is_some() {
        "sha256"
    } else if key.get("value").is_some() {
        "plain value"
    } else {
        "missing"
    };
    serde_json::json!({
        "id": key.get("id").cloned().unwrap_or(Value::Null),
        "name": key.get("name").cloned().unwrap_or(Value::Null),
        "enabled": key.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        "usage_plans": key.get("usage_plans").cloned().unwrap_or(Value::Array(Vec::new())),
        "stored_as": stored_as,
    })
}
