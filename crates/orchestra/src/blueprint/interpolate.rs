//! Compose's variable interpolation of one string.
//!
//! The forms are Compose's (and a POSIX shell's): `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`, and
//! `$$` for a literal `$`. Defaults and alternatives may hold further
//! expressions (`${A:-${B}}`); they are expanded only when used, as a shell
//! does. A `$` followed by anything else is kept as written, as Compose
//! keeps it. Where the values come from is the caller's business: this
//! module sees only a lookup.

/// Nested `${...}` deeper than this is refused, so a crafted string cannot
/// exhaust the stack through recursion.
const MAX_NESTING: usize = 16;

/// A string after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub text: String,
    /// Variables that were unset and referenced with no default (`$X`,
    /// `${X}`): Compose expands them to "" and warns.
    pub unset: Vec<String>,
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InterpolationError {
    /// `${...}` that is not one of the forms.
    #[error("`{expression}` is not a valid variable reference: {reason}")]
    Invalid { expression: String, reason: String },
    /// `${X:?message}` or `${X?message}` with X unset (or empty for `:?`).
    #[error("variable {name} is required: {message}")]
    Required { name: String, message: String },
}

/// Interpolates `text`, reading variables through `lookup` (None = unset).
pub(crate) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, InterpolationError> {
    let mut expanded = Expanded {
        text: String::with_capacity(text.len()),
        unset: Vec::new(),
    };
    expand_into(text, lookup, 0, &mut expanded)?;
    Ok(expanded)
}

fn expand_into(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    out: &mut Expanded,
) -> Result<(), InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError::Invalid {
            expression: text.to_string(),
            reason: format!("nested more than {MAX_NESTING} levels deep"),
        });
    }
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.text.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let close =
                matching_brace(body_and_tail).ok_or_else(|| InterpolationError::Invalid {
                    expression: format!("${{{body_and_tail}"),
                    reason: "it has no closing `}`".to_string(),
                })?;
            let body = &body_and_tail[..close];
            expand_braced(body, lookup, depth, out)?;
            rest = &body_and_tail[close + 1..];
        } else {
            let name_len = name_length(after);
            if name_len == 0 {
                // `$` before anything that is not a name stays literal.
                out.text.push('$');
                rest = after;
            } else {
                let name = &after[..name_len];
                match lookup(name) {
                    Some(value) => out.text.push_str(&value),
                    None => note_unset(out, name),
                }
                rest = &after[name_len..];
            }
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// Expands the inside of `${...}`.
fn expand_braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    out: &mut Expanded,
) -> Result<(), InterpolationError> {
    let invalid = |reason: &str| InterpolationError::Invalid {
        expression: format!("${{{body}}}"),
        reason: reason.to_string(),
    };
    let name_len = name_length(body);
    if name_len == 0 {
        return Err(invalid(
            "a name starts with a letter or `_` and holds letters, digits and `_`",
        ));
    }
    let name = &body[..name_len];
    let operation = &body[name_len..];
    let value = lookup(name);
    if operation.is_empty() {
        match value {
            Some(value) => out.text.push_str(&value),
            None => note_unset(out, name),
        }
        return Ok(());
    }
    // `:` makes an empty value count as unset.
    let (empty_is_unset, operation) = match operation.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, operation),
    };
    let mut chars = operation.chars();
    let operator = chars.next();
    let argument = chars.as_str();
    let is_set = match &value {
        Some(value) => !(empty_is_unset && value.is_empty()),
        None => false,
    };
    match operator {
        Some('-') => {
            if is_set {
                out.text.push_str(value.as_deref().unwrap_or_default());
            } else {
                expand_into(argument, lookup, depth + 1, out)?;
            }
        }
        Some('+') => {
            if is_set {
                expand_into(argument, lookup, depth + 1, out)?;
            }
        }
        Some('?') => {
            if is_set {
                out.text.push_str(value.as_deref().unwrap_or_default());
            } else {
                let message = if argument.is_empty() {
                    "it is not set".to_string()
                } else {
                    argument.to_string()
                };
                return Err(InterpolationError::Required {
                    name: name.to_string(),
                    message,
                });
            }
        }
        _ => {
            return Err(invalid(
                "after the name write `}` or one of `:-` `-` `:?` `?` `:+` `+`",
            ));
        }
    }
    Ok(())
}

fn note_unset(out: &mut Expanded, name: &str) {
    if !out.unset.iter().any(|seen| seen == name) {
        out.unset.push(name.to_string());
    }
}

/// The length of the variable name at the start of `text` (0 if none):
/// a letter or `_`, then letters, digits and `_`.
fn name_length(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(bytes.len()),
        _ => 0,
    }
}

