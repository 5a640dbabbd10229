//! A terminal in the browser: an exec session with a pty over a WebSocket,
//! for the console's xterm.js page.
//!
//! A browser cannot send `Authorization` on a WebSocket, nor speak the
//! `coop-exec` upgrade; so the token comes as one of the offered
//! subprotocols (`bearer.<token>`, beside `coop-exec`, which the answer
//! names), never in the URL. On the socket: binary messages are the
//! terminal's bytes each way; a text message from the browser is JSON
//! `{"resize": [rows, cols]}` or `{"eof": true}`; the server's last text
//! message is the exit (`ExecExit` JSON) before it closes.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use coop_orchestra::frames::{
    ExecFrame, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN, FRAME_STDIN_EOF, FRAME_STDOUT,
};
use coop_orchestra::{ExecCall, ExecSession};

use crate::error::ApiError;
use crate::{AppState, token_hash};

/// The subprotocol the server answers with.
pub const PROTOCOL: &str = "coop-exec";
/// The prefix of the subprotocol that carries the token.
const BEARER: &str = "bearer.";
/// Bytes buffered between the socket and the session each way.
const PIPE: usize = 64 * 1024;

/// What to run, and the terminal's size.
#[derive(Debug, Deserialize)]
pub struct TerminalQuery {
    /// JSON array of strings; `["/bin/sh"]` when absent.
    pub argv: Option<String>,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

/// A control message from the browser.
#[derive(Debug, Deserialize)]
struct Control {
    resize: Option<(u16, u16)>,
    eof: Option<bool>,
}

/// `GET /v1/containers/{name}/terminal`, upgraded to a WebSocket.
pub(crate) async fn terminal(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<TerminalQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let offered: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let token = offered
        .iter()
        .find_map(|p| p.strip_prefix(BEARER))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "offer the subprotocols `{PROTOCOL}` and `{BEARER}<token>`"
            ))
        })?;
    if state.control.store().token(&token_hash(token))?.is_none() {
        return Err(ApiError::Unauthorized("unknown API token".into()));
    }
    let argv: Vec<String> = match &query.argv {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ApiError::BadRequest(format!("argv must be a JSON array of strings: {e}"))
        })?,
        None => vec!["/bin/sh".into()],
    };
    if argv.is_empty() {
        return Err(ApiError::BadRequest("argv names no program".into()));
    }
    let orchestra = state.compute()?;
    orchestra.entry(&name)?;
    let call = ExecCall {
        name,
        argv,
        tty: true,
        rows: Some(query.rows.unwrap_or(24).clamp(1, 1000)),
        cols: Some(query.cols.unwrap_or(80).clamp(1, 1000)),
    };
    // Started before the upgrade is answered, so a refusal is a plain error.
    let session = orchestra.exec(call).await?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| bridge(socket, session)))
}

/// Carries the terminal between the socket and the session until either
/// ends.
async fn bridge(socket: WebSocket, session: ExecSession) {
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let served = tokio::spawn(session.serve(theirs));
    let (mut from_session, mut to_session) = tokio::io::split(ours);
    let (mut to_browser, mut from_browser) = socket.split();
    let outbound = async move {
        loop {
            match ExecFrame::read_from(&mut from_session).await {
                Ok(Some(frame)) if frame.kind == FRAME_EXIT => {
                    let text = String::from_utf8_lossy(&frame.data).into_owned();
                    let _ = to_browser.send(Message::Text(text.into())).await;
                    break;
                }
                Ok(Some(frame)) if matches!(frame.kind, FRAME_STDOUT | FRAME_STDERR) => {
                    if to_browser
                        .send(Message::Binary(frame.data.into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = to_browser.close().await;
    };
    let inbound = async move {
        while let Some(Ok(message)) = from_browser.next().await {
            let frame = match message {
                Message::Binary(bytes) => ExecFrame {
                    kind: FRAME_STDIN,
                    data: bytes.to_vec(),
                },
                Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                    Ok(Control {
                        resize: Some((rows, cols)),
                        ..
                    }) => {
                        let mut data = rows.to_be_bytes().to_vec();
                        data.extend_from_slice(&cols.to_be_bytes());
                        ExecFrame {
                            kind: FRAME_RESIZE,
                            data,
                        }
                    }
                    Ok(Control {
                        eof: Some(true), ..
                    }) => ExecFrame {
                        kind: FRAME_STDIN_EOF,
                        data: Vec::new(),
                    },
                    _ => continue,
                },
                Message::Close(_) => break,
                _ => continue,
            };
            if frame.write_to(&mut to_session).await.is_err() {
                break;
            }
        }
        // The browser went away: interrupt what runs and end the shell, as
        // a terminal's user would with ^C and ^D (a pty has no end of input
        // otherwise).
        let hangup = ExecFrame {
            kind: FRAME_STDIN,
            data: b"\x03\x04".to_vec(),
        };
        let _ = hangup.write_to(&mut to_session).await;
        let _ = to_session.shutdown().await;
    };
    // The session ends the outbound side with its exit; a browser that
    // goes away ends the inbound side. The session's task ends with its
    // process either way.
    tokio::select! {
        () = outbound => {}
        () = inbound => {}
    }
    drop(served);
}
