//! Resolving a spec's `user` (`name`, `uid`, `uid:gid`, `name:group`)
//! against the template's `/etc/passwd` and `/etc/group`.

use std::fs;
use std::path::Path;

use crate::runtime::spec::SpecError;

/// The uid and gid `user` names in the rootfs at `rootfs`; root when `None`.
pub(crate) fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<(u32, u32), SpecError> {
    let Some(user) = user else {
        return Ok((0, 0));
    };
    let bad = |reason: &str| SpecError::BadUser {
        user: user.to_string(),
        reason: reason.to_string(),
    };
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => (
            uid,
            lookup(&passwd, |f| f.get(2) == Some(&name)).and_then(|f| f.get(3)?.parse().ok()),
        ),
        Err(_) => {
            let fields = lookup(&passwd, |f| f.first() == Some(&name))
                .ok_or_else(|| bad("no such user in the template's /etc/passwd"))?;
            let uid = fields.get(2).and_then(|u| u.parse().ok());
            let gid = fields.get(3).and_then(|g| g.parse().ok());
            (
                uid.ok_or_else(|| bad("its /etc/passwd entry has no valid uid"))?,
                gid,
            )
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                lookup(&groups, |f| f.first() == Some(&g))
                    .and_then(|f| f.get(2)?.parse().ok())
                    .ok_or_else(|| bad("no such group in the template's /etc/group"))?
            }
        },
    };
    Ok((uid, gid))
}

fn lookup(text: &str, matches: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| matches(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_and_number() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = dir.path();
        assert_eq!(resolve_user(r, None).unwrap(), (0, 0));
        assert_eq!(resolve_user(r, Some("www")).unwrap(), (33, 34));
        assert_eq!(resolve_user(r, Some("33")).unwrap(), (33, 34));
        assert_eq!(resolve_user(r, Some("1000")).unwrap(), (1000, 1000));
        assert_eq!(resolve_user(r, Some("www:staff")).unwrap(), (33, 50));
        assert_eq!(resolve_user(r, Some("1:2")).unwrap(), (1, 2));
        assert!(matches!(
            resolve_user(r, Some("nobody")),
            Err(SpecError::BadUser { .. })
        ));
        assert!(resolve_user(r, Some("www:nogroup")).is_err());
    }
}
