//! What kind of source an import was given, told by its first bytes (never
//! by its file name), and how to read it as a plain tar.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::archive::ArchiveError;
use crate::spool::TempFile;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
/// Where the `ustar` magic of a tar header starts.
const USTAR_OFFSET: usize = 257;
const TAR_BLOCK: usize = 512;

/// A source of a rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// A directory holding the rootfs.
    Directory,
    /// An uncompressed tar of the rootfs.
    Tar,
    /// A gzip-compressed tar.
    TarGzip,
    /// A zstd-compressed tar.
    TarZstd,
}

/// How a stream of tar bytes is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Tells what `path` is: a directory, or a tar (plain, gzip or zstd) by its
/// first bytes.
pub fn detect(path: &Path) -> Result<SourceFormat, ArchiveError> {
    let meta = std::fs::metadata(path).map_err(ArchiveError::io(path, "read"))?;
    if meta.is_dir() {
        return Ok(SourceFormat::Directory);
    }
    let mut head = Vec::with_capacity(TAR_BLOCK);
    File::open(path)
        .and_then(|f| f.take(TAR_BLOCK as u64).read_to_end(&mut head))
        .map_err(ArchiveError::io(path, "read"))?;
    match sniff(&head) {
        Ok(Compression::None) => Ok(SourceFormat::Tar),
        Ok(Compression::Gzip) => Ok(SourceFormat::TarGzip),
        Ok(Compression::Zstd) => Ok(SourceFormat::TarZstd),
        Err(hint) => Err(ArchiveError::UnknownFormat {
            path: path.display().to_string(),
            hint,
        }),
    }
}

/// The compression of a tar stream from its first bytes (up to 512), or
/// why it is not one.
pub fn sniff(head: &[u8]) -> Result<Compression, String> {
    if head.starts_with(GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    if head.starts_with(XZ_MAGIC) || head.starts_with(BZIP2_MAGIC) {
        return Err(
            "it is xz or bzip2 compressed, which coop does not read; recompress it with gzip or zstd"
                .into(),
        );
    }
    if head.is_empty() {
        return Err("it is empty".into());
    }
    if looks_like_tar(head) {
        return Ok(Compression::None);
    }
    Err("its first bytes are neither a tar header nor gzip or zstd magic".into())
}

/// A ustar/GNU magic, or (old v7 archives) a valid header checksum, or the
/// zero block of an empty archive.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < TAR_BLOCK {
        return false;
    }
    if &head[USTAR_OFFSET..USTAR_OFFSET + 5] == b"ustar" {
        return true;
    }
    if head[..TAR_BLOCK].iter().all(|&b| b == 0) {
        return true;
    }
    let field = &head[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = head[..TAR_BLOCK]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

/// A reader of the plain tar bytes inside a (maybe compressed) stream.
pub fn decompressed<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// Opens a tar source for random access: a plain tar as it is, a
/// compressed one decompressed into a temporary file in `scratch` (kept
/// alive, and removed, by the returned [`TempFile`]).
pub fn open_tar(
    path: &Path,
    format: SourceFormat,
    scratch: &Path,
) -> Result<(File, Option<TempFile>), ArchiveError> {
    let source = File::open(path).map_err(ArchiveError::io(path, "read"))?;
    let compression = match format {
        SourceFormat::Tar => return Ok((source, None)),
        SourceFormat::TarGzip => Compression::Gzip,
        SourceFormat::TarZstd => Compression::Zstd,
        SourceFormat::Directory => {
            return Err(ArchiveError::UnknownFormat {
                path: path.display().to_string(),
                hint: "it is a directory, not an archive".into(),
            });
        }
    };
    let mut temp =
        TempFile::create(scratch, "untar").map_err(ArchiveError::io(scratch, "write in"))?;
    let file = temp.file().map_err(ArchiveError::io(scratch, "write in"))?;
    let mut reader = decompressed(io::BufReader::new(source), compression)
        .map_err(|e| ArchiveError::corrupt(path, e))?;
    copy_decompressed(&mut reader, file, path)?;
    file.seek(SeekFrom::Start(0))
        .map_err(ArchiveError::io(scratch, "read"))?;
    let clone = file
        .try_clone()
        .map_err(ArchiveError::io(scratch, "read"))?;
    Ok((clone, Some(temp)))
}

/// Copies a decompressing reader into `out`, telling a corrupt source apart
/// from a failing destination.
pub fn copy_decompressed(
    reader: &mut dyn Read,
    out: &mut dyn io::Write,
    source: &Path,
) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::corrupt(source, e)),
        };
        out.write_all(&buf[..n])
            .map_err(ArchiveError::io(Path::new("a scratch file for"), "write"))?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_magic() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Ok(Compression::Gzip));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 1]), Ok(Compression::Zstd));
        assert!(sniff(XZ_MAGIC).unwrap_err().contains("xz"));
        assert!(sniff(b"").unwrap_err().contains("empty"));
        assert!(sniff(b"hello world").is_err());
        assert_eq!(sniff(&[0u8; 512]), Ok(Compression::None));

        let mut header = tar::Header::new_old();
        header.set_path("a").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert_eq!(sniff(header.as_bytes()), Ok(Compression::None));
        let mut gnu = tar::Header::new_gnu();
        gnu.set_path("a").unwrap();
        gnu.set_cksum();
        assert_eq!(sniff(gnu.as_bytes()), Ok(Compression::None));
        let mut broken = *header.as_bytes();
        broken[0] ^= 1;
        assert!(sniff(&broken).is_err());
    }

    #[test]
    fn detect_ignores_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()).unwrap(), SourceFormat::Directory);
        let zst = dir.path().join("looks.tar.gz");
        std::fs::write(&zst, zstd::encode_all(&[0u8; 1024][..], 3).unwrap()).unwrap();
        assert_eq!(detect(&zst).unwrap(), SourceFormat::TarZstd);
        let text = dir.path().join("x.tar");
        std::fs::write(&text, b"not a tar").unwrap();
        let err = detect(&text).unwrap_err();
        assert!(err.to_string().contains("x.tar"), "{err}");
        assert!(detect(&dir.path().join("missing")).is_err());
    }
}
