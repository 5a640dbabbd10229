//! YAML into a tree that remembers where each node was written.
//!
//! Built from the events of `saphyr-parser` rather than a ready-made
//! document type, for three reasons: every scalar keeps the text it was
//! written as (Compose interpolates that text, then types it, so `0644`
//! stays `0644` and `no` stays `no`), anchors and `<<` merge keys are
//! resolved here under limits we choose, and building the tree never
//! panics on any input. Keys must be scalars; tags other than the core
//! schema's (`!!str`) are refused.
//!
//! Not here: what any key means. That is the readers' job.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use super::error::BlueprintError;

/// Nesting deeper than this is refused. Compose files need about six
/// levels; the cap keeps every later walk over the tree (and dropping it)
/// far from the stack's limit whatever the input.
const MAX_DEPTH: usize = 64;

/// Aliases may produce at most this many nodes in total. Each alias copies
/// its anchor, so a few nested anchors could otherwise expand into billions
/// of nodes; a real blueprint reuses a few dozen.
const MAX_ALIAS_NODES: usize = 10_000;

/// The tag handle of the YAML core schema (`!!str` is `tag:yaml.org,2002:str`).
const CORE_SCHEMA_HANDLE: &str = "tag:yaml.org,2002:";

/// The key that merges another mapping into this one (`<<: *defaults`).
const MERGE_KEY: &str = "<<";

/// A node and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    /// 1-based.
    pub line: usize,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

/// A scalar as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    /// Unquoted. Only a plain scalar can be null (`~`, `null`, nothing).
    pub plain: bool,
}

/// One key and its value in a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

impl Node {
    /// A quoted-string scalar; interpolation results are always strings.
    pub fn string(text: String, line: usize) -> Node {
        Node {
            value: Value::Scalar(Scalar { text, plain: false }),
            line,
        }
    }

    /// Whether this is YAML's null: an empty value, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(scalar)
            if scalar.plain && matches!(scalar.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// "a mapping", "a list", "a value": for messages that say what was
    /// found instead of what was expected.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar(_) if self.is_null() => "nothing",
            Value::Scalar(_) => "a single value",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// Parses `source` as one YAML document.
///
/// A malformed document gives one error carrying the line the parser
/// stopped at and the path of the node it was reading.
pub(crate) fn load(source: &str) -> Result<Node, BlueprintError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|error| {
            builder.error_at(
                error.marker().line(),
                format!("malformed YAML: {}", error.info()),
            )
        })?;
        builder.on_event(event, span.start)?;
    }
    builder.root.ok_or_else(|| {
        BlueprintError::new("", 1, "the blueprint is empty: write a `services:` mapping")
    })
}

