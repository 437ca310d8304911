//! JSON that templates parse: the payload behind `$input.json`/`$input.path`, and the strings given to
//! `$util.parseJson`. Parsing is bounded in memory and reads text the way API Gateway does.
//!
//! Input: bytes and the render's running JSON byte count. Output: a [`Doc`], or why not.
//!
//! What a text reads as (API Gateway's behaviour, sources in `fidelity.txt`):
//! - empty or blank: no document (`$input.path` is null, `$input.json` is `""`);
//! - JSON: that value;
//! - text that does not start like JSON (`a=b`, `name=Marcus&email=…`, `hello`): one string, the
//!   trimmed text, so form bodies can be split with `$input.path('$').split('&')`;
//! - text that starts like JSON (`{`, `[`, `"`) but is not JSON (`{"a":`): [`JsonError::Malformed`],
//!   which the gateway answers as 400 `Could not process payload` for a request body.
//!
//! Invariant (memory): the values one render parses hold at most `Bounds::max_json_bytes` together.
//! Bytes are counted while the value is built — every value slot, string byte and table entry, with a
//! 2× allowance for tables that grow by doubling — and the parse stops with [`JsonError::TooLarge`]
//! as soon as the count passes the bound (before the next slot is taken). A text of `n` bytes never
//! counts more than `72 × n` bytes plus one value slot (an array element takes
//! at least two bytes of text and is charged two slots; an object entry at least five and is charged
//! less than five). The same count is charged to the render's [`Reserve`] (the gateway's in-flight
//! memory budget) in steps of [`JSON_CHARGE_STEP`] as it grows, before the bytes it stands for are
//! taken; a refusal stops the parse with [`JsonError::OverBudget`]. Nesting is bounded by
//! serde_json's recursion limit (128), so neither parsing nor dropping a value can overflow the stack.

use std::cell::{Cell, OnceCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{JSON_CHARGE_STEP, Reserve};

/// Bytes one value slot takes (`serde_json::Value`, with this crate's `preserve_order` maps).
const SLOT: usize = std::mem::size_of::<Value>();
/// Bytes one object entry takes besides its key's text: key, value, stored hash, index slot.
const ENTRY: usize = std::mem::size_of::<String>() + SLOT + 16;

/// The most bytes the accounting charges per byte of JSON text: an array element takes at least two
/// bytes of text (`0,`) and is charged two slots.
#[cfg(test)]
const MAX_BYTES_PER_INPUT_BYTE: usize = SLOT;

/// What a text reads as.
#[derive(Debug)]
pub(super) enum Doc {
    /// Empty or blank.
    Absent,
    /// JSON, or the text itself as a string when it does not start like JSON.
    Value(Value),
}

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JsonError {
    /// It starts like JSON but is not JSON.
    Malformed(String),
    /// Reading it would pass `Bounds::max_json_bytes`.
    TooLarge,
    /// The render's [`Reserve`] refused the memory reading it needs.
    OverBudget,
}

/// One render's count of the bytes its parsed JSON holds: checked against the bound, and charged
/// to the caller's [`Reserve`] in steps as it grows.
pub(super) struct Meter<'r> {
    used: Cell<usize>,
    charged: Cell<usize>,
    refused: Cell<bool>,
    limit: usize,
    reserve: &'r dyn Reserve,
}

impl<'r> Meter<'r> {
    pub fn new(limit: usize, reserve: &'r dyn Reserve) -> Self {
        Meter {
            used: Cell::new(0),
            charged: Cell::new(0),
            refused: Cell::new(false),
            limit,
            reserve,
        }
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Counts `bytes` more; `false` past the bound or when the reserve refuses the next step.
    fn add(&self, bytes: usize) -> bool {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return false;
        }
        let charged = self.charged.get();
        if used > charged {
            let step = (used - charged).next_multiple_of(JSON_CHARGE_STEP);
            if !self.reserve.try_reserve(step) {
                self.refused.set(true);
                return false;
            }
            self.charged.set(charged.saturating_add(step));
        }
        true
    }

    /// Why the count stopped a parse.
    fn stop(&self) -> JsonError {
        if self.refused.get() {
            JsonError::OverBudget
        } else {
            JsonError::TooLarge
        }
    }
}

/// Reads `text`, counting what the value holds on `meter`.
pub(super) fn read(text: &[u8], meter: &Meter<'_>) -> Result<Doc, JsonError> {
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Doc::Absent);
    }
    let budget = Budget { meter };
    let mut de = serde_json::Deserializer::from_slice(trimmed);
    let parsed = budget
        .charge::<serde_json::Error>(SLOT)
        .and_then(|()| budget.deserialize(&mut de))
        .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(Doc::Value(v)),
        Err(_) if meter.used() > meter.limit || meter.refused.get() => Err(meter.stop()),
        Err(e) if matches!(trimmed[0], b'{' | b'[' | b'"') => {
            Err(JsonError::Malformed(e.to_string()))
        }
        Err(_) => {
            // Not JSON and not meant to be: the text is one string (json-smart's permissive reading).
            let s = String::from_utf8_lossy(trimmed).into_owned();
            budget
                .charge::<serde_json::Error>(s.len())
                .map_err(|_| meter.stop())?;
            Ok(Doc::Value(Value::String(s)))
        }
    }
}

/// The running count of one render, shared by the seeds of one parse.
#[derive(Clone, Copy)]
struct Budget<'b> {
    meter: &'b Meter<'b>,
}

