//! What evaluating may spend: steps, and bytes of the values it produces.
//!
//! One execution of a connector (its condition, lookup, mappings and
//! perform) evaluates many programs. They share one [`Budget`], so the
//! number of programs in a connector cannot multiply what one call may
//! take. Every value an expression produces is claimed from the budget
//! *before* it is built: from a size known up front (`replace` counts its
//! matches, `split` its parts, `upper` the bytes of its mapped characters),
//! or piece by piece as it grows ([`Output`] for text, a document parsed
//! node by node), so a refused value is never allocated past the limit.
//! Copies count too: a mapping that keeps a part of the payload pays for
//! the copy it keeps.
//!
//! Sizes are the heap bytes a value holds (see [`heap_size`]), close to
//! what the allocator is asked for; a scalar costs nothing.

use std::fmt;

use serde_json::Value;

use super::error::EvalError;

/// Bounds on the evaluations of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Operations evaluated, across every program of the execution.
    pub max_steps: u64,
    /// Heap bytes of any one value an expression produces.
    pub max_output_bytes: usize,
    /// Heap bytes of every value the execution's programs produce, kept
    /// or not: what one call may ask of the allocator.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_steps: 100_000, max_output_bytes: 1 << 20, max_total_bytes: 16 << 20 }
    }
}

/// What an execution may still spend; every evaluation it makes draws on
/// the same budget.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    steps: u64,
    bytes: usize,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget { limits, steps: 0, bytes: 0 }
    }

    /// Heap bytes claimed so far.
    pub fn spent_bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn step(&mut self) -> Result<(), EvalError> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(EvalError::TooManySteps(self.limits.max_steps));
        }
        Ok(())
    }

    /// Claims `bytes` for a value about to be built.
    pub(crate) fn claim(&mut self, bytes: usize) -> Result<(), EvalError> {
        self.grow(0, bytes)
    }

    /// Claims `more` bytes for a value that already holds `held`.
    pub(crate) fn grow(&mut self, held: usize, more: usize) -> Result<(), EvalError> {
        if held.saturating_add(more) > self.limits.max_output_bytes {
            return Err(EvalError::OutputTooLarge(self.limits.max_output_bytes));
        }
        let total = self.bytes.saturating_add(more);
        if total > self.limits.max_total_bytes {
            return Err(EvalError::TotalOutputTooLarge(self.limits.max_total_bytes));
        }
        self.bytes = total;
        Ok(())
    }

    /// Claims what a copy of `value` takes, then makes it. A copy of what
    /// the scope holds (the payload, a lookup's answer, an earlier mapping)
    /// counts towards the total only: it is as large as the request was
    /// allowed to be, and its tree takes several times its JSON text, so the
    /// per-value limit would refuse forwarding an ordinary body.
    pub(crate) fn copy(&mut self, value: &Value) -> Result<Value, EvalError> {
        self.claim_copy(value)?;
        Ok(value.clone())
    }

    /// Claims what a copy of `value` takes, as [`Budget::copy`] does,
    /// without making it: for a caller that writes a value out from where
    /// the scope holds it (a JSON body serialised straight from borrowed
    /// field values), so that a body repeating a large part of the payload
    /// is refused as its copies would be.
    pub fn claim_copy(&mut self, value: &Value) -> Result<(), EvalError> {
        let total = self.bytes.saturating_add(heap_size(value));
        if total > self.limits.max_total_bytes {
            return Err(EvalError::TotalOutputTooLarge(self.limits.max_total_bytes));
        }
        self.bytes = total;
        Ok(())
    }
}

/// Heap bytes of a JSON value slot in an array.
pub(crate) const SLOT: usize = std::mem::size_of::<Value>();
/// Heap bytes of an object entry besides its key's text: the key's
/// header, the value's slot and the map's node overhead, amortised.
pub(crate) const ENTRY: usize = std::mem::size_of::<String>() + SLOT + 16;

/// The heap bytes `value` holds: text, array slots, object entries and
/// keys, and what their items hold. Walks the tree without recursion.
pub(crate) fn heap_size(value: &Value) -> usize {
    // Most copies are of one field: no work list for those.
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => return 0,
        Value::String(text) => return text.len(),
        Value::Array(_) | Value::Object(_) => {}
    }
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total = total.saturating_add(match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(text) => text.len(),
            Value::Array(items) => {
                pending.extend(items);
                items.len() * SLOT
            }
            Value::Object(entries) => {
                pending.extend(entries.values());
                entries.keys().map(|key| key.len() + ENTRY).sum()
            }
        });
    }
    total
}

/// Text an expression builds, claimed from the budget piece by piece
/// before each piece is appended. (The string's own growth may reserve up
/// to twice what was claimed, as any doubling buffer does.)
pub(crate) struct Output<'b> {
    text: String,
    /// Bytes claimed for the text so far; pushes within them are paid.
    claimed: usize,
    budget: &'b mut Budget,
}

