//! What a container runs, as the OCI image config asks: Entrypoint + Cmd
//! (a given command replaces Cmd, as `docker run IMAGE CMD` does), Env,
//! WorkingDir and User, resolved against the image's own /etc/passwd and
//! /etc/group (read inside the root, never the host's).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cgroup::Limits;
use super::image::RunConfig;
use super::unpack::read_in_root;
use super::{Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// /etc/passwd and /etc/group larger than this are not an image's.
const MAX_DB: u64 = 1 << 20;
/// /tmp gets at most this much when there is no memory limit.
const DEFAULT_TMP: u64 = 64 << 20;

/// Everything the sandbox needs to start one process tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub args: Vec<String>,
    /// `KEY=value` pairs, keys unique.
    pub env: Vec<String>,
    pub(crate) cwd: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    pub hostname: String,
    pub limits: Limits,
}

/// What the caller adds to the image's config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the image's Cmd (Entrypoint stays) when not empty.
    pub cmd: Vec<String>,
    /// `KEY=value`, replacing the image's value of KEY.
    pub env: Vec<String>,
    pub hostname: String,
    pub limits: Limits,
}

impl Spec {
    pub fn new(run: &RunConfig, rootfs: &Path, over: Overrides) -> Result<Spec> {
        let mut args = run.entrypoint.clone().unwrap_or_default();
        if over.cmd.is_empty() {
            args.extend(run.cmd.clone().unwrap_or_default());
        } else {
            args.extend(over.cmd);
        }
        if args.is_empty() || args[0].is_empty() {
            return Err(Error::Invalid(
                "the image has no Entrypoint or Cmd: give a command to run".into(),
            ));
        }
        let user = resolve_user(rootfs, run.user.as_deref().unwrap_or(""))?;
        let mut env = Vec::new();
        for kv in run.env.iter().flatten().chain(&over.env) {
            set_env(&mut env, kv)?;
        }
        for (k, v) in [
            ("PATH", DEFAULT_PATH),
            ("HOME", user.home.as_str()),
            ("HOSTNAME", over.hostname.as_str()),
        ] {
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.push(format!("{k}={v}"));
            }
        }
        let cwd = match run.working_dir.as_deref() {
            None | Some("") => "/".to_string(),
            Some(d) if d.starts_with('/') => d.to_string(),
            Some(d) => {
                return Err(Error::Invalid(format!(
                    "WorkingDir `{d}` is not an absolute path"
                )));
            }
        };
        for s in args.iter().chain(&env).chain([&cwd, &over.hostname]) {
            if s.contains('\0') {
                return Err(Error::Invalid(format!("{s:?} holds a NUL byte")));
            }
        }
        if over.hostname.is_empty() || over.hostname.len() > 64 {
            return Err(Error::Invalid("hostname must be 1 to 64 bytes".into()));
        }
        Ok(Spec {
            args,
            env,
            cwd,
            uid: user.uid,
            gid: user.gid,
            groups: user.groups,
            hostname: over.hostname,
            limits: over.limits,
        })
    }

    /// Candidate paths for `args[0]`: itself if it has a `/`, else each
    /// directory of the container's PATH (as execvp would search).
    pub(crate) fn exec_candidates(&self) -> Vec<String> {
        let prog = &self.args[0];
        if prog.contains('/') {
            return vec![prog.clone()];
        }
        let path = self
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
            .collect()
    }

    /// Size option of the /tmp tmpfs: the memory limit (tmpfs pages count
    /// against it anyway), or 64 MiB without one.
    pub(crate) fn tmp_options(&self) -> String {
        let size = self.limits.memory.unwrap_or(DEFAULT_TMP);
        format!("mode=1777,size={size}")
    }
}