impl Budget<'_> {
    fn charge<E: de::Error>(self, bytes: usize) -> Result<(), E> {
        if self.meter.add(bytes) {
            Ok(())
        } else {
            Err(E::custom("JSON value over the template memory bound"))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budget<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budget<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.charge(s.len())?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.charge(s.len())?;
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            // Charged before the slot is taken, so a long array stops at the bound.
            self.charge(2 * SLOT)?;
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.charge(key.len().saturating_add(2 * ENTRY))?;
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Values parsed during one render (`$util.parseJson`), kept until the render ends so template values
/// can borrow them like they borrow the body. Append-only; every link is reached from the one before.
#[derive(Default)]
pub(super) struct Arena {
    head: OnceCell<Box<Link>>,
}

pub(super) struct Link {
    value: Value,
    next: OnceCell<Box<Link>>,
}

impl Arena {
    /// Where the next value goes.
    pub fn tail(&self) -> &OnceCell<Box<Link>> {
        &self.head
    }
}

/// Stores `value` in the empty slot `tail`; returns it and the next empty slot.
pub(super) fn store(tail: &OnceCell<Box<Link>>, value: Value) -> (&Value, &OnceCell<Box<Link>>) {
    let mut value = Some(value);
    let link = tail.get_or_init(|| {
        Box::new(Link {
            value: value.take().unwrap_or_default(),
            next: OnceCell::new(),
        })
    });
    (&link.value, &link.next)
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Unlinks iteratively: a long chain must not recurse once per link.
        let mut next = self.head.take();
        while let Some(mut link) = next {
            next = link.next.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Unmetered;

    fn doc(text: &str) -> Result<Doc, JsonError> {
        read(text.as_bytes(), &Meter::new(usize::MAX, &Unmetered))
    }

    fn value(text: &str) -> Value {
        match doc(text) {
            Ok(Doc::Value(v)) => v,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn texts_read_as_api_gateway_reads_them() {
        assert!(matches!(doc(""), Ok(Doc::Absent)));
        assert!(matches!(doc(" \n\t"), Ok(Doc::Absent)));
        assert_eq!(
            value(r#" {"a":[1,"x"]} "#),
            serde_json::json!({"a": [1, "x"]})
        );
        assert_eq!(value("12"), serde_json::json!(12));
        assert_eq!(value("a=b&c=d"), serde_json::json!("a=b&c=d"));
        assert_eq!(
            value(" some raw data\n"),
            serde_json::json!("some raw data")
        );
        assert_eq!(value("12abc"), serde_json::json!("12abc"));
        for malformed in [r#"{"a":"#, "[1,2", r#""open"#, "{a: 1}", "[1,]"] {
            assert!(
                matches!(doc(malformed), Err(JsonError::Malformed(_))),
                "{malformed}"
            );
        }
        // Deeper than serde_json's recursion limit: refused, never a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(matches!(doc(&deep), Err(JsonError::Malformed(_))));
    }

    #[test]
    fn parsing_stops_at_the_bound_and_counts_within_the_stated_ratio() {
        let meter = Meter::new(1 << 20, &Unmetered);
        let big = format!("[{}0]", "0,".repeat(100_000));
        assert_eq!(
            read(big.as_bytes(), &meter).err(),
            Some(JsonError::TooLarge)
        );
        assert!(meter.used() <= (1 << 20) + 4 * ENTRY, "{}", meter.used());
        for text in [
            big.as_str(),
            r#"[[],[],[],{},{},"","",""]"#,
            r#"{"":0,"a":{"b":[true,null]},"c":"ccc"}"#,
            "plain text",
        ] {
            let meter = Meter::new(usize::MAX, &Unmetered);
            assert!(read(text.as_bytes(), &meter).is_ok());
            let most = text.len() * MAX_BYTES_PER_INPUT_BYTE + SLOT;
            assert!(meter.used() <= most, "{text}");
            assert!(meter.used() >= text.len() / 2, "{text}: {}", meter.used());
        }
    }

    #[test]
    fn what_a_parse_holds_is_charged_in_steps_before_it_is_taken() {
        let budget = crate::mapping::Budgeted::new(4 * JSON_CHARGE_STEP);
        // A small document costs one step.
        let meter = Meter::new(usize::MAX, &budget);
        assert!(read(br#"{"a": [1, 2, 3]}"#, &meter).is_ok());
        assert_eq!(budget.granted.get(), JSON_CHARGE_STEP);
        // A large one stops when the reserve refuses, never holding more than it granted.
        let meter = Meter::new(usize::MAX, &budget);
        let big = format!("[{}0]", "0,".repeat(100_000));
        assert_eq!(
            read(big.as_bytes(), &meter).err(),
            Some(JsonError::OverBudget)
        );
        assert_eq!(budget.granted.get(), 4 * JSON_CHARGE_STEP);
        assert!(
            meter.used() <= 3 * JSON_CHARGE_STEP + 2 * SLOT,
            "{}",
            meter.used()
        );
    }

    /// `Bounds::max_json_bytes` quotes this size (64-bit, `preserve_order`).
    #[test]
    fn a_value_slot_is_the_documented_72_bytes() {
        assert_eq!(SLOT, 72);
    }

    #[test]
    fn the_arena_keeps_every_value_until_dropped() {
        let arena = Arena::default();
        let mut tail = arena.tail();
        let mut kept = Vec::new();
        for i in 0..100_000 {
            let (v, next) = store(tail, Value::from(i));
            kept.push(v);
            tail = next;
        }
        assert_eq!(kept[0], &Value::from(0));
        assert_eq!(kept[99_999], &Value::from(99_999));
    }
}
