//! `coop history`: the last hour of a peer's load and its containers', as
//! the console's charts draw it, in a table.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use coop_api::history::{ContainerSample, HistoryView};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, urlencode};

/// Prints `peer`'s samples (this peer's when `None`) of the last `last`
/// seconds, then each container's average over them.
pub async fn show(global: &GlobalArgs, peer: Option<&str>, last: u64) -> Result<()> {
    let client = Client::new(global)?;
    let path = match peer {
        Some(peer) => format!("/v1/history?peer={}", urlencode(peer)),
        None => "/v1/history".to_owned(),
    };
    let mut view: HistoryView = client.get(&path).await?;
    let since = coop_types::unix_now().saturating_sub(last);
    view.samples.retain(|s| s.at >= since);
    for samples in view.containers.values_mut() {
        samples.retain(|s| s.at >= since);
    }
    view.containers.retain(|_, samples| !samples.is_empty());
    if global.json {
        return print_json(&view);
    }
    if view.samples.is_empty() {
        println!(
            "no samples yet: a peer takes one every {} s after it starts",
            view.interval_secs
        );
        return Ok(());
    }
    let rate = |bps: u64| format!("{}/s", human_bytes(bps));
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "TIME", "CPU", "MEMORY", "NET IN", "NET OUT", "DISK", "S3 REQ/S", "S3 IN", "S3 OUT",
    ]);
    for s in &view.samples {
        t.add_row(vec![
            crate::since::rfc3339(s.at),
            format!("{:.1}%", s.cpu_pct),
            format!(
                "{} of {}",
                human_bytes(s.memory_used),
                human_bytes(s.memory_total)
            ),
            rate(s.net_rx_bps),
            rate(s.net_tx_bps),
            format!(
                "{} of {}",
                human_bytes(s.disk_used),
                human_bytes(s.disk_total)
            ),
            format!("{:.1}", s.s3_requests_ps),
            rate(s.s3_in_bps),
            rate(s.s3_out_bps),
        ]);
    }
    println!(
        "peer {}, one sample every {} s",
        view.peer, view.interval_secs
    );
    println!("{t}");
    if !view.containers.is_empty() {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY);
        t.set_header(vec!["CONTAINER", "CPU (avg)", "CPU (max)", "MEMORY (last)"]);
        for (name, samples) in &view.containers {
            let (avg, max) = cpu(samples);
            let memory = samples.last().map_or(0, |s| s.memory);
            t.add_row(vec![
                name.clone(),
                format!("{avg:.1}%"),
                format!("{max:.1}%"),
                human_bytes(memory),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}

/// Average and highest CPU use of `samples` (not empty), in percent of
/// one CPU.
fn cpu(samples: &[ContainerSample]) -> (f32, f32) {
    let sum: f32 = samples.iter().map(|s| s.cpu_pct).sum();
    let max = samples.iter().map(|s| s.cpu_pct).fold(0.0, f32::max);
    (sum / samples.len().max(1) as f32, max)
}
