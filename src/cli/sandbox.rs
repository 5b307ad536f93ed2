//! `dedge sandbox run|ls|rm`: run a command in the sandbox a lease gets,
//! for vendors checking a board and for benchmarks.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::chain_args::runtime;
use super::{Error, INTERRUPTED, catch_interrupts, say};
use crate::board::BoardFile;
use crate::board::values::{Arch, CgroupMode};
use crate::edgex::bridge::{self, Bridge, BridgeLimits, Serving};
use crate::edgex::grants::Grants;
use crate::edgex::meter::Meter;
use crate::runtime::cgroup::{Cgroup, Limits};
use crate::runtime::container::{Config, RecordStore, Rootfs, Runtime, Stdio};
use crate::runtime::image::{ImageStore, Limits as ImageLimits, Platform, RunConfig};
use crate::runtime::spec::{Overrides, Spec};
use crate::runtime::unpack::Options;
use crate::store::Store;
use crate::units::ByteSize;

pub(crate) const USAGE: &str = "\
Usage: dedge sandbox run IMAGE[:REF] [options] [--] [CMD...]
       dedge sandbox run --rootfs DIR [options] -- CMD...
       dedge sandbox ls [--board BOARD]
       dedge sandbox rm ID [--board BOARD]

Runs a command in the sandbox a lease gets: new PID, mount, UTS, IPC,
network (loopback only) and cgroup namespaces; pivot_root into the image's
root, read-only (/tmp is a tmpfs counted as memory); a fresh /proc and /dev;
few capabilities; no_new_privs; cgroup limits. Output comes to this
terminal; the exit status is the command's (128+N if killed by signal N).
Needs root.

IMAGE is a name in the image store, or the path of an OCI image layout
(directory or tar) or docker-save archive, which is imported (every digest
checked) first; :REF picks a tag of a layout with several. CMD replaces the
image's Cmd (its Entrypoint stays).

Options:
  --board BOARD     data directory, platform and cgroup version from this
                    board (default: /run/dedge, this machine, auto)
  --memory SIZE     memory limit, swap off (64M = 64 MiB as docker; 256M)
  --pids N          processes and threads (64)
  --cpus N          CPU quota in cores, e.g. 0.5 (1)
  --env KEY=VALUE   add or replace an environment variable (repeatable)
  --name ID         container id (sandbox-PID)
  --keep            keep the stopped container (rootfs, logs) until
                    `dedge sandbox rm ID`
  --rootfs DIR      use this unpacked root filesystem instead of an image
  --edgex-read DEVICE:CMD, --edgex-write DEVICE:CMD
                    grant the container a device command, as a lease
                    would (repeatable; needs --board with [edgex]): the
                    EdgeX bridge listens in the container at
                    $DEDGE_EDGEX_URL; the counts are printed at the end
  ls                containers this CLI kept
  rm                remove one
";

struct Args {
    sub: String,
    board: Option<PathBuf>,
    image: Option<String>,
    rootfs: Option<PathBuf>,
    memory: u64,
    pids: u64,
    millicores: u32,
    env: Vec<String>,
    name: Option<String>,
    keep: bool,
    cmd: Vec<String>,
    grants: Grants,
}

/// Sizes as docker writes them (`64M`, `1g`: binary units) or as boards do
/// (`64 MiB`).
fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit {
        "k" | "K" => Some(10),
        "m" | "M" => Some(20),
        "g" | "G" => Some(30),
        _ => None,
    };
    let bytes = match (shift, num.parse::<u64>()) {
        (Some(sh), Ok(n)) => n.checked_mul(1 << sh),
        _ => t.parse::<ByteSize>().ok().map(|b| b.bytes()),
    };
    match bytes {
        Some(b) if b >= 4 << 20 => Ok(b),
        Some(_) => Err(Error::Usage(format!("--memory {s}: at least 4M"))),
        None => Err(Error::Usage(format!(
            "--memory {s}: write e.g. 64M (MiB) or \"64 MiB\""
        ))),
    }
}

