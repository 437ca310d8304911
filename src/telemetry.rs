//! Logging: JSON lines on stdout through `tracing`, one access-log line per request (target `access`)
//! beside the application's own events. `RUST_LOG` adjusts levels (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
