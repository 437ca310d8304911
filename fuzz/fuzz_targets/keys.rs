//! Fuzz target: the keys file loader (`sagegate::auth::parse_keys`).
//!
//! Input: arbitrary bytes as the keys file text (lossily UTF-8), checked against a gateway with
//! stages `temp` and `prod` and one route.
//! Invariant: loading never panics: it returns a key set or located diagnostics, whatever the
//! text (bad YAML, wrong types, short keys, unknown plans, huge numbers, duplicate ids).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagegate::auth::{KeysContext, parse_keys};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ctx = KeysContext::new(["temp", "prod"], ["GET /recommended-movies/{user_id}"]);
    let _ = parse_keys("keys.yaml", &text, &ctx);
});
