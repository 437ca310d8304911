//! Tests for the `route` stage: precedence, methods, decoding, refusals, build errors, and the
//! property "the most specific route wins" against a brute-force oracle.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::path::decodes_to_utf8;
use super::{
    BadPathReason, RouteError, RouteSpec, RouteTable, decode_query, last_value, split_stage,
};

fn table(routes: &[(&str, &str)]) -> RouteTable<usize> {
    let specs = routes
        .iter()
        .enumerate()
        .map(|(i, (method, path))| RouteSpec::new(*method, *path, i))
        .collect();
    match RouteTable::build(specs) {
        Ok(table) => table,
        Err(errors) => panic!("unexpected build errors: {errors:?}"),
    }
}

/// `(template, params)` of the route matched, or the error.
fn hit(
    table: &RouteTable<usize>,
    method: &str,
    path: &str,
    decode: bool,
) -> Result<(String, Vec<(String, String)>), RouteError> {
    table
        .resolve(method, path, decode)
        .map(|m| (m.resource_path.to_owned(), m.params))
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn build_errors(routes: &[(&str, &str)]) -> Vec<(usize, String)> {
    let specs = routes
        .iter()
        .map(|(method, path)| RouteSpec::new(*method, *path, ()))
        .collect();
    match RouteTable::build(specs) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| (e.index, e.message)).collect(),
    }
}

#[test]
fn split_stage_takes_the_first_segment() {
    assert_eq!(
        split_stage("/temp/recommended-movies/U:1"),
        Some(("temp", "/recommended-movies/U:1"))
    );
    assert_eq!(split_stage("/temp"), Some(("temp", "/")));
    assert_eq!(split_stage("/temp/"), Some(("temp", "/")));
    assert_eq!(split_stage("/temp//"), Some(("temp", "//")));
    assert_eq!(split_stage("/"), None);
    assert_eq!(split_stage(""), None);
    assert_eq!(split_stage("//x"), None);
    assert_eq!(split_stage("temp/x"), None);
}

#[test]
fn seed_route_accepts_both_spellings_of_the_user_id() {
    let t = table(&[("GET", "/recommended-movies/{user_id}")]);
    for path in [
        "/recommended-movies/U:114521",
        "/recommended-movies/U%3A114521",
    ] {
        assert_eq!(
            hit(&t, "GET", path, true),
            Ok((
                "/recommended-movies/{user_id}".to_owned(),
                params(&[("user_id", "U:114521")])
            )),
            "{path}"
        );
    }
    // AWS raw behaviour: the value is the segment as sent.
    assert_eq!(
        hit(&t, "GET", "/recommended-movies/U%3A114521", false).map(|(_, p)| p),
        Ok(params(&[("user_id", "U%3A114521")]))
    );
    assert_eq!(
        hit(&t, "GET", "/recommended-movies/U:114521", false).map(|(_, p)| p),
        Ok(params(&[("user_id", "U:114521")]))
    );
}

#[test]
fn precedence_static_then_param_then_greedy_with_backtracking() {
    let t = table(&[
        ("GET", "/a/b/c"),
        ("GET", "/a/{x}/d"),
        ("GET", "/a/{rest+}"),
        ("GET", "/a/b"),
        ("GET", "/{top}/b/e"),
    ]);
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let cases: &[Case] = &[
        ("/a/b/c", "/a/b/c", &[]),
        // Static `b` fails one level deeper (no `d` under /a/b): back to `{x}`.
        ("/a/b/d", "/a/{x}/d", &[("x", "b")]),
        // Neither `/a/b/…` nor `/a/{x}/…` has `f`: back to the greedy route.
        ("/a/b/f", "/a/{rest+}", &[("rest", "b/f")]),
        ("/a/z/d", "/a/{x}/d", &[("x", "z")]),
        ("/a/z", "/a/{rest+}", &[("rest", "z")]),
        ("/a/b", "/a/b", &[]),
        ("/a/b/c/d/e", "/a/{rest+}", &[("rest", "b/c/d/e")]),
        // The static `a` branch and its greedy route fail for this shape: back to `{top}` at the root.
        ("/q/b/e", "/{top}/b/e", &[("top", "q")]),
        ("/a/b/e", "/a/{rest+}", &[("rest", "b/e")]),
    ];
    for (path, template, expected) in cases {
        assert_eq!(
            hit(&t, "GET", path, true),
            Ok(((*template).to_owned(), params(expected))),
            "{path}"
        );
    }
    // A parent path does not match its greedy child.
    assert_eq!(hit(&t, "GET", "/a", true), Err(RouteError::NotFound));
    assert_eq!(hit(&t, "GET", "/", true), Err(RouteError::NotFound));
}

