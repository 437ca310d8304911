use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const N: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A file as people write them: comments everywhere, blank lines, block and flow entries, both
/// kinds of quotes, a plain value and a missing `enabled`.
fn fixture() -> String {
    format!(
        "# Keys for the prod API. Reviewed in PR.
usage_plans:
  - id: standard   # the default plan
    stages: [temp, prod]
  - id: gold
    stages: [prod]

keys:
  # Partner A: contact ops@a.example
  - id: partner-a
    name: Partner A
    usage_plans: [standard]
    value_sha256: \"{A}\"   # issued 2024-01
    # rotated yearly

  - id: partner-b
    enabled: false
    usage_plans: [gold]
    value: partner-b-local-value-0123

  - {{id: flow-c, usage_plans: [standard], value_sha256: '{C}'}}
# end of keys
"
    )
}

fn edit(text: &str, e: Edit) -> Result<String, EditError> {
    apply("k.yaml", text, &e)
}

fn id(s: &str) -> String {
    s.to_owned()
}

/// `text` with `from` replaced once by `to`, asserting `from` is there.
fn with(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no `{from}` in:\n{text}");
    text.replacen(from, to, 1)
}

#[test]
fn add_appends_a_block_entry_after_the_last_one() {
    let out = edit(
        &fixture(),
        Edit::Add {
            id: id("partner-d"),
            name: Some(id("Partner D, Inc.")),
            plan: id("gold"),
            value_sha256: N.to_owned(),
        },
    )
    .unwrap();
    let entry = format!(
        "  - id: partner-d\n    name: \"Partner D, Inc.\"\n    enabled: true\n    usage_plans: [gold]\n    value_sha256: \"{N}\"\n"
    );
    assert_eq!(
        out,
        with(
            &fixture(),
            "# end of keys",
            &format!("{entry}# end of keys")
        )
    );
}

#[test]
fn disable_and_enable_touch_only_the_enabled_field() {
    let out = edit(
        &fixture(),
        Edit::SetEnabled {
            id: id("partner-a"),
            enabled: false,
        },
    )
    .unwrap();
    assert_eq!(
        out,
        with(
            &fixture(),
            "  - id: partner-a\n",
            "  - id: partner-a\n    enabled: false\n"
        )
    );
    let out = edit(
        &fixture(),
        Edit::SetEnabled {
            id: id("partner-b"),
            enabled: true,
        },
    )
    .unwrap();
    assert_eq!(out, with(&fixture(), "enabled: false", "enabled: true"));
    let out = edit(
        &fixture(),
        Edit::SetEnabled {
            id: id("flow-c"),
            enabled: false,
        },
    )
    .unwrap();
    assert_eq!(
        out,
        with(&fixture(), "{id: flow-c,", "{id: flow-c, enabled: false,")
    );
}

