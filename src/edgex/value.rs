//! EdgeX value types, and the check a write goes through before the bridge
//! forwards it: the device service turns every value into text and parses
//! it by the resource's type (device-sdk-go), and falls back to defaults or
//! odd encodings where it can; the bridge accepts only values that parse
//! one clear way, and forwards them as the canonical string.

use std::fmt;
use std::str::FromStr;

use super::Error;

/// A device resource's `valueType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    String,
    Int(u8),
    Uint(u8),
    Float(u8),
    Binary,
    Object,
    ObjectArray,
    BoolArray,
    StringArray,
    IntArray(u8),
    UintArray(u8),
    FloatArray(u8),
}

impl FromStr for ValueType {
    type Err = Error;

    fn from_str(s: &str) -> Result<ValueType, Error> {
        let bits = |rest: &str, allowed: &[u8]| -> Option<u8> {
            rest.parse::<u8>().ok().filter(|b| allowed.contains(b))
        };
        let ints: &[u8] = &[8, 16, 32, 64];
        let floats: &[u8] = &[32, 64];
        let t = match s {
            "Bool" => ValueType::Bool,
            "String" => ValueType::String,
            "Binary" => ValueType::Binary,
            "Object" => ValueType::Object,
            "ObjectArray" => ValueType::ObjectArray,
            "BoolArray" => ValueType::BoolArray,
            "StringArray" => ValueType::StringArray,
            _ => {
                let (base, array) = match s.strip_suffix("Array") {
                    Some(b) => (b, true),
                    None => (s, false),
                };
                let parsed = if let Some(r) = base.strip_prefix("Uint") {
                    bits(r, ints).map(|b| {
                        if array {
                            ValueType::UintArray(b)
                        } else {
                            ValueType::Uint(b)
                        }
                    })
                } else if let Some(r) = base.strip_prefix("Int") {
                    bits(r, ints).map(|b| {
                        if array {
                            ValueType::IntArray(b)
                        } else {
                            ValueType::Int(b)
                        }
                    })
                } else if let Some(r) = base.strip_prefix("Float") {
                    bits(r, floats).map(|b| {
                        if array {
                            ValueType::FloatArray(b)
                        } else {
                            ValueType::Float(b)
                        }
                    })
                } else {
                    None
                };
                parsed.ok_or_else(|| Error::Value(format!("unknown value type `{s}`")))?
            }
        };
        Ok(t)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Bool => write!(f, "Bool"),
            ValueType::String => write!(f, "String"),
            ValueType::Int(b) => write!(f, "Int{b}"),
            ValueType::Uint(b) => write!(f, "Uint{b}"),
            ValueType::Float(b) => write!(f, "Float{b}"),
            ValueType::Binary => write!(f, "Binary"),
            ValueType::Object => write!(f, "Object"),
            ValueType::ObjectArray => write!(f, "ObjectArray"),
            ValueType::BoolArray => write!(f, "BoolArray"),
            ValueType::StringArray => write!(f, "StringArray"),
            ValueType::IntArray(b) => write!(f, "Int{b}Array"),
            ValueType::UintArray(b) => write!(f, "Uint{b}Array"),
            ValueType::FloatArray(b) => write!(f, "Float{b}Array"),
        }
    }
}

fn bad(vt: ValueType, v: &str, why: &str) -> Error {
    Error::Value(format!("`{v}` is not a valid {vt}: {why}"))
}

/// Go's `strconv.ParseBool` set, as the device service accepts it.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Base-10 digits with an optional sign, nothing else (no spaces, `_`,
/// hex or `+` for unsigned), as `strconv.ParseInt`/`ParseUint` base 10.
fn parse_int(s: &str, bits: u8, signed: bool) -> Option<i128> {
    let digits = if signed {
        s.strip_prefix(['-', '+']).unwrap_or(s)
    } else {
        s
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = s.trim_start_matches('+').parse().ok()?;
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    (min..=max).contains(&v).then_some(v)
}

/// A finite decimal or e-notation number in range for the width. The
/// device service would also take `Inf`, `NaN`, hex floats and base64 of
/// the IEEE bytes; a tenant gets none of those.
fn parse_float(s: &str, bits: u8) -> Option<f64> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && s.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || (bits == 32 && v.abs() > f64::from(f32::MAX)) {
        return None;
    }
    Some(v)
}

