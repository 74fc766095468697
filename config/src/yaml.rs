//! YAML reading on top of `serde_yaml_ng`: building a `Value` tree that rejects duplicate keys
//! (pointing at the repeated key), keeping custom tags as `Value::Tagged`, finding the line of
//! each top-level list item, and locating any node by its path for precise error positions.
//!
//! `serde_yaml_ng` does not expose positions of nodes it parsed successfully, only of errors.
//! Locating a node therefore re-reads the document with a visitor that deliberately fails on
//! the node wanted: the error carries the exact position libyaml recorded for that node. This
//! is only done when an error must be reported (or when the cheap text scan for item lines can
//! not be verified), so the common path parses each file once.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

const DUP_MARKER: &str = "\u{1}sluice-duplicate-key:";
const STOP_MARKER: &str = "\u{1}sluice-stop";
const NOT_FOUND_MARKER: &str = "\u{1}sluice-not-found";

/// A problem reading the YAML text itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum YamlProblem {
    /// Malformed YAML.
    Syntax(String),
    /// A mapping repeats a key.
    DuplicateKey(String),
}

/// A YAML problem with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlError {
    pub problem: YamlProblem,
    pub line: usize,
    pub column: usize,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    /// A list element.
    Index(usize),
    /// A mapping key (the path ends at the key node itself when it is the last step).
    Key(String),
}

/// Parse one YAML document into a `Value`, rejecting duplicate keys.
pub(crate) fn parse_document(text: &str) -> Result<Value, YamlError> {
    let text = crate::yaml11::normalize_booleans(text);
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    match (NodeSeed { check: None }).deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let msg = e.to_string();
            let problem = if let Some(pos) = msg.find(DUP_MARKER) {
                let rest = &msg[pos + DUP_MARKER.len()..];
                let key = rest.split(" at line ").next().unwrap_or(rest);
                YamlProblem::DuplicateKey(key.to_string())
            } else {
                YamlProblem::Syntax(strip_position(&msg))
            };
            Err(YamlError {
                problem,
                line,
                column,
            })
        }
    }
}

fn strip_position(msg: &str) -> String {
    // Deserialization errors start with the path of the node (".[0].job.timeout: ...").
    let msg = match msg.find(": ") {
        Some(i) if msg.starts_with('.') || msg.starts_with('[') => &msg[i + 2..],
        _ => msg,
    };
    match msg.find(" at line ") {
        Some(i) => {
            let mut s = msg[..i].to_string();
            // libyaml adds context after the position ("..., while parsing a flow node").
            if let Some(j) = msg[i..].find(", ") {
                s.push_str(&msg[i + j..]);
            }
            s
        }
        None => msg.to_string(),
    }
}

/// Builds a `Value`; when `check` is set the value is a mapping key and must not be in it.
struct NodeSeed<'m> {
    check: Option<&'m Mapping>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(NodeVisitor { check: self.check })
    }
}

struct NodeVisitor<'m> {
    check: Option<&'m Mapping>,
}

impl NodeVisitor<'_> {
    fn finish<E: de::Error>(&self, v: Value) -> Result<Value, E> {
        if let Some(m) = self.check {
            let is_merge = matches!(&v, Value::String(s) if s == "<<");
            if !is_merge && m.contains_key(&v) {
                let shown = match &v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                return Err(E::custom(format!("{DUP_MARKER}{shown}")));
            }
        }
        Ok(v)
    }
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.finish(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.finish(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.finish(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.finish(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.finish(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(NodeSeed { check: None })? {
            out.push(v);
        }
        self.finish(Value::Sequence(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        loop {
            let key = match map.next_key_seed(NodeSeed { check: Some(&out) })? {
                Some(k) => k,
                None => break,
            };
            let value = map.next_value_seed(NodeSeed { check: None })?;
            out.insert(key, value);
        }
        self.finish(Value::Mapping(out))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        let value = variant.newtype_variant_seed(NodeSeed { check: None })?;
        self.finish(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// The 1-based position of the node at `path`, if it exists.
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (LocSeed { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => {
            if e.to_string().contains(NOT_FOUND_MARKER) {
                return None;
            }
            e.location().map(|l| (l.line(), l.column()))
        }
    }
}

struct LocSeed<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for LocSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            d.deserialize_any(Stop)
        } else {
            d.deserialize_any(Nav { path: self.path })
        }
    }
}

/// Fails on whatever node it is asked to visit, so the error gets that node's position.
struct Stop;

impl<'de> Visitor<'de> for Stop {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(STOP_MARKER)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(STOP_MARKER))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(STOP_MARKER))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(STOP_MARKER))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(STOP_MARKER))
    }
}

fn not_found<E: de::Error>() -> E {
    E::custom(NOT_FOUND_MARKER)
}

/// Walks down `path`, skipping everything else.
struct Nav<'p> {
    path: &'p [Seg],
}

impl<'de> Visitor<'de> for Nav<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a collection")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(not_found())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Seg::Index(i)) = self.path.first() else {
            return Err(not_found());
        };
        for _ in 0..*i {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(not_found());
            }
        }
        match seq.next_element_seed(LocSeed {
            path: &self.path[1..],
        })? {
            Some(()) | None => Err(not_found()),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Seg::Key(k)) = self.path.first() else {
            return Err(not_found());
        };
        let last = self.path.len() == 1;
        while let Some(found) = map.next_key_seed(KeyProbe { key: k, stop: last })? {
            if found {
                map.next_value_seed(LocSeed {
                    path: &self.path[1..],
                })?;
                return Err(not_found());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(not_found())
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant_seed(LocSeed { path: self.path })
    }
}