#[test]
fn root_and_root_greedy() {
    let t = table(&[("GET", "/"), ("ANY", "/{proxy+}")]);
    assert_eq!(hit(&t, "GET", "/", true), Ok(("/".to_owned(), vec![])));
    assert_eq!(
        hit(&t, "POST", "/x/y", true),
        Ok(("/{proxy+}".to_owned(), params(&[("proxy", "x/y")])))
    );
    assert_eq!(hit(&t, "POST", "/", true), Err(RouteError::NotFound));
}

#[test]
fn trailing_slash_is_ignored_and_empty_segments_match_nothing() {
    let t = table(&[("GET", "/a/b/"), ("GET", "/g/{p+}"), ("GET", "/{x}")]);
    assert_eq!(
        hit(&t, "GET", "/a/b", true),
        Ok(("/a/b".to_owned(), vec![]))
    );
    assert_eq!(
        hit(&t, "GET", "/a/b/", true),
        Ok(("/a/b".to_owned(), vec![]))
    );
    assert_eq!(
        hit(&t, "GET", "/g/x/y/", true),
        Ok(("/g/{p+}".to_owned(), params(&[("p", "x/y")])))
    );
    for path in ["/a//b", "/a/b//", "//", "//a", "/g/x//y", "/g//", "", "a/b"] {
        assert_eq!(
            hit(&t, "GET", path, true),
            Err(RouteError::NotFound),
            "{path:?}"
        );
    }
}

#[test]
fn methods_exact_then_any_and_no_head_fallback() {
    let t = table(&[
        ("GET", "/m"),
        ("ANY", "/m"),
        ("POST", "/only-post"),
        ("GET", "/p/b"),
        ("ANY", "/p/{x}"),
    ]);
    let got = |method: &str, path: &str| {
        t.resolve(method, path, true)
            .map(|m| (*m.value, m.route_method))
    };
    assert_eq!(got("GET", "/m"), Ok((0, "GET")));
    assert_eq!(got("POST", "/m"), Ok((1, "ANY")));
    assert_eq!(got("HEAD", "/m"), Ok((1, "ANY")));
    assert_eq!(got("POST", "/only-post"), Ok((2, "POST")));
    // Known path, method not defined: NotFound (API Gateway: 403, not 405).
    assert_eq!(got("GET", "/only-post"), Err(RouteError::NotFound));
    // HEAD does not fall back to GET.
    assert_eq!(got("HEAD", "/only-post"), Err(RouteError::NotFound));
    // Methods are case-sensitive; `ANY` and methods outside the seven never match.
    assert_eq!(got("get", "/m"), Err(RouteError::NotFound));
    assert_eq!(got("ANY", "/m"), Err(RouteError::NotFound));
    assert_eq!(got("TRACE", "/m"), Err(RouteError::NotFound));
    // The method is part of the route: POST /p/b falls through to ANY /p/{x}.
    assert_eq!(got("GET", "/p/b"), Ok((3, "GET")));
    assert_eq!(got("POST", "/p/b"), Ok((4, "ANY")));
    let head_only = table(&[("GET", "/x"), ("HEAD", "/x")]);
    assert_eq!(
        head_only.resolve("HEAD", "/x", true).map(|m| *m.value),
        Ok(1)
    );
}

