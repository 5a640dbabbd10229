//! `coop env logs`: the logs of an environment's replicas, merged line by
//! line, each line prefixed with its replica's name.
//!
//! Each replica's log is one stream of the container logs API; a stream
//! that ends (its replica stopped, or its peer went away) does not end the
//! others. Following, the environment is looked at again every
//! [`RESCAN`], so a replica that runs again (restarted, moved, added by
//! `scale`) is followed again: from the byte after the last one printed
//! when it is the same container, from its start when it is a new one.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use coop_api::compute::{ContainerView, EnvView};
use coop_orchestra::LogStart;

use crate::GlobalArgs;
use crate::client::{Client, urlencode};
use crate::stream_cli::open_logs;

/// How often `logs -f` looks for replicas to follow again: short enough
/// that a restart's first lines show at once, long enough that a large
/// environment's statuses are not asked for all the time.
const RESCAN: Duration = Duration::from_secs(2);

/// Lines read ahead of the terminal, over all replicas.
const LINE_QUEUE: usize = 1024;

/// ANSI colours for replica prefixes, in the order replicas are first seen
/// (no red: it reads as an error).
const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "96"];

/// `coop env logs`.
#[derive(Args, Debug)]
pub struct EnvLogsArgs {
    /// The environment's name
    name: String,
    /// Only this service's replicas [default: every service's]
    service: Option<String>,
    /// Keep printing new output until Ctrl-C, also of replicas that start
    /// again or are added meanwhile
    #[arg(short, long)]
    follow: bool,
    /// Skip output of runs that were over before this time: a duration
    /// back from now (90s, 30m, 1h, 2d) or an RFC 3339 time
    /// (2025-05-01T10:00:00Z). The logs have no times on their lines, so
    /// this goes by runs: the run going at that time is shown whole
    #[arg(long, value_name = "DURATION|TIME", value_parser = crate::since::parse_since)]
    since: Option<u64>,
}

/// One line of one replica's output.
struct Line {
    replica: Arc<str>,
    service: Arc<str>,
    text: String,
}

/// How a replica's stream ended.
struct Ended {
    replica: Arc<str>,
    /// Where to resume: the byte after the last one received, when the
    /// stream was opened at all.
    next: Option<u64>,
    error: Option<anyhow::Error>,
}

/// A replica being followed, or that was.
struct Followed {
    /// Its container's creation time: another one means another log.
    created_at: u64,
    /// Where its log would be read from next.
    resume: LogStart,
    attached: bool,
}

/// Prints lines with their replica's prefix: padded, coloured on a
/// terminal, or as JSON lines with `--json`.
struct Printer {
    json: bool,
    colour: bool,
    width: usize,
    colours: BTreeMap<Arc<str>, &'static str>,
}

impl Printer {
    fn print(&mut self, out: &mut impl Write, line: &Line) -> std::io::Result<()> {
        if self.json {
            let record = json!({
                "replica": &*line.replica,
                "service": &*line.service,
                "line": line.text,
            });
            return writeln!(out, "{record}");
        }
        let width = self.width;
        if !self.colour {
            return writeln!(out, "{:<width$} | {}", line.replica, line.text);
        }
        let next = COLOURS[self.colours.len() % COLOURS.len()];
        let colour = *self.colours.entry(line.replica.clone()).or_insert(next);
        writeln!(
            out,
            "\x1b[{colour}m{:<width$} |\x1b[0m {}",
            line.replica, line.text
        )
    }
}

/// The replicas of `env` (of `service`, when given), by service and index.
fn replicas_of<'a>(env: &'a EnvView, service: Option<&str>) -> Vec<&'a ContainerView> {
    let mut replicas: Vec<&ContainerView> = env
        .replicas
        .iter()
        .filter(|r| service.is_none_or(|s| r.owner.as_ref().is_some_and(|o| o.service == s)))
        .collect();
    replicas.sort_by_key(|r| r.owner.as_ref().map(|o| (o.service.clone(), o.index)));
    replicas
}

/// Reads one replica's log from `start` into `lines`, a line at a time;
/// a last line without its newline is sent when the stream ends.
async fn read_replica(
    client: Client,
    replica: Arc<str>,
    service: Arc<str>,
    follow: bool,
    start: LogStart,
    lines: mpsc::Sender<Line>,
) -> Ended {
    let (first, mut resp) = match open_logs(&client, &replica, follow, start).await {
        Ok(opened) => opened,
        Err(error) => {
            return Ended {
                replica,
                next: None,
                error: Some(error),
            };
        }
    };
    let mut next = first;
    let mut pending: Vec<u8> = Vec::new();
    let send = |bytes: &[u8]| Line {
        replica: replica.clone(),
        service: service.clone(),
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    let error = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                next += chunk.len() as u64;
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    if lines.send(send(text)).await.is_err() {
                        // Nobody prints any more.
                        break;
                    }
                }
            }
            Ok(None) => break None,
            Err(err) => break Some(anyhow::Error::new(err).context("the log stream broke off")),
        }
    };
    if !pending.is_empty() {
        let _ = lines.send(send(&pending)).await;
    }
    Ended {
        replica,
        next: Some(next),
        error,
    }
}

