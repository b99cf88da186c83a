//! User and group resolution against a stage root's `/etc/passwd` and `/etc/group`: the
//! identity RUN runs as (`resolve-user`) and the owner `COPY --chown` / WORKDIR apply.
//! Reads the files through [`Files`]; parsing is plain string work.

use crate::error::{Error, Result};
use crate::files::{fs_err, Files, Owner, RootId};

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";
/// Upper bound on how much of a passwd or group file is read.
const MAX_DB_BYTES: u64 = 8 << 20;

/// Who a USER value stands for, as RUN needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// supplementary groups: every /etc/group entry listing the user as a member
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first().copied().filter(|n| !n.is_empty())?,
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).copied().unwrap_or(""),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first().copied().filter(|n| !n.is_empty())?,
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The text of a database file, `None` when it does not exist.
fn read_db(files: &dyn Files, stage: RootId, p: &str) -> Result<Option<String>> {
    match files.read_file(stage, p, MAX_DB_BYTES) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(fs_err("reading", p)(e)),
    }
}

/// Looking up a name needs its database; a missing file is an error naming it.
fn require<'a>(
    db: Option<&'a str>,
    path: &'static str,
    what: &'static str,
    name: &str,
) -> Result<&'a str> {
    db.ok_or_else(|| Error::NoDatabase {
        what,
        name: name.to_string(),
        path,
    })
}

fn split_spec(spec: &str) -> Result<(&str, Option<&str>)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(Error::UserSpec {
            value: spec.to_string(),
            reason: "expected user, uid, user:group or uid:gid",
        });
    }
    Ok((user, group))
}

fn lookup_group(groups: Option<&str>, group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = require(groups, GROUP, "group", group)?;
    parse_group(text)
        .iter()
        .find(|g| g.name == group)
        .map(|g| g.gid)
        .ok_or_else(|| Error::UnknownGroup {
            name: group.to_string(),
        })
}

/// Resolves a USER value (`name`, `uid`, `name:group`, `uid:gid` and mixes) for RUN.
pub fn resolve_user(files: &dyn Files, stage: RootId, spec: &str) -> Result<Identity> {
    let (user, group) = split_spec(spec)?;
    let passwd = read_db(files, stage, PASSWD)?;
    let entries = passwd.as_deref().map(parse_passwd).unwrap_or_default();
    let (uid, mut gid, home, name) = if let Ok(uid) = user.parse::<u32>() {
        match entries.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home, Some(e.name)),
            None => (uid, 0, "/", None),
        }
    } else {
        require(passwd.as_deref(), PASSWD, "user", user)?;
        let e = entries
            .iter()
            .find(|e| e.name == user)
            .ok_or_else(|| Error::UnknownUser {
                name: user.to_string(),
            })?;
        (e.uid, e.gid, e.home, Some(e.name))
    };
    let group_db = read_db(files, stage, GROUP)?;
    if let Some(group) = group {
        gid = lookup_group(group_db.as_deref(), group)?;
    }
    let mut groups = Vec::new();
    if let (Some(name), Some(text)) = (name, group_db.as_deref()) {
        for g in parse_group(text) {
            if g.members.contains(&name) && !groups.contains(&g.gid) {
                groups.push(g.gid);
            }
        }
    }
    let home = if home.is_empty() { "/" } else { home };
    Ok(Identity {
        uid,
        gid,
        groups,
        home: home.to_string(),
    })
}

/// The owner WORKDIR gives the directories it creates for a USER value, as BuildKit's file
/// operation reads it: a uid alone gives gid = uid; a name gives its passwd entry's uid and
/// gid, or 0:0 when the passwd file is missing or lacks it; a group name missing from the
/// group file (or a missing group file) leaves the gid the user part gave.
pub fn resolve_dir_owner(files: &dyn Files, stage: RootId, spec: &str) -> Result<Owner> {
    let (user, group) = split_spec(spec)?;
    let mut owner = match user.parse::<u32>() {
        Ok(uid) => Owner { uid, gid: uid },
        Err(_) => read_db(files, stage, PASSWD)?
            .as_deref()
            .map(parse_passwd)
            .unwrap_or_default()
            .iter()
            .find(|e| e.name == user)
            .map(|e| Owner {
                uid: e.uid,
                gid: e.gid,
            })
            .unwrap_or_default(),
    };
    match group.map(|g| (g, g.parse::<u32>())) {
        Some((_, Ok(gid))) => owner.gid = gid,
        Some((g, Err(_))) => {
            let groups = read_db(files, stage, GROUP)?;
            let entries = groups.as_deref().map(parse_group).unwrap_or_default();
            if let Some(e) = entries.iter().find(|e| e.name == g) {
                owner.gid = e.gid;
            }
        }
        None => {}
    }
    Ok(owner)
}

