//! YAML 1.1 booleans. Zuul reads its configuration with PyYAML, where a plain (unquoted)
//! `yes`, `no`, `on` or `off` is a boolean; `serde_yaml_ng` follows YAML 1.2, where they are
//! strings. So that a configuration means the same on Sluice, plain scalars in value position
//! spelled that way are rewritten to `true`/`false` before parsing. Quoted or tagged scalars
//! and mapping keys stay as written.

use std::borrow::Cow;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// PyYAML's boolean spellings that YAML 1.2 reads as strings.
fn yaml11_bool(word: &str) -> Option<bool> {
    match word {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

#[derive(Default)]
struct Collector {
    /// Per open collection: `Some(next_is_key)` for mappings, `None` for sequences.
    stack: Vec<Option<bool>>,
    /// Char index of each scalar to rewrite, with its value.
    rewrites: Vec<(usize, usize, bool)>,
}

impl Collector {
    /// Called after a node (scalar or collection) completes in the current collection.
    fn node_done(&mut self) {
        if let Some(Some(next_is_key)) = self.stack.last_mut() {
            *next_is_key = !*next_is_key;
        }
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Some(true)))
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingStart(..) => self.stack.push(Some(true)),
            Event::SequenceStart(..) => self.stack.push(None),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.node_done();
            }
            Event::Scalar(value, style, _, tag) => {
                if style == TScalarStyle::Plain && tag.is_none() && !self.in_key_position() {
                    if let Some(b) = yaml11_bool(&value) {
                        self.rewrites.push((mark.index(), value.chars().count(), b));
                    }
                }
                self.node_done();
            }
            Event::Alias(_) => self.node_done(),
            _ => {}
        }
    }
}

/// Whether one of the spellings of [`yaml11_bool`] occurs as a whole word (a run of ASCII
/// letters and digits): a plain scalar spelled that way must, so text without one needs no
/// second parse (most files have none; that parse was a good part of a tenant load's time).
fn has_bool_word(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| yaml11_bool(word).is_some())
}

/// The text with YAML 1.1 booleans spelled as YAML 1.2 ones. Text that does not parse is
/// returned unchanged: the real parser reports its error.
pub(crate) fn normalize_booleans(text: &str) -> Cow<'_, str> {
    if !has_bool_word(text) {
        return Cow::Borrowed(text);
    }
    let mut collector = Collector::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut collector, true).is_err() || collector.rewrites.is_empty() {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + collector.rewrites.len() * 2);
    let mut pos = 0;
    for (start, len, value) in collector.rewrites {
        let word: String = chars
            .get(start..start + len)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        if start < pos || yaml11_bool(&word).is_none() {
            // The marker does not point at the word: leave the text alone rather than guess.
            return Cow::Borrowed(text);
        }
        out.extend(&chars[pos..start]);
        out.push_str(if value { "true" } else { "false" });
        pos = start + len;
    }
    out.extend(&chars[pos..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_become_booleans_quoted_keys_and_tags_do_not() {
        let text = "- job:\n    voting: no\n    vars:\n      a: yes\n      b: 'yes'\n      on: Off\n      c: [on, \"off\", NO]\n      d: !unsafe yes\n      e: yesterday\n";
        let out = normalize_booleans(text);
        assert_eq!(
            out,
            "- job:\n    voting: false\n    vars:\n      a: true\n      b: 'yes'\n      on: false\n      c: [true, \"off\", false]\n      d: !unsafe yes\n      e: yesterday\n"
        );
    }

    #[test]
    fn only_text_with_a_boolean_word_is_parsed_twice() {
        assert!(!has_bool_word(
            "description: Runs the unit tests.\nvoting: true\n"
        ));
        assert!(!has_bool_word(
            "name: yesterday\nbranch: nothing\nrun: playbooks/onto.yaml\n"
        ));
        assert!(has_bool_word("voting: no\n"));
        assert!(has_bool_word("- job: {name: a, voting: Off}\n"));
        // Conservative: a word inside a longer scalar still means a full parse (no rewrite).
        assert!(has_bool_word("description: Runs on Python\n"));
        assert_eq!(
            normalize_booleans("description: Runs on Python\n"),
            "description: Runs on Python\n"
        );
    }

    #[test]
    fn broken_text_is_left_for_the_parser_to_report() {
        let text = "- job: [yes\n";
        assert_eq!(normalize_booleans(text), text);
    }

    #[test]
    fn multibyte_text_before_a_rewrite_keeps_its_place() {
        let text = "a: \"héllo\"\nb: yes\n";
        assert_eq!(normalize_booleans(text), "a: \"héllo\"\nb: true\n");
    }
}
