//! `.env` files: the `.env` beside a blueprint and each `env_file`.
//!
//! The lines Compose users write: `KEY=value`, `export KEY=value`, blank
//! lines and `#` comments, an inline ` # comment` after an unquoted value,
//! `'single'` quotes taken literally and `"double"` quotes with `\n`, `\t`,
//! `\r`, `\"`, `\\` and `\$` escapes; a quoted value may run over several
//! lines. Values are kept as written otherwise: `$` in a value is not
//! expanded here (interpolation applies to the blueprint, not to the files
//! it points at).

use std::collections::BTreeMap;

/// One bad line of a dotenv file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    /// The 1-based line the problem starts on.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses dotenv text into its variables; a key given twice keeps the
/// later value, as a shell sourcing the file would. Every bad line is
/// reported, not only the first.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, Vec<DotenvError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let mut variables = BTreeMap::new();
    let mut errors = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line_number = index + 1;
        match parse_entry(&lines, &mut index) {
            Ok(Some((key, value))) => {
                variables.insert(key, value);
            }
            Ok(None) => {}
            Err(message) => errors.push(DotenvError {
                line: line_number,
                message,
            }),
        }
        index += 1;
    }
    if errors.is_empty() {
        Ok(variables)
    } else {
        Err(errors)
    }
}

/// Reads the entry starting at `lines[*index]`; a quoted value that runs
/// on moves `index` to its last line.
fn parse_entry(lines: &[&str], index: &mut usize) -> Result<Option<(String, String)>, String> {
    let line = lines[*index].trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((key, raw_value)) = line.split_once('=') else {
        return Err(format!("expected KEY=VALUE, found `{line}`"));
    };
    let key = key.trim();
    if !is_env_key(key) {
        return Err(format!(
            "`{key}` is not a variable name: use letters, digits, `_`, `.` and `-`, starting with a letter or `_`"
        ));
    }
    let raw_value = raw_value.trim_start();
    let value = match raw_value.chars().next() {
        Some(quote @ ('\'' | '"')) => quoted_value(lines, index, &raw_value[1..], quote)?,
        _ => unquoted_value(raw_value),
    };
    Ok(Some((key.to_string(), value)))
}

/// An unquoted value: up to an inline comment (a `#` after whitespace),
/// trimmed.
fn unquoted_value(raw: &str) -> String {
    let mut end = raw.len();
    let mut previous_blank = false;
    for (position, character) in raw.char_indices() {
        if character == '#' && previous_blank {
            end = position;
            break;
        }
        previous_blank = character == ' ' || character == '\t';
    }
    raw[..end].trim().to_string()
}

/// A quoted value whose text starts with `first` (just after the opening
/// quote) and may continue on the lines after `lines[*index]`.
fn quoted_value(
    lines: &[&str],
    index: &mut usize,
    first: &str,
    quote: char,
) -> Result<String, String> {
    let mut value = String::new();
    let mut current = first;
    loop {
        let mut characters = current.char_indices();
        while let Some((position, character)) = characters.next() {
            if character == quote {
                let after = current[position + 1..].trim();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(format!(
                        "unexpected `{after}` after the closing {quote}; put the whole value inside the quotes"
                    ));
                }
                return Ok(value);
            }
            if character == '\\' && quote == '"' {
                match characters.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, escaped @ ('"' | '\\' | '$'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(character);
        }
        if *index + 1 >= lines.len() {
            return Err(format!("the value has no closing {quote}"));
        }
        *index += 1;
        value.push('\n');
        current = lines[*index];
    }
}

/// Keys that a container's environment and Compose's dotenv accept.
fn is_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_lines() {
        let text = "\
# a comment
PLAIN=value
export EXPORTED=yes
  SPACED  =  padded value  
EMPTY=
INLINE=value # a comment
HASH=a#b
SINGLE='literal $HOME \\n # not a comment'
DOUBLE=\"line\\nnext \\\"q\\\" \\$x\"
URL=postgres://u:p@db:5432/app?x=1
PLAIN=later wins
";
        let variables = parse_dotenv(text).unwrap();
        assert_eq!(variables["PLAIN"], "later wins");
        assert_eq!(variables["EXPORTED"], "yes");
        assert_eq!(variables["SPACED"], "padded value");
        assert_eq!(variables["EMPTY"], "");
        assert_eq!(variables["INLINE"], "value");
        assert_eq!(variables["HASH"], "a#b");
        assert_eq!(variables["SINGLE"], "literal $HOME \\n # not a comment");
        assert_eq!(variables["DOUBLE"], "line\nnext \"q\" $x");
        assert_eq!(variables["URL"], "postgres://u:p@db:5432/app?x=1");
        assert_eq!(variables.len(), 9);
    }

    #[test]
    fn quoted_values_may_span_lines() {
        let text = "KEY=\"first\nsecond\"\r\nAFTER=1\nexport=2\n";
        let variables = parse_dotenv(text).unwrap();
        assert_eq!(variables["KEY"], "first\nsecond");
        assert_eq!(variables["AFTER"], "1");
        assert_eq!(variables["export"], "2");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "GOOD=1\nno equals sign\n1BAD=x\nQUOTE='open\n";
        let errors = parse_dotenv(text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert!(
            errors[0]
                .to_string()
                .starts_with("line 2: expected KEY=VALUE")
        );
        assert!(errors[2].message.contains("no closing '"));
        let errors = parse_dotenv("A=\"x\" y\n").unwrap_err();
        assert!(errors[0].message.contains("after the closing"));
    }
}