#[test]
fn escaped_slash_stays_inside_its_segment() {
    let t = table(&[("GET", "/files/{name}"), ("GET", "/tree/{path+}")]);
    assert_eq!(
        hit(&t, "GET", "/files/a%2Fb", true).map(|(_, p)| p),
        Ok(params(&[("name", "a/b")]))
    );
    assert_eq!(
        hit(&t, "GET", "/files/a%2fb", false).map(|(_, p)| p),
        Ok(params(&[("name", "a%2fb")]))
    );
    assert_eq!(
        hit(&t, "GET", "/files/a/b", true),
        Err(RouteError::NotFound)
    );
    assert_eq!(
        hit(&t, "GET", "/tree/a%2Fb/c%20d", true).map(|(_, p)| p),
        Ok(params(&[("path", "a/b/c d")]))
    );
    assert_eq!(
        hit(&t, "GET", "/tree/a%2Fb/c%20d", false).map(|(_, p)| p),
        Ok(params(&[("path", "a%2Fb/c%20d")]))
    );
    // `+` in a path is a plus, not a space.
    assert_eq!(
        hit(&t, "GET", "/files/a+b", true).map(|(_, p)| p),
        Ok(params(&[("name", "a+b")]))
    );
}

#[test]
fn static_segments_match_the_decoded_request_segment() {
    let t = table(&[("GET", "/recommended-movies/{user_id}"), ("GET", "/a b")]);
    for decode in [true, false] {
        assert_eq!(
            hit(&t, "GET", "/recommended%2Dmovies/U%3A1", decode).map(|(r, _)| r),
            Ok("/recommended-movies/{user_id}".to_owned())
        );
        assert_eq!(
            hit(&t, "GET", "/a%20b", decode).map(|(r, _)| r),
            Ok("/a b".to_owned())
        );
    }
    assert_eq!(
        hit(&t, "GET", "/recommended%2dmovies/x", true).map(|(r, _)| r),
        Ok("/recommended-movies/{user_id}".to_owned())
    );
}

#[test]
fn bad_paths_are_refused_in_both_modes() {
    let t = table(&[("ANY", "/{proxy+}"), ("GET", "/x/{p}")]);
    let bad = |reason| Err(RouteError::BadPath(reason));
    for decode in [true, false] {
        for (path, reason) in [
            ("/x/%zz", BadPathReason::MalformedEscape),
            ("/x/%4", BadPathReason::MalformedEscape),
            ("/x/a%", BadPathReason::MalformedEscape),
            ("/x/%G0", BadPathReason::MalformedEscape),
            ("/x/..", BadPathReason::DotSegment),
            ("/x/.", BadPathReason::DotSegment),
            ("/../x", BadPathReason::DotSegment),
            ("/x/%2E%2E", BadPathReason::DotSegment),
            ("/x/.%2e", BadPathReason::DotSegment),
            ("/x/%2e", BadPathReason::DotSegment),
            ("/x/a%00b", BadPathReason::ControlChar),
            ("/x/a\0b", BadPathReason::ControlChar),
            ("/x/a%0Ab", BadPathReason::ControlChar),
            ("/x/a\tb", BadPathReason::ControlChar),
            ("/x/%7f", BadPathReason::ControlChar),
            // Checked before the empty-segment rule and before routing.
            ("/x//%zz", BadPathReason::MalformedEscape),
            ("/nothing/here/..", BadPathReason::DotSegment),
            // An escaped `/` makes dot segments of its own once the value is decoded.
            ("/x/x%2F..%2Fy", BadPathReason::DotSegment),
            ("/x/..%2fetc", BadPathReason::DotSegment),
            ("/x/a%2F.", BadPathReason::DotSegment),
            ("/x/%2E%2E%2F%2E%2E%2Fsecret", BadPathReason::DotSegment),
            ("/g/a/b%2F..", BadPathReason::DotSegment),
        ] {
            assert_eq!(
                hit(&t, "GET", path, decode),
                bad(reason),
                "{path:?} decode={decode}"
            );
        }
    }
    // Dots inside a segment are ordinary text, also around an escaped `/`.
    for path in [
        "/x/...",
        "/x/.a",
        "/x/a..b",
        "/x/a%2F...%2Fb",
        "/x/a%2F.b",
        "/x/%2F",
    ] {
        assert!(hit(&t, "GET", path, true).is_ok(), "{path}");
    }
}