/// A collection still being read.
#[derive(Debug)]
enum Frame {
    Sequence {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        line: usize,
        anchor: usize,
        entries: Vec<Entry>,
        /// The line of each key in `entries`, so a repeated key is found
        /// without a scan (a hostile file may hold many keys).
        key_lines: BTreeMap<String, usize>,
        /// The key read and waiting for its value: text, line, is `<<`.
        pending_key: Option<(String, usize, bool)>,
        /// Values of `<<` keys, merged in when the mapping ends.
        merges: Vec<Node>,
    },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Node>,
    alias_nodes: usize,
    root: Option<Node>,
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, start: Marker) -> Result<(), BlueprintError> {
        let line = start.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.check_tag(tag.as_deref(), line)?;
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    }),
                    line,
                };
                self.finish_node(node, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), line)?;
                self.open(Frame::Sequence {
                    line,
                    anchor,
                    items: Vec::new(),
                })
            }
            Event::MappingStart(anchor, tag) => {
                self.check_tag(tag.as_deref(), line)?;
                self.open(Frame::Mapping {
                    line,
                    anchor,
                    entries: Vec::new(),
                    key_lines: BTreeMap::new(),
                    pending_key: None,
                    merges: Vec::new(),
                })
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => self.alias(id, line),
            Event::DocumentStart(_) if self.root.is_some() => Err(self.error_at(
                line,
                "a blueprint is one YAML document; remove the second `---`",
            )),
            Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn check_tag(&self, tag: Option<&Tag>, line: usize) -> Result<(), BlueprintError> {
        match tag {
            Some(tag) if tag.handle != CORE_SCHEMA_HANDLE => Err(self.error_at(
                line,
                format!("YAML tags such as `{tag}` are not supported by coop; remove the tag"),
            )),
            _ => Ok(()),
        }
    }

    fn open(&mut self, frame: Frame) -> Result<(), BlueprintError> {
        let line = match &frame {
            Frame::Sequence { line, .. } | Frame::Mapping { line, .. } => *line,
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error_at(
                line,
                format!("nested more than {MAX_DEPTH} levels deep; a blueprint needs far fewer"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self) -> Result<(), BlueprintError> {
        let Some(frame) = self.stack.pop() else {
            // The parser never ends a collection it did not start; nothing
            // to close means there is nothing to add either.
            return Ok(());
        };
        match frame {
            Frame::Sequence {
                line,
                anchor,
                items,
            } => self.finish_node(
                Node {
                    value: Value::Sequence(items),
                    line,
                },
                anchor,
            ),
            Frame::Mapping {
                line,
                anchor,
                entries,
                key_lines,
                merges,
                ..
            } => {
                let entries = Self::merge(entries, key_lines, merges);
                self.finish_node(
                    Node {
                        value: Value::Mapping(entries),
                        line,
                    },
                    anchor,
                )
            }
        }
    }

    /// Adds the keys of each `<<` value that the mapping does not set
    /// itself; with `<<: [*a, *b]`, `a` wins over `b`, as YAML's merge key
    /// type says. The values were checked to be mappings (or lists of
    /// them) when they were read.
    fn merge(
        mut entries: Vec<Entry>,
        mut key_lines: BTreeMap<String, usize>,
        merges: Vec<Node>,
    ) -> Vec<Entry> {
        for merge in merges {
            let sources = match merge.value {
                Value::Mapping(source) => vec![source],
                Value::Sequence(items) => items
                    .into_iter()
                    .filter_map(|item| match item.value {
                        Value::Mapping(source) => Some(source),
                        _ => None,
                    })
                    .collect(),
                Value::Scalar(_) => Vec::new(),
            };
            for source in sources {
                for entry in source {
                    if !key_lines.contains_key(&entry.key) {
                        key_lines.insert(entry.key.clone(), entry.key_line);
                        entries.push(entry);
                    }
                }
            }
        }
        entries
    }

    fn alias(&mut self, id: usize, line: usize) -> Result<(), BlueprintError> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(self.error_at(
                line,
                "this alias points at a node that contains it; an anchor can be used only after it ends",
            ));
        };
        self.alias_nodes += count_nodes(anchored);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(self.error_at(
                line,
                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes; reuse less"),
            ));
        }
        let mut copy = anchored.clone();
        copy.line = line;
        self.finish_node(copy, 0)
    }

    /// Puts a complete node where it belongs: remembered under its anchor,
    /// then into the open collection or as the document.
    fn finish_node(&mut self, node: Node, anchor: usize) -> Result<(), BlueprintError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        if let Some(Frame::Mapping {
            pending_key: Some((_, _, true)),
            ..
        }) = self.stack.last()
        {
            let is_mapping = |node: &Node| matches!(node.value, Value::Mapping(_));
            let mergeable = match &node.value {
                Value::Mapping(_) => true,
                Value::Sequence(items) => items.iter().all(is_mapping),
                Value::Scalar(_) => false,
            };
            if !mergeable {
                return Err(self.error_at(
                    node.line,
                    "`<<` merges a mapping (`<<: *defaults`) or a list of them",
                ));
            }
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match parent {
            Frame::Sequence { items, .. } => {
                items.push(node);
                Ok(())
            }
            Frame::Mapping {
                entries,
                key_lines,
                pending_key,
                merges,
                ..
            } => match pending_key.take() {
                None => {
                    let Value::Scalar(scalar) = node.value else {
                        let line = node.line;
                        return Err(self.error_at(
                            line,
                            "a key must be a single value, not a list or mapping",
                        ));
                    };
                    let is_merge = scalar.plain && scalar.text == MERGE_KEY;
                    *pending_key = Some((scalar.text, node.line, is_merge));
                    Ok(())
                }
                Some((_, _, true)) => {
                    merges.push(node);
                    Ok(())
                }
                Some((key, key_line, false)) => {
                    // An empty value has no text to stand on; the parser
                    // places it wherever the next token is. Its key's line
                    // is the one a person looks for.
                    let mut node = node;
                    if matches!(&node.value, Value::Scalar(scalar) if scalar.plain && scalar.text.is_empty())
                    {
                        node.line = key_line;
                    }
                    if let Some(&first_line) = key_lines.get(&key) {
                        let message = if first_line == key_line {
                            format!("`{key}` is given twice")
                        } else {
                            format!("`{key}` is given twice (first on line {first_line})")
                        };
                        let path = match self.path() {
                            parent if parent.is_empty() => key,
                            parent => format!("{parent}.{key}"),
                        };
                        return Err(BlueprintError::new(&path, key_line, message));
                    }
                    key_lines.insert(key.clone(), key_line);
                    entries.push(Entry {
                        key,
                        key_line,
                        value: node,
                    });
                    Ok(())
                }
            },
        }
    }

    /// An error at `line`, with the path of the node being read.
    fn error_at(&self, line: usize, message: impl Into<String>) -> BlueprintError {
        BlueprintError::new(&self.path(), line, message)
    }

    /// The dotted path of the node being read, from the open collections.
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Sequence { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Frame::Mapping {
                    pending_key: Some((key, _, _)),
                    ..
                } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Mapping { .. } => {}
            }
        }
        path
    }
}

