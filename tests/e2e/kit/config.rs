//! `gateway.yaml` and `keys.yaml` for a test, written as sentences and rendered to YAML text.
//!
//! [`GatewayYaml::standard`] is the shipped API (stages `temp` and `prod`, each with its own
//! endpoint variable, `GET /recommended-movies/{user_id}` with `k` and `inference_type` required)
//! plus two routes tests need: `GET /open/{user_id}` without a key, and `GET /other/{user_id}` with
//! one (to tell per-route limits apart). The admin listener is off so gateways run side by side.

use std::fmt::Write;

/// Endpoint name of stage `temp` in [`GatewayYaml::standard`].
pub const ENDPOINT_TEMP: &str = "ep-temp";
/// Endpoint name of stage `prod` in [`GatewayYaml::standard`].
pub const ENDPOINT_PROD: &str = "ep-prod";

/// The main resource path.
pub const ROUTE: &str = "/recommended-movies/{user_id}";

/// Key of `partner-a` (plan `standard`: temp and prod).
pub const KEY_A: &str = "e2e-key-partner-a-0123456789";
/// Key of `partner-off`, disabled.
pub const KEY_DISABLED: &str = "e2e-key-partner-off-0123456789";
/// Key of `temp-only` (plan `temp-only`: stage temp).
pub const KEY_TEMP_ONLY: &str = "e2e-key-temp-only-0123456789";

/// A gateway.yaml.
#[derive(Clone, Debug)]
pub struct GatewayYaml {
    max_body_bytes: usize,
    max_attempts: u32,
    timeout_ms: u64,
    trusted_proxy_hops: usize,
    drain_grace_secs: u64,
    stage_throttle: Option<(f64, u32)>,
    circuit_breaker: Option<String>,
    client: Option<&'static str>,
    /// `limits:` with the Redis store: (url, on_store_failure, timeout_ms).
    shared_limits: Option<(String, &'static str, u64)>,
    /// More lines for every route's `integration:` block.
    integration: String,
    /// More lines for every route (`shadow:`...).
    route: String,
}

impl GatewayYaml {
    /// The standard API with generous stage throttles.
    pub fn standard() -> Self {
        GatewayYaml {
            max_body_bytes: 10 * 1024 * 1024,
            max_attempts: 2,
            timeout_ms: 10_000,
            trusted_proxy_hops: 0,
            drain_grace_secs: 5,
            stage_throttle: Some((1000.0, 2000)),
            circuit_breaker: None,
            client: None,
            shared_limits: None,
            integration: String::new(),
            route: String::new(),
        }
    }

    /// Adds `field: value` to every route's `integration:` block.
    pub fn integration_field(mut self, field: &str, value: &str) -> Self {
        writeln!(self.integration, "      {field}: {value}").unwrap();
        self
    }

    /// Adds `field: value` to every route (beside `integration:`).
    pub fn route_field(mut self, field: &str, value: &str) -> Self {
        writeln!(self.route, "    {field}: {value}").unwrap();
        self
    }

    /// `limits.store: redis` at `url`, with `on_store_failure` (`local`, `deny`) and a per-call
    /// `timeout_ms`; a down store is probed every 100 ms.
    pub fn redis_limits(
        mut self,
        url: &str,
        on_store_failure: &'static str,
        timeout_ms: u64,
    ) -> Self {
        self.shared_limits = Some((url.to_owned(), on_store_failure, timeout_ms));
        self
    }

    /// `server.max_body_bytes`.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// `sagemaker.max_attempts`.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// `sagemaker.client` (`lean` or `sdk`; unset = the default).
    pub fn client(mut self, client: &'static str) -> Self {
        self.client = Some(client);
        self
    }

    /// `timeout_ms` of every route.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// `server.trusted_proxy_hops`.
    pub fn trusted_proxy_hops(mut self, n: usize) -> Self {
        self.trusted_proxy_hops = n;
        self
    }

