//! `coop s3 key`, `coop bucket` and `coop storage`: clients of the storage
//! endpoints of the REST API.

use anyhow::{Result, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};

use coop_types::{BucketView, GrantView, S3KeyCreated, S3KeyView, StorageView};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, output, print_json, short, urlencode};

fn table(header: Vec<&str>) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(header);
    table
}

pub async fn key_create(global: &GlobalArgs, name: &str, create_bucket: bool) -> Result<()> {
    let client = Client::new(global)?;
    let created: S3KeyCreated = client
        .call(
            reqwest::Method::POST,
            "/v1/s3/keys",
            Some(json!({ "name": name, "create_bucket": create_bucket })),
        )
        .await?;
    output(global, &created, |k| {
        format!(
            "access key id      {}\nsecret access key  {}\n(the secret is shown only now; grant the key a bucket with `coop bucket allow BUCKET --key {} --read --write`)",
            k.id, k.secret, k.id
        )
    })
}

pub async fn key_list(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let keys: Vec<S3KeyView> = client.get("/v1/s3/keys").await?;
    if global.json {
        return print_json(&keys);
    }
    let mut t = table(vec!["ACCESS KEY ID", "NAME", "CREATE BUCKETS", "CREATED"]);
    for k in &keys {
        t.add_row(vec![
            k.id.clone(),
            k.name.clone(),
            if k.create_bucket { "yes" } else { "no" }.to_string(),
            format!(
                "{} s ago",
                coop_types::unix_now().saturating_sub(k.created_at)
            ),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub async fn key_remove(global: &GlobalArgs, id: &str) -> Result<()> {
    let client = Client::new(global)?;
    let out: Value = client
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/s3/keys/{}", urlencode(id)),
            None,
        )
        .await?;
    output(global, &out, |_| format!("deleted S3 key {id}"))
}

/// A bucket quota as typed after `--quota`: an amount of bytes, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaArg(pub Option<u64>);

/// Parses `--quota`: `500G`, `10MiB`, `1T`, `1048576` (units are powers of
/// 1024, as for a container's `--disk`).
pub fn parse_quota_bytes(text: &str) -> Result<u64, String> {
    coop_compute::parse_bytes(text).map_err(|e| e.to_string())
}

/// Parses `--quota` of `coop bucket set`: an amount of bytes, or `none`.
pub fn parse_quota(text: &str) -> Result<QuotaArg, String> {
    if matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "none" | "unlimited"
    ) {
        return Ok(QuotaArg(None));
    }
    parse_quota_bytes(text)
        .map(|bytes| QuotaArg(Some(bytes)))
        .map_err(|e| format!("{e}; or `none` for no quota"))
}

/// How full a bucket is, for a table cell: `12.0 MiB of 500.0 MiB (2%)`.
fn quota_cell(usage: u64, quota: Option<u64>) -> String {
    match quota {
        None => "none".to_owned(),
        Some(0) => human_bytes(0),
        Some(quota) => format!(
            "{} ({}%)",
            human_bytes(quota),
            u128::from(usage) * 100 / u128::from(quota)
        ),
    }
}

pub async fn bucket_create(
    global: &GlobalArgs,
    name: &str,
    policy: Option<&str>,
    zone_spread: bool,
    owner: Option<&str>,
    quota: Option<u64>,
) -> Result<()> {
    let client = Client::new(global)?;
    let bucket: BucketView = client
        .call(
            reqwest::Method::POST,
            "/v1/buckets",
            Some(json!({
                "name": name,
                "policy": policy,
                "zone_spread": zone_spread,
                "owner": owner,
                "quota": quota,
            })),
        )
        .await?;
    output(global, &bucket, |b| {
        let quota = b
            .quota
            .map_or_else(String::new, |q| format!(", quota {}", human_bytes(q)));
        format!(
            "created bucket {} (policy {}, new objects stored as {}{quota})",
            b.name, b.policy, b.layout
        )
    })
}

pub async fn bucket_set(global: &GlobalArgs, name: &str, quota: QuotaArg) -> Result<()> {
    let client = Client::new(global)?;
    let bucket: BucketView = client
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/buckets/{}", urlencode(name)),
            Some(json!({ "quota": quota.0 })),
        )
        .await?;
    output(global, &bucket, |b| match b.quota {
        Some(q) => format!(
            "bucket {} may hold {}; it holds {}",
            b.name,
            human_bytes(q),
            human_bytes(b.usage)
        ),
        None => format!(
            "bucket {} has no quota; it holds {}",
            b.name,
            human_bytes(b.usage)
        ),
    })
}

fn rights(grant: &GrantView) -> String {
    let mut text = String::new();
    for (on, letter) in [(grant.read, 'r'), (grant.write, 'w'), (grant.owner, 'o')] {
        text.push(if on { letter } else { '-' });
    }
    text
}

pub async fn bucket_list(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let buckets: Vec<BucketView> = client.get("/v1/buckets").await?;
    if global.json {
        return print_json(&buckets);
    }
    let mut t = table(vec![
        "NAME",
        "POLICY",
        "LAYOUT NOW",
        "OBJECTS",
        "USED",
        "QUOTA",
        "KEYS",
    ]);
    for b in &buckets {
        let keys: Vec<String> = b
            .grants
            .iter()
            .map(|(k, g)| format!("{k}:{}", rights(g)))
            .collect();
        t.add_row(vec![
            b.name.clone(),
            b.policy.clone(),
            b.layout.clone(),
            b.objects.to_string(),
            human_bytes(b.usage),
            quota_cell(b.usage, b.quota),
            keys.join(" "),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub async fn bucket_remove(global: &GlobalArgs, name: &str) -> Result<()> {
    let client = Client::new(global)?;
    let out: Value = client
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/buckets/{}", urlencode(name)),
            None,
        )
        .await?;
    output(global, &out, |_| format!("deleted bucket {name}"))
}

pub async fn bucket_grant(
    global: &GlobalArgs,
    name: &str,
    key: &str,
    grant: GrantView,
) -> Result<()> {
    let client = Client::new(global)?;
    let bucket: BucketView = client
        .call(
            reqwest::Method::PUT,
            &format!("/v1/buckets/{}/grants/{}", urlencode(name), urlencode(key)),
            Some(serde_json::to_value(grant)?),
        )
        .await?;
    output(global, &bucket, |b| match b.grants.get(key) {
        Some(g) => format!("key {key} now has {} on bucket {}", rights(g), b.name),
        None => format!("key {key} has no rights on bucket {} any more", b.name),
    })
}

/// `coop bucket allow` needs at least one right to give.
pub fn check_allow(grant: &GrantView) -> Result<()> {
    if !(grant.read || grant.write || grant.owner) {
        bail!(
            "give at least one of --read, --write and --owner (to take rights away, use `coop bucket deny`)"
        );
    }
    Ok(())
}

pub async fn storage_status(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let view: StorageView = client.get("/v1/storage").await?;
    if global.json {
        return print_json(&view);
    }
    println!(
        "default layout  {} ({} failure domains)",
        view.default_layout, view.domains
    );
    if let Some(warning) = &view.warning {
        println!("WARNING         {warning}");
    }
    println!(
        "data            {} buckets, {} objects, {}",
        view.buckets,
        view.objects,
        human_bytes(view.bytes)
    );
    let health = |h: &coop_types::BlockHealth| {
        format!(
            "{} healthy, {} degraded, {} unavailable, {} lost",
            h.healthy, h.degraded, h.unavailable, h.lost
        )
    };
    println!("objects         {}", health(&view.object_health));
    println!("blocks          {}", health(&view.blocks));
    println!(
        "repair          {} blocks pending on this peer ({} passes, {} shards rebuilt, {} moved, {} rebalanced)",
        view.repair_pending,
        view.counters.get("repair_passes").copied().unwrap_or(0),
        view.counters.get("rebuilt_shards").copied().unwrap_or(0),
        view.counters.get("moved_shards").copied().unwrap_or(0),
        view.counters.get("rebalanced_shards").copied().unwrap_or(0),
    );
    let counters: Vec<String> = view
        .counters
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("this peer       {}", counters.join(", "));
    let mut t = table(vec![
        "PEER", "DISK", "PATH", "STATE", "USED", "FREE", "CAPACITY",
    ]);
    for d in &view.disks {
        t.add_row(vec![
            format!("{} ({})", d.peer_name, short(&d.peer)),
            d.id.clone(),
            d.path.clone(),
            d.state.clone(),
            human_bytes(d.used_bytes),
            human_bytes(d.free_bytes),
            human_bytes(d.total_bytes),
        ]);
    }
    println!("{t}");
    Ok(())
}
