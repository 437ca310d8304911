//! The settings of gateway.yaml that a reload cannot change: what the process built once at start
//! (listeners, runtime, HTTP server limits, the SageMaker client, the OTLP exporter, the limit
//! store's connections). A reload that changes one is refused by the field's name in the file and
//! the running configuration stays; a restart (on Fargate, a new deployment) applies it.
//!
//! Everything else (stages and their variables and canaries, throttles and caches, routes, templates,
//! validation models, integrations, gateway responses, binary media types) is per-request and
//! swaps on reload ([`crate::pipeline::Live`]).

use super::GatewayConfig;

/// The restart-only fields that differ between `old` and `new`, named as in the file
/// (`server.listen`, `sagemaker.region`, …), in file order. Never their values: a value may be a
/// secret read through `${env:…}`.
pub fn restart_only_changes(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    // `section.field as "name in the file"`, compared between `old` and `new`.
    macro_rules! compare {
        ($($($field:ident).+ as $name:literal),+ $(,)?) => {
            $(if old.$($field).+ != new.$($field).+ {
                changed.push($name);
            })+
        };
    }
    compare!(
        server.listen as "server.listen",
        server.admin_listen as "server.admin_listen",
        server.trusted_proxy_hops as "server.trusted_proxy_hops",
        server.keep_alive as "server.keep_alive_secs",
        server.client_header_timeout as "server.client_header_timeout_secs",
        server.drain_grace as "server.drain_grace_secs",
        server.max_body_bytes as "server.max_body_bytes",
        server.max_header_bytes as "server.max_header_bytes",
        server.body_timeout as "server.body_timeout_secs",
        server.memory_budget as "server.memory_budget_bytes",
        server.max_requests_in_flight as "server.max_requests_in_flight",
        server.decode_parameters as "server.decode_parameters",
        server.workers as "server.workers",
        sagemaker.region as "sagemaker.region",
        sagemaker.endpoint_url as "sagemaker.endpoint_url",
        sagemaker.max_attempts as "sagemaker.max_attempts",
        sagemaker.connect_timeout as "sagemaker.connect_timeout_ms",
        sagemaker.client as "sagemaker.client",
        sagemaker.circuit_breaker as "sagemaker.circuit_breaker",
        telemetry.otlp as "telemetry",
        limits.redis as "limits",
    );
    changed
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
