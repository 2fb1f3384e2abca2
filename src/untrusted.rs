//! JSON someone else wrote (a base image's manifest or config, from any registry), parsed into a
//! [`serde_json::Value`] only after a first pass that allocates nothing has counted it. A `Value`
//! costs far more than its text: a one-entry object is a map node of about 600 bytes, so 4 MiB of
//! `{"a":0},` would take gigabytes. The count bounds every array's length and the values in all,
//! and names the top-level field at fault. [`Capped`] keeps the first entries of a list and
//! only counts the rest.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// How much a document may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries of any one array.
    pub array: usize,
    /// Values in all (each object, array, string, number, bool and null is one).
    pub values: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoundError {
    /// An array under the top-level `field` (`None`: the document is the array) has more entries.
    #[error("{} has more than {max} entries", field_name(.field))]
    Array { field: Option<String>, max: usize },
    #[error("it has more than {max} JSON values")]
    Values { max: usize },
    #[error("{0}")]
    Json(String),
}

fn field_name(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("`{f}`"),
        None => "the document".into(),
    }
}

/// `bytes` as a `Value`, if within `limits`.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<serde_json::Value, BoundError> {
    let state = State {
        limits,
        values: Cell::new(0),
        over: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let counted = Counter {
        state: &state,
        depth: 0,
        field: None,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(over) = state.over.take() {
        return Err(over);
    }
    counted.map_err(|e| BoundError::Json(e.to_string()))?;
    serde_json::from_slice(bytes).map_err(|e| BoundError::Json(e.to_string()))
}

struct State {
    limits: Limits,
    values: Cell<usize>,
    /// The bound passed, kept beside serde's error (which only carries text).
    over: Cell<Option<BoundError>>,
}

#[derive(Clone, Copy)]
struct Counter<'a> {
    state: &'a State,
    depth: usize,
    /// The top-level key this value is under.
    field: Option<&'a str>,
}

impl Counter<'_> {
    fn fail<E: de::Error>(&self, over: BoundError) -> E {
        let text = over.to_string();
        self.state.over.set(Some(over));
        E::custom(text)
    }

    fn one<E: de::Error>(&self) -> Result<(), E> {
        let n = self.state.values.get() + 1;
        self.state.values.set(n);
        match n > self.state.limits.values {
            true => Err(self.fail(BoundError::Values {
                max: self.state.limits.values,
            })),
            false => Ok(()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.one()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.one()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.one()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.one()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.one()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one()?;
        let child = Counter {
            depth: self.depth + 1,
            ..self
        };
        let mut n = 0;
        while seq.next_element_seed(child)?.is_some() {
            n += 1;
            if n > self.state.limits.array {
                return Err(self.fail(BoundError::Array {
                    field: self.field.map(str::to_string),
                    max: self.state.limits.array,
                }));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.one()?;
        if self.depth > 0 {
            let child = Counter {
                depth: self.depth + 1,
                ..self
            };
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(child)?;
            }
            return Ok(());
        }
        // The top level's keys name the fields below them.
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(Counter {
                state: self.state,
                depth: 1,
                field: Some(&key),
            })?;
        }
        Ok(())
    }
}

/// A JSON list read into at most `N` entries; the rest are counted, never kept.
#[derive(Debug)]
pub struct Capped<T, const N: usize> {
    pub kept: Vec<T>,
    /// Entries in the list, kept or not.
    pub total: usize,
}

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Capped {
            kept: Vec::new(),
            total: 0,
        }
    }
}

impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>, const N: usize> Visitor<'de> for List<T, N> {
            type Value = Capped<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Capped::default();
                while out.total < N {
                    match seq.next_element::<T>()? {
                        Some(t) => out.kept.push(t),
                        None => return Ok(out),
                    }
                    out.total += 1;
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    out.total += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(List(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        array: 3,
        values: 20,
    };

    #[test]
    fn within_bounds_is_parsed_as_serde_json_would() {
        let text = br#"{"a":[1,2,{"b":null}],"c":"d","e":true}"#;
        let v = parse(text, SMALL).unwrap();
        assert_eq!(
            v,
            serde_json::from_slice::<serde_json::Value>(text).unwrap()
        );
    }

    #[test]
    fn a_long_array_is_named_by_its_top_level_field() {
        let err = parse(br#"{"ok":[1],"history":[{"x":[1,2,3,4]}]}"#, SMALL).unwrap_err();
        assert_eq!(
            err,
            BoundError::Array {
                field: Some("history".into()),
                max: 3
            }
        );
        assert_eq!(err.to_string(), "`history` has more than 3 entries");
        let err = parse(b"[1,2,3,4]", SMALL).unwrap_err();
        assert_eq!(err.to_string(), "the document has more than 3 entries");
    }

    #[test]
    fn a_capped_list_keeps_its_first_entries_and_counts_all() {
        let c: Capped<u32, 2> = serde_json::from_str("[1, 2, 3, [4, {}]]").unwrap();
        assert_eq!((c.kept, c.total), (vec![1, 2], 4));
        let c: Capped<u32, 2> = serde_json::from_str("[1]").unwrap();
        assert_eq!((c.kept, c.total), (vec![1], 1));
    }

    #[test]
    fn too_many_values_in_all_and_bad_json_are_refused() {
        let many = format!(
            r#"{{{}}}"#,
            (0..30)
                .map(|i| format!(r#""k{i}":{{}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse(many.as_bytes(), SMALL).unwrap_err(),
            BoundError::Values { max: 20 }
        );
        assert!(matches!(parse(b"{\"a\":", SMALL), Err(BoundError::Json(_))));
        assert!(matches!(parse(b"{} {}", SMALL), Err(BoundError::Json(_))));
    }
}
