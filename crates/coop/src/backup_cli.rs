//! `coop backup`: encrypted, incremental backups of buckets into restic
//! repositories on S3 targets.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use coop_api::backups::{CheckView, KeyView, ProgressLine};
use coop_backup::{BackupView, MeterReading, RestoreSummary, RunSummary, SnapshotView};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, urlencode};

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Create a backup of a bucket or a peer's directory into a restic repository at an S3 target
    ///
    /// The repository is created at the target at once, encrypted with a
    /// new random password that the control plane keeps sealed with the
    /// cloud key; `coop backup key export NAME` prints it. Each run saves
    /// a snapshot and sends only what changed since the last one.
    ///
    /// Examples:
    ///   coop backup create photos --source bucket:photos \
    ///       --to s3://backup.example.net:3900/family/photos \
    ///       --access-key GK31c2f2 --secret-key ... --every 6h --keep-daily 7
    #[command(verbatim_doc_comment)]
    Create {
        /// 1-63 characters of a-z, 0-9 and `-`, starting with a letter
        name: String,
        /// What to back up: bucket:NAME (every object with its metadata) or
        /// path:PEER:/DIR (a directory of a peer, by name or id; that peer
        /// runs the backup)
        #[arg(long, value_name = "SOURCE")]
        source: String,
        /// Where the repository goes: friend:NAME (a friend linked with
        /// `coop friend add`), s3://HOST[:PORT]/BUCKET[/PREFIX] (plain
        /// HTTP) or http(s)://HOST[:PORT]/BUCKET[/PREFIX]; the bucket must
        /// exist and must not hold another repository at that prefix
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// The S3 target's access key
        #[arg(long, env = "COOP_BACKUP_ACCESS_KEY")]
        access_key: Option<String>,
        /// The S3 target's secret key (or COOP_BACKUP_SECRET_KEY, which
        /// keeps it out of the shell's history)
        #[arg(long, env = "COOP_BACKUP_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
        /// Run on a schedule: 90m, 6h, 1d (at least 60s); without it, the
        /// backup runs only with `coop backup run`
        #[arg(long, value_name = "PERIOD", value_parser = crate::parse_duration_secs)]
        every: Option<u64>,
        /// After each run keep the last N snapshots ...
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: u32,
        /// ... and the last of each of the last N hours
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_hourly: u32,
        /// ... days
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: u32,
        /// ... weeks
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: u32,
        /// ... months
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: u32,
        /// ... years (with no --keep-* at all, every snapshot is kept)
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_yearly: u32,
    },
    /// List backups with their last run and next scheduled one
    Ls,
    /// Show a backup
    Show { name: String },
    /// Run a backup now, with a progress line on a terminal
    ///
    /// Exits non-zero if the run failed; the repository keeps every
    /// snapshot earlier runs saved.
    Run { name: String },
    /// List a backup's snapshots, oldest first
    Snapshots { name: String },
    /// Restore a snapshot into a bucket or a peer's directory
    ///
    /// Into a bucket (a backup of a bucket): objects come back with their
    /// exact keys, content types and metadata; the bucket is created if it
    /// does not exist, and an existing one must be empty. Into a
    /// directory (path:PEER:/DIR, created if missing): the snapshot's
    /// files as restic would restore them, a bucket's objects under
    /// DIR/BUCKET/KEY.
    ///
    /// Examples:
    ///   coop backup restore photos 3f2a9c1e --to bucket:photos-restored
    ///   coop backup restore home --to path:nas:/srv/restored
    #[command(verbatim_doc_comment)]
    Restore {
        name: String,
        /// A snapshot id (or its first digits); the latest when omitted
        snapshot: Option<String>,
        /// Where to: bucket:NAME or path:PEER:/DIR
        #[arg(long, value_name = "TARGET")]
        to: String,
    },
    /// Check a backup's repository (structure; with --read-data, every byte)
    Check {
        name: String,
        /// Download and verify every pack, not only the index and trees
        #[arg(long)]
        read_data: bool,
    },
    /// Remove a backup; its repository and snapshots stay at the target
    Rm { name: String },
    /// The repository password, for the drawer
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// Print the repository's location and password: with them, restic
    /// reads the backup without coop
    ///
    /// Example (restic 0.14 and later):
    ///   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... RESTIC_PASSWORD=... \
    ///     restic -r s3:http://HOST:PORT/BUCKET/PREFIX snapshots
    #[command(verbatim_doc_comment)]
    Export { name: String },
}

