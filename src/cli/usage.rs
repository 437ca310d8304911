//! `sagegate usage`'s output: the read-out of `GET /usage` (or of the shared counters) as a table
//! by default (key, plan, period, used / limit, resets at), or as the JSON itself with `--json`,
//! the format scripts parse.

use serde_json::Value;

use super::table;

/// The report (`{"store", "period", "usage": [...]}`) as `sagegate usage` prints it.
pub fn render(report: &Value, json: bool) -> String {
    if json {
        return format!("{report:#}");
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = report["usage"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    vec![
                        text(&r["key_id"]),
                        text(&r["plan_id"]),
                        text(&r["period"]),
                        format!("{} / {}", text(&r["used"]), text(&r["limit"])),
                        text(&r["period_end"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let title = format!(
        "Quota usage, {} period (store: {})",
        text(&report["period"]),
        text(&report["store"])
    );
    if rows.is_empty() {
        return format!("{title}: no key has a quota\n");
    }
    format!(
        "{title}\n{}",
        table(
            &["KEY", "PLAN", "PERIOD", "USED / LIMIT", "RESETS AT"],
            &rows
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_by_default_and_the_report_itself_with_json() {
        let report = serde_json::json!({
            "store": "redis",
            "period": "current",
            "usage": [
                {"key_id": "partner-a", "plan_id": "standard", "period": "DAY",
                 "period_start": "2026-11-26T00:00:00Z", "period_end": "2026-11-27T00:00:00Z",
                 "limit": 10000, "used": 42, "remaining": 9958},
                {"key_id": "b", "plan_id": "gold", "period": "MONTH",
                 "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
                 "limit": 5, "used": 5, "remaining": 0},
            ],
        });
        assert_eq!(
            render(&report, false),
            "Quota usage, current period (store: redis)\n\
             KEY        PLAN      PERIOD  USED / LIMIT  RESETS AT\n\
             partner-a  standard  DAY     42 / 10000    2026-11-27T00:00:00Z\n\
             b          gold      MONTH   5 / 5         2026-12-01T00:00:00Z\n"
        );
        let json: Value = serde_json::from_str(&render(&report, true)).unwrap();
        assert_eq!(json, report);
        let empty = serde_json::json!({"store": "memory", "period": "previous", "usage": []});
        assert_eq!(
            render(&empty, false),
            "Quota usage, previous period (store: memory): no key has a quota\n"
        );
    }
}
