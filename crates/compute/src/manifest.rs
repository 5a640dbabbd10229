//! A template's metadata: what `template.toml` says about a rootfs.
//!
//! The file sits at the root of an imported rootfs (it is taken out of the
//! rootfs on import) and describes how to run it:
//!
//! ```toml
//! description = "Alpine with a small web server"
//! arch = "amd64"
//! entrypoint = ["/bin/busybox", "httpd", "-f"]
//! default_size = "tiny"
//! workdir = "/srv"
//!
//! [env]
//! PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
//! ```
//!
//! Parsing is strict: an unknown key is an error (a typo must not be
//! silently ignored). Every field has a default, so an absent file or an
//! empty one describes a shell on the host's architecture.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::size::Size;

/// The largest `template.toml` accepted; real ones are a few hundred bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Longest description kept, in characters; a listing shows one line of it.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Architectures coop knows, in the Go/OCI spelling.
const ARCHES: [&str; 8] = [
    "amd64", "arm64", "arm", "386", "riscv64", "ppc64le", "s390x", "loong64",
];

/// How to run a template's rootfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateManifest {
    /// One or a few lines for humans; empty when not given.
    #[serde(default)]
    pub description: String,
    /// CPU architecture of the binaries in the rootfs, in the OCI spelling
    /// (`amd64`, `arm64`, ...). Defaults to the importing peer's.
    #[serde(default = "host_arch")]
    pub arch: String,
    /// The command a container runs, argv style. Defaults to `["/bin/sh"]`.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: Vec<String>,
    /// The size used when a container does not name one.
    #[serde(default)]
    pub default_size: Size,
    /// Environment variables set in the container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the entrypoint (absolute); `/` when not given.
    #[serde(default)]
    pub workdir: Option<String>,
    /// User to run the entrypoint as (`name`, `uid` or `uid:gid`); root when not given.
    #[serde(default)]
    pub user: Option<String>,
}

/// A `template.toml` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("template.toml is not valid: {0}")]
    Syntax(String),
    #[error("template.toml is {0} bytes; at most {MAX_MANIFEST_BYTES} are accepted")]
    TooLarge(usize),
    #[error("template.toml is not UTF-8 text")]
    NotUtf8,
    #[error("template.toml: {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The architecture of this peer in the OCI spelling (`x86_64` is `amd64`).
pub fn host_arch() -> String {
    normalize_arch(std::env::consts::ARCH)
}

/// Maps common aliases (`x86_64`, `aarch64`, `i686`) to the OCI spelling;
/// other names are returned lowercased and unchanged.
pub fn normalize_arch(arch: &str) -> String {
    let lower = arch.trim().to_ascii_lowercase();
    match lower.as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" | "i686" | "x86" => "386".into(),
        "armv7" | "armv7l" | "armhf" => "arm".into(),
        "powerpc64le" => "ppc64le".into(),
        "loongarch64" => "loong64".into(),
        _ => lower,
    }
}

fn default_entrypoint() -> Vec<String> {
    vec!["/bin/sh".to_string()]
}

impl Default for TemplateManifest {
    /// What a rootfs without `template.toml` gets: a shell on the host's architecture.
    fn default() -> Self {
        TemplateManifest {
            description: String::new(),
            arch: host_arch(),
            entrypoint: default_entrypoint(),
            default_size: Size::default(),
            env: BTreeMap::new(),
            workdir: None,
            user: None,
        }
    }
}

