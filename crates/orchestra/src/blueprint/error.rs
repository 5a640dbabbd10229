//! What a blueprint can get wrong, said with the place it went wrong.
//!
//! Every problem names the dotted path of the node (`services.web.ports[1]`)
//! and the line it was written on, so a person can go straight to it. The
//! parser collects every problem it can find before it answers, so one run
//! shows them all instead of one per edit.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::spec::VariableKind;

/// One problem in a blueprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BlueprintError {
    /// Where the problem is, as keys joined by dots with list positions in
    /// brackets: `services.web.ports[1]`. Empty for the document itself.
    pub path: String,
    /// The 1-based line of the offending node, when the document has one.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl BlueprintError {
    /// A problem at `path` on `line`.
    pub fn new(path: &str, line: usize, message: impl Into<String>) -> Self {
        BlueprintError {
            path: path.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for BlueprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every problem found in one blueprint, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BlueprintErrors(pub Vec<BlueprintError>);

impl fmt::Display for BlueprintErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// A declared variable that has no value from any source, as a prompt
/// needs it: what to ask, what kind of answer fits, what to suggest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingVariable {
    /// The variable's name, as written in `x-coop.variables`.
    pub name: String,
    /// The blueprint author's explanation, to show beside the prompt.
    pub description: Option<String>,
    /// The kind of value that will be accepted.
    pub kind: VariableKind,
    /// A suggested answer: set when the author wrote a default and still
    /// marked the variable `required: true`.
    pub default: Option<String>,
}

/// Why a blueprint did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// Declared variables have no value. Nothing past the declarations was
    /// read, since every later value may depend on them: a terminal can ask
    /// for these and parse again, anything else fails with the list.
    #[error("{}", missing_list(.0))]
    MissingVariables(Vec<MissingVariable>),
    /// The blueprint is wrong; every problem found is listed.
    #[error("{0}")]
    Invalid(BlueprintErrors),
}

fn missing_list(missing: &[MissingVariable]) -> String {
    let mut text = String::from("variables without a value (pass them with --var NAME=VALUE):");
    for variable in missing {
        text.push_str("\n  ");
        text.push_str(&variable.name);
        text.push_str(&format!(" ({})", variable.kind));
        if let Some(description) = &variable.description {
            text.push_str(": ");
            text.push_str(description);
        }
        if let Some(default) = &variable.default {
            text.push_str(&format!(" [suggested: {default}]"));
        }
    }
    text
}

/// Collects problems and warnings while a blueprint is read, so reading
/// goes on past the first problem.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub errors: Vec<BlueprintError>,
    pub warnings: Vec<String>,
}

impl Report {
    /// Records a problem at `path` on `line`.
    pub fn error(&mut self, path: &str, line: usize, message: impl Into<String>) {
        self.errors.push(BlueprintError::new(path, line, message));
    }

    /// Records something worth saying that does not stop the blueprint.
    pub fn warn(&mut self, path: &str, line: usize, message: impl Into<String>) {
        self.warnings
            .push(BlueprintError::new(path, line, message).to_string());
    }

    /// How many problems so far; with [`Report::failed_since`], tells a
    /// reader whether its part of the document added any.
    pub fn mark(&self) -> usize {
        self.errors.len()
    }

    /// Whether a problem was recorded after `mark`.
    pub fn failed_since(&self, mark: usize) -> bool {
        self.errors.len() > mark
    }
}