    /// `server.drain_grace_secs`.
    pub fn drain_grace_secs(mut self, s: u64) -> Self {
        self.drain_grace_secs = s;
        self
    }

    /// The default throttle of both stages.
    pub fn stage_throttle(mut self, rate_limit: f64, burst_limit: u32) -> Self {
        self.stage_throttle = Some((rate_limit, burst_limit));
        self
    }

    /// `sagemaker.circuit_breaker` (a YAML flow mapping), inherited by every route.
    pub fn circuit_breaker(mut self, yaml: &str) -> Self {
        self.circuit_breaker = Some(yaml.to_owned());
        self
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let throttle = self
            .stage_throttle
            .map(|(r, b)| format!("    throttle: {{ rate_limit: {r}, burst_limit: {b} }}\n"))
            .unwrap_or_default();
        write!(
            s,
            r#"server:
  listen: "127.0.0.1:0"
  admin_listen: ""
  trusted_proxy_hops: {hops}
  drain_grace_secs: {grace}
  max_body_bytes: {body}
sagemaker:
  region: us-east-1
  max_attempts: {attempts}
  connect_timeout_ms: 1000
{client}{breaker}stages:
  temp:
    variables: {{ endpoint: {ENDPOINT_TEMP} }}
{throttle}  prod:
    variables: {{ endpoint: {ENDPOINT_PROD} }}
{throttle}routes:
"#,
            hops = self.trusted_proxy_hops,
            grace = self.drain_grace_secs,
            body = self.max_body_bytes,
            attempts = self.max_attempts,
            breaker = self
                .circuit_breaker
                .as_ref()
                .map(|b| format!("  circuit_breaker: {b}\n"))
                .unwrap_or_default(),
            client = self
                .client
                .map(|c| format!("  client: {c}\n"))
                .unwrap_or_default(),
        )
        .unwrap();
        for (path, key, required) in [
            (ROUTE, true, "[k, inference_type]"),
            ("/open/{user_id}", false, "[]"),
            ("/other/{user_id}", true, "[]"),
        ] {
            write!(
                s,
                r#"  - method: GET
    path: {path}
    api_key_required: {key}
    validation: {{ required_query: {required} }}
    integration:
      endpoint_name: "${{stageVariables.endpoint}}"
      content_type: application/json
      accept: application/json
      timeout_ms: {timeout}
      custom_attributes: context.requestId
      inference_id: context.requestId
{extra}{route}"#,
                timeout = self.timeout_ms,
                extra = self.integration,
                route = self.route,
            )
            .unwrap();
        }
        if let Some((url, policy, timeout_ms)) = &self.shared_limits {
            write!(
                s,
                r#"limits:
  store: redis
  on_store_failure: {policy}
  redis:
    url: "{url}"
    timeout_ms: {timeout_ms}
    connect_timeout_ms: 500
    probe_interval_ms: 100
"#
            )
            .unwrap();
        }
        s
    }
}

/// A usage plan.
#[derive(Clone, Debug)]
pub struct Plan {
    id: String,
    stages: Vec<String>,
    throttle: Option<(f64, u32)>,
    quota: Option<(u64, &'static str)>,
    route_throttles: Vec<(String, f64, u32)>,
}

impl Plan {
    /// Plan `id` covering `stages`, without limits.
    pub fn new(id: &str, stages: &[&str]) -> Self {
        Plan {
            id: id.to_owned(),
            stages: stages.iter().map(|s| (*s).to_owned()).collect(),
            throttle: None,
            quota: None,
            route_throttles: Vec::new(),
        }
    }

    /// Per-key throttle.
    pub fn throttle(mut self, rate_limit: f64, burst_limit: u32) -> Self {
        self.throttle = Some((rate_limit, burst_limit));
        self
    }

