//! [`LogStream`]: reading a container's log, optionally following it.

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
