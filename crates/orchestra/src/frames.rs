//! The frames of an exec session, as the API's HTTP upgrade
//! (`Upgrade: coop-exec`) and `coop/exec/1` both carry them.
//!
//! A frame is one kind byte, a big-endian u32 length and that many bytes.
//! The server sends [`FRAME_STDOUT`], [`FRAME_STDERR`] and one final
//! [`FRAME_EXIT`] (JSON [`ExecExit`]); the client sends [`FRAME_STDIN`],
//! [`FRAME_STDIN_EOF`] and [`FRAME_RESIZE`] (rows and columns as two
//! big-endian u16). Raw bytes with framing, so no websocket library is
//! needed on either side and a test can drive it with a pty.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use coop_compute::runtime::{ExecHandle, ExitStatus};

use serde::{Deserialize, Serialize};

/// Client → server: bytes for the process's stdin (or the pty).
pub const FRAME_STDIN: u8 = 0;
/// Server → client: output (stdout, or everything with a pty).
pub const FRAME_STDOUT: u8 = 1;
/// Server → client: stderr (never with a pty).
pub const FRAME_STDERR: u8 = 2;
/// Server → client: the process ended; JSON [`ExecExit`]. Always last.
pub const FRAME_EXIT: u8 = 3;
/// Client → server: new terminal size, rows and columns.
pub const FRAME_RESIZE: u8 = 4;
/// Client → server: stdin is at its end.
pub const FRAME_STDIN_EOF: u8 = 5;

/// Frames larger than this are refused: no legitimate frame comes near it.
const MAX_FRAME: u32 = 1 << 20;
/// Bytes read from the process per frame.
const CHUNK: usize = 16 * 1024;

/// The payload of the exit frame that ends an exec stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when the exec failed rather than the process ending.
    pub error: Option<String>,
}

/// One frame of an exec stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFrame {
    /// One of the `FRAME_*` kinds.
    pub kind: u8,
    pub data: Vec<u8>,
}

impl ExecFrame {
    /// Writes the frame.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, out: &mut W) -> std::io::Result<()> {
        let len = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        let mut head = [0u8; 5];
        head[0] = self.kind;
        head[1..].copy_from_slice(&len.to_be_bytes());
        out.write_all(&head).await?;
        out.write_all(&self.data).await?;
        out.flush().await
    }

    /// Reads one frame; `None` at a clean end of stream.
    pub async fn read_from<R: AsyncRead + Unpin>(input: &mut R) -> std::io::Result<Option<Self>> {
        let mut head = [0u8; 5];
        match input.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("exec frame of {len} bytes is larger than {MAX_FRAME}"),
            ));
        }
        let mut data = vec![0u8; len as usize];
        input.read_exact(&mut data).await?;
        Ok(Some(ExecFrame {
            kind: head[0],
            data,
        }))
    }
}

/// Feeds everything `reader` yields into `tx` as `kind` chunks, on a thread
/// (the runtime's readers are blocking). Ends at EOF, on an error (a pty
/// reads EIO once its process is gone) or when the receiver is gone.
fn pump_reader(mut reader: impl Read + Send + 'static, kind: u8, tx: mpsc::Sender<(u8, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send((kind, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Runs one exec over an upgraded connection: output out, input in, and
/// the exit frame last.
pub async fn serve_exec<S>(io: S, mut handle: ExecHandle)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut from_client, mut to_client) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let input: Option<Box<dyn Write + Send>> = if let Some(pty) = &handle.pty {
        if let Ok(reader) = pty.try_clone() {
            pump_reader(reader, FRAME_STDOUT, out_tx.clone());
        }
        pty.try_clone()
            .ok()
            .map(|w| Box::new(w) as Box<dyn Write + Send>)
    } else {
        if let Some(stdout) = handle.stdout.take() {
            pump_reader(stdout, FRAME_STDOUT, out_tx.clone());
        }
        if let Some(stderr) = handle.stderr.take() {
            pump_reader(stderr, FRAME_STDERR, out_tx.clone());
        }
        handle
            .stdin
            .take()
            .map(|w| Box::new(w) as Box<dyn Write + Send>)
    };
    drop(out_tx);
    if let Some(mut input) = input {
        std::thread::spawn(move || {
            while let Ok(bytes) = in_rx.recv() {
                if input
                    .write_all(&bytes)
                    .and_then(|()| input.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    let handle = Arc::new(Mutex::new(Some(handle)));
    let resizer = handle.clone();
    let reader = tokio::spawn(async move {
        let mut in_tx = Some(in_tx);
        while let Ok(Some(frame)) = ExecFrame::read_from(&mut from_client).await {
            match frame.kind {
                FRAME_STDIN => {
                    if let Some(tx) = &in_tx {
                        let _ = tx.send(frame.data);
                    }
                }
                FRAME_STDIN_EOF => in_tx = None,
                FRAME_RESIZE if frame.data.len() == 4 => {
                    let rows = u16::from_be_bytes([frame.data[0], frame.data[1]]);
                    let cols = u16::from_be_bytes([frame.data[2], frame.data[3]]);
                    if let Ok(guard) = resizer.lock()
                        && let Some(handle) = guard.as_ref()
                    {
                        let _ = handle.resize(rows, cols);
                    }
                }
                _ => {}
            }
        }
    });
    while let Some((kind, data)) = out_rx.recv().await {
        if (ExecFrame { kind, data })
            .write_to(&mut to_client)
            .await
            .is_err()
        {
            break;
        }
    }
    let waited = tokio::task::spawn_blocking(move || {
        let taken = handle.lock().ok().and_then(|mut h| h.take());
        taken.map(|h| h.wait())
    })
    .await;
    let exit = match waited {
        Ok(Some(Ok(ExitStatus::Code(code)))) => ExecExit {
            code: Some(code),
            ..ExecExit::default()
        },
        Ok(Some(Ok(ExitStatus::Signal(signal)))) => ExecExit {
            signal: Some(signal),
            ..ExecExit::default()
        },
        Ok(Some(Ok(ExitStatus::Unknown))) => ExecExit::default(),
        Ok(Some(Err(e))) => ExecExit {
            error: Some(e.to_string()),
            ..ExecExit::default()
        },
        _ => ExecExit {
            error: Some("the exec was lost".into()),
            ..ExecExit::default()
        },
    };
    match serde_json::to_vec(&exit) {
        Ok(data) => {
            let frame = ExecFrame {
                kind: FRAME_EXIT,
                data,
            };
            let _ = frame.write_to(&mut to_client).await;
        }
        Err(err) => tracing::warn!(%err, "cannot encode the exit of an exec"),
    }
    let _ = to_client.shutdown().await;
    reader.abort();
}