fn parse_cpus(s: &str) -> Result<u32, Error> {
    let cores: f64 = s
        .parse()
        .map_err(|_| Error::Usage(format!("--cpus {s}: write cores, e.g. 0.5")))?;
    if !(0.01..=1024.0).contains(&cores) {
        return Err(Error::Usage(format!("--cpus {s}: between 0.01 and 1024")));
    }
    Ok((cores * 1000.0).round() as u32)
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Args>, Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}").map(|()| None),
        Some(other) => return Err(other.unexpected().into()),
    };
    let mut a = Args {
        sub,
        board: None,
        image: None,
        rootfs: None,
        memory: 256 << 20,
        pids: 64,
        millicores: 1000,
        env: vec![],
        name: None,
        keep: false,
        cmd: vec![],
        grants: Grants::new(),
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("board") => a.board = Some(parser.value()?.into()),
            Long("rootfs") => a.rootfs = Some(parser.value()?.into()),
            Long("memory") => a.memory = parse_size(&parser.value()?.string()?)?,
            Long("pids") => {
                let v = parser.value()?.string()?;
                a.pids =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        Error::Usage(format!("--pids {v}: a count of at least 1"))
                    })?;
            }
            Long("cpus") => a.millicores = parse_cpus(&parser.value()?.string()?)?,
            Long("env") => {
                let kv = parser.value()?.string()?;
                if !kv.contains('=') {
                    return Err(Error::Usage(format!("--env {kv}: write KEY=VALUE")));
                }
                a.env.push(kv);
            }
            Long(flag @ ("edgex-read" | "edgex-write")) => {
                let write = flag == "edgex-write";
                let flag = flag.to_string();
                let v = parser.value()?.string()?;
                let (device, command) = v
                    .split_once(':')
                    .ok_or_else(|| Error::Usage(format!("--{flag} {v}: write DEVICE:COMMAND")))?;
                let g = a.grants.entry(device.to_string()).or_default();
                if write { &mut g.write } else { &mut g.read }.insert(command.to_string());
            }
            Long("name") => a.name = Some(parser.value()?.string()?),
            Long("keep") => a.keep = true,
            Short('h') | Long("help") => return say!("{USAGE}").map(|()| None),
            Value(v) if a.image.is_none() && a.rootfs.is_none() && a.sub != "ls" => {
                a.image = Some(v.string()?);
            }
            Value(v) => {
                a.cmd.push(v.string()?);
                a.cmd.extend(strings(parser.raw_args()?.collect())?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Some(a))
}

/// The EdgeX bridge for `--edgex-read`/`--edgex-write`, in the created
/// container's network namespace, with a throw-away usage meter.
fn open_bridge(a: &Args, id: &str, pid: i32) -> Result<Option<(Serving, Meter)>, Error> {
    if a.grants.is_empty() {
        return Ok(None);
    }
    let board = a
        .board
        .as_ref()
        .ok_or_else(|| Error::Usage("--edgex-read/--edgex-write need --board BOARD".into()))?;
    let board = BoardFile::load(board).map_err(|e| Error::Config(e.to_string()))?;
    let edgex = super::edgex::board_edgex(&board)?;
    let catalogue = super::edgex::read_catalogue(edgex)?;
    catalogue
        .check_grants(&a.grants)
        .map_err(|e| Error::Usage(format!("{e} (see `dedge edgex ls`)")))?;
    let client = crate::edgex::client::Client::from_board(edgex).map_err(runtime)?;
    let meter = Meter::new(
        Store::temporary()
            .map_err(runtime)?
            .tree("edgex")
            .map_err(runtime)?,
    );
    let b = std::sync::Arc::new(Bridge::new(
        id,
        a.grants.clone(),
        std::sync::Arc::new(std::sync::RwLock::new(catalogue)),
        std::sync::Arc::new(client),
        meter.clone(),
        BridgeLimits::from_board(edgex),
    ));
    let listener =
        crate::runtime::net::listen_in(pid, crate::edgex::bridge::PORT).map_err(runtime)?;
    let serving = Serving::open(listener, b).map_err(runtime)?;
    Ok(Some((serving, meter)))
}

