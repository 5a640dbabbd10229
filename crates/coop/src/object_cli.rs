//! `coop object`: a bucket's objects through the API (what the console's
//! object browser does), for people without an S3 client at hand. Scripts
//! that speak S3 keep using it; these share its records and blocks.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use futures::StreamExt;

use coop_api::objects::{ObjectListView, ObjectView};

use crate::GlobalArgs;
use crate::client::{Client, human_bytes, print_json, urlencode};
use crate::upload::{Progress, file_body};

#[derive(Subcommand, Debug)]
pub enum ObjectAction {
    /// List a bucket's objects one folder at a time
    ///
    /// `BUCKET` lists the top: the keys without `/` and the "folders" (the
    /// first part of each key up to and including `/`). `BUCKET/photos/`
    /// lists inside the folder `photos/`. Any other prefix lists the keys
    /// and folders that start with it. Every page is followed.
    #[command(verbatim_doc_comment)]
    Ls {
        /// BUCKET or BUCKET/PREFIX
        #[arg(value_name = "BUCKET[/PREFIX]")]
        target: String,
    },
    /// Upload a file as an object (at most 5 GiB; S3's multipart upload
    /// takes more), with a progress line on large files
    Put {
        /// BUCKET/KEY; a KEY ending in `/` takes the file's name after it
        #[arg(value_name = "BUCKET/KEY")]
        target: String,
        /// The file to upload
        file: PathBuf,
        /// The object's Content-Type (shown by browsers on download)
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Download an object to a file, or to stdout when FILE is `-` or
    /// absent and stdout is not a terminal
    Get {
        #[arg(value_name = "BUCKET/KEY")]
        target: String,
        /// Where to write it; an existing directory gets the key's last part
        file: Option<PathBuf>,
    },
    /// Delete an object
    Rm {
        #[arg(value_name = "BUCKET/KEY")]
        target: String,
    },
}

pub async fn run(global: &GlobalArgs, action: ObjectAction) -> Result<()> {
    match action {
        ObjectAction::Ls { target } => list(global, &target).await,
        ObjectAction::Put {
            target,
            file,
            content_type,
        } => put(global, &target, &file, content_type.as_deref()).await,
        ObjectAction::Get { target, file } => get(global, &target, file.as_deref()).await,
        ObjectAction::Rm { target } => remove(global, &target).await,
    }
}

/// `BUCKET/REST` split at the first `/`; REST may be empty.
fn split(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

/// `BUCKET/KEY` with a key that is not empty.
fn bucket_and_key(target: &str) -> Result<(&str, &str)> {
    match split(target) {
        (bucket, key) if !bucket.is_empty() && !key.is_empty() => Ok((bucket, key)),
        _ => bail!("`{target}` names no object: give BUCKET/KEY, e.g. photos/2026/beach.jpg"),
    }
}

/// The API path of an object; each part of the key is escaped, its `/`
/// kept.
fn object_path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(urlencode).collect();
    format!(
        "/v1/buckets/{}/objects/{}",
        urlencode(bucket),
        key.join("/")
    )
}

async fn list(global: &GlobalArgs, target: &str) -> Result<()> {
    let (bucket, prefix) = split(target);
    if bucket.is_empty() {
        bail!("give a bucket to list: BUCKET or BUCKET/PREFIX");
    }
    let client = Client::new(global)?;
    let mut all = ObjectListView {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        folders: Vec::new(),
        objects: Vec::new(),
        next: None,
    };
    let mut after: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/buckets/{}/objects?prefix={}",
            urlencode(bucket),
            urlencode(prefix)
        );
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", urlencode(after)));
        }
        let page: ObjectListView = client.get(&path).await?;
        all.folders.extend(page.folders);
        all.objects.extend(page.objects);
        match page.next {
            Some(next) if after.as_ref() != Some(&next) => after = Some(next),
            _ => break,
        }
    }
    if global.json {
        return print_json(&all);
    }
    if all.folders.is_empty() && all.objects.is_empty() {
        println!("no objects under {bucket}/{prefix}");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    t.set_header(vec!["KEY", "SIZE", "MODIFIED", "TYPE"]);
    for folder in &all.folders {
        t.add_row(vec![
            folder.clone(),
            "folder".into(),
            String::new(),
            String::new(),
        ]);
    }
    for object in &all.objects {
        t.add_row(vec![
            object.key.clone(),
            human_bytes(object.size),
            crate::since::rfc3339(object.modified_ms / 1000),
            object.content_type.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn put(
    global: &GlobalArgs,
    target: &str,
    file: &Path,
    content_type: Option<&str>,
) -> Result<()> {
    let (bucket, key) = bucket_and_key(target)?;
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    let key = if key.ends_with('/') {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file's name is not UTF-8: give the whole key")?;
        format!("{key}{name}")
    } else {
        key.to_owned()
    };
    let client = Client::new(global)?;
    let (body, progress) = file_body(file, &key);
    let request = client
        .streaming(reqwest::Method::PUT, &object_path(bucket, &key))?
        .header(
            reqwest::header::CONTENT_TYPE,
            content_type.unwrap_or("application/octet-stream"),
        )
        .header(reqwest::header::CONTENT_LENGTH, meta.len())
        .body(body);
    let result = client.send_streaming(request).await;
    if let Ok(p) = progress.lock() {
        p.finish();
    }
    let view: ObjectView = result?
        .json()
        .await
        .context("unexpected answer to the upload")?;
    if global.json {
        return print_json(&view);
    }
    println!(
        "uploaded {bucket}/{} ({}, etag {})",
        view.key,
        human_bytes(view.size),
        view.etag
    );
    Ok(())
}

async fn get(global: &GlobalArgs, target: &str, file: Option<&Path>) -> Result<()> {
    let (bucket, key) = bucket_and_key(target)?;
    let to_stdout = file.is_none_or(|f| f == Path::new("-"));
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("give a FILE to write {target} to (or `-` and a pipe): stdout is a terminal");
    }
    let out_path = file.filter(|_| !to_stdout).map(|f| {
        if f.is_dir() {
            f.join(key.rsplit('/').next().unwrap_or(key))
        } else {
            f.to_path_buf()
        }
    });
    let client = Client::new(global)?;
    let request = client.streaming(reqwest::Method::GET, &object_path(bucket, key))?;
    let response = client.send_streaming(request).await?;
    let total = response.content_length();
    // Written next to the target and renamed at the end, so an interrupted
    // download never leaves a partial file under the wanted name.
    let (mut out, partial): (Box<dyn Write>, Option<PathBuf>) = match &out_path {
        Some(path) => {
            let mut partial = path.clone().into_os_string();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            (Box::new(std::io::BufWriter::new(file)), Some(partial))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let mut progress = Progress::new("downloading", key, total);
    let mut stream = response.bytes_stream();
    let mut written = 0u64;
    let outcome: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("the download broke off")?;
            out.write_all(&chunk).context("cannot write the download")?;
            written += chunk.len() as u64;
            progress.add(chunk.len());
        }
        out.flush().context("cannot write the download")?;
        if let Some(total) = total
            && written != total
        {
            bail!("the download ended after {written} of {total} bytes");
        }
        Ok(())
    }
    .await;
    progress.finish();
    drop(out);
    if let Err(err) = outcome {
        if let Some(partial) = &partial {
            let _ = std::fs::remove_file(partial);
        }
        return Err(err);
    }
    if let (Some(partial), Some(path)) = (partial, &out_path) {
        std::fs::rename(&partial, path)
            .with_context(|| format!("cannot move the download to {}", path.display()))?;
        if global.json {
            return print_json(&serde_json::json!({
                "bucket": bucket,
                "key": key,
                "size": written,
                "file": path.display().to_string(),
            }));
        }
        println!(
            "downloaded {bucket}/{key} to {} ({})",
            path.display(),
            human_bytes(written)
        );
    }
    Ok(())
}

async fn remove(global: &GlobalArgs, target: &str) -> Result<()> {
    let (bucket, key) = bucket_and_key(target)?;
    let client = Client::new(global)?;
    let view: ObjectView = client
        .call(reqwest::Method::DELETE, &object_path(bucket, key), None)
        .await?;
    if global.json {
        return print_json(&view);
    }
    println!("deleted {bucket}/{}", view.key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_first_slash() {
        assert_eq!(split("photos"), ("photos", ""));
        assert_eq!(split("photos/2026/a.jpg"), ("photos", "2026/a.jpg"));
        assert!(bucket_and_key("photos").is_err());
        assert!(bucket_and_key("photos/").is_err());
        assert!(bucket_and_key("/key").is_err());
        assert_eq!(
            object_path("photos", "2026/a b?.jpg"),
            "/v1/buckets/photos/objects/2026/a%20b%3F.jpg"
        );
    }
}