/// Checks a value a tenant wants written to a resource of type `vt` and
/// returns the string to send (PUT bodies carry strings, per the OpenAPI
/// file; objects are sent as JSON text, which the device service accepts).
pub(crate) fn check_write(vt: ValueType, v: &serde_json::Value) -> Result<String, Error> {
    use serde_json::Value as J;
    match (vt, v) {
        (ValueType::Binary, _) => Err(Error::Value("Binary resources cannot be written".into())),
        (ValueType::Object, J::Object(_)) | (ValueType::ObjectArray, J::Array(_)) => {
            check_write(vt, &J::String(v.to_string()))
        }
        (_, J::String(s)) => check_text(vt, s),
        _ => Err(Error::Value(format!(
            "a {vt} value must be sent as a JSON string, e.g. \"{}\"",
            example(vt)
        ))),
    }
}

fn example(vt: ValueType) -> &'static str {
    match vt {
        ValueType::Bool => "true",
        ValueType::Int(_) | ValueType::Uint(_) => "42",
        ValueType::Float(_) => "2.5e+01",
        ValueType::BoolArray => "[true,false]",
        ValueType::IntArray(_) | ValueType::UintArray(_) => "[1,2,3]",
        ValueType::FloatArray(_) => "[1.5,2]",
        ValueType::StringArray => "[\\\"a\\\",\\\"b\\\"]",
        _ => "…",
    }
}

