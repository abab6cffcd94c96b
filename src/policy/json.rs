//! A JSON tree that keeps duplicate object keys visible. `serde_json::Value` silently keeps the
//! last of two equal keys, so `{"Effect":"Deny","Effect":"Allow"}` would read one way to a
//! reviewer and another way to us; such documents are rejected instead.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// Kept as text so a condition value like `123456789012` compares as AWS stringifies it.
    Integer(String),
    Float,
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

#[derive(Debug, Default)]
pub(crate) struct Object {
    pub(crate) entries: Vec<(String, Json)>,
    pub(crate) duplicates: Vec<String>,
}

impl Object {
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl Json {
    pub(crate) fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Integer(_) | Json::Float => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Integer(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Integer(v.to_string()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Float)
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Object::default();
        let mut seen = HashSet::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            if !seen.insert(key.clone()) && !object.duplicates.contains(&key) {
                object.duplicates.push(key.clone());
            }
            object.entries.push((key, value));
        }
        Ok(Json::Object(object))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_recorded_once_each() {
        let Json::Object(obj) = Json::parse(r#"{"a":1,"b":2,"a":3,"a":4}"#).unwrap() else {
            panic!("expected object");
        };
        assert_eq!(obj.duplicates, vec!["a".to_owned()]);
        assert_eq!(obj.entries.len(), 4);
    }

    #[test]
    fn scalar_kinds_are_distinguished() {
        let Json::Array(items) = Json::parse(r#"[null,true,12,1.5,"s",[],{}]"#).unwrap() else {
            panic!("expected array");
        };
        let names: Vec<_> = items.iter().map(Json::type_name).collect();
        assert_eq!(
            names,
            [
                "null",
                "a boolean",
                "a number",
                "a number",
                "a string",
                "an array",
                "an object"
            ]
        );
        assert!(matches!(&items[2], Json::Integer(s) if s == "12"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Json::parse(&deep).is_err());
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(Json::parse("{\"a\":").is_err());
        assert!(Json::parse("{} trailing").is_err());
    }
}
