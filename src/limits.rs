//! What a session value may be: checked when a handler stores it, so that
//! a value the store cannot keep, or could not read back, never gets in.

use std::io;

use serde_json::Value;

use crate::Error;

/// How deeply a stored value may nest. Reading a row back goes through a
/// JSON parser with a recursion limit of 128; the session object adds one
/// level, and this leaves ample room.
pub(crate) const MAX_DEPTH: usize = 64;

/// Checks a key and its value: no NUL characters (PostgreSQL's `jsonb`
/// cannot hold them, and a session must be storable in every mode) and no
/// nesting beyond [`MAX_DEPTH`].
pub(crate) fn check(key: &str, value: &Value) -> Result<(), Error> {
    let reject = |reason: &str| {
        Err(Error::Value {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.contains('\0') {
        return reject("the key holds a NUL character, which the store cannot keep");
    }
    match walk(value, 1) {
        Ok(()) => Ok(()),
        Err(Problem::Nul) => reject("the value holds a NUL character, which the store cannot keep"),
        Err(Problem::Deep) => reject("the value nests more than 64 levels deep"),
    }
}

enum Problem {
    Nul,
    Deep,
}

fn walk(value: &Value, depth: usize) -> Result<(), Problem> {
    match value {
        Value::String(s) if s.contains('\0') => Err(Problem::Nul),
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(Problem::Deep);
            }
            items.iter().try_for_each(|v| walk(v, depth + 1))
        }
        Value::Object(map) => {
            if depth > MAX_DEPTH {
                return Err(Problem::Deep);
            }
            map.iter().try_for_each(|(k, v)| {
                if k.contains('\0') {
                    return Err(Problem::Nul);
                }
                walk(v, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

/// The size of `value` as compact JSON, in bytes.
pub(crate) fn json_len(value: &impl serde::Serialize) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The bytes one `"key":value,` entry adds to a JSON object.
pub(crate) fn entry_len(key: &str, value: &Value) -> usize {
    json_len(&key) + 1 + json_len(value) + 1
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        (1..depth).fold(json!([]), |inner, _| json!([inner]))
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(check("k", &nested(MAX_DEPTH)).is_ok());
        assert!(matches!(
            check("k", &nested(MAX_DEPTH + 1)),
            Err(Error::Value { .. })
        ));
        let deep_object = (1..=MAX_DEPTH + 1).fold(json!(1), |inner, _| json!({ "a": inner }));
        assert!(check("k", &deep_object).is_err());
    }

    #[test]
    fn nul_characters_are_refused_anywhere() {
        assert!(check("a\0b", &json!(1)).is_err());
        assert!(check("k", &json!("x\0")).is_err());
        assert!(check("k", &json!({ "in\0ner": 1 })).is_err());
        assert!(check("k", &json!([["\0"]])).is_err());
        assert!(check("k", &json!({ "fine": ["ok", 1, null] })).is_ok());
    }

    #[test]
    fn sizes_are_those_of_compact_json() {
        let value = json!({ "a": [1, "é"] });
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
        assert_eq!(entry_len("k", &json!(12)), "\"k\":12,".len());
    }
}
