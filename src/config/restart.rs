//! The settings of gateway.yaml that a reload cannot change: what the process built once at start
//! (listeners, runtime, HTTP server limits, the SageMaker client, the OTLP exporter, the limit
//! store's connections). A reload that changes one is refused by the field's name in the file and
//! the running configuration stays; a restart (on Fargate, a new deployment) applies it.
//!
//! Everything else (stages and their variables, throttles and caches, routes, templates,
//! validation models, integrations, gateway responses, binary media types) is per-request and
//! swaps on reload ([`crate::pipeline::Live`]).

use super::GatewayConfig;

/// The restart-only fields that differ between `old` and `new`, named as in the file
/// (`server.listen`, `sagemaker.region`, …), in file order. Never their values: a value may be a
/// secret read through `${env:…}`.
pub fn restart_only_changes(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let (a, b) = (&old.server, &new.server);
    let (s, t) = (&old.sagemaker, &new.sagemaker);
    [
        ("server.listen", a.listen == b.listen),
        ("server.admin_listen", a.admin_listen == b.admin_listen),
        (
            "server.trusted_proxy_hops",
            a.trusted_proxy_hops == b.trusted_proxy_hops,
        ),
        ("server.keep_alive_secs", a.keep_alive == b.keep_alive),
        (
            "server.client_header_timeout_secs",
            a.client_header_timeout == b.client_header_timeout,
        ),
        ("server.drain_grace_secs", a.drain_grace == b.drain_grace),
        (
            "server.max_body_bytes",
            a.max_body_bytes == b.max_body_bytes,
        ),
        (
            "server.max_header_bytes",
            a.max_header_bytes == b.max_header_bytes,
        ),
        ("server.body_timeout_secs", a.body_timeout == b.body_timeout),
        (
            "server.memory_budget_bytes",
            a.memory_budget == b.memory_budget,
        ),
        (
            "server.decode_parameters",
            a.decode_parameters == b.decode_parameters,
        ),
        ("server.workers", a.workers == b.workers),
        ("sagemaker.region", s.region == t.region),
        ("sagemaker.endpoint_url", s.endpoint_url == t.endpoint_url),
        ("sagemaker.max_attempts", s.max_attempts == t.max_attempts),
        (
            "sagemaker.connect_timeout_ms",
            s.connect_timeout == t.connect_timeout,
        ),
        ("sagemaker.client", s.client == t.client),
        (
            "sagemaker.circuit_breaker",
            s.circuit_breaker == t.circuit_breaker,
        ),
        ("telemetry", old.telemetry.otlp == new.telemetry.otlp),
        ("limits", old.limits.redis == new.limits.redis),
    ]
    .into_iter()
    .filter_map(|(name, same)| (!same).then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "
stages:
  prod:
    variables: { endpoint: rec }
routes:
  - method: GET
    path: /r/{id}
    integration:
      endpoint_name: ${stageVariables.endpoint}
";

    fn parse(text: &str) -> GatewayConfig {
        let env = |_: &str| None;
        match GatewayConfig::parse("gateway.yaml", text, &env) {
            Ok(c) => c,
            Err(d) => unreachable!("{d}"),
        }
    }

    #[test]
    fn per_request_changes_are_not_restart_only() {
        let old = parse(BASE);
        let new = parse(&BASE.replace("endpoint: rec", "endpoint: rec-v2"));
        assert_eq!(restart_only_changes(&old, &new), Vec::<&str>::new());
    }

    #[test]
    fn each_changed_field_is_named_in_file_order() {
        let old = parse(&format!("server:\n  listen: 0.0.0.0:8080\n{BASE}"));
        let new = parse(&format!(
            "server:\n  listen: 0.0.0.0:9090\n  max_body_bytes: 1000\n  workers: 3\n\
             sagemaker:\n  region: eu-west-1\n  max_attempts: 1\n{BASE}"
        ));
        assert_eq!(
            restart_only_changes(&old, &new),
            [
                "server.listen",
                "server.max_body_bytes",
                "server.workers",
                "sagemaker.region",
                "sagemaker.max_attempts"
            ]
        );
    }
}