/// Where the `}` closing an opened `${` is in `text` (which starts just
/// after the `{`), skipping nested `${...}` and `$$`.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 1usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'$' if bytes.get(index + 1) == Some(&b'$') => index += 1,
            b'$' if bytes.get(index + 1) == Some(&b'{') => {
                depth += 1;
                index += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// Whether `name` can be referenced as a variable.
pub(crate) fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name_length(name) == name.len()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn expand(text: &str) -> Result<Expanded, InterpolationError> {
        let values: BTreeMap<&str, &str> = [("SET", "value"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .collect();
        interpolate(text, &|name| {
            values.get(name).map(|value| value.to_string())
        })
    }

    fn text(input: &str) -> String {
        expand(input).unwrap().text
    }

    #[test]
    fn plain_and_braced_references() {
        assert_eq!(text("$SET"), "value");
        assert_eq!(text("${SET}"), "value");
        assert_eq!(text("a-${SET}-b"), "a-value-b");
        assert_eq!(text("$SET.x"), "value.x");
        assert_eq!(text("host:$PORT"), "host:8080");
        assert_eq!(text("no variables"), "no variables");
        assert_eq!(text("ünïcode $SET ✓"), "ünïcode value ✓");
    }

    #[test]
    fn defaults_distinguish_unset_from_empty() {
        assert_eq!(text("${UNSET:-d}"), "d");
        assert_eq!(text("${EMPTY:-d}"), "d");
        assert_eq!(text("${SET:-d}"), "value");
        assert_eq!(text("${UNSET-d}"), "d");
        assert_eq!(text("${EMPTY-d}"), "");
        assert_eq!(text("${SET-d}"), "value");
        assert_eq!(text("${UNSET:-}"), "");
    }

    #[test]
    fn alternatives() {
        assert_eq!(text("${SET:+alt}"), "alt");
        assert_eq!(text("${EMPTY:+alt}"), "");
        assert_eq!(text("${EMPTY+alt}"), "alt");
        assert_eq!(text("${UNSET+alt}"), "");
        assert_eq!(text("${UNSET:+alt}"), "");
    }

    #[test]
    fn required_forms() {
        assert_eq!(text("${SET:?need it}"), "value");
        assert_eq!(text("${EMPTY?need it}"), "");
        assert_eq!(
            expand("${EMPTY:?need it}").unwrap_err(),
            InterpolationError::Required {
                name: "EMPTY".into(),
                message: "need it".into()
            }
        );
        let error = expand("${UNSET?}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "variable UNSET is required: it is not set"
        );
    }

    #[test]
    fn dollar_escapes_and_literals() {
        assert_eq!(text("$$"), "$");
        assert_eq!(text("$${SET}"), "${SET}");
        assert_eq!(text("cost: 5$"), "cost: 5$");
        assert_eq!(text("$1 and $ and $-"), "$1 and $ and $-");
        assert_eq!(text("$$$SET"), "$value");
    }

    #[test]
    fn nested_defaults_expand_only_when_used() {
        assert_eq!(text("${UNSET:-${SET}}"), "value");
        assert_eq!(text("${UNSET:-${ALSO_UNSET:-deep}}"), "deep");
        assert_eq!(text("${SET:-${MISSING:?never asked}}"), "value");
        assert_eq!(text("${UNSET:-a$$b}"), "a$b");
        assert!(matches!(
            expand("${UNSET:-${MISSING:?asked}}"),
            Err(InterpolationError::Required { .. })
        ));
    }

    #[test]
    fn unset_plain_references_are_noted_once() {
        let expanded = expand("$UNSET ${UNSET} ${OTHER} ${WITH:-default}").unwrap();
        assert_eq!(expanded.text, "   default");
        assert_eq!(expanded.unset, ["UNSET", "OTHER"]);
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "${", "${SET", "${}", "${1X}", "${SET!}", "${SET:}", "${SET:x}", "${A B}",
        ] {
            assert!(
                matches!(expand(bad), Err(InterpolationError::Invalid { .. })),
                "{bad}"
            );
        }
        let deep = format!("{}x{}", "${A:-".repeat(40), "}".repeat(40));
        assert!(matches!(
            expand(&deep),
            Err(InterpolationError::Invalid { .. })
        ));
    }

    #[test]
    fn names() {
        assert!(is_variable_name("DB_HOST"));
        assert!(is_variable_name("_x1"));
        assert!(!is_variable_name("1X"));
        assert!(!is_variable_name("A-B"));
        assert!(!is_variable_name(""));
    }
}