fn check_text(vt: ValueType, s: &str) -> Result<String, Error> {
    let scalar = |t: ValueType, x: &str| -> Result<(), Error> {
        let ok = match t {
            ValueType::Bool => parse_bool(x).is_some(),
            ValueType::Int(b) => parse_int(x, b, true).is_some(),
            ValueType::Uint(b) => parse_int(x, b, false).is_some(),
            ValueType::Float(b) => parse_float(x, b).is_some(),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(bad(t, x, "out of range or not a number of that kind"))
        }
    };
    match vt {
        ValueType::String => Ok(s.to_string()),
        ValueType::Bool | ValueType::Int(_) | ValueType::Uint(_) | ValueType::Float(_) => {
            if s.is_empty() {
                return Err(bad(vt, s, "empty"));
            }
            scalar(vt, s)?;
            Ok(s.to_string())
        }
        ValueType::Object | ValueType::ObjectArray => {
            let parsed: serde_json::Value =
                serde_json::from_str(s).map_err(|e| bad(vt, s, &format!("not JSON ({e})")))?;
            let right = match vt {
                ValueType::Object => parsed.is_object(),
                _ => parsed
                    .as_array()
                    .is_some_and(|a| a.iter().all(|x| x.is_object())),
            };
            if !right {
                return Err(bad(vt, s, "wrong JSON shape"));
            }
            Ok(parsed.to_string())
        }
        ValueType::Binary => Err(Error::Value("Binary resources cannot be written".into())),
        array => {
            let elements: Vec<serde_json::Value> = serde_json::from_str(s)
                .map_err(|_| bad(vt, s, "not a JSON array such as [1,2]"))?;
            let elem = match array {
                ValueType::BoolArray => ValueType::Bool,
                ValueType::StringArray => ValueType::String,
                ValueType::IntArray(b) => ValueType::Int(b),
                ValueType::UintArray(b) => ValueType::Uint(b),
                ValueType::FloatArray(b) => ValueType::Float(b),
                _ => return Err(Error::Value(format!("{vt} cannot be written"))),
            };
            for e in &elements {
                let text = match (elem, e) {
                    (ValueType::Bool, serde_json::Value::Bool(b)) => b.to_string(),
                    (ValueType::String, serde_json::Value::String(x)) => x.clone(),
                    (
                        ValueType::Int(_) | ValueType::Uint(_) | ValueType::Float(_),
                        serde_json::Value::Number(n),
                    ) => n.to_string(),
                    _ => return Err(bad(vt, s, &format!("element {e} is not a {elem}"))),
                };
                scalar(elem, &text)?;
            }
            // Canonical JSON text: what device-sdk's json.Unmarshal reads.
            Ok(serde_json::Value::Array(elements).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(t: &str, v: serde_json::Value) -> Result<String, Error> {
        check_write(t.parse().unwrap(), &v)
    }

    #[test]
    fn every_device_virtual_type_name_round_trips() {
        for t in [
            "Bool",
            "String",
            "Int8",
            "Int16",
            "Int32",
            "Int64",
            "Uint8",
            "Uint16",
            "Uint32",
            "Uint64",
            "Float32",
            "Float64",
            "Binary",
            "Object",
            "ObjectArray",
            "BoolArray",
            "StringArray",
            "Int8Array",
            "Int64Array",
            "Uint16Array",
            "Float32Array",
            "Float64Array",
        ] {
            assert_eq!(t.parse::<ValueType>().unwrap().to_string(), t);
        }
        for bad in ["Int7", "Float16", "Uint", "int8", "", "Int8Arrays"] {
            assert!(bad.parse::<ValueType>().is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_are_checked_for_range_and_form() {
        assert_eq!(w("Int8", json!("127")).unwrap(), "127");
        assert_eq!(w("Int8", json!("-128")).unwrap(), "-128");
        for v in ["128", "-129", "1.0", " 1", "0x10", "1_0", "", "abc"] {
            assert!(w("Int8", json!(v)).is_err(), "{v:?}");
        }
        assert!(w("Uint8", json!("255")).is_ok());
        assert!(w("Uint8", json!("-1")).is_err());
        assert!(w("Uint8", json!("+1")).is_err());
        assert!(w("Uint64", json!("18446744073709551615")).is_ok());
        assert!(w("Int64", json!("9223372036854775808")).is_err());
        // JSON numbers are refused: the device service would print 1234567
        // as 1.234567e+06 and reject it.
        let e = w("Int32", json!(1234567)).unwrap_err().to_string();
        assert!(e.contains("must be sent as a JSON string"), "{e}");
    }

    #[test]
    fn bools_floats_and_objects() {
        for v in ["true", "T", "0", "False"] {
            assert!(w("Bool", json!(v)).is_ok(), "{v}");
        }
        assert!(w("Bool", json!("yes")).is_err());
        assert!(w("Float32", json!("2.85e+01")).is_ok());
        assert!(w("Float64", json!("-0.5")).is_ok());
        for v in ["NaN", "Inf", "0x1p3", "1e39", "", "."] {
            assert!(w("Float32", json!(v)).is_err(), "{v:?}");
        }
        assert!(w("Float64", json!("1e39")).is_ok());
        assert_eq!(w("Object", json!({"a": 1})).unwrap(), "{\"a\":1}");
        assert!(w("Object", json!("[1]")).is_err());
        assert!(w("ObjectArray", json!([{"a": 1}, {"b": 2}])).is_ok());
        assert!(w("ObjectArray", json!([1])).is_err());
        assert!(w("Binary", json!("AAAA")).is_err());
    }

    #[test]
    fn arrays_are_json_text_of_valid_elements() {
        assert_eq!(w("Int8Array", json!("[1, -2, 3]")).unwrap(), "[1,-2,3]");
        assert!(w("Int8Array", json!("[1, 300]")).is_err());
        assert!(w("Int8Array", json!("[1 2]")).is_err());
        assert!(w("BoolArray", json!("[true,false]")).is_ok());
        assert!(w("BoolArray", json!("[1]")).is_err());
        assert!(w("Uint16Array", json!("[-1]")).is_err());
        assert!(w("Float32Array", json!("[1.5, 2]")).is_ok());
        assert!(w("StringArray", json!("[\"a\",\"b\"]")).is_ok());
    }
}
