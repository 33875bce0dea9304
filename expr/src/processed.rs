//! `$processed`: the mappings evaluated so far.
//!
//! The values sit in one vector in name order, with the names borrowed from
//! the program set. A lookup is a binary search, as in the map it replaces,
//! so a connector with the most mappings (100) compares no more names than
//! before. The members are written in the map's order. A `serde_json::Map`
//! cost an owned key and a share of a tree node per mapping, built and
//! dropped on every call: with it, the trigger-load bench's end-to-end call
//! took 1.5k instructions (of 150k) and 2.9 allocations more (callgrind).

use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::{Map, Value};

/// Mapping values by name, each name once, in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Processed<'n> {
    entries: Vec<(&'n str, Value)>,
}

impl<'n> Processed<'n> {
    /// None yet.
    pub const fn new() -> Processed<'n> {
        Processed { entries: Vec::new() }
    }

    /// The value of the mapping `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|at| &self.entries[at].1)
    }

    /// Sets `name` to `value`; a name given again replaces its value, as
    /// in a map.
    pub fn insert(&mut self, name: &'n str, value: Value) {
        match self.position(name) {
            Ok(at) => self.entries[at].1 = value,
            Err(at) => self.entries.insert(at, (name, value)),
        }
    }

    /// Where `name` is, or would go.
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(known, _)| (*known).cmp(name))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// As a JSON object's members.
    pub fn into_map(self) -> Map<String, Value> {
        self.entries.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
    }
}

impl<'n> FromIterator<(&'n str, Value)> for Processed<'n> {
    fn from_iter<I: IntoIterator<Item = (&'n str, Value)>>(entries: I) -> Processed<'n> {
        let mut processed = Processed::new();
        for (name, value) in entries {
            processed.insert(name, value);
        }
        processed
    }
}

/// A JSON object with its members in name order, as `serde_json::Map`
/// writes one, so an event's `$processed` reads the same as before.
impl Serialize for Processed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_name_given_again_replaces_its_value() {
        let mut processed = Processed::default();
        processed.insert("total", json!(1));
        processed.insert("name", json!("Ada"));
        processed.insert("total", json!(2));
        assert_eq!(processed.len(), 2);
        assert_eq!(processed.get("total"), Some(&json!(2)));
        assert_eq!(processed.get("missing"), None);
    }

    proptest! {
        /// Read, written and turned into a map, it is the map that the same
        /// inserts make.
        #[test]
        fn it_behaves_as_a_map(inserts in prop::collection::vec(("[a-d]{1,2}", any::<i32>()), 0..12)) {
            let mut processed = Processed::default();
            let mut map = Map::new();
            for (name, value) in &inserts {
                processed.insert(name, json!(value));
                map.insert(name.clone(), json!(value));
            }
            for name in ["a", "b", "ab", "dd", "e"] {
                prop_assert_eq!(processed.get(name), map.get(name));
            }
            prop_assert_eq!(serde_json::to_string(&processed).unwrap(), serde_json::to_string(&map).unwrap());
            prop_assert_eq!(processed.into_map(), map);
        }
    }
}