#[test]
fn invalid_utf8_is_refused_only_when_decoding() {
    let t = table(&[("GET", "/x/{p}"), ("GET", "/g/{p+}")]);
    for path in [
        "/x/%FF",
        "/x/a%C3",
        "/x/%C3%28",
        "/x/%ED%A0%80",
        "/g/ok/%E2%82",
    ] {
        assert_eq!(
            hit(&t, "GET", path, true),
            Err(RouteError::BadPath(BadPathReason::InvalidUtf8)),
            "{path}"
        );
        assert!(hit(&t, "GET", path, false).is_ok(), "{path}");
    }
    assert_eq!(
        hit(&t, "GET", "/x/caf%C3%A9", true).map(|(_, p)| p),
        Ok(params(&[("p", "café")]))
    );
    assert_eq!(
        hit(&t, "GET", "/x/café", true).map(|(_, p)| p),
        Ok(params(&[("p", "café")]))
    );
}

#[test]
fn utf8_check_across_chunk_boundaries() {
    // 'é' is two bytes: with an odd prefix, some `é` straddles every 64-byte chunk boundary.
    for prefix in 0..4 {
        let valid = format!("{}{}", "a".repeat(prefix), "%C3%A9".repeat(100));
        assert!(decodes_to_utf8(&valid, false), "{prefix}");
        let cut = format!("{}{}%C3", "a".repeat(prefix), "%C3%A9".repeat(100));
        assert!(!decodes_to_utf8(&cut, false), "{prefix}");
    }
    let four_byte = format!("a{}", "%F0%9F%98%80".repeat(40));
    assert!(decodes_to_utf8(&four_byte, false));
}

#[test]
fn build_reports_every_invalid_entry() {
    let errors = build_errors(&[
        ("GET", "/ok/{id}"),
        ("GET", "/a/{}"),
        ("GET", "/a/{+}"),
        ("GET", "/a/{bad name}"),
        ("GET", "/a/{x+}/b"),
        ("GET", "/a/{x}/{x}"),
        ("GET", "/a/{x}/{x+}"),
        ("GET", "/ok/{other}"),
        ("FETCH", "/m"),
        ("get", "/m"),
        ("GET", "no-slash"),
        ("GET", "/a//b"),
        ("GET", "/a/pre{x}"),
        ("GET", "/a/%2D"),
        ("GET", "/a/.."),
        ("GET", "//"),
        ("BREW", "/{}"),
    ]);
    let indices: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16]
    );
    let message = |i: usize| errors[i].1.as_str();
    assert!(
        message(0).contains("empty parameter name"),
        "{}",
        message(0)
    );
    assert!(
        message(1).contains("empty parameter name"),
        "{}",
        message(1)
    );
    assert!(
        message(2).contains("must match ^[a-zA-Z0-9._$-]+$"),
        "{}",
        message(2)
    );
    assert!(
        message(3).contains("must be the last segment"),
        "{}",
        message(3)
    );
    assert!(
        message(4).contains("duplicate parameter name"),
        "{}",
        message(4)
    );
    assert!(
        message(5).contains("duplicate parameter name"),
        "{}",
        message(5)
    );
    assert!(
        message(6).contains("same method and path as routes[0]"),
        "{}",
        message(6)
    );
    assert!(message(7).contains("must be one of GET"), "{}", message(7));
    assert!(message(8).contains("must be one of GET"), "{}", message(8));
    assert!(message(9).contains("must start with '/'"), "{}", message(9));
    assert!(message(10).contains("empty segment"), "{}", message(10));
    assert!(message(11).contains("whole segment"), "{}", message(11));
    assert!(message(12).contains("no '%'"), "{}", message(12));
    assert!(message(13).contains("dot segment"), "{}", message(13));
    assert!(message(14).contains("empty segment"), "{}", message(14));
    // Both problems of one entry are reported.
    assert!(
        message(15).contains("must be one of GET"),
        "{}",
        message(15)
    );
    assert!(
        message(16).contains("empty parameter name"),
        "{}",
        message(16)
    );
    // Display names the entry.
    let error = super::RouteSpecError {
        index: 3,
        message: "x".to_owned(),
    };
    assert_eq!(error.to_string(), "routes[3]: x");
}

