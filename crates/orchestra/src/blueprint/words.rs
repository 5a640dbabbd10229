//! Splitting a command written as one string into its words.
//!
//! `command: npm run start -- --port 80` means the same as the list form,
//! so the string is split the way a POSIX shell splits words: blanks
//! separate, `'...'` keeps everything literally, `"..."` keeps everything
//! but `\"`, `\\`, `\$` and `` \` `` escapes, and a backslash outside quotes
//! keeps the next character. Nothing else a shell does happens: no
//! variables (the blueprint was already interpolated), no globs, no
//! comments, no pipes. A command that needs those is written as
//! `["sh", "-c", "..."]`.

/// Why a command string could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitError {
    #[error("the {0} quote is never closed")]
    Unclosed(&'static str),
    #[error("it ends with a lone `\\`")]
    TrailingBackslash,
}

/// Splits `text` into words.
pub(crate) fn split_words(text: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    // None between words; Some once a word has started, even an empty
    // quoted one (`""` is a word).
    let mut word: Option<String> = None;
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        match character {
            ' ' | '\t' | '\n' | '\r' => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('\'') => break,
                        Some(inner) => current.push(inner),
                        None => return Err(SplitError::Unclosed("single")),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('"') => break,
                        Some('\\') => match characters.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => current.push(escaped),
                            // A backslash before a newline joins the lines.
                            Some('\n') => {}
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => return Err(SplitError::Unclosed("double")),
                        },
                        Some(inner) => current.push(inner),
                        None => return Err(SplitError::Unclosed("double")),
                    }
                }
            }
            '\\' => match characters.next() {
                Some('\n') => {}
                Some(escaped) => word.get_or_insert_with(String::new).push(escaped),
                None => return Err(SplitError::TrailingBackslash),
            },
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(done) = word {
        words.push(done);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<String> {
        split_words(text).unwrap()
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(split("npm run  start"), ["npm", "run", "start"]);
        assert_eq!(split("  padded\t\nwords  "), ["padded", "words"]);
        assert!(split("").is_empty());
        assert!(split("   ").is_empty());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            split(r#"sh -c 'echo "$HOME" && ls'"#),
            ["sh", "-c", r#"echo "$HOME" && ls"#]
        );
        assert_eq!(
            split(r#"echo "a \"quoted\" \$word \n""#),
            ["echo", r#"a "quoted" $word \n"#]
        );
        assert_eq!(split(r"one\ word"), ["one word"]);
        assert_eq!(split(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(split(r#"empty "" ''"#), ["empty", "", ""]);
        assert_eq!(split("a\\\nb"), ["ab"]);
    }

    #[test]
    fn unfinished_quotes_are_errors() {
        assert_eq!(
            split_words("echo 'open"),
            Err(SplitError::Unclosed("single"))
        );
        assert_eq!(
            split_words("echo \"open"),
            Err(SplitError::Unclosed("double"))
        );
        assert_eq!(
            split_words("echo \"open\\"),
            Err(SplitError::Unclosed("double"))
        );
        assert_eq!(split_words("echo \\"), Err(SplitError::TrailingBackslash));
    }
}
