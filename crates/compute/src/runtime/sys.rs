//! Small host helpers shared by the runtime, the network and the shim:
//! running host tools with typed errors, process identity that survives pid
//! reuse, mount checks, a lock file and atomic JSON files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::runtime::error::{RuntimeError, io_err};

/// A host tool (`ip`, `nft`, `mount`, `mkfs.ext4`, `runc`) that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// How it ended (`exit status: 1`, or `not started`).
    pub status: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs a host tool and returns its stdout; a non-zero exit becomes a
/// [`CommandError`] with the tool's stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    run_with_input(program, args, None)
}

/// Like [`run`], feeding `input` on stdin (for `nft -f -`).
pub(crate) fn run_with_input(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, CommandError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError {
            command: command.clone(),
            status: "not started".into(),
            stderr: format!("{e}; is `{program}` installed and in PATH?"),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits early closes its stdin; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| CommandError {
        command: command.clone(),
        status: "lost".into(),
        stderr: e.to_string(),
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

/// A process as seen at one moment: its pid plus its start time and the
/// boot it belongs to, so a recycled pid is never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Host pid.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of the live process `pid`, or `None` if there is none.
    pub fn of(pid: i32) -> Option<ProcessIdentity> {
        start_ticks(pid).map(|start_ticks| ProcessIdentity { pid, start_ticks })
    }

    /// Whether this very process is still alive (not a zombie, not a reused pid).
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some((state, start)) = parse_stat(&stat) else {
            return false;
        };
        start == self.start_ticks && state != 'Z' && state != 'X'
    }
}

fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// State letter and start time from a `/proc/PID/stat` line. The command
/// name may contain spaces and parentheses, so fields count from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) comes field 4; start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// This boot's id, to tell a process recorded before a reboot from a live one.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether `path` is a mount point in this mount namespace.
pub(crate) fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| unescape_mountinfo(point) == wanted)
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts `path`; a path that is not mounted is fine (idempotent).
pub(crate) fn unmount(path: &Path) -> Result<(), RuntimeError> {
    if !is_mounted(path) {
        return Ok(());
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        RuntimeError::Io {
            action: "unmount",
            path: path.display().to_string(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        }
    })?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), 0) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOENT) {
            return Err(io_err("unmount", path)(err));
        }
    }
    Ok(())
}

/// An exclusive `flock` on a file, released on drop. Serializes address
/// allocation and teardown between runtimes sharing a state root.
pub(crate) struct LockFile {
    _file: File,
}

impl LockFile {
    pub(crate) fn acquire(path: &Path) -> Result<LockFile, RuntimeError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LockFile { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("lock", path)(err));
            }
        }
    }
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| RuntimeError::CorruptState {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tmp = tmp_sibling(path);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(&text).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

/// Reads a JSON file; `Ok(None)` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RuntimeError::CorruptState {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes a file; one that is already gone is fine.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), RuntimeError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 777)));
        let me = ProcessIdentity::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!other.is_alive());
    }

    #[test]
    fn json_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        assert_eq!(read_json::<u32>(&path).unwrap(), None);
        write_json(&path, &7u32).unwrap();
        assert_eq!(read_json::<u32>(&path).unwrap(), Some(7));
        fs::write(&path, "{").unwrap();
        assert!(matches!(
            read_json::<u32>(&path),
            Err(RuntimeError::CorruptState { .. })
        ));
    }

    #[test]
    fn mountinfo_fields_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert!(is_mounted(Path::new("/proc")));
    }
}
