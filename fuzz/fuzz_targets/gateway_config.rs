//! Fuzz target: the `gateway.yaml` loader (`sagegate::config::GatewayConfig::parse`).
//!
//! Input: arbitrary bytes as the file text (lossily UTF-8); `${env:...}` reads nothing.
//! Invariant: loading never panics and returns a config or located diagnostics; a loaded
//! config's route table resolves any path (here: every route's own template with its parameters
//! filled, and a few hostile paths) without panic, and every match indexes `routes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagegate::config::GatewayConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = GatewayConfig::parse("gateway.yaml", &text, &|_| None) else {
        return;
    };
    let mut paths: Vec<String> = config
        .routes
        .iter()
        .map(|r| {
            r.path
                .split('/')
                .map(|s| if s.starts_with('{') { "x%2Fy" } else { s })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    paths.extend(["/", "//", "/%", "/%ff", "/..", "/a/%2e%2e/b", "/\u{0}"].map(str::to_owned));
    for route in &config.routes {
        for path in &paths {
            for decode in [true, false] {
                if let Ok(m) = config.table.resolve(&route.method, path, decode) {
                    assert!(*m.value < config.routes.len());
                }
            }
        }
    }
});
