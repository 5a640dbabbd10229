//! `coop friend`: links with friend clouds that keep each other's
//! backups.

use anyhow::Result;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};

use coop_backup::{FriendInvite, FriendView};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, urlencode};

#[derive(Subcommand, Debug)]
pub enum FriendAction {
    /// Invite another cloud to keep its backups here
    ///
    /// Sets a bucket aside for it (friend-NAME, with the quota) and prints
    /// a single-use token, alone on stdout, for the friend's operator to
    /// give to `coop friend add`. The friend's peers then reach this
    /// cloud over the mesh (through NATs and relays) for that bucket and
    /// nothing else; they store only ciphertext.
    ///
    /// Example: coop friend invite alice --quota 500G --ttl 24h
    #[command(verbatim_doc_comment)]
    Invite {
        /// This cloud's name for the friend (1-63 of a-z, 0-9 and `-`)
        name: String,
        /// The most the friend may store here: 500G, 2T, 100MiB; no limit
        /// without it
        #[arg(long, value_name = "SIZE", value_parser = crate::storage_cli::parse_quota_bytes)]
        quota: Option<u64>,
        /// How long the token stays valid: 30m, 24h, 7d
        #[arg(long, default_value = "24h", value_parser = crate::parse_duration_secs)]
        ttl: u64,
    },
    /// Link a friend that keeps this cloud's backups, from its invite token
    ///
    /// Afterwards `coop backup create ... --to friend:NAME` sends backups
    /// there, from any peer of this cloud.
    Add {
        /// This cloud's name for the friend
        name: String,
        /// The token `coop friend invite` printed on the friend's cloud
        #[arg(value_name = "TOKEN")]
        invite: String,
    },
    /// List friends both ways: those keeping this cloud's backups
    /// (asked how much they hold) and those whose backups are kept here
    Ls,
    /// Cut a friend off, whichever way the link goes; buckets and
    /// repositories stay until removed
    Rm { name: String },
}

pub async fn run(global: &GlobalArgs, action: FriendAction) -> Result<()> {
    let client = Client::new(global)?;
    match action {
        FriendAction::Invite { name, quota, ttl } => {
            let body = json!({ "name": name, "quota": quota, "ttl_secs": ttl });
            let invite: FriendInvite = client
                .call(reqwest::Method::POST, "/v1/friends/invites", Some(body))
                .await?;
            if global.json {
                return print_json(&invite);
            }
            eprintln!(
                "bucket {} set aside for {} ({}); give this token to its operator, for `coop friend add`:",
                invite.bucket,
                invite.name,
                invite
                    .quota
                    .map_or("no quota".into(), |q| format!("quota {}", human_bytes(q)))
            );
            println!("{}", invite.token);
            Ok(())
        }
        FriendAction::Add { name, invite } => {
            let body = json!({ "name": name, "token": invite });
            let friend: FriendView = client
                .call(reqwest::Method::POST, "/v1/friends", Some(body))
                .await?;
            if global.json {
                return print_json(&friend);
            }
            println!(
                "friend {} linked: it keeps this cloud's backups in its bucket {}; back up there with --to friend:{}",
                friend.name, friend.bucket, friend.name
            );
            Ok(())
        }
        FriendAction::Ls => {
            let friends: Vec<FriendView> = client.get("/v1/friends").await?;
            if global.json {
                return print_json(&friends);
            }
            if friends.is_empty() {
                println!(
                    "no friends; invite one with `coop friend invite` or add one with `coop friend add`"
                );
                return Ok(());
            }
            let mut table = Table::new();
            table.load_style(UTF8_BORDERS_ONLY);
            table.set_header([
                "NAME",
                "KEEPS",
                "STATE",
                "BUCKET",
                "USED",
                "QUOTA",
                "LAST CONTACT",
            ]);
            for f in &friends {
                table.add_row([
                    f.name.clone(),
                    if f.role == "keeps-ours" {
                        "our backups".into()
                    } else {
                        "theirs here".to_string()
                    },
                    f.state.clone(),
                    f.bucket.clone(),
                    f.used_bytes.map_or("-".into(), human_bytes),
                    f.quota_bytes.map_or("-".into(), human_bytes),
                    f.last_contact_ms.map_or("-".into(), |ms| {
                        let now = coop_types::unix_now() * 1000;
                        format!("{} s ago", now.saturating_sub(ms) / 1000)
                    }),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        FriendAction::Rm { name } => {
            let path = format!("/v1/friends/{}", urlencode(&name));
            let removed: Value = client.call(reqwest::Method::DELETE, &path, None).await?;
            if global.json {
                return print_json(&removed);
            }
            println!("friend {name} cut off");
            Ok(())
        }
    }
}