/// Reads a mapping key: true when it is the key wanted (or fails on it when `stop`).
struct KeyProbe<'k> {
    key: &'k str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if v == self.key {
            if self.stop {
                return Err(E::custom(STOP_MARKER));
            }
            return Ok(true);
        }
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<bool, A::Error> {
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant::<IgnoredAny>()?;
        Ok(false)
    }
}

/// 1-based positions of each top-level list item (the position of its first key).
///
/// A text scan finds block-sequence entries at the indentation of the first one; it is used
/// only if it finds exactly one entry per item and each entry starts with that item's key.
/// Otherwise every item is located exactly by re-reading the document.
///
/// The flag is true when the text scan was used: then each item's text runs from its line to
/// the next item's line, and can be read on its own.
pub(crate) fn item_positions(text: &str, items: &[Value]) -> (Vec<(usize, usize)>, bool) {
    if let Some(found) = scan_items(text, items) {
        return (found, true);
    }
    let found = (0..items.len())
        .map(|i| locate(text, &[Seg::Index(i)]).unwrap_or((1, 1)))
        .collect();
    (found, false)
}

fn scan_items(text: &str, items: &[Value]) -> Option<Vec<(usize, usize)>> {
    let mut indent: Option<usize> = None;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        let ind = line.len() - trimmed.len();
        let rest = match trimmed.strip_prefix('-') {
            Some(r) if r.is_empty() || r.starts_with(' ') || r.starts_with('\t') => r,
            _ => continue,
        };
        match indent {
            None => indent = Some(ind),
            Some(i) if i == ind => {}
            Some(_) => continue,
        }
        let content = rest.trim_start();
        let col = ind + 1 + (rest.len() - content.len()) + 1;
        found.push((n + 1, col, content.to_string()));
    }
    if found.len() != items.len() {
        return None;
    }
    let mut out = Vec::with_capacity(found.len());
    for ((line, col, content), item) in found.into_iter().zip(items) {
        if let Value::Mapping(m) = item {
            if let Some((Value::String(k), _)) = m.iter().next() {
                let c = content.trim_start_matches(['"', '\'', '{', ' ']);
                let ok = c.is_empty() || c.starts_with('#') || c.starts_with(k.as_str());
                if !ok {
                    return None;
                }
            }
        }
        out.push((line, col));
    }
    Some(out)
}

/// A short description of a value's type for error messages.
pub(crate) fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Number(n) if n.is_f64() => "a float".into(),
        Value::Number(_) => "an integer".into(),
        Value::String(_) => "a string".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a dict".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// The tag of a tagged value without its leading `!`.
pub(crate) fn tag_name(t: &TaggedValue) -> String {
    t.tag.to_string().trim_start_matches('!').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_points_at_second_key() {
        let text = "- job:\n    name: a\n    run: x.yaml\n    name: b\n";
        let err = parse_document(text).unwrap_err();
        assert_eq!(err.problem, YamlProblem::DuplicateKey("name".into()));
        assert_eq!((err.line, err.column), (4, 5));
    }

    #[test]
    fn tags_are_kept() {
        let v = parse_document("a: !override [1]\nb: !encrypted/pkcs1-oaep abc\n").unwrap();
        match v.get("a") {
            Some(Value::Tagged(t)) => assert_eq!(tag_name(t), "override"),
            other => panic!("not tagged: {other:?}"),
        }
        match v.get("b") {
            Some(Value::Tagged(t)) => assert_eq!(tag_name(t), "encrypted/pkcs1-oaep"),
            other => panic!("not tagged: {other:?}"),
        }
    }

    #[test]
    fn locate_finds_keys_and_items() {
        let text = "# c\n- job:\n    name: a\n    vars: !override\n      x: 1\n\n- nodeset:\n    name: n\n";
        assert_eq!(locate(text, &[Seg::Index(1)]), Some((7, 3)));
        assert_eq!(
            locate(
                text,
                &[
                    Seg::Index(0),
                    Seg::Key("job".into()),
                    Seg::Key("vars".into())
                ]
            ),
            Some((4, 5))
        );
        assert_eq!(
            locate(
                text,
                &[
                    Seg::Index(0),
                    Seg::Key("job".into()),
                    Seg::Key("vars".into()),
                    Seg::Key("x".into())
                ]
            ),
            Some((5, 7))
        );
        assert_eq!(locate(text, &[Seg::Index(5)]), None);
    }

    #[test]
    fn item_scan_and_fallback_agree() {
        let text = "- job:\n    name: a\n-   nodeset:\n      name: b\n";
        let v = parse_document(text).unwrap();
        let items = v.as_sequence().unwrap();
        assert_eq!(item_positions(text, items), (vec![(1, 3), (3, 5)], true));
        let flow = "[{job: {name: a}},\n {nodeset: {name: b}}]\n";
        let v = parse_document(flow).unwrap();
        let (pos, scanned) = item_positions(flow, v.as_sequence().unwrap());
        assert_eq!(pos[1].0, 2);
        assert!(!scanned);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_document("- job:\n    name: [a\n").unwrap_err();
        assert!(matches!(err.problem, YamlProblem::Syntax(_)));
        assert!(err.line >= 2);
    }
}
