//! Fuzz target: mapping templates (`sagegate::mapping`), parse and render.
//!
//! Input: arbitrary bytes, read as `template \0 body \0 parameter-value`.
//! Invariant: parsing never panics (it returns a template or a `ParseError`); rendering a parsed
//! template with small `Bounds` never panics, never hangs, and returns either a `RenderError` or an
//! output no longer than `Bounds::max_output_bytes`. The checks live in
//! `sagegate::mapping::harness`, shared with the property tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sagegate::mapping::harness::parse_and_render(data);
});
