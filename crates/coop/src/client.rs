//! The client subcommands: thin wrappers over the REST API that print
//! tables for people and JSON for scripts.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use coop_api::{BrandView, InviteCreated, RevokeResult, StatusView, TokenCreated, TokenView};
use coop_types::PeerView;

use crate::GlobalArgs;
use coop_node::{DataDir, default_data_dir};

/// A client request should not hang a script; writes wait up to 10 s for
/// the control plane, so allow a little more.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(global: &GlobalArgs) -> Result<Self> {
        let dir = DataDir::new(global.data_dir.clone().unwrap_or_else(default_data_dir));
        let base = match &global.api {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
            Some(addr) => format!("http://{addr}"),
            None => dir.api_info()?.url,
        };
        let token = match &global.token {
            Some(t) => t.clone(),
            None => dir.read_token()?,
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|err| {
            if err.is_connect() {
                anyhow!(
                    "cannot reach the coop API at {}: is `coop up` running?",
                    self.base
                )
            } else if err.is_timeout() {
                anyhow!("the coop API at {} did not answer in time", self.base)
            } else {
                anyhow!("request to {url} failed: {err}")
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.context("cannot read the API response")?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or(text);
            bail!("{message} (HTTP {})", status.as_u16());
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected API response: {text}"))
    }

    /// A request without the overall timeout, for streams that last as
    /// long as they must (uploads, `logs -f`, exec); only connecting is bounded.
    pub(crate) fn streaming(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token))
    }

    /// Sends a streaming request; a non-2xx answer becomes its message.
    pub(crate) async fn send_streaming(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = request.send().await.map_err(|err| {
            if err.is_connect() {
                anyhow!(
                    "cannot reach the coop API at {}: is `coop up` running?",
                    self.base
                )
            } else {
                anyhow!("request to {} failed: {err}", self.base)
            }
        })?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .unwrap_or(text);
        bail!("{message} (HTTP {})", status.as_u16());
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as JSON with `--json`, else the one line `human` makes.
pub(crate) fn output<T: Serialize>(
    global: &GlobalArgs,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<()> {
    if global.json {
        print_json(value)
    } else {
        println!("{}", human(value));
        Ok(())
    }
}

pub(crate) use coop_types::human_bytes;

pub async fn invite(global: &GlobalArgs, ttl: u64) -> Result<()> {
    let client = Client::new(global)?;
    let created: InviteCreated = client
        .call(
            reqwest::Method::POST,
            "/v1/invites",
            Some(json!({ "ttl_secs": ttl })),
        )
        .await?;
    output(global, &created, |created| created.token.clone())
}

pub async fn peers(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let peers: Vec<PeerView> = client.get("/v1/peers").await?;
    if global.json {
        return print_json(&peers);
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "NAME",
        "ID",
        "ZONE",
        "STATE",
        "CONNECTION",
        "RTT",
        "STEWARD",
        "CPUS",
        "MEMORY",
        "DISK FREE",
    ]);
    for p in &peers {
        let steward = match (p.steward, p.leader) {
            (_, true) => "leader",
            (true, false) => "yes",
            _ => "",
        };
        table.add_row(vec![
            p.name.clone(),
            p.id.short(),
            p.zone.clone(),
            p.state.to_string(),
            p.connection.to_string(),
            p.rtt_ms.map(|r| format!("{r:.1} ms")).unwrap_or_default(),
            steward.to_string(),
            p.cpus.to_string(),
            human_bytes(p.memory_bytes),
            human_bytes(p.disk_free_bytes),
        ]);
    }
    println!("{table}");
    Ok(())
}

pub async fn status(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let s: StatusView = client.get("/v1/status").await?;
    if global.json {
        return print_json(&s);
    }
    // The cloud's brand heads the report (`coop config set brand.name`).
    let brand = client
        .get::<BrandView>("/v1/brand")
        .await
        .map(|b| b.name)
        .unwrap_or_else(|_| "coop".into());
    println!("{brand}: {}", s.cloud.name);
    let leader = s.cloud.leader.as_deref().map(short).unwrap_or("none");
    println!(
        "peer     {} ({}) zone {}",
        s.peer.name, s.peer.id, s.peer.zone
    );
    println!("cloud    {} {}", s.cloud.id, s.cloud.name);
    println!("peers    {} up of {}", s.cloud.peers_up, s.cloud.peers);
    println!(
        "stewards {} ({})",
        s.cloud.stewards.len(),
        s.cloud
            .stewards
            .iter()
            .map(|id| short(id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("leader   {leader}   term {}", s.cloud.term);
    println!("health   {}", s.health);
    for problem in &s.problems {
        println!("  - {problem}");
    }
    Ok(())
}

pub async fn events(global: &GlobalArgs, since: &str) -> Result<()> {
    let since = crate::since::parse_since(since).map_err(anyhow::Error::msg)?;
    let client = Client::new(global)?;
    let events: Vec<coop_api::events::EventView> =
        client.get(&format!("/v1/events?since={since}")).await?;
    if global.json {
        return print_json(&events);
    }
    if events.is_empty() {
        println!("nothing happened since then");
        return Ok(());
    }
    let now = coop_types::unix_now();
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec!["WHEN", "WHAT", "ABOUT", "MESSAGE"]);
    for e in &events {
        table.add_row(vec![
            format!("{} s ago", now.saturating_sub(e.at)),
            e.kind.clone(),
            e.subject.clone(),
            e.message.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

pub(crate) fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

pub async fn revoke(global: &GlobalArgs, peer: &str) -> Result<()> {
    let client = Client::new(global)?;
    let path = format!("/v1/peers/{}/revoke", urlencode(peer));
    let result: RevokeResult = client.call(reqwest::Method::POST, &path, None).await?;
    output(global, &result, |result| {
        format!("revoked {} ({})", result.name, result.id)
    })
}

/// The console URL with the token in the fragment, which browsers never
/// send to the server, so it stays out of logs.
pub fn console(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let url = format!("{}/#token={}", client.base, client.token);
    output(global, &json!({ "url": url }), |_| url.clone())
}

pub async fn token_create(global: &GlobalArgs, user: &str) -> Result<()> {
    let client = Client::new(global)?;
    let created: TokenCreated = client
        .call(
            reqwest::Method::POST,
            "/v1/tokens",
            Some(json!({ "user": user })),
        )
        .await?;
    output(global, &created, |created| created.token.clone())
}

pub async fn token_list(global: &GlobalArgs) -> Result<()> {
    let client = Client::new(global)?;
    let tokens: Vec<TokenView> = client.get("/v1/tokens").await?;
    if global.json {
        return print_json(&tokens);
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec!["ID", "USER", "CREATED BY", "CREATED"]);
    for t in &tokens {
        table.add_row(vec![
            t.id.clone(),
            t.user.clone(),
            short(&t.created_by).to_string(),
            format!(
                "{} s ago",
                coop_types::unix_now().saturating_sub(t.created_at)
            ),
        ]);
    }
    println!("{table}");
    Ok(())
}

pub async fn token_revoke(global: &GlobalArgs, id: &str) -> Result<()> {
    let client = Client::new(global)?;
    let path = format!("/v1/tokens/{}", urlencode(id));
    let revoked: TokenView = client.call(reqwest::Method::DELETE, &path, None).await?;
    output(global, &revoked, |revoked| {
        format!("revoked token {} of user {}", revoked.id, revoked.user)
    })
}

pub async fn config_get(global: &GlobalArgs, key: Option<&str>) -> Result<()> {
    let client = Client::new(global)?;
    let all: std::collections::BTreeMap<String, String> = client.get("/v1/config").await?;
    match key {
        Some(key) => {
            let value = all.get(key).ok_or_else(|| anyhow!("no setting `{key}`"))?;
            if global.json {
                print_json(&json!({ key: value }))
            } else {
                println!("{value}");
                Ok(())
            }
        }
        None if global.json => print_json(&all),
        None => {
            for (k, v) in &all {
                println!("{k} = {v}");
            }
            Ok(())
        }
    }
}

pub async fn config_set(global: &GlobalArgs, key: &str, value: &str) -> Result<()> {
    let client = Client::new(global)?;
    let path = format!("/v1/config/{}", urlencode(key));
    let result: Value = client
        .call(reqwest::Method::PUT, &path, Some(json!({ "value": value })))
        .await?;
    output(global, &result, |_| format!("{key} = {value}"))
}

pub async fn config_unset(global: &GlobalArgs, key: &str) -> Result<()> {
    let client = Client::new(global)?;
    let path = format!("/v1/config/{}", urlencode(key));
    let result: Value = client.call(reqwest::Method::DELETE, &path, None).await?;
    output(global, &result, |_| format!("removed {key}"))
}

/// Percent-encodes a path segment (names and keys are plain, but a user
/// may type anything).
pub(crate) fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