#[test]
fn build_accepts_what_api_gateway_accepts() {
    assert!(
        build_errors(&[
            ("GET", "/"),
            ("GET", "/a/{x}"),
            ("POST", "/a/{y}"),
            ("ANY", "/a/{z}"),
            ("GET", "/a/{x+}"),
            ("GET", "/a/b"),
            ("GET", "/v1.0/{a.b_c$-D9}/{proxy+}"),
            ("GET", "/users/U:1"),
        ])
        .is_empty()
    );
    // The same path with and without a trailing slash is one path.
    let errors = build_errors(&[("GET", "/a/b"), ("GET", "/a/b/")]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, 1);
}

#[test]
fn table_introspection() {
    let t = table(&[("GET", "/a/b/"), ("ANY", "/{p+}")]);
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
    let listed: Vec<_> = t.iter().map(|(m, p, v)| (m, p.to_owned(), *v)).collect();
    assert_eq!(
        listed,
        [
            ("GET", "/a/b".to_owned(), 0),
            ("ANY", "/{p+}".to_owned(), 1)
        ]
    );
}

#[test]
fn query_strings() {
    let q = "k=10&inference_type=deterministic&k=5&flag&&name=a+b%20c%2B&empty=&=v&eq=a=b";
    let decoded = decode_query(q, true).unwrap();
    assert_eq!(
        decoded,
        params(&[
            ("k", "10"),
            ("inference_type", "deterministic"),
            ("k", "5"),
            ("flag", ""),
            ("name", "a b c+"),
            ("empty", ""),
            ("", "v"),
            ("eq", "a=b"),
        ])
    );
    assert_eq!(last_value(&decoded, "k"), Some("5"));
    assert_eq!(last_value(&decoded, "flag"), Some(""));
    assert_eq!(last_value(&decoded, "missing"), None);
    let raw = decode_query(q, false).unwrap();
    assert_eq!(last_value(&raw, "name"), Some("a+b%20c%2B"));
    assert_eq!(
        decode_query("user=U%3A114521&x=%E2%82%AC", true).unwrap(),
        params(&[("user", "U:114521"), ("x", "€")])
    );
    assert_eq!(decode_query("", true).unwrap(), vec![]);
    for bad in ["a=%zz", "a=%4", "%=1"] {
        assert_eq!(
            decode_query(bad, true),
            Err(RouteError::BadPath(BadPathReason::MalformedEscape)),
            "{bad}"
        );
        assert!(decode_query(bad, false).is_ok(), "{bad}");
    }
    assert_eq!(
        decode_query("a=%FF", true),
        Err(RouteError::BadPath(BadPathReason::InvalidUtf8))
    );
    assert_eq!(
        last_value(&decode_query("a=%FF", false).unwrap(), "a"),
        Some("%FF")
    );
}

// ---- property: the most specific route wins -------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Static(&'static str),
    Param,
    Greedy,
}

impl Kind {
    fn rank(self) -> u8 {
        match self {
            Kind::Static(_) => 0,
            Kind::Param => 1,
            Kind::Greedy => 2,
        }
    }
}

const ROUTE_METHODS: [&str; 3] = ["GET", "POST", "ANY"];
const REQUEST_METHODS: [&str; 5] = ["GET", "POST", "HEAD", "PUT", "ANY"];
/// Request segments: raw text and what it decodes to. Some are escaped spellings of statics.
const REQUEST_SEGMENTS: [(&str, &str); 9] = [
    ("a", "a"),
    ("b", "b"),
    ("c", "c"),
    ("d", "d"),
    ("%61", "a"),
    ("%62", "b"),
    ("x%2Fy", "x/y"),
    ("U:1", "U:1"),
    ("U%3A1", "U:1"),
];

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(Kind::Static),
        2 => Just(Kind::Param),
        1 => Just(Kind::Greedy),
    ]
}

