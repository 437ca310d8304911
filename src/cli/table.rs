//! A plain text table: left-aligned columns two spaces apart, a header row. Cells come from files
//! other people write (key names, ids), so control characters are shown escaped, never sent to the
//! terminal.

/// Renders `rows` under `headers` (each row as long as `headers`), one line each.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect()
    };
    let cells: Vec<Vec<String>> =
        std::iter::once(headers.iter().map(|h| (*h).to_owned()).collect())
            .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
            .collect();
    let mut widths = vec![0; headers.len()];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_control_characters_are_escaped() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["\u{1b}[2Jé".to_owned(), "v".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "NAME", "Z"], &rows),
            "ID          NAME        Z\na           long value  x\n\\u{1b}[2Jé  v\n"
        );
    }
}