/// How many nodes `node` holds, itself included. Bounded by [`MAX_DEPTH`]
/// in depth, so the recursion is safe.
fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 1,
        Value::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|entry| 1 + count_nodes(&entry.value))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Mapping(entries) => entries,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    fn get<'n>(node: &'n Node, key: &str) -> &'n Node {
        &mapping(node)
            .iter()
            .find(|entry| entry.key == key)
            .unwrap_or_else(|| panic!("no key {key}"))
            .value
    }

    fn text(node: &Node) -> &str {
        match &node.value {
            Value::Scalar(scalar) => &scalar.text,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_text_and_line() {
        let root = load("a: 0644\nb: 'no'\nc:\n  d: 1.50\n").unwrap();
        assert_eq!(text(get(&root, "a")), "0644");
        assert_eq!(get(&root, "a").line, 1);
        assert_eq!(text(get(&root, "b")), "no");
        assert!(!get(&root, "c").is_null());
        assert_eq!(text(get(get(&root, "c"), "d")), "1.50");
        assert_eq!(get(get(&root, "c"), "d").line, 4);
    }

    #[test]
    fn nulls_are_plain_only() {
        let root = load("a:\nb: ~\nc: null\nd: 'null'\n").unwrap();
        assert!(get(&root, "a").is_null());
        assert!(get(&root, "b").is_null());
        assert!(get(&root, "c").is_null());
        assert!(!get(&root, "d").is_null());
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let root = load("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(get(&root, "a").value, get(&root, "b").value);
        assert_eq!(get(&root, "b").line, 2);
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_lacks() {
        let source = "\
base: &base
  image: app
  restart: always
other: &other
  restart: no
  replicas: 2
web:
  <<: [*base, *other]
  image: web
";
        let root = load(source).unwrap();
        let web = get(&root, "web");
        assert_eq!(text(get(web, "image")), "web");
        assert_eq!(text(get(web, "restart")), "always");
        assert_eq!(text(get(web, "replicas")), "2");
        assert!(mapping(web).iter().all(|entry| entry.key != "<<"));
        // A quoted `<<` is an ordinary key.
        let root = load("a:\n  '<<': 1\n").unwrap();
        assert_eq!(text(get(get(&root, "a"), "<<")), "1");
    }

    #[test]
    fn a_merge_of_a_scalar_is_refused() {
        let error = load("a: &x 1\nb:\n  <<: *x\n").unwrap_err();
        assert_eq!(error.path, "b.<<");
        assert_eq!(error.line, Some(3));
        assert!(error.message.contains("merges a mapping"), "{error}");
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let error = load("services:\n  web:\n    image: a\n    image: b\n").unwrap_err();
        assert_eq!(error.line, Some(4));
        assert_eq!(error.path, "services.web.image");
        assert!(error.message.contains("first on line 3"), "{error}");
    }

    #[test]
    fn malformed_yaml_gives_one_error_with_line_and_path() {
        let error = load("services:\n  web:\n    image: [a\n    ports: x\n").unwrap_err();
        assert!(error.message.starts_with("malformed YAML"), "{error}");
        assert!(error.line.is_some_and(|line| line >= 3), "{error}");
        assert!(error.path.starts_with("services.web"), "{error}");
    }

    #[test]
    fn limits_hold() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(load(&deep).unwrap_err().message.contains("nested"));
        let laughs = "\
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
";
        assert!(load(laughs).unwrap_err().message.contains("aliases expand"));
        assert!(
            load("a: !reset x\n")
                .unwrap_err()
                .message
                .contains("`!reset`")
        );
        assert!(load("a: !!str 1\n").is_ok());
        assert!(
            load("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("one YAML document")
        );
        assert!(load("").unwrap_err().message.contains("empty"));
        assert!(
            load("# only a comment\n")
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(load("a: &x\n  b: *x\n").is_err());
        assert!(load("? [a]\n: 1\n").unwrap_err().message.contains("key"));
    }
}
