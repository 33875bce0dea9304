//! `json_parse` within the budget: the document is claimed node by node
//! as serde_json reads it, so text that describes a tree larger than the
//! budget (`[[],[],…]` is 16 bytes of tree per 3 of text) is refused
//! part-way instead of being built whole. serde_json's own recursion
//! limit (128) bounds the depth.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::super::super::budget::{Budget, ENTRY, SLOT};
use super::super::super::error::EvalError;

/// Parses `text` as one JSON document, claiming its size from `budget`.
pub fn document(text: &str, budget: &mut Budget) -> Result<Value, EvalError> {
    let mut reader = Reader { budget, held: 0, refused: None };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Node(&mut reader).deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    parsed.map_err(|err| {
        reader.refused.take().unwrap_or_else(|| {
            EvalError::type_error(format!(
                "json_parse() got text that is not JSON (line {}, column {})",
                err.line(),
                err.column()
            ))
        })
    })
}

/// The budget and what the document holds so far.
struct Reader<'b> {
    budget: &'b mut Budget,
    held: usize,
    /// Why the budget refused, for the caller (serde's error is text).
    refused: Option<EvalError>,
}

impl Reader<'_> {
    fn claim<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        match self.budget.grow(self.held, bytes) {
            Ok(()) => {
                self.held += bytes;
                Ok(())
            }
            Err(err) => {
                self.refused = Some(err);
                Err(E::custom("the parsed document is over budget"))
            }
        }
    }
}

/// One value of the document.
struct Node<'r, 'b>(&'r mut Reader<'b>);

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.claim(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.0.claim(SLOT)?;
            match access.next_element_seed(Node(self.0))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
            self.0.claim(key.len() + ENTRY)?;
            let value = access.next_value_seed(Node(self.0))?;
            entries.insert(key.into_owned(), value);
        }
        Ok(Value::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::super::budget::Limits;
    use super::*;

    fn budget(bytes: usize) -> Budget {
        Budget::new(Limits { max_steps: 10, max_output_bytes: bytes, max_total_bytes: bytes * 2 })
    }

    #[test]
    fn documents_parse_as_serde_json_reads_them() {
        let text = r#"{"a":[1,2.5,"x\u00e9",null,true],"b":{"c":{}},"a\"":-3}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(document(text, &mut budget(1 << 20)).unwrap(), expected);
        assert_eq!(document(" 7 ", &mut budget(10)).unwrap(), json!(7));
    }

    #[test]
    fn a_tree_larger_than_the_budget_is_refused_part_way() {
        let text = format!("[{}]", vec!["[]"; 10_000].join(","));
        let mut b = budget(64 * 1024);
        assert_eq!(document(&text, &mut b), Err(EvalError::OutputTooLarge(64 * 1024)));
        assert!(b.spent_bytes() <= 64 * 1024, "claims stopped at the limit");
    }

    #[test]
    fn bad_text_says_where() {
        let err = document("{\"a\": tru}", &mut budget(1024)).unwrap_err();
        assert_eq!(err.to_string(), "json_parse() got text that is not JSON (line 1, column 10)");
        assert!(document("[1] 2", &mut budget(1024)).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(document(&deep, &mut budget(1 << 20)).is_err(), "serde_json's depth limit holds");
    }
}
