//! Fuzz target: the router (`sagegate::route`), table building and resolution.
//!
//! Input: arbitrary bytes read as lines: the first line is the request (`METHOD /stage/path`),
//! every further line a route (`METHOD /template`, e.g. `GET /a/{b}/{rest+}`).
//! Invariant: `split_stage` and `RouteTable::build` never panic (a bad template is a
//! `RouteSpecError`); a built table resolves any method and path, decoded or raw, without panic,
//! and a match names one of the routes given, with parameter values taken from the path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagegate::route::{RouteSpec, RouteTable, split_stage};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let request = lines.next().unwrap_or_default();
    let (method, path) = request.split_once(' ').unwrap_or(("GET", request));
    let specs: Vec<RouteSpec<usize>> = lines
        .take(64)
        .enumerate()
        .map(|(i, l)| {
            let (m, p) = l.split_once(' ').unwrap_or(("GET", l));
            RouteSpec::new(m, p, i)
        })
        .collect();
    let count = specs.len();
    let Some((_stage, rest)) = split_stage(path) else {
        return;
    };
    let Ok(table) = RouteTable::build(specs) else {
        return;
    };
    for decode in [true, false] {
        if let Ok(matched) = table.resolve(method, rest, decode) {
            assert!(
                *matched.value < count,
                "a match names a route that was given"
            );
        }
    }
});
