//! Python values (Ansible task results and callback events) as JSON values, read straight from
//! the Python objects: no `json.dumps` in Python and no re-parse in Rust, which for a task with
//! 200,000 output lines was most of what the callbacks cost.
//!
//! Plain `dict`/`list`/`tuple`, `str` (and its subclasses, e.g. Ansible's tagged and unsafe
//! strings, whose value is their text), `int`, `float`, `bool` and `None` are read directly.
//! Anything else (Ansible 2.19's lazy or tagged containers, vaulted values, dates, …) first goes
//! through the optional `native` callable the callback passes (Ansible's
//! `transform_to_native_types`, which also redacts vaulted values), then is read generically:
//! bytes are decoded (UTF-8, backslash escapes), mappings by their items with `str()` keys,
//! lists, tuples and sets by iteration, and every other object as `str(obj)` (`repr` if that
//! fails).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping, PySet, PyString,
    PyTuple,
};
use serde_json::{Map, Number, Value};

/// Deeper nesting than this is taken for a reference cycle.
const MAX_DEPTH: usize = 256;

/// Converts `obj`; `native` (if given) makes unusual values plain Python data first.
pub fn to_value(obj: &Bound<'_, PyAny>, native: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    Converter { native }.value(obj, 0)
}

/// Converts a mapping (a task result, an event) to a JSON object.
pub fn to_map(
    obj: &Bound<'_, PyAny>,
    native: Option<&Bound<'_, PyAny>>,
) -> PyResult<Map<String, Value>> {
    match to_value(obj, native)? {
        Value::Object(map) => Ok(map),
        other => Err(PyValueError::new_err(format!(
            "expected a mapping, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

struct Converter<'a, 'py> {
    native: Option<&'a Bound<'py, PyAny>>,
}

fn text(s: &Bound<'_, PyString>) -> String {
    // Lone surrogates (undecodable bytes smuggled through surrogateescape) have no UTF-8 form.
    match s.to_str() {
        Ok(t) => t.to_owned(),
        Err(_) => s.to_string_lossy().into_owned(),
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn int(i: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(v) = i.extract::<i64>() {
        return Ok(Value::Number(v.into()));
    }
    if let Ok(v) = i.extract::<u64>() {
        return Ok(Value::Number(v.into()));
    }
    // Beyond 64 bits: a float, as a JSON parser without arbitrary precision reads it.
    Ok(float(i.extract::<f64>()?))
}

impl Converter<'_, '_> {
    fn value(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "value nested deeper than {MAX_DEPTH} levels (a reference cycle?)"
            )));
        }
        if obj.is_none() {
            return Ok(Value::Null);
        }
        if let Ok(s) = obj.downcast::<PyString>() {
            return Ok(Value::String(text(s)));
        }
        if let Ok(b) = obj.downcast_exact::<PyBool>() {
            return Ok(Value::Bool(b.is_true()));
        }
        if obj.is_instance_of::<PyInt>() {
            return int(obj);
        }
        if obj.is_instance_of::<PyFloat>() {
            return Ok(float(obj.extract::<f64>()?));
        }
        if let Ok(d) = obj.downcast_exact::<PyDict>() {
            let mut map = Map::with_capacity(d.len());
            for (k, v) in d.iter() {
                map.insert(self.key(&k)?, self.value(&v, depth + 1)?);
            }
            return Ok(Value::Object(map));
        }
        if let Ok(l) = obj.downcast_exact::<PyList>() {
            return self.items(l.iter(), l.len(), depth);
        }
        if let Ok(t) = obj.downcast_exact::<PyTuple>() {
            return self.items(t.iter(), t.len(), depth);
        }
        match self.native {
            Some(native) => {
                let plain = native.call1((obj,))?;
                Converter { native: None }.generic(&plain, depth)
            }
            None => self.generic(obj, depth),
        }
    }

    fn items<'py>(
        &self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        len: usize,
        depth: usize,
    ) -> PyResult<Value> {
        let mut out = Vec::with_capacity(len);
        for item in items {
            out.push(self.value(&item, depth + 1)?);
        }
        Ok(Value::Array(out))
    }

    /// Values that are not plain Python data (after `native`, if any).
    fn generic(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
        if obj.is_none()
            || obj.is_instance_of::<PyString>()
            || obj.is_instance_of::<PyInt>()
            || obj.is_instance_of::<PyFloat>()
            || obj.is_exact_instance_of::<PyDict>()
            || obj.is_exact_instance_of::<PyList>()
            || obj.is_exact_instance_of::<PyTuple>()
        {
            return self.value(obj, depth);
        }
        if let Ok(b) = obj.downcast::<PyBytes>() {
            let decoded = b.call_method1("decode", ("utf-8", "backslashreplace"))?;
            return self.value(&decoded, depth);
        }
        if let Ok(m) = obj.downcast::<PyMapping>() {
            let mut map = Map::new();
            for pair in m.items()?.iter() {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
                map.insert(self.key(&k)?, self.value(&v, depth + 1)?);
            }
            return Ok(Value::Object(map));
        }
        if obj.is_instance_of::<PyList>()
            || obj.is_instance_of::<PyTuple>()
            || obj.is_instance_of::<PySet>()
            || obj.is_instance_of::<PyFrozenSet>()
        {
            let mut out = Vec::new();
            for item in obj.try_iter()? {
                out.push(self.value(&item?, depth + 1)?);
            }
            return Ok(Value::Array(out));
        }
        match obj.str() {
            Ok(s) => Ok(Value::String(text(&s))),
            Err(_) => Ok(Value::String(text(&obj.repr()?))),
        }
    }

    fn key(&self, k: &Bound<'_, PyAny>) -> PyResult<String> {
        match k.downcast::<PyString>() {
            Ok(s) => Ok(text(s)),
            Err(_) => Ok(text(&k.str()?)),
        }
    }
}
