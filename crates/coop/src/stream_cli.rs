//! The streaming client side of containers, for `coop container` and
//! `coop env` alike: `logs [-f] [--since]` and `exec [-it]` (an HTTP
//! upgrade carrying `coop-exec` frames, with the local terminal in raw
//! mode for `-it`).

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;

use coop_api::compute::{
    ExecExit, ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF,
    FRAME_STDOUT, LOG_OFFSET_HEADER, exit_code_of,
};
use coop_orchestra::LogStart;

use crate::client::{Client, urlencode};

/// Opens the log of container `name` from `start`; with `follow`, the
/// answer streams until the container stops. Answers the byte of the log
/// the body starts at (to resume from later) and the answer to read.
pub async fn open_logs(
    client: &Client,
    name: &str,
    follow: bool,
    start: LogStart,
) -> Result<(u64, reqwest::Response)> {
    let mut path = format!("/v1/containers/{}/logs?follow={follow}", urlencode(name));
    match start {
        LogStart::Offset(0) => {}
        LogStart::Offset(offset) => path.push_str(&format!("&offset={offset}")),
        LogStart::Since(since) => path.push_str(&format!("&since={since}")),
    }
    let request = client.streaming(reqwest::Method::GET, &path)?;
    let resp = client.send_streaming(request).await?;
    let first = resp
        .headers()
        .get(LOG_OFFSET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((first, resp))
}

/// Copies the container's log from `start` to stdout; with `follow`,
/// until it exits.
pub async fn logs(client: &Client, name: &str, follow: bool, start: LogStart) -> Result<()> {
    let (_, mut resp) = open_logs(client, name, follow, start).await?;
    let mut out = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.context("the log stream broke off")? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}

/// Ends the process with `code` once output is flushed (exec and run
/// report the container's own exit status).
pub fn exit_with(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code.clamp(0, 255));
}

/// Puts the terminal on fd 0 into raw mode until dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings saved in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_row > 0)
            .then_some((size.ws_row, size.ws_col))
    }
}

/// Runs `argv` in container `name`; returns the exit code to end with.
pub async fn exec(client: &Client, name: &str, argv: &[String], tty: bool) -> Result<i32> {
    if argv.is_empty() {
        bail!("give the command to run after `--`, e.g. coop container exec {name} -- sh");
    }
    let size = if tty { terminal_size() } else { None };
    let mut path = format!(
        "/v1/containers/{}/exec?argv={}&tty={tty}",
        urlencode(name),
        urlencode(&serde_json::to_string(argv)?)
    );
    if let Some((rows, cols)) = size {
        path.push_str(&format!("&rows={rows}&cols={cols}"));
    }
    let request = client
        .streaming(reqwest::Method::POST, &path)?
        .header(reqwest::header::CONNECTION, "Upgrade")
        .header(reqwest::header::UPGRADE, "coop-exec");
    let resp = client.send_streaming(request).await?;
    let upgraded = resp
        .upgrade()
        .await
        .context("the agent did not switch to the exec stream")?;
    let (mut from_agent, mut to_agent) = tokio::io::split(upgraded);
    let raw = if tty && std::io::stdin().is_terminal() {
        RawMode::enter()
    } else {
        None
    };
    if tty {
        // Forward stdin as it comes, and the terminal's size when it
        // changes; at the end of stdin, tell the agent.
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            let mut winch =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
            loop {
                let frame = tokio::select! {
                    read = stdin.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => ExecFrame {
                            kind: FRAME_STDIN,
                            data: buf[..n].to_vec(),
                        },
                    },
                    Some(()) = async {
                        match winch.as_mut() {
                            Some(signal) => signal.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let Some((rows, cols)) = terminal_size() else {
                            continue;
                        };
                        let mut data = rows.to_be_bytes().to_vec();
                        data.extend_from_slice(&cols.to_be_bytes());
                        ExecFrame {
                            kind: FRAME_RESIZE,
                            data,
                        }
                    }
                };
                if frame.write_to(&mut to_agent).await.is_err() {
                    return;
                }
            }
            let eof = ExecFrame {
                kind: FRAME_STDIN_EOF,
                data: Vec::new(),
            };
            let _ = eof.write_to(&mut to_agent).await;
        });
    } else {
        // Without a tty the command gets no input: say so at once.
        let eof = ExecFrame {
            kind: FRAME_STDIN_EOF,
            data: Vec::new(),
        };
        eof.write_to(&mut to_agent).await?;
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut exit: Option<ExecExit> = None;
    while let Some(frame) = ExecFrame::read_from(&mut from_agent)
        .await
        .context("the exec stream broke off")?
    {
        match frame.kind {
            FRAME_STDOUT => {
                stdout.write_all(&frame.data)?;
                stdout.flush()?;
            }
            FRAME_STDERR => {
                stderr.write_all(&frame.data)?;
                stderr.flush()?;
            }
            FRAME_EXIT => {
                exit = Some(serde_json::from_slice(&frame.data).unwrap_or_default());
                break;
            }
            _ => {}
        }
    }
    drop(raw);
    let exit = exit.context("the exec stream ended without an exit status")?;
    if let Some(err) = exit.error {
        bail!("exec in `{name}` failed: {err}");
    }
    Ok(exit_code_of(exit.code, exit.signal))
}