    /// Per-key quota (`DAY`, `WEEK`, `MONTH`).
    pub fn quota(mut self, limit: u64, period: &'static str) -> Self {
        self.quota = Some((limit, period));
        self
    }

    /// Per-key, per-route throttle override (`"GET /path"`).
    pub fn route_throttle(mut self, route: &str, rate_limit: f64, burst_limit: u32) -> Self {
        self.route_throttles
            .push((route.to_owned(), rate_limit, burst_limit));
        self
    }
}

/// An API key entry.
#[derive(Clone, Debug)]
pub struct Key {
    id: String,
    value: String,
    plans: Vec<String>,
    enabled: bool,
}

impl Key {
    /// Enabled key `id` with plain `value`, in `plans`.
    pub fn new(id: &str, value: &str, plans: &[&str]) -> Self {
        Key {
            id: id.to_owned(),
            value: value.to_owned(),
            plans: plans.iter().map(|s| (*s).to_owned()).collect(),
            enabled: true,
        }
    }

    /// The key is disabled.
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

/// A keys.yaml.
#[derive(Clone, Debug, Default)]
pub struct KeysYaml {
    plans: Vec<Plan>,
    keys: Vec<Key>,
    /// Raw YAML appended under `keys:` (e.g. an entry printed by `sagegate keys new`).
    raw_keys: String,
}

impl KeysYaml {
    /// Empty: no plans, no keys.
    pub fn new() -> Self {
        KeysYaml::default()
    }

    /// Plan `standard` (temp and prod, generous throttle) with `partner-a` and the disabled
    /// `partner-off`; plan `temp-only` with key `temp-only`.
    pub fn standard() -> Self {
        KeysYaml::new()
            .plan(Plan::new("standard", &["temp", "prod"]).throttle(1000.0, 2000))
            .plan(Plan::new("temp-only", &["temp"]).throttle(1000.0, 2000))
            .key(Key::new("partner-a", KEY_A, &["standard"]))
            .key(Key::new("partner-off", KEY_DISABLED, &["standard"]).disabled())
            .key(Key::new("temp-only", KEY_TEMP_ONLY, &["temp-only"]))
    }

    /// Adds a plan.
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plans.push(plan);
        self
    }

    /// Adds a key.
    pub fn key(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// Appends raw entries under `keys:`.
    pub fn raw_key_entries(mut self, yaml: &str) -> Self {
        self.raw_keys.push_str(yaml);
        self
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let mut s = String::from("usage_plans:\n");
        if self.plans.is_empty() {
            s = String::from("usage_plans: []\n");
        }
        for p in &self.plans {
            writeln!(s, "  - id: {}", p.id).unwrap();
            writeln!(s, "    stages: [{}]", p.stages.join(", ")).unwrap();
            if let Some((r, b)) = p.throttle {
                writeln!(s, "    throttle: {{ rate_limit: {r}, burst_limit: {b} }}").unwrap();
            }
            if let Some((l, period)) = p.quota {
                writeln!(s, "    quota: {{ limit: {l}, period: {period} }}").unwrap();
            }
            if !p.route_throttles.is_empty() {
                writeln!(s, "    route_throttles:").unwrap();
                for (route, r, b) in &p.route_throttles {
                    writeln!(
                        s,
                        "      \"{route}\": {{ rate_limit: {r}, burst_limit: {b} }}"
                    )
                    .unwrap();
                }
            }
        }
        if self.keys.is_empty() && self.raw_keys.is_empty() {
            s.push_str("keys: []\n");
            return s;
        }
        s.push_str("keys:\n");
        for k in &self.keys {
            writeln!(s, "  - id: {}", k.id).unwrap();
            writeln!(s, "    enabled: {}", k.enabled).unwrap();
            writeln!(s, "    usage_plans: [{}]", k.plans.join(", ")).unwrap();
            writeln!(s, "    value: {}", k.value).unwrap();
        }
        s.push_str(&self.raw_keys);
        s
    }
}
