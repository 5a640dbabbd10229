//! `coop template`: import a rootfs or OCI archive (streamed to the
//! agent, never held in memory), list, show and remove templates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use coop_api::compute::TemplateView;

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, short, urlencode};

#[derive(Subcommand, Debug)]
pub enum TemplateAction {
    /// Import a rootfs: a directory, or a tar / tar.gz / tar.zst of one
    /// (with an optional template.toml at its root)
    #[command(disable_version_flag = true)]
    Import {
        /// 1-63 lowercase letters, digits and `-`
        name: String,
        /// The rootfs directory or archive
        path: PathBuf,
        /// Version [default: latest]
        #[arg(long)]
        version: Option<String>,
    },
    /// Import an OCI image archive (`docker save` or an OCI layout tar),
    /// flattening its layers
    #[command(disable_version_flag = true)]
    ImportOci {
        /// 1-63 lowercase letters, digits and `-`
        name: String,
        /// The image archive
        archive: PathBuf,
        /// Version [default: latest]
        #[arg(long)]
        version: Option<String>,
    },
    /// List templates
    Ls,
    /// Show a template's versions, manifest and signature check
    #[command(disable_version_flag = true)]
    Show {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Remove a template version (refused while a container uses it)
    #[command(disable_version_flag = true)]
    Rm {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
}

pub async fn run(global: &GlobalArgs, action: TemplateAction) -> Result<()> {
    match action {
        TemplateAction::Import {
            name,
            path,
            version,
        } => import(global, &name, &path, version.as_deref(), false).await,
        TemplateAction::ImportOci {
            name,
            archive,
            version,
        } => import(global, &name, &archive, version.as_deref(), true).await,
        TemplateAction::Ls => {
            let client = Client::new(global)?;
            let templates: Vec<TemplateView> = client.get("/v1/templates").await?;
            print_templates(global, &templates)
        }
        TemplateAction::Show { name, version } => {
            let client = Client::new(global)?;
            let path = match &version {
                Some(v) => format!(
                    "/v1/templates/{}?version={}",
                    urlencode(&name),
                    urlencode(v)
                ),
                None => format!("/v1/templates/{}", urlencode(&name)),
            };
            let templates: Vec<TemplateView> = client.get(&path).await?;
            if global.json {
                return print_json(&templates);
            }
            for (i, t) in templates.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_template(t);
            }
            Ok(())
        }
        TemplateAction::Rm { name, version } => {
            let client = Client::new(global)?;
            let path = match &version {
                Some(v) => format!(
                    "/v1/templates/{}?version={}",
                    urlencode(&name),
                    urlencode(v)
                ),
                None => format!("/v1/templates/{}", urlencode(&name)),
            };
            let removed: TemplateView = client.call(reqwest::Method::DELETE, &path, None).await?;
            if global.json {
                return print_json(&removed);
            }
            println!("removed template {}:{}", removed.name, removed.version);
            Ok(())
        }
    }
}

fn print_templates(global: &GlobalArgs, templates: &[TemplateView]) -> Result<()> {
    if global.json {
        return print_json(&templates);
    }
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "NAME",
        "VERSION",
        "CONTENT",
        "SIZE",
        "ARCH",
        "IMPORTED BY",
        "VERIFIED",
    ]);
    for v in templates {
        t.add_row(vec![
            v.name.clone(),
            v.version.clone(),
            v.content_id.chars().take(12).collect(),
            human_bytes(v.size_bytes),
            v.arch.clone(),
            short(&v.imported_by).to_string(),
            if v.verified { "yes" } else { "NO" }.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn print_template(t: &TemplateView) {
    println!("template     {}:{}", t.name, t.version);
    println!("content id   {}", t.content_id);
    println!("size         {}", human_bytes(t.size_bytes));
    println!("arch         {}", t.arch);
    println!("entrypoint   {}", t.entrypoint.join(" "));
    println!("default size {}", t.default_size);
    if !t.description.is_empty() {
        println!("description  {}", t.description);
    }
    println!("imported by  {} at {}", t.imported_by, t.imported_at);
    match &t.error {
        None => println!("signature    verified"),
        Some(err) => println!("signature    NOT VERIFIED: {err}"),
    }
}

async fn import(
    global: &GlobalArgs,
    name: &str,
    path: &Path,
    version: Option<&str>,
    oci: bool,
) -> Result<()> {
    if !path.exists() {
        bail!(
            "{} does not exist: give a rootfs directory or an archive",
            path.display()
        );
    }
    if oci && path.is_dir() {
        bail!(
            "{} is a directory: import-oci takes an image archive (docker save or OCI layout tar)",
            path.display()
        );
    }
    std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let client = Client::new(global)?;
    let mut query = format!("/v1/templates?name={}", urlencode(name));
    if let Some(v) = version {
        query.push_str(&format!("&version={}", urlencode(v)));
    }
    if oci {
        query.push_str("&kind=oci");
    }
    let (body, progress) = crate::upload::file_body(path, name);
    let request = client
        .streaming(reqwest::Method::POST, &query)?
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    let result = client.send_streaming(request).await;
    if let Ok(p) = progress.lock() {
        p.finish();
    }
    let view: TemplateView = result?
        .json()
        .await
        .context("unexpected answer to the import")?;
    if global.json {
        return print_json(&view);
    }
    println!(
        "imported template {}:{} ({}, content {})",
        view.name,
        view.version,
        human_bytes(view.size_bytes),
        view.content_id.chars().take(12).collect::<String>()
    );
    Ok(())
}