impl<'b> Output<'b> {
    pub fn new(budget: &'b mut Budget) -> Output<'b> {
        Output { text: String::new(), claimed: 0, budget }
    }

    /// Text of a known final length: claimed once, allocated once.
    pub fn with_capacity(budget: &'b mut Budget, bytes: usize) -> Result<Output<'b>, EvalError> {
        budget.claim(bytes)?;
        Ok(Output { text: String::with_capacity(bytes), claimed: bytes, budget })
    }

    pub fn push_str(&mut self, piece: &str) -> Result<(), EvalError> {
        let needed = self.text.len() + piece.len();
        if needed > self.claimed {
            self.budget.grow(self.claimed, needed - self.claimed)?;
            self.claimed = needed;
        }
        self.text.push_str(piece);
        Ok(())
    }

    pub fn push(&mut self, c: char) -> Result<(), EvalError> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// Appends a value the way templates render it (see
    /// [`super::value::render_into`]), refusing as soon as it would pass
    /// the budget: a large object is not rendered whole first.
    pub fn render(&mut self, value: &Value) -> Result<(), EvalError> {
        match value {
            Value::Null => Ok(()),
            Value::String(text) => self.push_str(text),
            Value::Bool(b) => self.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.push_str(&n.to_string()),
            other => self.json(other),
        }
    }

    /// Appends `value` as compact JSON.
    pub fn json(&mut self, value: &Value) -> Result<(), EvalError> {
        let mut writer = JsonWriter { output: self, refused: None };
        match serde_json::to_writer(&mut writer, value) {
            Ok(()) => Ok(()),
            Err(_) => Err(writer.refused.unwrap_or_else(|| EvalError::type_error("the value could not be written"))),
        }
    }

    /// Appends what `write` writes, piece by piece, refusing as soon as it
    /// would pass the budget. (Through `fmt::Write`, not `Display`: some
    /// `Display`s build their whole text before writing any of it.)
    pub fn write_with(&mut self, write: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) -> Result<(), EvalError> {
        let mut writer = DisplayWriter { output: self, refused: None };
        match write(&mut writer) {
            Ok(()) => Ok(()),
            Err(_) => Err(writer.refused.unwrap_or_else(|| EvalError::type_error("the value could not be written"))),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// `fmt` writes through this, keeping the budget's refusal for the caller.
struct DisplayWriter<'o, 'b> {
    output: &'o mut Output<'b>,
    refused: Option<EvalError>,
}

impl fmt::Write for DisplayWriter<'_, '_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        self.output.push_str(piece).map_err(|err| {
            self.refused = Some(err);
            fmt::Error
        })
    }
}

/// serde_json writes bytes; it writes whole UTF-8 sequences per call for
/// compact output, so each write is text.
struct JsonWriter<'o, 'b> {
    output: &'o mut Output<'b>,
    refused: Option<EvalError>,
}

impl std::io::Write for JsonWriter<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = std::str::from_utf8(bytes).map_err(std::io::Error::other)?;
        self.output.push_str(text).map_err(|err| {
            self.refused = Some(err);
            std::io::Error::other("budget")
        })?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn budget(per_value: usize, total: usize) -> Budget {
        Budget::new(Limits { max_steps: 100, max_output_bytes: per_value, max_total_bytes: total })
    }

    #[test]
    fn sizes_count_text_slots_and_entries() {
        assert_eq!(heap_size(&json!(null)), 0);
        assert_eq!(heap_size(&json!(12.5)), 0);
        assert_eq!(heap_size(&json!("abc")), 3);
        assert_eq!(heap_size(&json!(["ab", 1])), 2 * SLOT + 2);
        assert_eq!(heap_size(&json!({"k": "vv"})), 1 + ENTRY + 2);
        let deep = (0..1_000).fold(json!(1), |inner, _| json!([inner]));
        assert_eq!(heap_size(&deep), 1_000 * SLOT, "walked without recursion");
    }

    #[test]
    fn claims_stop_at_the_value_and_the_total_limit() {
        let mut b = budget(10, 25);
        b.claim(10).unwrap();
        assert_eq!(b.claim(11), Err(EvalError::OutputTooLarge(10)));
        b.claim(10).unwrap();
        assert_eq!(b.claim(6), Err(EvalError::TotalOutputTooLarge(25)));
        assert_eq!(b.spent_bytes(), 20, "a refused claim spends nothing");
    }

    #[test]
    fn output_refuses_before_growing_past_the_budget() {
        let mut b = budget(8, 100);
        let mut out = Output::new(&mut b);
        out.push_str("12345").unwrap();
        assert_eq!(out.push_str("6789"), Err(EvalError::OutputTooLarge(8)));
        assert_eq!(out.len(), 5, "the refused piece was not appended");
        let mut b = budget(8, 100);
        let mut out = Output::new(&mut b);
        let refused = out.json(&json!({"a": "long enough to pass"}));
        assert_eq!(refused, Err(EvalError::OutputTooLarge(8)));
        assert!(out.len() <= 8);
    }

    #[test]
    fn prepaid_text_is_not_claimed_twice() {
        let mut b = budget(10, 10);
        let mut out = Output::with_capacity(&mut b, 10).unwrap();
        out.push_str("0123456789").unwrap();
        assert_eq!(out.finish(), "0123456789");
        assert_eq!(b.spent_bytes(), 10);
    }
}
