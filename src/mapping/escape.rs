//! `$util` string codecs, byte-compatible with the Java libraries API Gateway calls.
//!
//! - `escapeJavaScript`: commons-lang 2.x `StringEscapeUtils.escapeJavaScript` — `'` → `\'`, `"` → `\"`,
//!   `\` → `\\`, `/` → `\/`, `\b \f \n \r \t` by name, other controls and every UTF-16 unit above 0x7F as
//!   `\uXXXX` (upper-case hex; a character outside the BMP becomes its two surrogates).
//! - `urlEncode`/`urlDecode`: `java.net.URLEncoder`/`URLDecoder` in UTF-8 (form encoding: space ↔ `+`,
//!   `a-zA-Z0-9.-*_` kept, the rest `%XX` upper-case).
//!
//! Input: a string. Output: a new string; only `url_decode` can fail (a malformed `%` escape is an
//! `IllegalArgumentException` in Java, and a render error here).

use std::fmt::Write as _;

/// commons-lang 2 `StringEscapeUtils.escapeJavaScript`.
pub fn escape_javascript(s: &str) -> String {
    escape_java_style(s, true)
}

/// commons-lang 2 `StringEscapeUtils.escapeJava` (EscapeTool's `$esc.java`): no `'` or `/` escaping.
pub(super) fn escape_java(s: &str) -> String {
    escape_java_style(s, false)
}

fn escape_java_style(s: &str, javascript: bool) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 2);
    let mut units = [0u16; 2];
    for c in s.chars() {
        let cp = c as u32;
        if cp > 0x7f {
            for unit in c.encode_utf16(&mut units).iter() {
                let _ = write!(out, "\\u{:04X}", unit);
            }
            continue;
        }
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            _ if cp < 0x20 => {
                let _ = write!(out, "\\u{:04X}", cp);
            }
            '\'' if javascript => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if javascript => out.push_str("\\/"),
            c => out.push(c),
        }
    }
    out
}

/// `URLEncoder.encode(s, "UTF-8")`.
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `URLDecoder.decode(s, "UTF-8")`: `+` is a space; invalid UTF-8 becomes U+FFFD.
pub(super) fn url_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                bytes.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .ok_or("urlDecode: incomplete trailing escape (%) pattern")?;
                let hi = (hex[0] as char).to_digit(16);
                let lo = (hex[1] as char).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => bytes.push((h * 16 + l) as u8),
                    _ => {
                        return Err(
                            "urlDecode: illegal hex characters in escape (%) pattern".into()
                        );
                    }
                }
                i += 3;
            }
            other => {
                bytes.push(other);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_javascript_matches_commons_lang() {
        assert_eq!(
            escape_javascript(r#"He didn't say "stop"/go\"#),
            r#"He didn\'t say \"stop\"\/go\\"#
        );
        assert_eq!(
            escape_javascript("a\nb\tc\r\u{8}\u{c}"),
            "a\\nb\\tc\\r\\b\\f"
        );
        assert_eq!(
            escape_javascript("\u{1}\u{1f}\u{7f}"),
            "\\u0001\\u001F\u{7f}"
        );
        assert_eq!(escape_javascript("é€"), "\\u00E9\\u20AC");
        assert_eq!(escape_javascript("😀"), "\\uD83D\\uDE00");
        assert_eq!(escape_javascript("U:114521"), "U:114521");
    }

    #[test]
    fn url_codec_matches_java() {
        assert_eq!(url_encode("a b&c=d/é*~"), "a+b%26c%3Dd%2F%C3%A9*%7E");
        assert_eq!(
            url_decode("a+b%26c%3Dd%2F%C3%A9*%7E").unwrap(),
            "a b&c=d/é*~"
        );
        assert!(url_decode("%2").is_err());
        assert!(url_decode("%zz").is_err());
    }
}
