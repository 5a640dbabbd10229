//! A service's environment: `env_file`s read through the caller's loader,
//! then `environment` over them, as Compose layers them.
//!
//! An entry with no value takes the variable of the same name, as Compose
//! does; one whose variable is unset is left out with a warning rather
//! than set to an empty string, so the container sees it unset too.

use std::collections::BTreeMap;

use super::dotenv::parse_dotenv;
use super::error::Report;
use super::read::{boolean, child, field, item, known_keys, text};
use super::service::ServiceContext;
use super::yaml::{Node, Value};

const ENV_FILE_KEYS: &[&str] = &["path", "required"];

/// `environment` as a mapping or as a list of `KEY=VALUE`. An entry with no
/// value (`KEY` in a list, `KEY:` in a mapping) takes the variable's value,
/// as Compose does, and is left out with a warning when that is unset.
pub(crate) fn read_environment(
    node: &Node,
    path: &str,
    context: &ServiceContext<'_>,
    report: &mut Report,
) -> BTreeMap<String, String> {
    // (key, value if written, path, line) for each entry.
    let mut written: Vec<(&str, Option<&str>, String, usize)> = Vec::new();
    match &node.value {
        Value::Mapping(entries) => {
            for entry in entries {
                let entry_path = child(path, &entry.key);
                if entry.value.is_null() {
                    written.push((&entry.key, None, entry_path, entry.key_line));
                } else if let Some(value) = text(&entry.value, &entry_path, report) {
                    written.push((&entry.key, Some(value), entry_path, entry.key_line));
                }
            }
        }
        Value::Sequence(items) => {
            for (index, entry) in items.iter().enumerate() {
                let entry_path = item(path, index);
                let Some(raw) = text(entry, &entry_path, report) else {
                    continue;
                };
                let (key, value) = match raw.split_once('=') {
                    Some((key, value)) => (key, Some(value)),
                    None => (raw, None),
                };
                written.push((key, value, entry_path, entry.line));
            }
        }
        Value::Scalar(_) => report.error(
            path,
            node.line,
            format!(
                "expected a mapping or a list of KEY=VALUE, found {}",
                node.kind()
            ),
        ),
    }
    let mut environment = BTreeMap::new();
    for (key, value, entry_path, line) in written {
        if let Err(message) = check_env_key(key) {
            report.error(&entry_path, line, message);
            continue;
        }
        let value = match value {
            Some(value) => value.to_string(),
            None => match (context.lookup)(key) {
                Some(value) => value,
                None => {
                    let message = format!(
                        "{key} has no value here and no variable {key} is set; it is left out"
                    );
                    report.warn(&entry_path, line, message);
                    continue;
                }
            },
        };
        if value.contains('\0') {
            let message = "an environment value cannot hold a NUL character";
            report.error(&entry_path, line, message);
            continue;
        }
        if environment.insert(key.to_string(), value).is_some() {
            report.error(&entry_path, line, format!("{key} is given twice"));
        }
    }
    environment
}

fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['=', '\0']) || key.contains(char::is_whitespace) {
        return Err(format!(
            "`{key}` is not an environment variable name: it must be non-empty, without `=` or blanks"
        ));
    }
    Ok(())
}

/// `env_file`: a path, or a list of paths or `{path, required}`. Files are
/// read through the caller's loader, in order; a later file wins.
pub(crate) fn read_env_files(
    node: &Node,
    path: &str,
    context: &ServiceContext<'_>,
    environment: &mut BTreeMap<String, String>,
    report: &mut Report,
) {
    let mut files: Vec<(String, bool, String, usize)> = Vec::new();
    match &node.value {
        Value::Sequence(items) => {
            for (index, entry) in items.iter().enumerate() {
                let entry_path = item(path, index);
                if let Value::Mapping(entries) = &entry.value {
                    known_keys(entries, ENV_FILE_KEYS, false, &entry_path, report);
                    let Some(file) = field(entries, "path") else {
                        report.error(&entry_path, entry.line, "`path` is required");
                        continue;
                    };
                    let required = match field(entries, "required") {
                        Some(flag) => boolean(&flag.value, &child(&entry_path, "required"), report),
                        None => Some(true),
                    };
                    if let (Some(file), Some(required)) = (
                        text(&file.value, &child(&entry_path, "path"), report),
                        required,
                    ) {
                        files.push((file.to_string(), required, entry_path, entry.line));
                    }
                } else if let Some(file) = text(entry, &entry_path, report) {
                    files.push((file.to_string(), true, entry_path, entry.line));
                }
            }
        }
        _ => {
            if let Some(file) = text(node, path, report) {
                files.push((file.to_string(), true, path.to_string(), node.line));
            }
        }
    }
    for (file, required, entry_path, line) in files {
        match (context.load_env_file)(&file) {
            Ok(contents) => match parse_dotenv(&contents) {
                Ok(variables) => environment.extend(variables),
                Err(errors) => {
                    for error in errors {
                        report.error(&entry_path, line, format!("in `{file}`, {error}"));
                    }
                }
            },
            Err(reason) if required => {
                report.error(&entry_path, line, format!("cannot read `{file}`: {reason}"));
            }
            Err(reason) => {
                report.warn(&entry_path, line, format!("`{file}` is skipped: {reason}"));
            }
        }
    }
}
