//! Query-string splitting for the `route` stage (`$input.params()`, validation, default body).

use super::RouteError;
use super::path::{check_escapes, decode_to_string};

/// Splits a query string (without the leading `?`) into `(name, value)` pairs, in order.
///
/// `application/x-www-form-urlencoded` style: pairs are separated by `&` (empty pieces are
/// skipped), name and value by the *first* `=` (a piece without `=` has the value `""`). Repeated
/// names are all kept, in order; [`last_value`] gives the single-value view.
///
/// With `decode` true, `+` becomes a space and then percent escapes are decoded (`%2B` stays a
/// literal `+`); a malformed escape or a result that is not UTF-8 is `BadPath`. With `decode`
/// false names and values are the raw text, as API Gateway REST hands them on, and nothing is
/// rejected. Control characters are not refused here: query values only ever reach a template
/// or the JSON body, both of which escape them.
pub fn decode_query(query: &str, decode: bool) -> Result<Vec<(String, String)>, RouteError> {
    let mut pairs = Vec::new();
    for piece in query.split('&').filter(|piece| !piece.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        if decode {
            check_escapes(piece)?;
            pairs.push((
                decode_to_string(name, true)?,
                decode_to_string(value, true)?,
            ));
        } else {
            pairs.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(pairs)
}

/// The last value given for `name` (API Gateway's single-value view of a repeated parameter).
pub fn last_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}