fn report_usage(meter: &Meter, id: &str) {
    match meter.usage(id) {
        Ok(usage) => {
            for (device, u) in usage {
                super::err_line(format_args!(
                    "dedge: edgex {device}: {} reads, {} writes, {} B in, {} B out, {} refused",
                    u.reads, u.writes, u.bytes_in, u.bytes_out, u.refused
                ));
            }
        }
        Err(e) => super::err_line(format_args!("dedge: edgex usage: {e}")),
    }
}

fn strings(v: Vec<OsString>) -> Result<Vec<String>, Error> {
    v.into_iter()
        .map(|s| {
            s.into_string()
                .map_err(|s| Error::Usage(format!("{s:?} is not UTF-8")))
        })
        .collect()
}

pub fn run(parser: lexopt::Parser) -> Result<(), Error> {
    let Some(a) = parse(parser)? else {
        return Ok(());
    };
    if !nix::unistd::Uid::effective().is_root() {
        return Err(Error::Runtime(
            "dedge sandbox needs root (namespaces, mounts, cgroups)".into(),
        ));
    }
    let (data, arch, cgroup, base) = match &a.board {
        Some(path) => {
            let b = BoardFile::load(path)
                .map_err(|e| Error::Config(e.to_string()))?
                .board;
            let base = b.agent.cgroup_parent;
            (b.agent.data_dir, b.board.arch, b.board.cgroup, base)
        }
        None => (
            PathBuf::from("/run/dedge"),
            Arch::of_this_build()
                .ok_or_else(|| Error::Runtime("unsupported architecture".into()))?,
            CgroupMode::Auto,
            Default::default(),
        ),
    };
    let parent = crate::runtime::cgroup::parent_for(base.relative(), "cli", &data);
    // Records as files: a one-shot command should not open (and lock) the
    // state database just to run a container; images still live there.
    let rt = Runtime::open(
        Config {
            dir: data.join("sandbox"),
            cgroup,
            cgroup_parent: parent.clone(),
            cgroup_delegated: base.delegated().map(String::from),
            die_with_parent: true,
        },
        RecordStore::Files,
    )
    .map_err(runtime)?;
    let result = match a.sub.as_str() {
        "run" => run_one(&a, &rt, &data, arch),
        "ls" => {
            for r in rt.list().map_err(runtime)? {
                let exit = r.exit.map_or(String::new(), |e| format!(" {e}"));
                say!("{} {:?}{exit} {}\n", r.id, r.state, r.spec.args.join(" "))?;
            }
            Ok(())
        }
        "rm" => {
            let id = a
                .image
                .as_deref()
                .ok_or_else(|| Error::Usage("rm needs a container id".into()))?;
            rt.delete(id).map_err(runtime)
        }
        other => Err(Error::Usage(format!("unknown sandbox command `{other}`"))),
    };
    if let Ok(cg) = Cgroup::load(cgroup, &parent) {
        cg.remove_if_empty();
    }
    result
}

