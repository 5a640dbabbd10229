//! Temporary files of an import and windows into them.
//!
//! An import writes everything it needs on disk (a decompressed tar, the
//! blob being written) as a temporary file next to its destination, so a
//! rename publishes the result on the same filesystem and nothing is kept
//! in memory. [`TempFile`] removes the file when dropped unless it was
//! persisted, so every error path leaves the destination as it was.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the temporary files of concurrent imports in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary sibling in `dir`, unique in this process and
/// among processes (pid), hidden (leading dot) and marked with `label`.
pub fn temp_name(dir: &Path, label: &str) -> PathBuf {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".coop-{label}-{}-{n}.partial", std::process::id()))
}

/// A path whose file is removed when the guard drops, unless kept: the
/// one temp-file guard of coop (uploads being spooled, blobs being
/// fetched, [`TempFile`]).
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// Guards `path` (which need not exist yet).
    pub fn new(path: PathBuf) -> Self {
        TempPath(path)
    }

    /// The guarded path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Stops guarding: the file stays (it was renamed or is wanted).
    pub fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// A file that is removed when dropped, unless [`TempFile::persist`]ed.
#[derive(Debug)]
pub struct TempFile {
    // Dropped after `file`: the file is closed before it is removed.
    file: Option<File>,
    path: TempPath,
}

impl TempFile {
    /// Creates a new, empty temporary file in `dir` (which must exist).
    pub fn create(dir: &Path, label: &str) -> io::Result<Self> {
        let path = temp_name(dir, label);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            file: Some(file),
            path: TempPath::new(path),
        })
    }

    /// Where the file is.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.path.path()
    }

    /// The open file.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("temporary file already closed"))
    }

    /// Syncs the file and renames it to `dest`; it is no longer removed.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        fs::rename(self.path.path(), dest)?;
        self.path.keep();
        // The rename is durable only once the directory entry is.
        if let Some(dir) = dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A byte range of a file, read and seeked as if it were a file of its own.
/// Used to read a layer inside an OCI archive without copying it out.
#[derive(Debug)]
pub struct Slice {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Slice {
    /// The `len` bytes of `file` from `start`. The file's own cursor is moved freely.
    pub fn new(file: File, start: u64, len: u64) -> io::Result<Self> {
        let mut slice = Slice {
            file,
            start,
            len,
            pos: 0,
        };
        slice.file.seek(SeekFrom::Start(start))?;
        Ok(slice)
    }

    /// The whole file.
    pub fn whole(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Slice::new(file, 0, len)
    }

    /// Where the slice starts in the file.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Slice {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        self.file.seek(SeekFrom::Start(self.start + target))?;
        self.pos = target;
        Ok(target)
    }
}

/// Reads exactly `len` bytes from `inner`, failing (instead of returning
/// short) if it ends early: a file that shrank while being imported, or a
/// truncated archive, must not produce a malformed blob.
pub struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    /// Wraps `inner`, expecting `len` bytes.
    pub fn new(inner: R, len: u64) -> Self {
        Exact { inner, left: len }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("data ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts and BLAKE3-hashes what is written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            written: 0,
        }
    }

    /// The inner writer, the hash and the byte count of everything written.
    pub fn finish(self) -> (W, blake3::Hash, u64) {
        (self.inner, self.hasher.finalize(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let mut t = TempFile::create(dir.path(), "test").unwrap();
            t.file().unwrap().write_all(b"x").unwrap();
            t.path().to_path_buf()
        };
        assert!(!path.exists());
        let mut t = TempFile::create(dir.path(), "test").unwrap();
        t.file().unwrap().write_all(b"kept").unwrap();
        let dest = dir.path().join("kept");
        t.persist(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"kept");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn slices_read_and_seek_within_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"0123456789").unwrap();
        let mut s = Slice::new(File::open(&path).unwrap(), 2, 5).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "23456");
        s.seek(SeekFrom::Start(3)).unwrap();
        out.clear();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "56");

        let mut short = Exact::new(&b"abc"[..], 5);
        let mut buf = Vec::new();
        assert_eq!(
            short.read_to_end(&mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
