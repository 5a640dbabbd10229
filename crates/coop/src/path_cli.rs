//! `coop debug path PEER` and `coop debug speed PEER`: how this peer
//! reaches another, why a path is relayed, and what the path carries.

use anyhow::{Context, Result};
use coop_types::{NatMapping, NatReport, PathReport, SpeedReport};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, urlencode};

pub async fn path(global: &GlobalArgs, peer: &str) -> Result<()> {
    let client = Client::new(global)?;
    let report: PathReport = client
        .get(&format!("/v1/peers/{}/path", urlencode(peer)))
        .await?;
    if global.json {
        return print_json(&report);
    }
    let kind = report
        .connection
        .map_or_else(|| "none".to_string(), |c| c.to_string());
    let rtt = report
        .rtt_ms
        .map(|r| format!(", rtt {r:.1} ms"))
        .unwrap_or_default();
    println!("peer        {}", report.peer);
    println!("connection  {kind}{rtt}");
    println!("verdict     {}", report.reason);
    if !report.paths.is_empty() {
        println!("paths");
        for path in &report.paths {
            let mark = if path.selected { "*" } else { " " };
            println!(
                "  {mark} {:<6} {:<28} rtt {:.1} ms",
                path.kind.to_string(),
                path.remote,
                path.rtt_ms
            );
        }
    }
    if !report.known_addrs.is_empty() {
        println!(
            "known addresses of the peer  {}",
            report.known_addrs.join(", ")
        );
    }
    print_nat("this peer", &report.here);
    match &report.there {
        Some(there) => print_nat("the peer", there),
        None => println!("the peer    did not answer about its NAT"),
    }
    Ok(())
}

fn print_nat(who: &str, report: &NatReport) {
    let mapping = match report.mapping {
        NatMapping::None => "no NAT: its own address is public",
        NatMapping::Stable => "NAT with a stable mapping (every destination sees one address)",
        NatMapping::VariesByDestination => {
            "symmetric NAT (the public port changes with the destination)"
        }
        NatMapping::SingleSighting => "behind NAT; seen from one place only",
        NatMapping::Unknown => "no public address known",
    };
    println!("{who:<11} {mapping}");
    println!("            bound to {}", report.local.join(", "));
    for sighting in &report.sightings {
        println!("            seen as {} by {}", sighting.addr, sighting.by);
    }
}

pub async fn speed(global: &GlobalArgs, peer: &str, size: &str) -> Result<()> {
    let bytes = coop_store::parse_size(size)
        .with_context(|| format!("`{size}` is not a size (try 64MiB, 1G)"))?;
    let client = Client::new(global)?;
    let request = client.streaming(
        reqwest::Method::POST,
        &format!("/v1/peers/{}/speed?bytes={bytes}", urlencode(peer)),
    )?;
    let response = client.send_streaming(request).await?;
    let report: SpeedReport = response
        .json()
        .await
        .context("unexpected answer from the API")?;
    if global.json {
        return print_json(&report);
    }
    let kind = report
        .connection
        .map_or_else(|| "none".to_string(), |c| c.to_string());
    println!(
        "sent {} to {} in {:.2} s: {:.1} MiB/s over a {kind} path",
        human_bytes(report.bytes),
        report.peer.short(),
        report.seconds,
        report.mib_per_sec
    );
    Ok(())
}