pub async fn run(global: &GlobalArgs, action: BackupAction) -> Result<()> {
    let client = Client::new(global)?;
    match action {
        BackupAction::Create {
            name,
            source,
            to,
            access_key,
            secret_key,
            every,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
        } => {
            let body = json!({
                "name": name,
                "source": source,
                "target": to,
                "access_key": access_key,
                "secret_key": secret_key,
                "every_secs": every,
                "keep": {
                    "last": keep_last, "hourly": keep_hourly, "daily": keep_daily,
                    "weekly": keep_weekly, "monthly": keep_monthly, "yearly": keep_yearly,
                },
            });
            let backup: BackupView = client
                .call(reqwest::Method::POST, "/v1/backups", Some(body))
                .await?;
            if global.json {
                return print_json(&backup);
            }
            println!(
                "backup {} created: {} into a new repository at {}",
                backup.name, backup.source, backup.target
            );
            println!(
                "keep its password somewhere safe: coop backup key export {}",
                backup.name
            );
            Ok(())
        }
        BackupAction::Ls => {
            let backups: Vec<BackupView> = client.get("/v1/backups").await?;
            if global.json {
                return print_json(&backups);
            }
            if backups.is_empty() {
                println!("no backups; create one with `coop backup create`");
                return Ok(());
            }
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            table.set_header(["NAME", "SOURCE", "TARGET", "EVERY", "LAST RUN", "NEXT"]);
            for b in &backups {
                table.add_row([
                    b.name.clone(),
                    b.source.clone(),
                    b.target.clone(),
                    b.every_secs.map_or("-".into(), human_period),
                    b.last_run.as_ref().map_or("never".into(), run_line),
                    b.next_run_ms.map_or("-".into(), ago_or_in),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        BackupAction::Show { name } => {
            let b: BackupView = client
                .get(&format!("/v1/backups/{}", urlencode(&name)))
                .await?;
            if global.json {
                return print_json(&b);
            }
            println!("backup     {}", b.name);
            println!("source     {}", b.source);
            println!("target     {}", b.target);
            if let Some(key) = &b.access_key {
                println!("access key {key}");
            }
            println!(
                "schedule   {}",
                b.every_secs.map_or("only when run".into(), |s| format!(
                    "every {}",
                    human_period(s)
                ))
            );
            println!("keep       {}", keep_line(&b.keep));
            println!(
                "last run   {}",
                b.last_run.as_ref().map_or("never".into(), run_line)
            );
            if let Some(ms) = b.last_success_ms {
                println!("last saved {}", ago_or_in(ms));
            }
            if let Some(ms) = b.next_run_ms {
                println!("next run   {}", ago_or_in(ms));
            }
            Ok(())
        }
        BackupAction::Run { name } => {
            let path = format!("/v1/backups/{}/run", urlencode(&name));
            let summary: RunSummary = follow(&client, &path, None, "backing up").await?;
            if global.json {
                return print_json(&summary);
            }
            println!(
                "backup {name}: snapshot {} saved on {}: {} files ({} read), {}; {} added to the repository in {:.1} s{}",
                short(summary.snapshot.as_deref().unwrap_or("")),
                summary.peer,
                summary.files,
                summary.files_read,
                human_bytes(summary.bytes),
                human_bytes(summary.bytes_added),
                summary.finished_ms.saturating_sub(summary.started_ms) as f64 / 1000.0,
                if summary.forgotten > 0 {
                    format!("; {} old snapshot(s) forgotten", summary.forgotten)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        BackupAction::Snapshots { name } => {
            let snaps: Vec<SnapshotView> = client
                .get(&format!("/v1/backups/{}/snapshots", urlencode(&name)))
                .await?;
            if global.json {
                return print_json(&snaps);
            }
            if snaps.is_empty() {
                println!("no snapshots yet; run the backup with `coop backup run {name}`");
                return Ok(());
            }
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            table.set_header(["ID", "TIME", "FILES", "SIZE", "ADDED"]);
            for s in &snaps {
                table.add_row([
                    s.short_id.clone(),
                    s.time.clone(),
                    s.files.to_string(),
                    human_bytes(s.bytes),
                    human_bytes(s.bytes_added),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        BackupAction::Restore { name, snapshot, to } => {
            let path = format!("/v1/backups/{}/restore", urlencode(&name));
            let body = json!({ "snapshot": snapshot, "to": to });
            let summary: RestoreSummary = follow(&client, &path, Some(body), "restoring").await?;
            if global.json {
                return print_json(&summary);
            }
            println!(
                "restored snapshot {} of {name} to {}: {} files, {}",
                short(&summary.snapshot),
                summary.to,
                summary.files,
                human_bytes(summary.bytes)
            );
            Ok(())
        }
        BackupAction::Check { name, read_data } => {
            let path = format!("/v1/backups/{}/check", urlencode(&name));
            let body = json!({ "read_data": read_data });
            let check: CheckView = follow(&client, &path, Some(body), "checking").await?;
            if global.json {
                print_json(&check)?;
            } else {
                for problem in &check.problems {
                    println!("{problem}");
                }
            }
            if !global.json && check.ok {
                println!(
                    "backup {name}: the repository is healthy{}",
                    if read_data {
                        " (every pack read and verified)"
                    } else {
                        " (index and trees; --read-data reads every pack)"
                    }
                );
            }
            if !check.ok {
                bail!(
                    "backup {name}: the check found errors ({} finding(s))",
                    check.problems.len()
                );
            }
            Ok(())
        }
        BackupAction::Rm { name } => {
            let path = format!("/v1/backups/{}", urlencode(&name));
            let removed: Value = client.call(reqwest::Method::DELETE, &path, None).await?;
            if global.json {
                return print_json(&removed);
            }
            println!("backup {name} removed; its repository stays at the target");
            Ok(())
        }
        BackupAction::Key {
            action: KeyAction::Export { name },
        } => {
            let key: KeyView = client
                .get(&format!("/v1/backups/{}/key", urlencode(&name)))
                .await?;
            if global.json {
                return print_json(&key);
            }
            let repo = key
                .repository
                .strip_prefix("s3://")
                .map_or(key.repository.clone(), |rest| format!("s3:http://{rest}"));
            println!("repository {repo}");
            println!("password   {}", key.password);
            Ok(())
        }
    }
}

/// Posts to a progress stream and follows it: a progress line on a
/// terminal while it works, then its result.
async fn follow<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    body: Option<Value>,
    verb: &str,
) -> Result<T> {
    let mut request = client.streaming(reqwest::Method::POST, path)?;
    if let Some(body) = body {
        request = request.json(&body);
    }
    let mut resp = client.send_streaming(request).await?;
    let tty = std::io::stderr().is_terminal();
    let mut pending = Vec::new();
    let mut shown = false;
    loop {
        let chunk = resp
            .chunk()
            .await
            .context("the connection to the API broke off; the work may go on on the peer")?;
        let Some(chunk) = chunk else {
            bail!("the API ended the stream without a result");
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let parsed: ProgressLine = serde_json::from_slice(&line)
                .with_context(|| format!("unexpected line: {}", String::from_utf8_lossy(&line)))?;
            match parsed {
                ProgressLine::Progress(reading) => {
                    if tty {
                        eprint!("\r{}   ", progress_text(verb, &reading));
                        let _ = std::io::stderr().flush();
                        shown = true;
                    }
                }
                ProgressLine::Result(value) => {
                    if shown {
                        eprintln!();
                    }
                    return serde_json::from_value(value).context("unexpected result");
                }
                ProgressLine::Error { message, .. } => {
                    if shown {
                        eprintln!();
                    }
                    bail!("{message}");
                }
            }
        }
    }
}

fn progress_text(verb: &str, r: &MeterReading) -> String {
    let amount = |n: u64| {
        if r.bytes {
            human_bytes(n)
        } else {
            n.to_string()
        }
    };
    let phase = if r.phase.is_empty() { verb } else { &r.phase };
    if r.total > 0 {
        format!(
            "{phase}: {} of {} ({}%)",
            amount(r.done),
            amount(r.total),
            r.done.min(r.total) * 100 / r.total
        )
    } else {
        format!("{phase}: {}", amount(r.done))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn run_line(run: &RunSummary) -> String {
    if run.ok {
        format!(
            "{} ok, snapshot {}, {} added",
            ago_or_in(run.finished_ms),
            short(run.snapshot.as_deref().unwrap_or("")),
            human_bytes(run.bytes_added)
        )
    } else {
        format!(
            "{} FAILED: {}",
            ago_or_in(run.finished_ms),
            run.error.as_deref().unwrap_or("")
        )
    }
}

fn keep_line(keep: &coop_backup::Keep) -> String {
    let parts: Vec<String> = [
        (keep.last, "last"),
        (keep.hourly, "hourly"),
        (keep.daily, "daily"),
        (keep.weekly, "weekly"),
        (keep.monthly, "monthly"),
        (keep.yearly, "yearly"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "every snapshot".into()
    } else {
        parts.join(", ")
    }
}

fn human_period(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `5m ago` or `in 2h` from a Unix-milliseconds time.
fn ago_or_in(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let words = |secs: u64| match secs {
        s if s < 90 => format!("{s}s"),
        s if s < 90 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    };
    if ms <= now {
        format!("{} ago", words((now - ms) / 1000))
    } else {
        format!("in {}", words((ms - now) / 1000))
    }
}
