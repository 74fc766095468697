//! Validation and conversion of one configuration file's items into the model: the schema of
//! every item type (allowed keys, value types, required keys, variable names, regexes,
//! `!override`/`!inherit`/`!encrypted/pkcs1-oaep` tags), with each error pointing at the exact
//! key or value it concerns. A broken item is dropped and the others still load.

use std::borrow::Cow;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::{Map, Value as JsonValue};
use serde_yaml_ng::{Mapping, Value};

use crate::errors::{ConfigError, ConfigErrorKind as K, ItemContext};
use crate::frozen::{NodesetGroup, NodesetNode, RequiredProject, Vars};
use crate::loader::ProjectConfig;
use crate::model::*;
use crate::yaml::{item_positions, locate, parse_document, tag_name, type_name, Seg, YamlProblem};

/// Variable names Zuul or the executor set themselves.
pub const RESERVED_VAR_NAMES: [&str; 10] = [
    "zuul",
    "zuul_node",
    "nodepool",
    "unsafe_vars",
    "zuul_user_dir",
    "ansible_connection",
    "ansible_host",
    "ansible_python_interpreter",
    "ansible_shell_executable",
    "ansible_user",
];

const ITEM_TYPES: [&str; 9] = [
    "job",
    "nodeset",
    "project",
    "project-template",
    "secret",
    "semaphore",
    "queue",
    "pragma",
    "pipeline",
];

/// Job attributes also allowed in project-pipeline job entries.
const JOB_ATTRIBUTES: &[&str] = &[
    "parent",
    "final",
    "abstract",
    "protected",
    "intermediate",
    "requires",
    "provides",
    "failure-message",
    "success-message",
    "failure-url",
    "success-url",
    "hold-following-changes",
    "voting",
    "semaphore",
    "semaphores",
    "tags",
    "branches",
    "files",
    "secrets",
    "irrelevant-files",
    "nodeset",
    "pre-timeout",
    "timeout",
    "post-timeout",
    "attempts",
    "pre-run",
    "post-run",
    "run",
    "cleanup-run",
    "ansible-split-streams",
    "ansible-version",
    "roles",
    "required-projects",
    "vars",
    "extra-vars",
    "host-vars",
    "group-vars",
    "include-vars",
    "dependencies",
    "allowed-projects",
    "override-branch",
    "override-checkout",
    "description",
    "variant-description",
    "post-review",
    "match-on-config-updates",
    "workspace-scheme",
    "workspace-checkout",
    "deduplicate",
    "failure-output",
    "image-build-name",
    "attribute-control",
    "type",
    "secret-exposure",
    "preserve-home-paths",
    "include-projects",
    "exclude-projects",
];

const ATTRIBUTE_CONTROL_ATTRS: &[&str] = &[
    "requires",
    "provides",
    "tags",
    "files",
    "irrelevant-files",
    "required-projects",
    "include-projects",
    "exclude-projects",
    "vars",
    "extra-vars",
    "host-vars",
    "group-vars",
    "include-vars",
    "dependencies",
    "failure-output",
    "type",
    "pre-run",
    "run",
    "post-run",
    "voting",
];

fn pk(path: &[Seg], key: &str) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(Seg::Key(key.to_string()));
    p
}

fn pi(path: &[Seg], i: usize) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

fn last_key(path: &[Seg]) -> String {
    path.iter()
        .rev()
        .find_map(|s| match s {
            Seg::Key(k) => Some(k.clone()),
            Seg::Index(_) => None,
        })
        .unwrap_or_default()
}

/// Zuul's `as_list`: null is empty, a list is itself, anything else one element.
fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(s) => s.iter().collect(),
        other => vec![other],
    }
}

/// Per-item error collection and position lookup.
struct ItemCx<'a> {
    /// The text to locate nodes in: the item's own lines when they are known, else the file.
    text: &'a str,
    /// Lines before `text` in the file.
    line_offset: usize,
    base: &'a SourceContext,
    /// Index of the item within `text`.
    index: usize,
    item_type: String,
    name: Option<String>,
    line: usize,
    column: usize,
    errors: Vec<ConfigError>,
}

