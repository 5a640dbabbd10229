//! [`LogStream`]: reading a container's log, optionally following it, and
//! [`since_offset`]: where in the log the output of a time on begins.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::Duration;

use crate::runtime::state::ContainerDir;

/// How often a following reader looks for new output. The log is a plain
/// file written by the container directly, so there is nothing to wake on;
/// 50 ms keeps `logs -f` feeling live at negligible cost.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// The container's stdout and stderr as one byte stream, from the start.
/// Following, a read at the end waits for more until the container exits.
#[derive(Debug)]
pub struct LogStream {
    pub(crate) file: Option<File>,
    pub(crate) dir: ContainerDir,
    pub(crate) follow: bool,
    /// Where reading starts, in bytes from the log's start.
    pub(crate) start: u64,
}

impl Read for LogStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.file.is_none() {
                match File::open(self.dir.log()) {
                    Ok(mut file) => {
                        if self.start > 0 {
                            file.seek(SeekFrom::Start(self.start))?;
                        }
                        self.file = Some(file)
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound && self.follow && self.running() => {
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            if let Some(file) = self.file.as_mut() {
                let n = file.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
            }
            if !self.follow {
                return Ok(0);
            }
            if !self.running() {
                // The process is gone; whatever it wrote last is in the file now.
                return match self.file.as_mut() {
                    Some(file) => file.read(buf),
                    None => Ok(0),
                };
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

impl LogStream {
    fn running(&self) -> bool {
        self.dir.may_be_running()
    }
}

/// Where the output written at or after `since` (unix seconds) begins in
/// a log of `log_len` bytes, going by `runs` (the text of `runs.log`: each
/// run's start time and first byte) and, when the container has exited,
/// when its last run ended.
///
/// The log has no times on its lines, so this works in whole runs: a run
/// ends when the next one starts (or at `finished`, for the last one), and
/// the answer is the first byte of the first run that had not ended by
/// `since`. That run is read whole, even its lines from before `since`;
/// nothing written at or after `since` is skipped. A log with no runs
/// recorded (written before runs were) is read from its start.
pub(crate) fn since_offset(runs: &str, finished: Option<u64>, since: u64, log_len: u64) -> u64 {
    let starts: Vec<(u64, u64)> = runs
        .lines()
        .filter_map(|line| {
            let (at, offset) = line.split_once(' ')?;
            Some((at.parse().ok()?, offset.parse().ok()?))
        })
        .collect();
    if starts.is_empty() {
        return 0;
    }
    for (i, (_, offset)) in starts.iter().enumerate() {
        let ended = match starts.get(i + 1) {
            Some((next_start, _)) => Some(*next_start),
            None => finished,
        };
        if ended.is_none_or(|end| end >= since) {
            return (*offset).min(log_len);
        }
    }
    log_len
}

#[cfg(test)]
mod tests {
    use super::since_offset;

    const RUNS: &str = "100 0\n200 50\n300 80\n";

    #[test]
    fn since_picks_the_first_run_not_over_by_then() {
        // Before any run, or while the first runs: everything.
        assert_eq!(since_offset(RUNS, None, 10, 120), 0);
        assert_eq!(since_offset(RUNS, None, 150, 120), 0);
        // The first run ended when the second started.
        assert_eq!(since_offset(RUNS, None, 200, 120), 0);
        assert_eq!(since_offset(RUNS, None, 201, 120), 50);
        // The last run still runs: it is read whole.
        assert_eq!(since_offset(RUNS, None, 10_000, 120), 80);
    }

    #[test]
    fn an_exited_container_shows_nothing_after_its_end() {
        assert_eq!(since_offset(RUNS, Some(400), 350, 120), 80);
        assert_eq!(since_offset(RUNS, Some(400), 401, 120), 120);
    }

    #[test]
    fn a_log_without_runs_is_read_whole() {
        assert_eq!(since_offset("", Some(400), 500, 120), 0);
        assert_eq!(since_offset("garbage\n", None, 500, 120), 0);
    }
}
