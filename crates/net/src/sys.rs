//! Running `ip` and `nft` with a typed error, for this room and for the
//! node's wiring of networks. The compute room has the same helper for its
//! own host networking; `net` may not depend on compute, and the two
//! should move to one place low in the house when a third room needs them.

use std::process::{Command, Stdio};

/// A host tool that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// How it ended (`exit status: 2`, or `not started`).
    pub status: String,
    /// What it printed on stderr, or why it did not start.
    pub stderr: String,
}

/// Runs `program` with `args` and returns its stdout; a non-zero exit is a
/// [`CommandError`] with the tool's stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError {
            command: command.clone(),
            status: "not started".into(),
            stderr: format!("{e}; is `{program}` installed and in PATH?"),
        })?;
    if !output.status.success() {
        return Err(CommandError {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
