//! Uploads and downloads of the CLI: a file or directory streamed from
//! disk on a thread (never held in memory), and a progress line on stderr
//! for transfers large enough to need one.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::human_bytes;

/// Transfers smaller than this finish too quickly to need a progress line.
const PROGRESS_FROM: u64 = 16 << 20;
/// Bytes per chunk read from disk and sent.
const CHUNK: usize = 256 * 1024;

/// How much of a transfer is done, printed at most once a second.
pub(crate) struct Progress {
    /// `uploading` or `downloading`.
    verb: &'static str,
    label: String,
    done: u64,
    total: Option<u64>,
    last: Instant,
    shown: bool,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(verb: &'static str, label: &str, total: Option<u64>) -> Self {
        Progress {
            verb,
            label: label.to_owned(),
            done: 0,
            total,
            last: Instant::now(),
            shown: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, verb: &str) -> String {
        match self.total.filter(|t| *t > 0) {
            Some(total) => format!(
                "{verb} {}: {} of {} ({}%)",
                self.label,
                human_bytes(self.done),
                human_bytes(total),
                self.done * 100 / total
            ),
            None => format!("{verb} {}: {}", self.label, human_bytes(self.done)),
        }
    }

    pub(crate) fn add(&mut self, n: usize) {
        self.done += n as u64;
        if self.done >= PROGRESS_FROM && self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            self.shown = true;
            let line = self.line(self.verb);
            if self.tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
        }
    }

    /// Ends the progress line, if one was shown.
    pub(crate) fn finish(&self) {
        if self.shown {
            let verb = if self.verb == "uploading" {
                "uploaded"
            } else {
                "downloaded"
            };
            let line = self.line(verb);
            if self.tty {
                eprintln!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
        }
    }
}

/// A request body read from `path` on a thread (a tar stream of it if it
/// is a directory), counted into the returned progress.
pub(crate) fn file_body(path: &Path, label: &str) -> (reqwest::Body, Arc<Mutex<Progress>>) {
    let total = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let progress = Arc::new(Mutex::new(Progress::new("uploading", label, total)));
    let (tx, rx) = mpsc::channel(8);
    spawn_reader(path.to_path_buf(), tx);
    let counter = progress.clone();
    let body = futures::stream::unfold(rx, move |mut rx| {
        let counter = counter.clone();
        async move {
            let item = rx.recv().await?;
            if let (Ok(chunk), Ok(mut p)) = (&item, counter.lock()) {
                p.add(chunk.len());
            }
            Some((item, rx))
        }
    });
    (reqwest::Body::wrap_stream(body), progress)
}

/// Reads `path` on a thread, as a tar stream if it is a directory, and
/// hands the bytes over in chunks.
fn spawn_reader(path: PathBuf, tx: mpsc::Sender<std::io::Result<bytes::Bytes>>) {
    std::thread::spawn(move || {
        let sender = ChunkSender { tx: tx.clone() };
        let result = if path.is_dir() {
            pack_dir(&path, sender)
        } else {
            copy_file(&path, sender)
        };
        if let Err(err) = result {
            let _ = tx.blocking_send(Err(err));
        }
    });
}

fn pack_dir(path: &Path, sender: ChunkSender) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(CHUNK, sender));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder.append_dir_all(".", path)?;
    builder.into_inner()?.flush()
}

fn copy_file(path: &Path, mut sender: ChunkSender) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sender.write_all(&buf[..n])?;
    }
}

/// A writer that sends what it is given as chunks to the upload.
struct ChunkSender {
    tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