/// Resolves a `--chown` value: a user alone gives gid = uid (Docker's documented rule).
pub fn resolve_chown(files: &dyn Files, stage: RootId, spec: &str) -> Result<Owner> {
    let (user, group) = split_spec(spec)?;
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => {
            let passwd = read_db(files, stage, PASSWD)?;
            let text = require(passwd.as_deref(), PASSWD, "user", user)?;
            parse_passwd(text)
                .iter()
                .find(|e| e.name == user)
                .map(|e| e.uid)
                .ok_or_else(|| Error::UnknownUser {
                    name: user.to_string(),
                })?
        }
    };
    let gid = match group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup_group(read_db(files, stage, GROUP)?.as_deref(), g)?,
        },
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n\
        nohome:x:1002:1002::\n\
        broken line\n";
    const GROUP_TEXT: &str = "root:x:0:\n\
        staff:x:50:app,other\n\
        app:x:1001:\n\
        docker:x:999:app\n\
        wheel:x:10:root\n";

    fn stage_with(passwd: bool, group: bool) -> (FakeFs, RootId) {
        let fs = FakeFs::new();
        let stage = fs.stage();
        if passwd {
            fs.add_file(stage, "/etc/passwd", PASSWD_TEXT.as_bytes(), 0o644);
        }
        if group {
            fs.add_file(stage, "/etc/group", GROUP_TEXT.as_bytes(), 0o644);
        }
        (fs, stage)
    }

    fn id(uid: u32, gid: u32, groups: &[u32], home: &str) -> Identity {
        Identity {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_string(),
        }
    }

    #[test]
    fn resolve_user_cases() {
        for (spec, want) in [
            ("app", id(1000, 1001, &[50, 999], "/home/app")),
            ("1000", id(1000, 1001, &[50, 999], "/home/app")),
            ("root", id(0, 0, &[10], "/root")),
            ("4242", id(4242, 0, &[], "/")),
            ("4242:7", id(4242, 7, &[], "/")),
            ("app:staff", id(1000, 50, &[50, 999], "/home/app")),
            ("app:123", id(1000, 123, &[50, 999], "/home/app")),
            ("1000:docker", id(1000, 999, &[50, 999], "/home/app")),
            ("nohome", id(1002, 1002, &[], "/")),
        ] {
            let (fs, stage) = stage_with(true, true);
            assert_eq!(resolve_user(&fs, stage, spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn resolve_user_errors() {
        for (spec, passwd, group, want) in [
            (
                "ghost",
                true,
                true,
                "unable to find user ghost: no matching entries in passwd file",
            ),
            ("app:ghosts", true, true, "unable to find group ghosts"),
            (
                "app",
                false,
                true,
                "unable to find user app: /etc/passwd does not exist in the stage",
            ),
            (
                "1000:staff",
                true,
                false,
                "unable to find group staff: /etc/group does not exist in the stage",
            ),
            ("", true, true, "invalid user"),
            ("app:", true, true, "invalid user"),
        ] {
            let (fs, stage) = stage_with(passwd, group);
            let err = resolve_user(&fs, stage, spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn numeric_ids_need_no_files() {
        let (fs, stage) = stage_with(false, false);
        assert_eq!(
            resolve_user(&fs, stage, "12:34").unwrap(),
            id(12, 34, &[], "/")
        );
        assert_eq!(
            resolve_chown(&fs, stage, "12").unwrap(),
            Owner { uid: 12, gid: 12 }
        );
    }

    #[test]
    fn resolve_chown_cases() {
        for (spec, want) in [
            ("app", Ok((1000, 1000))),
            ("app:staff", Ok((1000, 50))),
            ("1000:1001", Ok((1000, 1001))),
            ("5:docker", Ok((5, 999))),
            ("ghost", Err("unable to find user ghost")),
            ("app:nogroup", Err("unable to find group nogroup")),
        ] {
            let (fs, stage) = stage_with(true, true);
            let got = resolve_chown(&fs, stage, spec)
                .map(|o| (o.uid, o.gid))
                .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{spec}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{spec}: {g}"),
                (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
            }
        }
    }
}