impl ItemCx<'_> {
    /// Report `kind` at the node `rel` (relative to the item's body).
    fn err(&mut self, rel: &[Seg], kind: K) {
        let mut path = vec![Seg::Index(self.index), Seg::Key(self.item_type.clone())];
        path.extend_from_slice(rel);
        let (line, column) = if rel.is_empty() {
            (self.line, self.column)
        } else {
            locate(self.text, &path)
                .map(|(l, c)| (l + self.line_offset, c))
                .unwrap_or((self.line, self.column))
        };
        let mut location = self.base.location();
        location.line = line;
        location.column = column;
        self.errors.push(ConfigError::new(
            location,
            ItemContext {
                item_type: Some(self.item_type.clone()),
                name: self.name.clone(),
            },
            kind,
        ));
    }

    fn wrong(&mut self, path: &[Seg], expected: &str, v: &Value) {
        let mut key = last_key(path);
        if key.is_empty() {
            key = self.item_type.clone();
        }
        self.err(
            path,
            K::WrongType {
                key,
                expected: expected.to_string(),
                found: type_name(v),
            },
        );
    }

    fn source(&self) -> SourceContext {
        let mut s = self.base.clone();
        s.line = self.line;
        s.column = self.column;
        s
    }

    /// Reject a tag where none is allowed; return the plain value otherwise.
    fn untagged<'v>(&mut self, path: &[Seg], v: &'v Value) -> Option<&'v Value> {
        if let Value::Tagged(t) = v {
            self.err(path, K::UnexpectedTag { tag: tag_name(t) });
            return None;
        }
        Some(v)
    }

    fn string(&mut self, path: &[Seg], v: &Value) -> Option<String> {
        match self.untagged(path, v)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong(path, "a string", other);
                None
            }
        }
    }

    fn boolean(&mut self, path: &[Seg], v: &Value) -> Option<bool> {
        match self.untagged(path, v)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong(path, "a bool", other);
                None
            }
        }
    }

    fn uint(&mut self, path: &[Seg], v: &Value) -> Option<u64> {
        match self.untagged(path, v)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                self.wrong(path, "a non-negative integer", other);
                None
            }
        }
    }

    fn bool_or_auto(&mut self, path: &[Seg], v: &Value) -> Option<BoolOrAuto> {
        match self.untagged(path, v)? {
            Value::Bool(true) => Some(BoolOrAuto::True),
            Value::Bool(false) => Some(BoolOrAuto::False),
            Value::String(s) if s == "auto" => Some(BoolOrAuto::Auto),
            other => {
                self.wrong(path, "a bool or \"auto\"", other);
                None
            }
        }
    }

    fn one_of(&mut self, path: &[Seg], v: &Value, allowed: &[&str]) -> Option<String> {
        let s = self.string(path, v)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            let key = last_key(path);
            self.err(
                path,
                K::InvalidValue {
                    key,
                    message: format!("\"{s}\" is not one of {}", allowed.join(", ")),
                },
            );
            None
        }
    }

    /// A string or a list of strings.
    fn str_list(&mut self, path: &[Seg], v: &Value) -> Option<Vec<String>> {
        let v = self.untagged(path, v)?;
        let mut out = Vec::new();
        let mut ok = true;
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let p = pi(path, i);
                            let key = last_key(path);
                            self.err(
                                &p,
                                K::WrongType {
                                    key,
                                    expected: "a string or a list of strings".into(),
                                    found: type_name(other),
                                },
                            );
                            ok = false;
                        }
                    }
                }
            }
            Value::String(s) => out.push(s.clone()),
            Value::Null => {}
            other => {
                self.wrong(path, "a string or a list of strings", other);
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// Split an `!override` / `!inherit` tag off a value.
    fn controlled<'v>(&mut self, path: &[Seg], v: &'v Value) -> Option<(MergeControl, &'v Value)> {
        if let Value::Tagged(t) = v {
            let control = match tag_name(t).as_str() {
                "override" => MergeControl::Override,
                "inherit" => MergeControl::Inherit,
                other => {
                    self.err(path, K::UnexpectedTag { tag: other.into() });
                    return None;
                }
            };
            if let Value::Tagged(inner) = &t.value {
                self.err(
                    path,
                    K::UnexpectedTag {
                        tag: tag_name(inner),
                    },
                );
                return None;
            }
            return Some((control, &t.value));
        }
        Some((MergeControl::Default, v))
    }

    fn controlled_list(&mut self, path: &[Seg], v: &Value) -> Option<Controlled<Vec<String>>> {
        let (control, v) = self.controlled(path, v)?;
        let value = self.str_list(path, v)?;
        Some(Controlled { value, control })
    }

    /// Convert YAML to JSON; encrypted tags only where `encrypted` allows.
    fn json(&mut self, path: &[Seg], v: &Value, encrypted: bool) -> Option<JsonValue> {
        Some(match v {
            Value::Null => JsonValue::Null,
            Value::Bool(b) => JsonValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    JsonValue::from(i)
                } else if let Some(u) = n.as_u64() {
                    JsonValue::from(u)
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(JsonValue::Number)
                        .unwrap_or(JsonValue::Null)
                }
            }
            Value::String(s) => JsonValue::String(s.clone()),
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.json(&pi(path, i), item, encrypted) {
                        Some(j) => out.push(j),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                JsonValue::Array(out)
            }
            Value::Mapping(m) => {
                let mut out = Map::new();
                let mut ok = true;
                for (k, val) in m {
                    let key = match scalar_key(k) {
                        Some(k) => k,
                        None => {
                            self.wrong(path, "a dict with scalar keys", k);
                            ok = false;
                            continue;
                        }
                    };
                    match self.json(&pk(path, &key), val, encrypted) {
                        Some(j) => {
                            out.insert(key, j);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                JsonValue::Object(out)
            }
            Value::Tagged(t) => {
                let tag = tag_name(t);
                if encrypted && tag == "encrypted/pkcs1-oaep" {
                    return self.ciphertext(path, &t.value);
                }
                self.err(path, K::UnexpectedTag { tag });
                return None;
            }
        })
    }

    fn ciphertext(&mut self, path: &[Seg], v: &Value) -> Option<JsonValue> {
        let blocks: Vec<&Value> = match v {
            Value::Sequence(s) => s.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for b in blocks {
            let Value::String(s) = b else {
                self.wrong(
                    path,
                    "a base64 string or a list of base64 strings (encrypted value)",
                    b,
                );
                return None;
            };
            let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let valid = !cleaned.is_empty()
                && cleaned
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
            if !valid {
                let key = last_key(path);
                self.err(
                    path,
                    K::InvalidValue {
                        key,
                        message: "encrypted value is not valid base64".into(),
                    },
                );
                return None;
            }
            out.push(JsonValue::String(cleaned));
        }
        let mut m = Map::new();
        m.insert(
            "__encrypted__".into(),
            JsonValue::String("pkcs1-oaep".into()),
        );
        m.insert("ciphertext".into(), JsonValue::Array(out));
        Some(JsonValue::Object(m))
    }

    /// A dict of Ansible variables with valid, unreserved top-level names.
    fn vars(&mut self, path: &[Seg], v: &Value) -> Option<Vars> {
        let key = last_key(path);
        self.vars_named(path, v, &key)
    }

    /// Like `vars`, naming `key` as the attribute in errors.
    fn vars_named(&mut self, path: &[Seg], v: &Value, key: &str) -> Option<Vars> {
        let Value::Mapping(m) = v else {
            if matches!(v, Value::Null) {
                return Some(Vars::new());
            }
            self.wrong(path, "a dict of variables", v);
            return None;
        };
        let key = key.to_string();
        let mut ok = true;
        for k in m.keys() {
            let name = match k {
                Value::String(s) => s.clone(),
                other => {
                    self.wrong(path, "a dict with string variable names", other);
                    ok = false;
                    continue;
                }
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.err(
                    &pk(path, &name),
                    K::InvalidVarName {
                        key: key.clone(),
                        name,
                    },
                );
                ok = false;
            } else if RESERVED_VAR_NAMES.contains(&name.as_str()) {
                self.err(
                    &pk(path, &name),
                    K::ReservedVarName {
                        key: key.clone(),
                        name,
                    },
                );
                ok = false;
            }
        }
        let j = self.json(path, v, false)?;
        match (ok, j) {
            (true, JsonValue::Object(o)) => Some(o),
            _ => None,
        }
    }

    /// `{host-or-group: {vars}}`.
    fn nested_vars(&mut self, path: &[Seg], v: &Value) -> Option<Vars> {
        let Value::Mapping(m) = v else {
            if matches!(v, Value::Null) {
                return Some(Vars::new());
            }
            self.wrong(path, "a dict of host or group names to variables", v);
            return None;
        };
        let mut out = Vars::new();
        let mut ok = true;
        for (k, val) in m {
            let Some(host) = scalar_key(k) else {
                self.wrong(path, "a dict with string keys", k);
                ok = false;
                continue;
            };
            let p = pk(path, &host);
            let attr = last_key(path);
            match self.vars_named(&p, val, &attr) {
                Some(vars) => {
                    out.insert(host, JsonValue::Object(vars));
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A matcher pattern compiled (branch matchers: they are matched every pass).
    fn pattern(&mut self, path: &[Seg], v: &Value) -> Option<Pattern> {
        let (source, negate) = self.pattern_source(path, v)?;
        match Regex::new(&anchored(&source)) {
            Ok(regex) => Some(Pattern {
                source,
                regex,
                negate,
            }),
            Err(e) => {
                self.invalid_regex(path, source, &e.to_string());
                None
            }
        }
    }

    /// A matcher pattern's regex and `negate`, its syntax checked without compiling it: file
    /// matchers are compiled only when a change is matched against them, and compiling the
    /// thousands of a large tenant at every load was most of the load's time.
    fn pattern_source(&mut self, path: &[Seg], v: &Value) -> Option<(String, bool)> {
        let (source, negate) = match v {
            Value::String(s) => (s.clone(), false),
            Value::Mapping(m) => {
                let mut regex = None;
                let mut negate = false;
                for (k, val) in m {
                    match k.as_str() {
                        Some("regex") => regex = self.string(&pk(path, "regex"), val),
                        Some("negate") => negate = self.boolean(&pk(path, "negate"), val)?,
                        _ => {
                            let name = scalar_key(k).unwrap_or_default();
                            self.err(&pk(path, &name), K::UnknownKey { key: name.clone() });
                            return None;
                        }
                    }
                }
                match regex {
                    Some(r) => (r, negate),
                    None => {
                        self.err(
                            path,
                            K::MissingKey {
                                key: "regex".into(),
                            },
                        );
                        return None;
                    }
                }
            }
            other => {
                self.wrong(path, "a regex string or {regex, negate}", other);
                return None;
            }
        };
        // The syntax (and Unicode classes) as `Regex::new` checks them, so the same
        // patterns are refused with the same message.
        match regex_syntax::Parser::new().parse(&anchored(&source)) {
            Ok(_) => Some((source, negate)),
            Err(e) => {
                self.invalid_regex(path, source, &e.to_string());
                None
            }
        }
    }

    fn invalid_regex(&mut self, path: &[Seg], pattern: String, error: &str) {
        let key = last_key(path);
        let message = error.lines().last().unwrap_or("").trim().to_string();
        self.err(
            path,
            K::InvalidRegex {
                key,
                pattern,
                message,
            },
        );
    }

    fn patterns(&mut self, path: &[Seg], v: &Value) -> Option<Vec<Pattern>> {
        let v = self.untagged(path, v)?;
        let mut out = Vec::new();
        let mut ok = true;
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    match self.pattern(&pi(path, i), item) {
                        Some(p) => out.push(p),
                        None => ok = false,
                    }
                }
            }
            other => out.push(self.pattern(path, other)?),
        }
        ok.then_some(out)
    }

    /// File matchers (`files`, `irrelevant-files`): their regexes, checked, not compiled.
    fn controlled_patterns(&mut self, path: &[Seg], v: &Value) -> Option<Controlled<Vec<String>>> {
        let (control, inner) = self.controlled(path, v)?;
        let inner = self.untagged(path, inner)?;
        let mut value = Vec::new();
        let mut ok = true;
        match inner {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    match self.pattern_source(&pi(path, i), item) {
                        Some((source, _)) => value.push(source),
                        None => ok = false,
                    }
                }
            }
            other => value.push(self.pattern_source(path, other)?.0),
        }
        ok.then_some(Controlled { value, control })
    }

    fn playbooks(&mut self, path: &[Seg], v: &Value, post: bool) -> Option<Vec<PlaybookDef>> {
        let v = self.untagged(path, v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in as_list(v).into_iter().enumerate() {
            let ip = if matches!(v, Value::Sequence(_)) {
                pi(path, i)
            } else {
                path.to_vec()
            };
            match item {
                Value::String(s) => out.push(PlaybookDef {
                    path: s.clone(),
                    semaphores: Vec::new(),
                    cleanup: false,
                }),
                Value::Mapping(m) => {
                    let mut pb = PlaybookDef {
                        path: String::new(),
                        semaphores: Vec::new(),
                        cleanup: false,
                    };
                    let mut has_name = false;
                    for (k, val) in m {
                        let key = scalar_key(k).unwrap_or_default();
                        let kp = pk(&ip, &key);
                        match key.as_str() {
                            "name" => match self.string(&kp, val) {
                                Some(s) => {
                                    pb.path = s;
                                    has_name = true;
                                }
                                None => ok = false,
                            },
                            "semaphores" => match self.str_list(&kp, val) {
                                Some(mut s) => {
                                    s.sort();
                                    pb.semaphores = s;
                                }
                                None => ok = false,
                            },
                            "cleanup" if post => match self.boolean(&kp, val) {
                                Some(b) => pb.cleanup = b,
                                None => ok = false,
                            },
                            _ => {
                                self.err(&kp, K::UnknownKey { key });
                                ok = false;
                            }
                        }
                    }
                    if !has_name {
                        self.err(&ip, K::MissingKey { key: "name".into() });
                        ok = false;
                    }
                    out.push(pb);
                }
                other => {
                    self.wrong(&ip, "a playbook path or {name, semaphores}", other);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A list (or single) of str-or-dict entries, each turned into `T` by `f`.
    fn entries<T>(
        &mut self,
        path: &[Seg],
        v: &Value,
        mut f: impl FnMut(&mut Self, &[Seg], &Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut ok = true;
        let is_seq = matches!(v, Value::Sequence(_));
        for (i, item) in as_list(v).into_iter().enumerate() {
            let ip = if is_seq { pi(path, i) } else { path.to_vec() };
            match f(self, &ip, item) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Check a dict's keys against `allowed`; returns false if any is unknown.
    fn check_keys(&mut self, path: &[Seg], m: &Mapping, allowed: &[&str]) -> bool {
        let mut ok = true;
        for k in m.keys() {
            let key = scalar_key(k).unwrap_or_else(|| format!("<{}>", type_name(k)));
            if !allowed.contains(&key.as_str()) {
                self.err(&pk(path, &key), K::UnknownKey { key });
                ok = false;
            }
        }
        ok
    }

    fn mapping<'v>(&mut self, path: &[Seg], v: &'v Value, what: &str) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.wrong(path, what, other);
                None
            }
        }
    }
}

fn scalar_key(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

/// Parse one file's text into `out`.
pub(crate) fn parse_file(base: &SourceContext, text: &str, out: &mut ProjectConfig) {
    let file_error = |line: usize, column: usize, kind: K| {
        let mut location = base.location();
        location.line = line;
        location.column = column;
        ConfigError::new(location, ItemContext::default(), kind)
    };
    let doc = match parse_document(text) {
        Ok(d) => d,
        Err(e) => {
            let kind = match e.problem {
                YamlProblem::Syntax(message) => K::Yaml { message },
                YamlProblem::DuplicateKey(key) => K::DuplicateKey { key },
            };
            out.errors.push(file_error(e.line, e.column, kind));
            return;
        }
    };
    let items = match doc {
        Value::Null => return,
        Value::Sequence(items) => items,
        other => {
            out.errors.push(file_error(
                1,
                1,
                K::NotAList {
                    found: type_name(&other),
                },
            ));
            return;
        }
    };
    let (positions, scanned) = item_positions(text, &items);
    // Byte offset of each line start, to cut an item's own text out of the file so that
    // locating a node for an error reads only that item.
    let mut line_starts = vec![0usize];
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            line_starts.push(i + 1);
        }
    }
    let item_text = |index: usize| -> (&str, usize, usize) {
        if !scanned {
            return (text, 0, index);
        }
        let start_line = positions.get(index).map(|p| p.0).unwrap_or(1);
        let start = line_starts.get(start_line - 1).copied().unwrap_or(0);
        let end = positions
            .get(index + 1)
            .and_then(|p| line_starts.get(p.0 - 1).copied())
            .unwrap_or(text.len());
        match text.get(start..end) {
            Some(slice) => (slice, start_line - 1, 0),
            None => (text, 0, index),
        }
    };

    // Pragmas apply to the whole file, so read them first.
    let mut base = base.clone();
    for (index, item) in items.iter().enumerate() {
        if let Some((t, body)) = single_key(item) {
            if t == "pragma" {
                let (line, column) = positions.get(index).copied().unwrap_or((1, 1));
                let (item_text, line_offset, item_index) = item_text(index);
                let mut cx = ItemCx {
                    text: item_text,
                    line_offset,
                    base: &base,
                    index: item_index,
                    item_type: t.clone(),
                    name: None,
                    line,
                    column,
                    errors: Vec::new(),
                };
                let pragma = parse_pragma(&mut cx, body);
                out.errors.append(&mut cx.errors);
                if let Some((bm, branches)) = pragma {
                    if bm.is_some() {
                        base.implied_branch_matchers = bm;
                    }
                    if branches.is_some() {
                        base.implied_branches = branches;
                    }
                }
            }
        }
    }

    for (index, item) in items.iter().enumerate() {
        let (line, column) = positions.get(index).copied().unwrap_or((1, 1));
        let Value::Mapping(m) = item else {
            out.errors.push(file_error(
                line,
                column,
                K::ItemNotADict {
                    found: type_name(item),
                },
            ));
            continue;
        };
        if m.len() != 1 {
            let keys: Vec<String> = m.keys().filter_map(scalar_key).collect();
            out.errors.push(file_error(
                line,
                column,
                K::MultiKeyItem {
                    count: m.len(),
                    keys: keys.join(", "),
                },
            ));
            continue;
        }
        let Some((item_type, body)) = single_key(item) else {
            continue;
        };
        if !ITEM_TYPES.contains(&item_type.as_str()) {
            out.errors.push(file_error(
                line,
                column,
                K::UnknownItemType {
                    item_type: item_type.clone(),
                },
            ));
            continue;
        }
        if item_type == "pragma" {
            continue;
        }
        // Merge keys (`<<`) are resolved on a copy; text without any needs no copy.
        let mut body = Cow::Borrowed(body);
        if text.contains("<<") && body.to_mut().apply_merge().is_err() {
            out.errors.push(file_error(
                line,
                column,
                K::InvalidValue {
                    key: "<<".into(),
                    message: "invalid yaml merge key".into(),
                },
            ));
            continue;
        }
        let name = match &*body {
            Value::Mapping(bm) => match bm.get("name") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        let (item_text, line_offset, item_index) = item_text(index);
        let mut cx = ItemCx {
            text: item_text,
            line_offset,
            base: &base,
            index: item_index,
            item_type: item_type.clone(),
            name,
            line,
            column,
            errors: Vec::new(),
        };
        let Some(m) = cx.mapping(&[], &body, "a dict") else {
            out.errors.append(&mut cx.errors);
            continue;
        };
        match item_type.as_str() {
            "job" => {
                if let Some(job) = parse_job_item(&mut cx, m) {
                    if cx.errors.is_empty() {
                        out.jobs.push(job);
                    }
                }
            }
            "nodeset" => {
                if let Some(ns) = parse_nodeset(&mut cx, &[], m, false) {
                    if cx.errors.is_empty() {
                        out.nodesets.push(ns);
                    }
                }
            }
            "secret" => {
                if let Some(s) = parse_secret(&mut cx, m) {
                    if cx.errors.is_empty() {
                        out.secrets.push(s);
                    }
                }
            }
            "semaphore" => {
                if let Some(s) = parse_semaphore(&mut cx, m) {
                    if cx.errors.is_empty() {
                        out.semaphores.push(s);
                    }
                }
            }
            "queue" => {
                if let Some(q) = parse_queue(&mut cx, m) {
                    if cx.errors.is_empty() {
                        out.queues.push(q);
                    }
                }
            }
            "pipeline" => {
                if let Some(p) = parse_pipeline(&mut cx, m) {
                    if cx.errors.is_empty() {
                        out.pipelines.push(p);
                    }
                }
            }
            "project" | "project-template" => {
                let template = item_type == "project-template";
                if let Some(p) = parse_project(&mut cx, m, template) {
                    if cx.errors.is_empty() {
                        if template {
                            out.templates.push(p);
                        } else {
                            out.projects.push(p);
                        }
                    }
                }
            }
            _ => {}
        }
        out.errors.append(&mut cx.errors);
    }
}

/// A matcher regex as Zuul applies it: anchored at the start (Python's `re.match`).
fn anchored(source: &str) -> String {
    format!("^(?:{source})")
}

fn single_key(item: &Value) -> Option<(String, &Value)> {
    match item {
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            Some((scalar_key(k)?, v))
        }
        _ => None,
    }
}

fn required_name(cx: &mut ItemCx, m: &Mapping) -> Option<String> {
    match m.get("name") {
        Some(v) => cx.string(&pk(&[], "name"), v),
        None => {
            cx.err(&[], K::MissingKey { key: "name".into() });
            None
        }
    }
}

type Pragma = (Option<bool>, Option<BranchMatcher>);

fn parse_pragma(cx: &mut ItemCx, body: &Value) -> Option<Pragma> {
    let m = cx.mapping(&[], body, "a dict")?;
    if !cx.check_keys(&[], m, &["implied-branch-matchers", "implied-branches"]) {
        return None;
    }
    let mut bm = None;
    let mut branches = None;
    if let Some(v) = m.get("implied-branch-matchers") {
        bm = Some(cx.boolean(&pk(&[], "implied-branch-matchers"), v)?);
    }
    if let Some(v) = m.get("implied-branches") {
        branches = Some(BranchMatcher {
            patterns: cx.patterns(&pk(&[], "implied-branches"), v)?,
        });
    }
    Some((bm, branches))
}

fn parse_job_item(cx: &mut ItemCx, m: &Mapping) -> Option<JobVariant> {
    let mut allowed: Vec<&str> = JOB_ATTRIBUTES.to_vec();
    allowed.push("name");
    cx.check_keys(&[], m, &allowed);
    let name = required_name(cx, m)?;
    let job = parse_job_attrs(cx, &[], m, name, false);
    if job.parent == Parent::Base && !cx.base.trusted {
        cx.err(
            &pk(&[], "parent"),
            K::NotPermittedUntrusted {
                what: "a base job (parent: null)".into(),
            },
        );
    }
    Some(job)
}

/// Parse job attributes from `m` (at `path` relative to the item body). Unknown keys are
/// checked by the caller.
fn parse_job_attrs(
    cx: &mut ItemCx,
    path: &[Seg],
    m: &Mapping,
    name: String,
    project_pipeline: bool,
) -> JobVariant {
    let mut job = JobVariant {
        name,
        source: Some(cx.source()),
        project_pipeline,
        ..Default::default()
    };
    for (k, v) in m {
        let Some(key) = scalar_key(k) else { continue };
        let p = pk(path, &key);
        match key.as_str() {
            "parent" => {
                job.parent = match v {
                    Value::Null => Parent::Base,
                    other => match cx.string(&p, other) {
                        Some(s) => Parent::Named(s),
                        None => Parent::Unset,
                    },
                }
            }
            "final" => job.final_ = cx.boolean(&p, v),
            "abstract" => job.abstract_ = cx.boolean(&p, v),
            "protected" => job.protected = cx.boolean(&p, v),
            "intermediate" => job.intermediate = cx.boolean(&p, v),
            "requires" => job.requires = cx.controlled_list(&p, v),
            "provides" => job.provides = cx.controlled_list(&p, v),
            "tags" => job.tags = cx.controlled_list(&p, v),
            "failure-message" => job.failure_message = cx.string(&p, v),
            "success-message" => job.success_message = cx.string(&p, v),
            "failure-url" | "success-url" => {
                cx.string(&p, v);
            }
            "hold-following-changes" => job.hold_following_changes = cx.boolean(&p, v),
            "voting" => job.voting = cx.boolean(&p, v),
            "semaphore" | "semaphores" => {
                if let Some(v) = cx.untagged(&p, v) {
                    let sems = cx.entries(&p, v, |cx, ip, item| match item {
                        Value::String(s) => Some(SemaphoreUse {
                            name: s.clone(),
                            resources_first: false,
                        }),
                        Value::Mapping(sm) => {
                            if !cx.check_keys(ip, sm, &["name", "resources-first"]) {
                                return None;
                            }
                            let name = match sm.get("name") {
                                Some(n) => cx.string(&pk(ip, "name"), n)?,
                                None => {
                                    cx.err(ip, K::MissingKey { key: "name".into() });
                                    return None;
                                }
                            };
                            let rf = match sm.get("resources-first") {
                                Some(b) => cx.boolean(&pk(ip, "resources-first"), b)?,
                                None => false,
                            };
                            Some(SemaphoreUse {
                                name,
                                resources_first: rf,
                            })
                        }
                        other => {
                            cx.wrong(ip, "a semaphore name or {name, resources-first}", other);
                            None
                        }
                    });
                    if let Some(mut s) = sems {
                        s.sort_by(|a, b| a.name.cmp(&b.name));
                        job.semaphores = Some(s);
                    }
                }
            }
            "branches" => {
                job.branches = cx
                    .patterns(&p, v)
                    .map(|patterns| BranchMatcher { patterns })
            }
            "files" => job.files = cx.controlled_patterns(&p, v),
            "irrelevant-files" => job.irrelevant_files = cx.controlled_patterns(&p, v),
            "secrets" => {
                if let Some(v) = cx.untagged(&p, v) {
                    job.secrets = cx.entries(&p, v, parse_secret_use);
                }
            }
            "nodeset" => {
                job.nodeset = match v {
                    Value::String(s) => Some(NodesetSpec::Named(s.clone())),
                    Value::Mapping(nm) => {
                        parse_nodeset(cx, &p, nm, true).map(|n| NodesetSpec::Inline(Box::new(n)))
                    }
                    other => {
                        cx.wrong(&p, "a nodeset name or an inline nodeset", other);
                        None
                    }
                }
            }
            "timeout" => job.timeout = cx.uint(&p, v),
            "pre-timeout" => job.pre_timeout = cx.uint(&p, v),
            "post-timeout" => job.post_timeout = cx.uint(&p, v),
            "attempts" => {
                job.attempts = cx.uint(&p, v).map(|a| u32::try_from(a).unwrap_or(u32::MAX))
            }
            "pre-run" => job.pre_run = cx.playbooks(&p, v, false),
            "run" => job.run = cx.playbooks(&p, v, false),
            "post-run" => job.post_run = cx.playbooks(&p, v, true),
            "cleanup-run" => job.cleanup_run = cx.playbooks(&p, v, false),
            "ansible-split-streams" => job.ansible_split_streams = cx.boolean(&p, v),
            "ansible-version" => {
                job.ansible_version = match cx.untagged(&p, v) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(other) => {
                        cx.wrong(&p, "a string or a number", other);
                        None
                    }
                    None => None,
                }
            }
            "roles" => {
                if let Some(v) = cx.untagged(&p, v) {
                    job.roles = cx
                        .entries(&p, v, parse_role)
                        .map(|r| r.into_iter().flatten().collect());
                }
            }
            "required-projects" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    job.required_projects = cx
                        .entries(&p, inner, parse_required_project)
                        .map(|value| Controlled { value, control });
                }
            }
            "vars" | "extra-vars" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    let vars = cx
                        .vars(&p, inner)
                        .map(|value| Controlled { value, control });
                    if key == "vars" {
                        job.vars = vars;
                    } else {
                        job.extra_vars = vars;
                    }
                }
            }
            "host-vars" | "group-vars" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    let vars = cx
                        .nested_vars(&p, inner)
                        .map(|value| Controlled { value, control });
                    if key == "host-vars" {
                        job.host_vars = vars;
                    } else {
                        job.group_vars = vars;
                    }
                }
            }
            "include-vars" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    let own = cx.base.project.clone();
                    job.include_vars = cx
                        .entries(&p, inner, |cx, ip, item| {
                            parse_include_vars(cx, ip, item, &own)
                        })
                        .map(|value| Controlled { value, control });
                }
            }
            "dependencies" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    job.dependencies = cx
                        .entries(&p, inner, parse_dependency)
                        .map(|value| Controlled { value, control });
                }
            }
            "allowed-projects" => job.allowed_projects = cx.str_list(&p, v),
            "override-branch" => job.override_branch = cx.string(&p, v),
            "override-checkout" => job.override_checkout = cx.string(&p, v),
            "description" => job.description = cx.string(&p, v),
            "variant-description" => job.variant_description = cx.string(&p, v),
            "post-review" => {
                job.post_review = cx.boolean(&p, v);
                if job.post_review == Some(false) {
                    cx.err(
                        &p,
                        K::InvalidValue {
                            key: key.clone(),
                            message: "once set, post-review may not be unset".into(),
                        },
                    );
                }
            }
            "match-on-config-updates" => job.match_on_config_updates = cx.boolean(&p, v),
            "workspace-scheme" => {
                job.workspace_scheme = cx.one_of(&p, v, &["golang", "flat", "unique"])
            }
            "workspace-checkout" => job.workspace_checkout = cx.bool_or_auto(&p, v),
            "deduplicate" => job.deduplicate = cx.bool_or_auto(&p, v),
            "failure-output" => {
                if let Some(c) = cx.controlled_list(&p, v) {
                    let mut ok = true;
                    for pat in &c.value {
                        if let Err(e) = Regex::new(pat) {
                            cx.err(
                                &p,
                                K::InvalidRegex {
                                    key: key.clone(),
                                    pattern: pat.clone(),
                                    message: e
                                        .to_string()
                                        .lines()
                                        .last()
                                        .unwrap_or("")
                                        .trim()
                                        .to_string(),
                                },
                            );
                            ok = false;
                        }
                    }
                    if ok {
                        let mut c = c;
                        c.value.sort();
                        job.failure_output = Some(c);
                    }
                }
            }
            "image-build-name" => job.image_build_name = cx.string(&p, v),
            "type" => job.job_type = cx.one_of(&p, v, &["regular", "initializer", "reporter"]),
            "secret-exposure" => {
                job.secret_exposure = cx.one_of(&p, v, &["ignore", "redact", "fail"])
            }
            "preserve-home-paths" => {
                job.preserve_home_paths = match cx.untagged(&p, v) {
                    Some(v @ (Value::Bool(_) | Value::String(_) | Value::Sequence(_))) => {
                        cx.json(&p, v, false)
                    }
                    Some(other) => {
                        cx.wrong(&p, "a bool, a path or a list of paths", other);
                        None
                    }
                    None => None,
                }
            }
            "include-projects" | "exclude-projects" => {
                if let Some((control, inner)) = cx.controlled(&p, v) {
                    let entries = cx
                        .entries(&p, inner, |cx, ip, item| match item {
                            Value::String(_) | Value::Mapping(_) => cx.json(ip, item, false),
                            other => {
                                cx.wrong(ip, "a project name or {type, name}", other);
                                None
                            }
                        })
                        .map(|value| Controlled { value, control });
                    if key == "include-projects" {
                        job.include_projects = entries;
                    } else {
                        job.exclude_projects = entries;
                    }
                }
            }
            "attribute-control" => {
                if let Some(am) = cx.mapping(&p, v, "a dict of attribute names to {final: true}") {
                    for (ak, av) in am {
                        let attr = scalar_key(ak).unwrap_or_default();
                        let ap = pk(&p, &attr);
                        if !ATTRIBUTE_CONTROL_ATTRS.contains(&attr.as_str()) {
                            cx.err(&ap, K::UnknownKey { key: attr });
                            continue;
                        }
                        let Some(controls) = cx.mapping(&ap, av, "a dict like {final: true}")
                        else {
                            continue;
                        };
                        for (ck, cv) in controls {
                            let c = scalar_key(ck).unwrap_or_default();
                            if c != "final" {
                                cx.err(&pk(&ap, &c), K::UnknownKey { key: c });
                                continue;
                            }
                            if cx.boolean(&pk(&ap, &c), cv) == Some(true)
                                && !job.final_attributes.contains(&attr)
                            {
                                job.final_attributes.push(attr.clone());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if job.intermediate == Some(true) && job.abstract_ != Some(true) {
        cx.err(
            &pk(path, "intermediate"),
            K::InvalidValue {
                key: "intermediate".into(),
                message: "an intermediate job must also be abstract".into(),
            },
        );
    }
    if let (Some(sems), Some(pbs)) = (&job.semaphores, job_playbook_semaphores(&job)) {
        for s in sems {
            if pbs.contains(&s.name) {
                cx.err(
                    &pk(path, "semaphores"),
                    K::InvalidValue {
                        key: "semaphores".into(),
                        message: format!(
                            "semaphore \"{}\" is used both as a job and a playbook semaphore",
                            s.name
                        ),
                    },
                );
            }
        }
    }
    job
}

fn job_playbook_semaphores(job: &JobVariant) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for list in [&job.pre_run, &job.run, &job.post_run, &job.cleanup_run]
        .into_iter()
        .flatten()
    {
        for pb in list {
            out.extend(pb.semaphores.iter().cloned());
        }
    }
    (!out.is_empty()).then_some(out)
}

fn parse_secret_use(cx: &mut ItemCx, ip: &[Seg], item: &Value) -> Option<SecretUse> {
    let valid_alias = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let (var_name, secret, ptp, np) = match item {
        Value::String(s) => (s.clone(), s.clone(), false, ip.to_vec()),
        Value::Mapping(sm) => {
            if !cx.check_keys(ip, sm, &["name", "secret", "pass-to-parent"]) {
                return None;
            }
            let name = match sm.get("name") {
                Some(n) => cx.string(&pk(ip, "name"), n)?,
                None => {
                    cx.err(ip, K::MissingKey { key: "name".into() });
                    return None;
                }
            };
            let secret = match sm.get("secret") {
                Some(n) => cx.string(&pk(ip, "secret"), n)?,
                None => {
                    cx.err(
                        ip,
                        K::MissingKey {
                            key: "secret".into(),
                        },
                    );
                    return None;
                }
            };
            let ptp = match sm.get("pass-to-parent") {
                Some(b) => cx.boolean(&pk(ip, "pass-to-parent"), b)?,
                None => false,
            };
            (name, secret, ptp, pk(ip, "name"))
        }
        other => {
            cx.wrong(ip, "a secret name or {name, secret, pass-to-parent}", other);
            return None;
        }
    };
    // Like Zuul, only an explicit `name` must be a valid variable name.
    if np.len() > ip.len() && !valid_alias(&var_name) {
        cx.err(
            &np,
            K::InvalidVarName {
                key: "secrets".into(),
                name: var_name,
            },
        );
        return None;
    }
    if RESERVED_VAR_NAMES.contains(&var_name.as_str()) {
        cx.err(
            &np,
            K::ReservedVarName {
                key: "secrets".into(),
                name: var_name,
            },
        );
        return None;
    }
    Some(SecretUse {
        var_name,
        secret,
        pass_to_parent: ptp,
    })
}

fn parse_role(cx: &mut ItemCx, ip: &[Seg], item: &Value) -> Option<Option<RoleDef>> {
    let rm = cx.mapping(ip, item, "a dict like {zuul: org/project, name: role}")?;
    if rm.contains_key("galaxy") {
        // Accepted but not implemented, like Zuul.
        cx.check_keys(ip, rm, &["galaxy", "name"]);
        return Some(None);
    }
    if !cx.check_keys(ip, rm, &["zuul", "name"]) {
        return None;
    }
    let project = match rm.get("zuul") {
        Some(v) => cx.string(&pk(ip, "zuul"), v)?,
        None => {
            cx.err(ip, K::MissingKey { key: "zuul".into() });
            return None;
        }
    };
    let name = match rm.get("name") {
        Some(v) => cx.string(&pk(ip, "name"), v)?,
        None => project.rsplit('/').next().unwrap_or(&project).to_string(),
    };
    Some(Some(RoleDef { project, name }))
}

fn parse_required_project(cx: &mut ItemCx, ip: &[Seg], item: &Value) -> Option<RequiredProject> {
    match item {
        Value::String(s) => Some(RequiredProject {
            name: s.clone(),
            override_branch: None,
            override_checkout: None,
        }),
        Value::Mapping(rm) => {
            if !cx.check_keys(ip, rm, &["name", "override-branch", "override-checkout"]) {
                return None;
            }
            let name = match rm.get("name") {
                Some(v) => cx.string(&pk(ip, "name"), v)?,
                None => {
                    cx.err(ip, K::MissingKey { key: "name".into() });
                    return None;
                }
            };
            let mut rp = RequiredProject {
                name,
                override_branch: None,
                override_checkout: None,
            };
            if let Some(v) = rm.get("override-branch") {
                rp.override_branch = Some(cx.string(&pk(ip, "override-branch"), v)?);
            }
            if let Some(v) = rm.get("override-checkout") {
                rp.override_checkout = Some(cx.string(&pk(ip, "override-checkout"), v)?);
            }
            Some(rp)
        }
        other => {
            cx.wrong(
                ip,
                "a project name or {name, override-branch, override-checkout}",
                other,
            );
            None
        }
    }
}

fn parse_dependency(cx: &mut ItemCx, ip: &[Seg], item: &Value) -> Option<JobDependency> {
    match item {
        Value::String(s) => Some(JobDependency {
            name: s.clone(),
            soft: false,
        }),
        Value::Mapping(dm) => {
            if !cx.check_keys(ip, dm, &["name", "soft"]) {
                return None;
            }
            let name = match dm.get("name") {
                Some(v) => cx.string(&pk(ip, "name"), v)?,
                None => {
                    cx.err(ip, K::MissingKey { key: "name".into() });
                    return None;
                }
            };
            let soft = match dm.get("soft") {
                Some(v) => cx.boolean(&pk(ip, "soft"), v)?,
                None => false,
            };
            Some(JobDependency { name, soft })
        }
        other => {
            cx.wrong(ip, "a job name or {name, soft}", other);
            None
        }
    }
}

fn parse_include_vars(cx: &mut ItemCx, ip: &[Seg], item: &Value, own: &str) -> Option<IncludeVars> {
    match item {
        Value::String(s) => Some(IncludeVars {
            name: s.clone(),
            project: Some(own.to_string()),
            required: true,
            use_ref: true,
        }),
        Value::Mapping(im) => {
            if !cx.check_keys(
                ip,
                im,
                &["name", "project", "required", "use-ref", "zuul-project"],
            ) {
                return None;
            }
            let name = match im.get("name") {
                Some(v) => cx.string(&pk(ip, "name"), v)?,
                None => {
                    cx.err(ip, K::MissingKey { key: "name".into() });
                    return None;
                }
            };
            let zuul_project = match im.get("zuul-project") {
                Some(v) => cx.boolean(&pk(ip, "zuul-project"), v)?,
                None => false,
            };
            let project = match (zuul_project, im.get("project")) {
                (true, Some(_)) => {
                    cx.err(
                        &pk(ip, "project"),
                        K::InvalidValue {
                            key: "include-vars".into(),
                            message: "\"project\" and \"zuul-project\" are mutually exclusive"
                                .into(),
                        },
                    );
                    return None;
                }
                (true, None) => None,
                (false, Some(v)) => Some(cx.string(&pk(ip, "project"), v)?),
                (false, None) => Some(own.to_string()),
            };
            let required = match im.get("required") {
                Some(v) => cx.boolean(&pk(ip, "required"), v)?,
                None => true,
            };
            let use_ref = match im.get("use-ref") {
                Some(v) => cx.boolean(&pk(ip, "use-ref"), v)?,
                None => true,
            };
            Some(IncludeVars {
                name,
                project,
                required,
                use_ref,
            })
        }
        other => {
            cx.wrong(
                ip,
                "a file name or {name, project, required, use-ref}",
                other,
            );
            None
        }
    }
}

fn parse_nodeset(
    cx: &mut ItemCx,
    path: &[Seg],
    m: &Mapping,
    anonymous: bool,
) -> Option<NodesetDef> {
    let allowed: &[&str] = if anonymous {
        &["nodes", "groups", "alternatives"]
    } else {
        &["name", "nodes", "groups", "alternatives"]
    };
    if !cx.check_keys(path, m, allowed) {
        return None;
    }
    let name = if anonymous {
        None
    } else {
        match m.get("name") {
            Some(v) => Some(cx.string(&pk(path, "name"), v)?),
            None => {
                cx.err(path, K::MissingKey { key: "name".into() });
                return None;
            }
        }
    };
    let mut ns = NodesetDef {
        name: name.clone(),
        nodes: Vec::new(),
        groups: Vec::new(),
        alternatives: Vec::new(),
        source: cx.source(),
    };
    if let Some(alts) = m.get("alternatives") {
        if m.contains_key("nodes") || m.contains_key("groups") {
            cx.err(
                &pk(path, "alternatives"),
                K::InvalidValue {
                    key: "alternatives".into(),
                    message: "a nodeset has either nodes/groups or alternatives".into(),
                },
            );
            return None;
        }
        let ap = pk(path, "alternatives");
        let Value::Sequence(list) = alts else {
            cx.wrong(&ap, "a list of nodeset names or inline nodesets", alts);
            return None;
        };
        for (i, alt) in list.iter().enumerate() {
            let ip = pi(&ap, i);
            match alt {
                Value::String(s) => ns.alternatives.push(NodesetAlternative::Named(s.clone())),
                Value::Mapping(am) => {
                    if am.contains_key("alternatives") {
                        cx.err(
                            &pk(&ip, "alternatives"),
                            K::UnknownKey {
                                key: "alternatives".into(),
                            },
                        );
                        return None;
                    }
                    let inner = parse_nodeset(cx, &ip, am, true)?;
                    ns.alternatives
                        .push(NodesetAlternative::Inline(Box::new(inner)));
                }
                other => {
                    cx.wrong(&ip, "a nodeset name or an inline nodeset", other);
                    return None;
                }
            }
        }
        return Some(ns);
    }
    let Some(nodes) = m.get("nodes") else {
        cx.err(
            path,
            K::MissingKey {
                key: "nodes".into(),
            },
        );
        return None;
    };
    let np = pk(path, "nodes");
    let mut seen: Vec<String> = Vec::new();
    let node_list = cx.entries(&np, nodes, |cx, ip, item| {
        let nm = cx.mapping(ip, item, "a dict like {name, label}")?;
        if !cx.check_keys(ip, nm, &["name", "label"]) {
            return None;
        }
        let names = match nm.get("name") {
            Some(v) => cx.str_list(&pk(ip, "name"), v)?,
            None => {
                cx.err(ip, K::MissingKey { key: "name".into() });
                return None;
            }
        };
        let label = match nm.get("label") {
            Some(v) => cx.string(&pk(ip, "label"), v)?,
            None => {
                cx.err(
                    ip,
                    K::MissingKey {
                        key: "label".into(),
                    },
                );
                return None;
            }
        };
        for n in &names {
            if n == "localhost" {
                cx.err(
                    &pk(ip, "name"),
                    K::InvalidValue {
                        key: "name".into(),
                        message: "nodes named \"localhost\" are not allowed".into(),
                    },
                );
                return None;
            }
            if seen.contains(n) {
                cx.err(
                    &pk(ip, "name"),
                    K::InvalidValue {
                        key: "name".into(),
                        message: format!("duplicate node name \"{n}\""),
                    },
                );
                return None;
            }
            seen.push(n.clone());
        }
        Some(NodesetNode { names, label })
    })?;
    ns.nodes = node_list;
    if let Some(groups) = m.get("groups") {
        let gp = pk(path, "groups");
        let mut seen_groups: Vec<String> = Vec::new();
        let group_list = cx.entries(&gp, groups, |cx, ip, item| {
            let gm = cx.mapping(ip, item, "a dict like {name, nodes}")?;
            if !cx.check_keys(ip, gm, &["name", "nodes"]) {
                return None;
            }
            let name = match gm.get("name") {
                Some(v) => cx.string(&pk(ip, "name"), v)?,
                None => {
                    cx.err(ip, K::MissingKey { key: "name".into() });
                    return None;
                }
            };
            let nodes = match gm.get("nodes") {
                Some(v) => cx.str_list(&pk(ip, "nodes"), v)?,
                None => {
                    cx.err(
                        ip,
                        K::MissingKey {
                            key: "nodes".into(),
                        },
                    );
                    return None;
                }
            };
            if name == "localhost" {
                cx.err(
                    &pk(ip, "name"),
                    K::InvalidValue {
                        key: "name".into(),
                        message: "groups named \"localhost\" are not allowed".into(),
                    },
                );
                return None;
            }
            if seen_groups.contains(&name) {
                cx.err(
                    &pk(ip, "name"),
                    K::InvalidValue {
                        key: "name".into(),
                        message: format!("duplicate group name \"{name}\""),
                    },
                );
                return None;
            }
            for n in &nodes {
                if !seen.contains(n) {
                    cx.err(
                        &pk(ip, "nodes"),
                        K::InvalidValue {
                            key: "nodes".into(),
                            message: format!(
                                "group \"{name}\" names node \"{n}\" which is not in the nodeset"
                            ),
                        },
                    );
                    return None;
                }
            }
            seen_groups.push(name.clone());
            Some(NodesetGroup { name, nodes })
        })?;
        ns.groups = group_list;
    }
    Some(ns)
}

fn parse_secret(cx: &mut ItemCx, m: &Mapping) -> Option<SecretDef> {
    if !cx.check_keys(&[], m, &["name", "data", "oidc"]) {
        return None;
    }
    let name = required_name(cx, m)?;
    let (data, oidc) = match (m.get("data"), m.get("oidc")) {
        (Some(_), Some(_)) => {
            cx.err(
                &pk(&[], "oidc"),
                K::InvalidValue {
                    key: "oidc".into(),
                    message: "a secret has exactly one of \"data\" or \"oidc\"".into(),
                },
            );
            return None;
        }
        (Some(d), None) => {
            let dp = pk(&[], "data");
            if !matches!(d, Value::Mapping(_)) {
                cx.wrong(&dp, "a dict", d);
                return None;
            }
            (cx.json(&dp, d, true)?, None)
        }
        (None, Some(o)) => {
            let op = pk(&[], "oidc");
            if !matches!(o, Value::Mapping(_)) {
                cx.wrong(&op, "a dict", o);
                return None;
            }
            (JsonValue::Null, Some(cx.json(&op, o, false)?))
        }
        (None, None) => {
            cx.err(&[], K::MissingKey { key: "data".into() });
            return None;
        }
    };
    Some(SecretDef {
        name,
        data,
        oidc,
        source: cx.source(),
    })
}

fn parse_semaphore(cx: &mut ItemCx, m: &Mapping) -> Option<SemaphoreDef> {
    if !cx.check_keys(&[], m, &["name", "max"]) {
        return None;
    }
    let name = required_name(cx, m)?;
    let max = match m.get("max") {
        Some(v) => cx.uint(&pk(&[], "max"), v)?,
        None => 1,
    };
    Some(SemaphoreDef {
        name,
        max,
        source: cx.source(),
    })
}

fn parse_queue(cx: &mut ItemCx, m: &Mapping) -> Option<QueueDef> {
    if !cx.check_keys(
        &[],
        m,
        &[
            "name",
            "per-branch",
            "allow-circular-dependencies",
            "dependencies-by-topic",
            "type",
        ],
    ) {
        return None;
    }
    let name = required_name(cx, m)?;
    let mut q = QueueDef {
        name,
        queue_type: "all-branches".into(),
        allow_circular_dependencies: false,
        dependencies_by_topic: false,
        source: cx.source(),
    };
    if let Some(v) = m.get("per-branch") {
        if cx.boolean(&pk(&[], "per-branch"), v)? {
            q.queue_type = "per-branch".into();
        }
    }
    if let Some(v) = m.get("type") {
        q.queue_type = cx.one_of(
            &pk(&[], "type"),
            v,
            &["all-branches", "per-branch", "branch-assigned"],
        )?;
    }
    if let Some(v) = m.get("allow-circular-dependencies") {
        q.allow_circular_dependencies = cx.boolean(&pk(&[], "allow-circular-dependencies"), v)?;
    }
    if let Some(v) = m.get("dependencies-by-topic") {
        q.dependencies_by_topic = cx.boolean(&pk(&[], "dependencies-by-topic"), v)?;
        if q.dependencies_by_topic && !q.allow_circular_dependencies {
            cx.err(
                &pk(&[], "dependencies-by-topic"),
                K::InvalidValue {
                    key: "dependencies-by-topic".into(),
                    message: "requires allow-circular-dependencies".into(),
                },
            );
            return None;
        }
    }
    Some(q)
}

fn parse_pipeline(cx: &mut ItemCx, m: &Mapping) -> Option<PipelineDef> {
    if !cx.base.trusted {
        cx.err(
            &[],
            K::NotPermittedUntrusted {
                what: "a pipeline".into(),
            },
        );
        return None;
    }
    let name = required_name(cx, m)?;
    let raw = cx.json(&[], &Value::Mapping(m.clone()), false)?;
    Some(PipelineDef {
        name,
        raw,
        source: cx.source(),
    })
}

fn parse_project(cx: &mut ItemCx, m: &Mapping, template: bool) -> Option<ProjectStanza> {
    let name = if template {
        Some(required_name(cx, m)?)
    } else {
        match m.get("name") {
            Some(v) => Some(cx.string(&pk(&[], "name"), v)?),
            None => None,
        }
    };
    if let (false, Some(n)) = (cx.base.trusted, &name) {
        if !template && n != &cx.base.short_name && n != &cx.base.project {
            cx.err(&pk(&[], "name"), K::ProjectNotPermitted { name: n.clone() });
            return None;
        }
    }
    let mut stanza = ProjectStanza {
        name,
        is_template: template,
        description: None,
        templates: Vec::new(),
        vars: None,
        merge_mode: None,
        default_branch: None,
        queue: None,
        branches: None,
        pipelines: IndexMap::new(),
        source: cx.source(),
    };
    for (k, v) in m {
        let Some(key) = scalar_key(k) else { continue };
        let p = pk(&[], &key);
        match key.as_str() {
            "name" => {}
            "description" => stanza.description = cx.string(&p, v),
            "queue" => stanza.queue = cx.string(&p, v),
            "vars" => stanza.vars = cx.vars(&p, v),
            "templates" | "merge-mode" | "default-branch" | "branches" if template => {
                cx.err(&p, K::UnknownKey { key: key.clone() });
            }
            "templates" => match v {
                Value::Sequence(_) => {
                    if let Some(t) = cx.str_list(&p, v) {
                        for name in t {
                            if !stanza.templates.contains(&name) {
                                stanza.templates.push(name);
                            }
                        }
                    }
                }
                other => cx.wrong(&p, "a list of template names", other),
            },
            "merge-mode" => {
                let all: Vec<&str> = MergeMode::ALL.iter().map(|m| m.as_str()).collect();
                stanza.merge_mode = cx.one_of(&p, v, &all).and_then(|s| MergeMode::parse(&s));
            }
            "default-branch" => stanza.default_branch = cx.string(&p, v),
            "branches" => {
                stanza.branches = cx
                    .patterns(&p, v)
                    .map(|patterns| BranchMatcher { patterns })
            }
            pipeline => {
                if let Some(pp) = parse_project_pipeline(cx, &p, v) {
                    stanza.pipelines.insert(pipeline.to_string(), pp);
                }
            }
        }
    }
    Some(stanza)
}

fn parse_project_pipeline(cx: &mut ItemCx, path: &[Seg], v: &Value) -> Option<ProjectPipeline> {
    let m = cx.mapping(
        path,
        v,
        "a dict like {jobs: [...]} (or this is an unknown key)",
    )?;
    if !cx.check_keys(path, m, &["jobs", "debug", "fail-fast", "parameters"]) {
        return None;
    }
    let mut pp = ProjectPipeline::default();
    if let Some(v) = m.get("debug") {
        pp.debug = cx.boolean(&pk(path, "debug"), v);
    }
    if let Some(v) = m.get("fail-fast") {
        pp.fail_fast = cx.boolean(&pk(path, "fail-fast"), v);
    }
    let Some(jobs) = m.get("jobs") else {
        return Some(pp);
    };
    let jp = pk(path, "jobs");
    let list = match jobs {
        Value::Sequence(s) => s,
        Value::Null => return Some(pp),
        other => {
            cx.wrong(&jp, "a list of jobs", other);
            return None;
        }
    };
    for (i, entry) in list.iter().enumerate() {
        let ip = pi(&jp, i);
        match entry {
            Value::String(name) => pp.jobs.push(JobVariant {
                name: name.clone(),
                source: Some(cx.source()),
                project_pipeline: true,
                ..Default::default()
            }),
            Value::Mapping(em) if em.len() == 1 => {
                let Some((k, attrs)) = em.iter().next() else {
                    continue;
                };
                let Some(name) = k.as_str().map(str::to_string) else {
                    cx.wrong(&ip, "a job name", k);
                    continue;
                };
                let ap = pk(&ip, &name);
                let empty = Mapping::new();
                let am = match attrs {
                    Value::Null => &empty,
                    Value::Mapping(am) => am,
                    other => {
                        cx.wrong(&ap, "a dict of job attributes", other);
                        continue;
                    }
                };
                cx.check_keys(&ap, am, JOB_ATTRIBUTES);
                let job = parse_job_attrs(cx, &ap, am, name, true);
                // Like Zuul, a project-pipeline variant's source line is its stanza's line
                // (locating each entry would re-read the file once per entry).
                if job.parent == Parent::Base {
                    cx.err(
                        &pk(&ap, "parent"),
                        K::InvalidValue {
                            key: "parent".into(),
                            message: "a project-pipeline job variant may not be a base job".into(),
                        },
                    );
                }
                pp.jobs.push(job);
            }
            other => {
                cx.wrong(
                    &ip,
                    "a job name or a single-key dict {name: {attributes}}",
                    other,
                );
            }
        }
    }
    Some(pp)
}