fn set_env(env: &mut Vec<String>, kv: &str) -> Result<()> {
    let Some((k, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
        return Err(Error::Invalid(format!(
            "environment entry `{kv}` is not KEY=value"
        )));
    };
    env.retain(|e| e.split('=').next() != Some(k));
    env.push(kv.to_string());
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct User {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// Resolves an image's `User` (`name`, `uid`, `name:group`, `uid:gid`, or
/// empty for root) with the image's /etc/passwd and /etc/group.
fn resolve_user(rootfs: &Path, user: &str) -> Result<User> {
    let read = |p: &str| -> Result<String> {
        Ok(read_in_root(rootfs, p, MAX_DB)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let (passwd, group) = (read("/etc/passwd")?, read("/etc/group")?);
    resolve_user_in(&passwd, &group, user)
}

fn resolve_user_in(passwd: &str, group: &str, spec: &str) -> Result<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == u);
    let (uid, mut gid, name, home) = match (by_name, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| bad_db("passwd", f[0]))?,
            f[3].parse().map_err(|_| bad_db("passwd", f[0]))?,
            Some(f[0]),
            f[5].to_string(),
        ),
        (None, Ok(uid)) => match entries.iter().find(|f| f[2] == u) {
            Some(f) => (
                uid,
                f[3].parse().map_err(|_| bad_db("passwd", f[0]))?,
                Some(f[0]),
                f[5].to_string(),
            ),
            None => (uid, 0, None, "/".to_string()),
        },
        (None, Err(_)) => {
            return Err(Error::Invalid(format!(
                "user `{u}` is not in the image's /etc/passwd"
            )));
        }
    };
    let groups_db: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = match (groups_db.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().map_err(|_| bad_db("group", f[0]))?,
            (None, Ok(n)) => n,
            (None, Err(_)) => {
                return Err(Error::Invalid(format!(
                    "group `{g}` is not in the image's /etc/group"
                )));
            }
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &groups_db {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

fn bad_db(file: &str, entry: &str) -> Error {
    Error::Invalid(format!(
        "the image's /etc/{file} entry `{entry}` has a bad id"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:1000:1000::/srv:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nweb:x:1000:\ndialout:x:20:web,other\n";

    #[test]
    fn users_resolve_by_name_number_and_group() {
        let u = resolve_user_in(PASSWD, GROUP, "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_user_in(PASSWD, GROUP, "web").unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 1000, vec![1000, 20]));
        let u = resolve_user_in(PASSWD, GROUP, "1000:nogroup").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 65534));
        let u = resolve_user_in(PASSWD, GROUP, "4242:4343").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 4343, "/"));
        let e = resolve_user_in(PASSWD, GROUP, "ghost").unwrap_err();
        assert!(
            e.to_string()
                .contains("`ghost` is not in the image's /etc/passwd")
        );
        let e = resolve_user_in(PASSWD, GROUP, "web:ghosts").unwrap_err();
        assert!(e.to_string().contains("group `ghosts`"));
    }

    #[test]
    fn cmd_replaces_cmd_and_keeps_the_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunConfig {
            entrypoint: Some(vec!["/bin/busybox".into()]),
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            working_dir: Some("/srv".into()),
            user: None,
        };
        let over = Overrides {
            cmd: vec!["echo".into(), "hi".into()],
            env: vec!["A=2".into()],
            hostname: "lease".into(),
            limits: Limits::default(),
        };
        let s = Spec::new(&run, dir.path(), over).unwrap();
        assert_eq!(s.args, ["/bin/busybox", "echo", "hi"]);
        assert_eq!(s.env, ["PATH=/bin", "A=2", "HOME=/", "HOSTNAME=lease"]);
        assert_eq!(s.cwd, "/srv");
        assert_eq!(s.exec_candidates(), ["/bin/busybox"]);
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let over = || Overrides {
            hostname: "h".into(),
            ..Overrides::default()
        };
        let e = Spec::new(&RunConfig::default(), dir.path(), over()).unwrap_err();
        assert!(e.to_string().contains("no Entrypoint or Cmd"));
        let run = RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["NOEQUALS".into()]),
            ..RunConfig::default()
        };
        let e = Spec::new(&run, dir.path(), over()).unwrap_err();
        assert!(e.to_string().contains("`NOEQUALS` is not KEY=value"));
        let run = RunConfig {
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("rel".into()),
            ..RunConfig::default()
        };
        assert!(Spec::new(&run, dir.path(), over()).is_err());
        let run = RunConfig {
            cmd: Some(vec!["sh".into()]),
            ..RunConfig::default()
        };
        let s = Spec::new(&run, dir.path(), over()).unwrap();
        assert_eq!(s.exec_candidates()[0], "/usr/local/sbin/sh");
        assert_eq!(s.exec_candidates().len(), 6);
    }
}
