//! Strict percent-escape handling shared by path segments and query strings.
//!
//! `percent-encoding` decodes leniently (a stray `%` passes through); the gateway must refuse such
//! input instead, so checking and decoding live here, without allocation except for the final
//! `String` of a value.

use super::BadPathReason;

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// ASCII C0 controls and DEL.
fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

/// The byte an escape at `bytes[at]` (`%XY`) stands for, if it is well formed.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex(*bytes.get(at + 1)?)?;
    let low = hex(*bytes.get(at + 2)?)?;
    Some(high << 4 | low)
}

/// Decoded bytes of `text`. Meant for text whose escapes were checked; a malformed escape passes
/// through literally rather than failing, so it can never panic.
#[derive(Clone)]
pub(super) struct Decode<'a> {
    bytes: &'a [u8],
    at: usize,
    plus_as_space: bool,
}

impl Iterator for Decode<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        if byte == b'%'
            && let Some(decoded) = escape_at(self.bytes, self.at)
        {
            self.at += 3;
            return Some(decoded);
        }
        self.at += 1;
        if byte == b'+' && self.plus_as_space {
            return Some(b' ');
        }
        Some(byte)
    }
}

pub(super) fn decode(text: &str, plus_as_space: bool) -> Decode<'_> {
    Decode {
        bytes: text.as_bytes(),
        at: 0,
        plus_as_space,
    }
}

/// Checks that every `%` in `text` starts a well-formed escape. Returns whether there was any.
pub(super) fn check_escapes(text: &str) -> Result<bool, BadPathReason> {
    let bytes = text.as_bytes();
    let mut any = false;
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == b'%' {
            escape_at(bytes, at).ok_or(BadPathReason::MalformedEscape)?;
            any = true;
        }
    }
    Ok(any)
}

/// Checks one raw, non-empty path segment (see the module doc of `route` for the rules).
pub(super) fn check_segment(segment: &str, require_utf8: bool) -> Result<(), BadPathReason> {
    let escaped = check_escapes(segment)?;
    if escaped {
        if decode(segment, false).any(is_control) {
            return Err(BadPathReason::ControlChar);
        }
    } else if segment.bytes().any(is_control) {
        return Err(BadPathReason::ControlChar);
    }
    // `%2E%2E` is the longest spelling of `..`; only short segments can be dot segments.
    if segment.len() <= 6 && is_dot_segment(segment) {
        return Err(BadPathReason::DotSegment);
    }
    // An escaped `/` stays inside its segment here, but whatever decodes the value next sees more
    // segments (`x%2F..%2Fy` is `x/../y`): none of those may be a dot segment either.
    if escaped && has_dot_piece(segment) {
        return Err(BadPathReason::DotSegment);
    }
    if escaped && require_utf8 && !decodes_to_utf8(segment, false) {
        return Err(BadPathReason::InvalidUtf8);
    }
    Ok(())
}

fn is_dot_segment(segment: &str) -> bool {
    let mut decoded = decode(segment, false);
    matches!(
        (decoded.next(), decoded.next(), decoded.next()),
        (Some(b'.'), None, _) | (Some(b'.'), Some(b'.'), None)
    )
}

/// Whether the decoded `segment`, split at its decoded `/`s, has a `.` or `..` piece.
fn has_dot_piece(segment: &str) -> bool {
    if !segment.contains("%2F") && !segment.contains("%2f") {
        return false;
    }
    // Length of the current piece, and whether it is all dots; a final `/` ends the last piece.
    let (mut len, mut dots) = (0usize, true);
    for byte in decode(segment, false).chain(std::iter::once(b'/')) {
        if byte == b'/' {
            if dots && (1..=2).contains(&len) {
                return true;
            }
            (len, dots) = (0, true);
        } else {
            len += 1;
            dots &= byte == b'.';
        }
    }
    false
}

/// Whether the decoded bytes of `text` are UTF-8, validated in fixed-size chunks on the stack.
pub(super) fn decodes_to_utf8(text: &str, plus_as_space: bool) -> bool {
    let mut buf = [0u8; 64];
    let mut len = 0;
    for byte in decode(text, plus_as_space) {
        let Some(slot) = buf.get_mut(len) else {
            return false; // unreachable: `len` is reset below before the buffer fills
        };
        *slot = byte;
        len += 1;
        if len == buf.len() {
            match std::str::from_utf8(&buf) {
                Ok(_) => len = 0,
                // A sequence cut by the chunk boundary: keep its (at most 3) bytes for the next one.
                Err(error) if error.error_len().is_none() => {
                    let valid = error.valid_up_to();
                    buf.copy_within(valid.., 0);
                    len -= valid;
                }
                Err(_) => return false,
            }
        }
    }
    buf.get(..len)
        .is_some_and(|rest| std::str::from_utf8(rest).is_ok())
}

/// Decodes `text` into an owned string (`+` → space only when asked).
pub(super) fn decode_to_string(text: &str, plus_as_space: bool) -> Result<String, BadPathReason> {
    let needs_decoding = text.contains('%') || (plus_as_space && text.contains('+'));
    if !needs_decoding {
        return Ok(text.to_owned());
    }
    String::from_utf8(decode(text, plus_as_space).collect()).map_err(|_| BadPathReason::InvalidUtf8)
}
