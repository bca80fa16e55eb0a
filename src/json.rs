//! JSON that zfw reads (policy files, the OpenZiti start-up file): parsed
//! by serde_json into a `Value`, with one rule serde_json does not have:
//! a key repeated within one object is an error naming its JSON path
//! (`ingress[3].dst`), not "the last one wins".

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::shown;

/// Where a value is in the document, rendered only for an error.
#[derive(Clone, Copy)]
enum Path<'a> {
    Top,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Top => Ok(()),
            Path::Key(Path::Top, k) => write!(f, "{}", shown(k)),
            Path::Key(p, k) => write!(f, "{p}.{}", shown(k)),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Marks the messages of duplicate keys among serde_json's errors.
const DUP: &str = "duplicate key at ";

/// A parse error: a syntax error (line, column and serde_json's words), or
/// a repeated key (its JSON path, escaped, and the line and column).
#[derive(Debug)]
pub enum JsonError {
    Syntax {
        line: usize,
        column: usize,
        eof: bool,
        msg: String,
    },
    Duplicate {
        path: String,
        line: usize,
        column: usize,
    },
}

impl JsonError {
    /// The one-line message for a file named `file`:
    /// `FILE: line L, column C: invalid JSON: ...` or
    /// `FILE: PATH: duplicate key (line L, column C)`.
    pub fn message(&self, file: &str) -> String {
        match self {
            JsonError::Syntax {
                line,
                column,
                eof,
                msg,
            } => {
                let what = if *eof {
                    "truncated JSON"
                } else {
                    "invalid JSON"
                };
                format!("{file}: line {line}, column {column}: {what}: {msg}")
            }
            JsonError::Duplicate { path, line, column } => {
                format!("{file}: {path}: duplicate key (line {line}, column {column}; a key may appear once per object)")
            }
        }
    }
}

/// Parse `text` as one JSON value, refusing repeated keys.
pub fn from_str(text: &str) -> std::result::Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Seed(Path::Top)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    v.map_err(|e| {
        let full = e.to_string();
        let msg = match full.rfind(" at line ") {
            Some(i) => &full[..i],
            None => full.as_str(),
        };
        match msg.strip_prefix(DUP) {
            Some(path) => JsonError::Duplicate {
                path: path.to_string(),
                line: e.line(),
                column: e.column(),
            },
            None => JsonError::Syntax {
                line: e.line(),
                column: e.column(),
                eof: e.is_eof(),
                msg: msg.to_string(),
            },
        }
    })
}

struct Seed<'a>(Path<'a>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
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
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed(Path::Index(&self.0, out.len())))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!(
                    "{DUP}{}",
                    Path::Key(&self.0, &k)
                )));
            }
            let v = map.next_value_seed(Seed(Path::Key(&self.0, &k)))?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(text: &str) -> String {
        match from_str(text) {
            Err(JsonError::Duplicate { path, .. }) => path,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_an_error_at_its_path() {
        assert_eq!(dup(r#"{"a": 1, "a": 2}"#), "a");
        assert_eq!(dup(r#"{"x": [{}, {"k": 1, "k": 1}]}"#), "x[1].k");
        assert_eq!(
            dup(r#"{"i": {"eth0": {"s": true, "s": false}}}"#),
            "i.eth0.s"
        );
        assert_eq!(dup("{\"o\": {\"a\\nb\": 1, \"a\\nb\": 2}}"), "o.a\\x0ab");
    }

    #[test]
    fn everything_else_parses_as_serde_json_does() {
        for text in [
            r#"{"a": [1, -2, 3.5, "s", true, null, {"b": {}}], "c": {"a": 1}}"#,
            "[]",
            "\"x\"",
            r#"{"big": 18446744073709551615, "neg": -9223372036854775808}"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_str(text).unwrap(), want, "{text}");
        }
        assert!(matches!(
            from_str(r#"{"a": 1"#),
            Err(JsonError::Syntax { eof: true, .. })
        ));
        assert!(matches!(
            from_str(r#"{"a": 1} x"#),
            Err(JsonError::Syntax { eof: false, .. })
        ));
    }
}