/// The readers of replica logs, one task each, and where each replica's
/// log would be read from next.
struct Readers {
    client: Client,
    follow: bool,
    lines: mpsc::Sender<Line>,
    tasks: JoinSet<Ended>,
    followed: BTreeMap<Arc<str>, Followed>,
}

impl Readers {
    /// Starts reading `replica`'s log from `start`.
    fn attach(&mut self, replica: &ContainerView, start: LogStart) {
        let name: Arc<str> = Arc::from(replica.name.as_str());
        let service: Arc<str> =
            Arc::from(replica.owner.as_ref().map_or("-", |o| o.service.as_str()));
        self.followed.insert(
            name.clone(),
            Followed {
                created_at: replica.created_at,
                resume: start,
                attached: true,
            },
        );
        self.tasks.spawn(read_replica(
            self.client.clone(),
            name,
            service,
            self.follow,
            start,
            self.lines.clone(),
        ));
    }

    /// Where to read a running `replica` from again, unless it is being
    /// read now.
    fn resume_point(&self, replica: &ContainerView) -> Option<LogStart> {
        match self.followed.get(replica.name.as_str()) {
            Some(state) if state.attached => None,
            Some(state) if state.created_at == replica.created_at => Some(state.resume),
            // A new container (added, moved, or made again): its log is new.
            _ => Some(LogStart::Offset(0)),
        }
    }

    fn ended(&mut self, ended: &Ended) {
        if let Some(state) = self.followed.get_mut(&ended.replica) {
            state.attached = false;
            if let Some(next) = ended.next {
                state.resume = LogStart::Offset(next);
            }
        }
    }
}

/// Prints `line`; a reader of stdout that went away (`| head`) ends the
/// command quietly.
fn print_or_stop(printer: &mut Printer, out: &mut impl Write, line: &Line) -> Result<bool> {
    match printer.print(out, line) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("cannot write to stdout"),
    }
}

pub async fn logs(global: &GlobalArgs, args: EnvLogsArgs) -> Result<()> {
    let client = Client::new(global)?;
    let path = format!("/v1/environments/{}", urlencode(&args.name));
    let env: EnvView = client.get(&path).await?;
    let service = args.service.as_deref();
    if let Some(service) = service
        && !env.services.iter().any(|s| s.name == service)
    {
        let names: Vec<&str> = env.services.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "environment `{}` has no service `{service}` (it has {})",
            args.name,
            names.join(", ")
        );
    }
    let replicas = replicas_of(&env, service);
    if replicas.is_empty() && !args.follow {
        eprintln!(
            "environment `{}` has no replicas{}",
            args.name,
            service.map(|s| format!(" of `{s}`")).unwrap_or_default()
        );
        return Ok(());
    }
    let mut printer = Printer {
        json: global.json,
        colour: !global.json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none(),
        width: replicas.iter().map(|r| r.name.len()).max().unwrap_or(0),
        colours: BTreeMap::new(),
    };
    let (sender, mut lines) = mpsc::channel::<Line>(LINE_QUEUE);
    let mut readers = Readers {
        client: client.clone(),
        follow: args.follow,
        lines: sender,
        tasks: JoinSet::new(),
        followed: BTreeMap::new(),
    };
    let first = args.since.map_or(LogStart::Offset(0), LogStart::Since);
    for replica in &replicas {
        readers.attach(replica, first);
    }

    let mut out = std::io::stdout();
    let mut failed = 0usize;
    let mut rescan = tokio::time::interval(RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut last_rescan_error = String::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut interrupted => break,
            Some(line) = lines.recv() => {
                if !print_or_stop(&mut printer, &mut out, &line)? {
                    return Ok(());
                }
            }
            Some(ended) = readers.tasks.join_next() => {
                let ended = ended.context("a log reader failed")?;
                if let Some(error) = &ended.error {
                    failed += 1;
                    eprintln!("coop: the log of {}: {error:#}", ended.replica);
                }
                readers.ended(&ended);
            }
            _ = rescan.tick(), if args.follow => {
                match client.get::<EnvView>(&path).await {
                    Ok(env) => {
                        last_rescan_error.clear();
                        for replica in replicas_of(&env, service) {
                            if replica.state != "running" {
                                continue;
                            }
                            if let Some(start) = readers.resume_point(replica) {
                                printer.width = printer.width.max(replica.name.len());
                                readers.attach(replica, start);
                            }
                        }
                    }
                    Err(err) => {
                        // Said once, not every few seconds while it lasts.
                        let text = format!("{err:#}");
                        if text != last_rescan_error {
                            eprintln!("coop: cannot look at `{}` again: {text}", args.name);
                            last_rescan_error = text;
                        }
                    }
                }
            }
        }
        if !args.follow && readers.tasks.is_empty() {
            // Every reader is done, so every line it read is queued.
            while let Ok(line) = lines.try_recv() {
                if !print_or_stop(&mut printer, &mut out, &line)? {
                    return Ok(());
                }
            }
            break;
        }
    }
    let _ = out.flush();
    if failed > 0 && !args.follow {
        bail!("the log of {failed} replica(s) could not be read (see above)");
    }
    Ok(())
}