impl TemplateManifest {
    /// Parses and validates the bytes of a `template.toml`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        let mut manifest: TemplateManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        manifest.arch = normalize_arch(&manifest.arch);
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every field; used on parse and again on anything received from a peer.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid(
                "description",
                format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid("description", "contains control characters"));
        }
        if !ARCHES.contains(&self.arch.as_str()) {
            return Err(invalid(
                "arch",
                format!("`{}` is not one of {}", self.arch, ARCHES.join(", ")),
            ));
        }
        match self.entrypoint.first() {
            None => return Err(invalid("entrypoint", "is empty; name a program to run")),
            Some(program) if program.trim().is_empty() => {
                return Err(invalid(
                    "entrypoint",
                    "the program (first element) is empty",
                ));
            }
            Some(_) => {}
        }
        if self.entrypoint.iter().any(|arg| arg.contains('\0')) {
            return Err(invalid("entrypoint", "an argument contains a NUL byte"));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(
                    "env",
                    format!("`{key}` is not a variable name (empty, or has `=` or NUL)"),
                ));
            }
            if value.contains('\0') {
                return Err(invalid("env", format!("the value of `{key}` contains NUL")));
            }
        }
        if let Some(dir) = &self.workdir
            && (!dir.starts_with('/') || dir.contains('\0'))
        {
            return Err(invalid(
                "workdir",
                format!("`{dir}` must be an absolute path"),
            ));
        }
        if let Some(user) = &self.user
            && (user.is_empty() || user.contains('\0') || user.chars().any(char::is_whitespace))
        {
            return Err(invalid(
                "user",
                format!("`{user}` must be a name, uid or uid:gid"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest_parses() {
        let m = TemplateManifest::parse(
            br#"
description = "web"
arch = "x86_64"
entrypoint = ["/bin/busybox", "httpd", "-f"]
default_size = "tiny"
workdir = "/srv"
user = "1000:1000"
[env]
PATH = "/bin"
"#,
        )
        .unwrap();
        assert_eq!(m.description, "web");
        assert_eq!(m.arch, "amd64");
        assert_eq!(m.entrypoint, ["/bin/busybox", "httpd", "-f"]);
        assert_eq!(m.default_size, Size::Tiny);
        assert_eq!(m.env.get("PATH").map(String::as_str), Some("/bin"));
        assert_eq!(m.workdir.as_deref(), Some("/srv"));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let m = TemplateManifest::parse(b"").unwrap();
        assert_eq!(m, TemplateManifest::default());
        assert_eq!(m.entrypoint, ["/bin/sh"]);
        assert_eq!(m.arch, host_arch());
        assert!(ARCHES.contains(&host_arch().as_str()));
    }

    #[test]
    fn errors_are_clear() {
        let unknown = TemplateManifest::parse(b"entry_point = [\"/bin/sh\"]").unwrap_err();
        assert!(matches!(unknown, ManifestError::Syntax(_)));
        assert!(unknown.to_string().contains("entry_point"), "{unknown}");

        let size = TemplateManifest::parse(b"default_size = \"giant\"").unwrap_err();
        assert!(size.to_string().contains("giant"), "{size}");

        let arch = TemplateManifest::parse(b"arch = \"vax\"").unwrap_err();
        assert!(
            matches!(arch, ManifestError::Invalid { field: "arch", .. }),
            "{arch}"
        );
        assert!(arch.to_string().contains("vax"), "{arch}");

        let empty = TemplateManifest::parse(b"entrypoint = []").unwrap_err();
        assert!(matches!(
            empty,
            ManifestError::Invalid {
                field: "entrypoint",
                ..
            }
        ));

        let env = TemplateManifest::parse(b"[env]\n\"A=B\" = \"x\"").unwrap_err();
        assert!(matches!(env, ManifestError::Invalid { field: "env", .. }));

        let workdir = TemplateManifest::parse(b"workdir = \"srv\"").unwrap_err();
        assert!(matches!(
            workdir,
            ManifestError::Invalid {
                field: "workdir",
                ..
            }
        ));

        let wrong_type = TemplateManifest::parse(b"entrypoint = \"/bin/sh\"").unwrap_err();
        assert!(matches!(wrong_type, ManifestError::Syntax(_)));

        assert_eq!(
            TemplateManifest::parse(&[0xff, 0xfe]).unwrap_err(),
            ManifestError::NotUtf8
        );
        let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            TemplateManifest::parse(&big),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