/// A route: method index and template parts (greedy only last, so every template is valid).
fn route() -> impl Strategy<Value = (usize, Vec<Kind>)> {
    (0..ROUTE_METHODS.len(), prop::collection::vec(kind(), 0..5)).prop_map(|(method, mut parts)| {
        let last = parts.len().saturating_sub(1);
        for (i, part) in parts.iter_mut().enumerate() {
            if *part == Kind::Greedy && i != last {
                *part = Kind::Param;
            }
        }
        (method, parts)
    })
}

fn template(parts: &[Kind]) -> String {
    if parts.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Kind::Static(s) => out.push_str(&format!("/{s}")),
            // Names vary by position and route, to check that names do not split paths.
            Kind::Param => out.push_str(&format!("/{{p{i}}}")),
            Kind::Greedy => out.push_str(&format!("/{{g{i}+}}")),
        }
    }
    out
}

/// Whether `parts` matches the request, and the (raw, decoded) parameter values if so.
fn oracle_match(parts: &[Kind], request: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    let mut values = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Kind::Static(s) => {
                if request.get(i)?.1 != *s {
                    return None;
                }
            }
            Kind::Param => {
                let (raw, decoded) = request.get(i)?;
                values.push(((*raw).to_owned(), (*decoded).to_owned()));
            }
            Kind::Greedy => {
                let rest = request.get(i..).filter(|rest| !rest.is_empty())?;
                let raw: Vec<&str> = rest.iter().map(|(r, _)| *r).collect();
                let decoded: Vec<&str> = rest.iter().map(|(_, d)| *d).collect();
                values.push((raw.join("/"), decoded.join("/")));
                return Some(values);
            }
        }
    }
    (parts.len() == request.len()).then_some(values)
}