fn run_one(a: &Args, rt: &Runtime, data: &Path, arch: Arch) -> Result<(), Error> {
    let id = a
        .name
        .clone()
        .unwrap_or_else(|| format!("sandbox-{}", std::process::id()));
    let (rootfs, run_config) = match (&a.rootfs, &a.image) {
        (Some(dir), None) => (Rootfs::External(dir.clone()), RunConfig::default()),
        (None, Some(image)) => {
            let state = Store::open(&data.join("cli")).map_err(|e| {
                Error::Runtime(format!(
                    "{e} (is another dedge command using {}?)",
                    data.display()
                ))
            })?;
            let images = ImageStore::open(&data.join("images"), &state, ImageLimits::default())
                .map_err(runtime)?;
            let img = find_image(&images, image, arch)?;
            let dir = rt.prepare(&id).map_err(runtime)?;
            if let Err(e) = images.unpack(&img, &dir, Options::default()) {
                let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
                return Err(runtime(e));
            }
            (Rootfs::Prepared, img.run)
        }
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "give an IMAGE or --rootfs DIR, not both (put the command after --)".into(),
            ));
        }
        (None, None) => return Err(Error::Usage("run needs an IMAGE or --rootfs DIR".into())),
    };
    let root_path = match &rootfs {
        Rootfs::External(d) => d.clone(),
        Rootfs::Prepared => data.join("sandbox").join(&id).join("rootfs"),
    };
    let spec = Spec::new(
        &run_config,
        &root_path,
        Overrides {
            cmd: a.cmd.clone(),
            env: a
                .env
                .iter()
                .cloned()
                .chain((!a.grants.is_empty()).then(|| format!("{}={}", bridge::ENV, Bridge::url())))
                .collect(),
            hostname: id.clone(),
            limits: Limits {
                cpu_millicores: Some(a.millicores),
                memory: Some(a.memory),
                pids: Some(a.pids),
            },
        },
    );
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(data.join("sandbox").join(&id));
            return Err(runtime(e));
        }
    };
    let stdio = Stdio::Forward {
        stdout: dup(1)?,
        stderr: dup(2)?,
    };
    catch_interrupts();
    let record = rt
        .create(&id, rootfs, &spec, stdio, !a.keep)
        .map_err(runtime)?;
    let edgex = match open_bridge(a, &id, record.init.pid) {
        Ok(b) => b,
        Err(e) => {
            let _ = rt.delete(&id);
            return Err(e);
        }
    };
    let ended = rt.start(&id).and_then(|_| wait_interruptible(rt, &id));
    if let Some((_serving, meter)) = &edgex {
        report_usage(meter, &id);
    }
    let record = match ended {
        Ok(r) => r,
        Err(e) => {
            let _ = rt.delete(&id);
            return Err(runtime(e));
        }
    };
    if record.oom_kills > 0 {
        super::err_line(format_args!(
            "dedge: out of memory: the kernel killed {} process(es) at the {} limit",
            record.oom_kills,
            ByteSize(a.memory)
        ));
    }
    if !a.keep {
        rt.delete(&id).map_err(runtime)?;
    }
    let code = record.exit.map_or(255, |e| e.code());
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Exited(u8::try_from(code).unwrap_or(255)))
    }
}

/// Waits for the container; on SIGINT/SIGTERM stops it (TERM, then KILL
/// after 2 s) so nothing outlives the CLI.
fn wait_interruptible(
    rt: &Runtime,
    id: &str,
) -> crate::runtime::Result<crate::runtime::container::Record> {
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return rt.kill(id, Duration::from_secs(2));
        }
        if let Some(r) = rt.wait_for(id, Some(Duration::from_millis(250)))? {
            return Ok(r);
        }
    }
}

fn dup(fd: i32) -> Result<OwnedFd, Error> {
    let fd = nix::unistd::dup(
        // SAFETY: 0-2 are open for the life of the process (or dup fails
        // with EBADF, reported below).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .map_err(|e| Error::Runtime(format!("dup stdio: {e}")))?;
    Ok(fd)
}

/// IMAGE is a path to import or a name in the store.
fn find_image(
    images: &ImageStore,
    image: &str,
    arch: Arch,
) -> Result<crate::runtime::image::Image, Error> {
    let (path, reference) = match image.rsplit_once(':') {
        Some((p, r)) if Path::new(p).exists() && !Path::new(image).exists() => (p, Some(r)),
        _ => (image, None),
    };
    let p = Path::new(path);
    if p.exists() {
        let name = p
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned());
        let name = match reference {
            Some(r) => format!("{name}:{r}"),
            None => name,
        };
        return images
            .import(p, reference, &Platform::of(arch), &name)
            .map_err(|e| Error::Runtime(format!("{path}: {e}")));
    }
    images.get(image).map_err(|e| {
        Error::Runtime(format!(
            "{e}: not a file or directory either (import one with `dedge image import`)"
        ))
    })
}