#[test]
fn rotate_replaces_the_value_or_its_hash() {
    let out = edit(
        &fixture(),
        Edit::SetHash {
            id: id("partner-a"),
            value_sha256: N.to_owned(),
        },
    )
    .unwrap();
    assert_eq!(out, with(&fixture(), A, N));
    let out = edit(
        &fixture(),
        Edit::SetHash {
            id: id("partner-b"),
            value_sha256: N.to_owned(),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        with(
            &fixture(),
            "value: partner-b-local-value-0123",
            &format!("value_sha256: \"{N}\"")
        )
    );
    let out = edit(
        &fixture(),
        Edit::SetHash {
            id: id("flow-c"),
            value_sha256: N.to_owned(),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        with(&fixture(), &format!("'{C}'"), &format!("\"{N}\""))
    );
}

#[test]
fn remove_takes_the_entry_with_its_own_comments() {
    let out = edit(
        &fixture(),
        Edit::Remove {
            id: id("partner-a"),
        },
    )
    .unwrap();
    let gone = format!(
        "  # Partner A: contact ops@a.example\n  - id: partner-a\n    name: Partner A\n    usage_plans: [standard]\n    value_sha256: \"{A}\"   # issued 2024-01\n    # rotated yearly\n"
    );
    assert_eq!(out, with(&fixture(), &gone, ""));
    let out = edit(&fixture(), Edit::Remove { id: id("flow-c") }).unwrap();
    assert_eq!(
        out,
        with(
            &fixture(),
            &format!("  - {{id: flow-c, usage_plans: [standard], value_sha256: '{C}'}}\n"),
            ""
        )
    );
    // Every key removed: `keys` stays a list.
    let mut text = fixture();
    for k in ["partner-b", "flow-c", "partner-a"] {
        text = edit(&text, Edit::Remove { id: id(k) }).unwrap();
    }
    assert!(text.contains("keys: []\n"), "{text}");
    assert!(text.contains("# end of keys"), "{text}");
}

#[test]
fn add_to_an_empty_or_missing_list() {
    let add = || Edit::Add {
        id: id("first"),
        name: None,
        plan: id("p"),
        value_sha256: N.to_owned(),
    };
    let block = format!(
        "  - id: first\n    name: first\n    enabled: true\n    usage_plans: [p]\n    value_sha256: \"{N}\"\n"
    );
    let plans = "usage_plans:\n  - id: p\n    stages: [prod]\n";
    for (before, after) in [
        (
            format!("{plans}keys: []   # none yet\n"),
            format!("{plans}keys:   # none yet\n{block}"),
        ),
        (format!("{plans}keys:\n"), format!("{plans}keys:\n{block}")),
        (
            format!("{plans}keys: ~\n"),
            format!("{plans}keys:\n{block}"),
        ),
        (plans.to_owned(), format!("{plans}keys:\n{block}")),
        (
            plans.trim_end().to_owned(),
            format!("{}\nkeys:\n{block}", plans.trim_end()),
        ),
        (
            format!("{plans}keys: [{{id: x, value_sha256: \"{A}\"}}]\n"),
            format!(
                "{plans}keys: [{{id: x, value_sha256: \"{A}\"}}, {{id: first, name: first, enabled: true, usage_plans: [p], value_sha256: \"{N}\"}}]\n"
            ),
        ),
    ] {
        assert_eq!(edit(&before, add()).unwrap(), after, "from:\n{before}");
    }
}

#[test]
fn bad_input_changes_nothing_and_says_why() {
    let err = |e| edit(&fixture(), e).unwrap_err().to_string();
    assert_eq!(
        err(Edit::Remove { id: id("nobody") }),
        "no key with id `nobody` (keys: partner-a, partner-b, flow-c)"
    );
    assert_eq!(
        err(Edit::Add {
            id: id("x"),
            name: None,
            plan: id("platinum"),
            value_sha256: N.to_owned()
        }),
        "no usage plan `platinum` (usage plans: standard, gold)"
    );
    assert!(
        err(Edit::Add {
            id: id("partner-a"),
            name: None,
            plan: id("gold"),
            value_sha256: N.to_owned()
        })
        .starts_with("a key with id `partner-a` exists already")
    );
    assert_eq!(
        err(Edit::SetEnabled {
            id: id("partner-b"),
            enabled: false
        }),
        "key `partner-b` is already disabled"
    );
    assert_eq!(
        err(Edit::SetEnabled {
            id: id("partner-a"),
            enabled: true
        }),
        "key `partner-a` is already enabled"
    );
    assert!(
        err(Edit::Remove {
            id: id("a\u{1b}[2J")
        })
        .contains("control characters")
    );
    assert!(
        err(Edit::Add {
            id: id("${env:HOME}"),
            name: None,
            plan: id("gold"),
            value_sha256: N.to_owned()
        })
        .contains("never interpolated")
    );
    assert!(err(Edit::Remove { id: String::new() }).contains("must not be empty"));
}

#[test]
fn a_layout_the_splice_cannot_handle_is_refused() {
    let text = format!("keys:\n  - id: a\n    value_sha256: >-\n      {A}\n");
    let e = edit(
        &text,
        Edit::SetHash {
            id: id("a"),
            value_sha256: N.to_owned(),
        },
    )
    .unwrap_err();
    assert!(matches!(e, EditError::Layout { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cannot change the file in place at keys[0]"),
        "{e}"
    );
}

#[test]
fn scalars_are_plain_only_when_they_read_back_as_strings() {
    for (s, yaml) in [
        ("partner-a", "partner-a"),
        ("Partner A", "Partner A"),
        ("true", "\"true\""),
        ("No", "\"No\""),
        ("0123", "\"0123\""),
        ("1e5", "\"1e5\""),
        ("a: b", "\"a: b\""),
        ("a #b", "\"a #b\""),
        ("-x", "\"-x\""),
        ("", "\"\""),
        ("é", "\"é\""),
    ] {
        assert_eq!(scalar(s), yaml, "{s}");
        let doc = Doc::parse_data("f", &format!("v: {yaml}\nw: [{yaml}]\n")).unwrap();
        assert_eq!(doc.value["v"], s, "{yaml}");
        assert_eq!(doc.value["w"][0], s, "{yaml}");
    }
}