proptest! {
    // Failures are saved beside this file (`tests.regressions`, committed) rather than in a
    // crate-level `proptest-regressions/`, so the module carries its own seeds.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn most_specific_route_wins(
        routes in prop::collection::vec(route(), 0..12),
        request in prop::collection::vec(prop::sample::select(REQUEST_SEGMENTS.to_vec()), 0..6),
        method in prop::sample::select(REQUEST_METHODS.to_vec()),
        trailing_slash in any::<bool>(),
        decode in any::<bool>(),
    ) {
        // Drop later duplicates (same method and shape); `build` would reject them.
        let mut kept: Vec<(usize, Vec<Kind>)> = Vec::new();
        for (m, parts) in routes {
            let same = kept.iter().any(|(km, kp)| {
                *km == m && kp.len() == parts.len()
                    && kp.iter().zip(&parts).all(|(a, b)| a.rank() == b.rank()
                        && (a.rank() != 0 || a == b))
            });
            if !same {
                kept.push((m, parts));
            }
        }
        let specs = kept
            .iter()
            .enumerate()
            .map(|(i, (m, parts))| RouteSpec::new(ROUTE_METHODS[*m], template(parts), i))
            .collect();
        let table = RouteTable::build(specs).unwrap();

        let mut path: String = request.iter().map(|(raw, _)| format!("/{raw}")).collect();
        if path.is_empty() || trailing_slash {
            path.push('/');
        }

        // Oracle: every route that matches path and method; the most specific by segment-wise
        // rank (static < param < greedy), then the exact method before ANY.
        // (specificity key, route index, parameter values as (raw, decoded)).
        type Best = ((Vec<u8>, bool), usize, Vec<(String, String)>);
        let mut best: Option<Best> = None;
        if method != "ANY" {
            for (i, (m, parts)) in kept.iter().enumerate() {
                let route_method = ROUTE_METHODS[*m];
                if route_method != method && route_method != "ANY" {
                    continue;
                }
                let Some(values) = oracle_match(parts, &request) else { continue };
                let key = (parts.iter().map(|p| p.rank()).collect::<Vec<u8>>(), route_method == "ANY");
                if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                    best = Some((key, i, values));
                } else if let Some((k, _, _)) = &best {
                    prop_assert!(key != *k, "two routes tie: the oracle's ordering is not total");
                }
            }
        }

        let got = table.resolve(method, &path, decode);
        match best {
            None => prop_assert_eq!(got, Err(RouteError::NotFound)),
            Some((_, index, values)) => {
                let matched = got.unwrap();
                prop_assert_eq!(*matched.value, index, "path {} method {}", path, method);
                prop_assert_eq!(matched.resource_path, template(&kept[index].1));
                let got_values: Vec<String> = matched.params.into_iter().map(|(_, v)| v).collect();
                let want: Vec<String> = values
                    .into_iter()
                    .map(|(raw, decoded)| if decode { decoded } else { raw })
                    .collect();
                prop_assert_eq!(got_values, want);
            }
        }
    }

    #[test]
    fn resolve_never_panics(
        path in "(/|%|[a-c]|%2[fFeE]|\\.|%[0-9A-Fa-f]{2}|\\+|é|\u{0}|:){0,24}",
        any_path in any::<String>(),
        method in "GET|POST|HEAD|ANY|[A-Z]{0,8}",
        decode in any::<bool>(),
    ) {
        let table = table(&[
            ("GET", "/"),
            ("GET", "/a/{x}"),
            ("ANY", "/a/b/{p+}"),
            ("POST", "/{x}/c"),
            ("ANY", "/{proxy+}"),
        ]);
        for candidate in [path.as_str(), any_path.as_str()] {
            if let Ok(matched) = table.resolve(&method, candidate, decode) {
                let known = ["/", "/a/{x}", "/a/b/{p+}", "/{x}/c", "/{proxy+}"];
                prop_assert!(known.contains(&matched.resource_path));
            }
            let _ = split_stage(candidate);
            let _ = decode_query(candidate, decode);
        }
    }

    #[test]
    fn utf8_check_agrees_with_std(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        prop_assert_eq!(decodes_to_utf8(&encoded, false), std::str::from_utf8(&bytes).is_ok());
    }
}

/// Not a benchmark and not asserted: a rough ns/op for the report. Run with
/// `cargo test --release -- --ignored --nocapture measure_resolve`.
#[test]
#[ignore]
fn measure_resolve() {
    use std::hint::black_box;
    use std::time::Instant;

    let mut routes: Vec<(String, String)> = (0..50)
        .map(|i| ("GET".to_owned(), format!("/svc{i}/items/{{id}}/detail")))
        .collect();
    routes.push(("GET".to_owned(), "/recommended-movies/{user_id}".to_owned()));
    routes.push(("ANY".to_owned(), "/{proxy+}".to_owned()));
    let specs = routes
        .iter()
        .enumerate()
        .map(|(i, (m, p))| RouteSpec::new(m.as_str(), p.as_str(), i))
        .collect();
    let table = RouteTable::build(specs).unwrap();
    let iterations = 2_000_000u32;
    for (label, path, decode) in [
        ("seed raw", "/recommended-movies/U:114521", true),
        ("seed %3A", "/recommended-movies/U%3A114521", true),
        ("seed %3A raw", "/recommended-movies/U%3A114521", false),
        ("greedy fallback", "/svc7/items/42/other/x", true),
        ("root greedy", "/zzz", true),
    ] {
        let start = Instant::now();
        for _ in 0..iterations {
            let _ = black_box(table.resolve(black_box("GET"), black_box(path), decode));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
        println!("{label:>16}: {ns:.1} ns/op ({path})");
    }
    let start = Instant::now();
    for _ in 0..iterations {
        let _ = black_box(decode_query(
            black_box("k=10&inference_type=deterministic"),
            true,
        ));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{:>16}: {ns:.1} ns/op", "decode_query");
}
