//! `dedge ipfs cid|car`: content addressing as Kubo does it.

use std::path::PathBuf;

use super::progress::Progress;
use super::{Error, say};
use crate::ipfs::fetch::{Fetcher, Limits};
use crate::ipfs::publish::{check_image, dag_import, write_car};
use crate::ipfs::unixfs::{CidVersion, Options, add_path};

pub(crate) const USAGE: &str = "\
Usage: dedge ipfs cid PATH [--cid-version 0|1] [--hidden]
       dedge ipfs car PATH -o FILE.car [--cid-version 0|1] [--hidden]
       dedge ipfs publish IMAGE (--api URL | -o FILE.car) [--cid-version 0|1]
       dedge ipfs fetch CID DEST --gateway URL... [--max-size SIZE] [--timeout SECS]

  cid   print the CID `ipfs add -r --only-hash PATH` would print: 256 KiB
        chunks, balanced DAG of at most 174 links per node, CIDv0; with
        --cid-version 1, CIDv1 with raw leaves (as `ipfs add --cid-version=1`)
  car   write the same DAG as a CAR v1 file (for a pinning service or
        `ipfs dag import`) and print its root CID
  publish  check IMAGE is an OCI image layout (directory or tar) or a
        docker-save archive, pack it as a CAR and import it into a
        Kubo-compatible RPC (`/api/v0/dag/import`, root pinned), or write
        the CAR for a pinning service; prints the CID a lease names
  fetch fetch CID from trustless gateways (CAR, then block by block) into
        DEST, every block verified; DEST appears only when complete.
        Verified blocks wait in DEST.blocks for a retry

Directories are added recursively, entries sorted by name; names starting
with `.` are left out unless --hidden (as `ipfs add -r`).
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}"),
        Some(other) => return Err(other.unexpected().into()),
    };
    let (mut path, mut out, mut opts) = (None::<PathBuf>, None::<PathBuf>, Options::default());
    let (mut dest, mut gateways, mut limits) = (None::<PathBuf>, Vec::new(), Limits::default());
    let mut api = None::<String>;
    while let Some(a) = parser.next()? {
        match a {
            Long("cid-version") => {
                opts.version = match parser.value()?.string()?.as_str() {
                    "0" => CidVersion::V0,
                    "1" => CidVersion::V1,
                    v => return Err(Error::Usage(format!("--cid-version {v}: 0 or 1"))),
                }
            }
            Long("hidden") => opts.hidden = true,
            Short('o') | Long("output") => out = Some(parser.value()?.into()),
            Long("gateway") => gateways.push(parser.value()?.string()?),
            Long("api") => api = Some(parser.value()?.string()?),
            Long("max-size") => {
                let v = parser.value()?.string()?;
                limits.max_total = v
                    .parse::<crate::units::ByteSize>()
                    .map_err(|e| Error::Usage(format!("--max-size: {e}")))?
                    .bytes();
            }
            Long("timeout") => {
                let v = parser.value()?.string()?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| Error::Usage(format!("--timeout {v}: seconds")))?;
                limits.deadline = std::time::Duration::from_secs(secs);
            }
            Short('h') | Long("help") => return say!("{USAGE}"),
            Value(v) if path.is_none() => path = Some(v.into()),
            Value(v) if sub == "fetch" && dest.is_none() => dest = Some(v.into()),
            other => return Err(other.unexpected().into()),
        }
    }
    let path = path.ok_or_else(|| Error::Usage(format!("ipfs {sub} needs a PATH")))?;
    let fail = |e: crate::ipfs::Error| Error::Runtime(format!("{}: {e}", path.display()));
    match sub.as_str() {
        "cid" => {
            let added = add_path(&path, opts, &mut |_, _| Ok(())).map_err(fail)?;
            say!("{}\n", added.cid)
        }
        "car" => {
            let out = out.ok_or_else(|| Error::Usage("ipfs car needs -o FILE.car".into()))?;
            let root = write_car(&path, &out, opts).map_err(fail)?;
            say!("{root}\n")
        }
        "fetch" => {
            let text = path.display().to_string();
            let cid: cid::Cid = text
                .parse()
                .map_err(|e| Error::Usage(format!("`{text}` is not a CID: {e}")))?;
            let dest = dest.ok_or_else(|| Error::Usage("ipfs fetch needs CID DEST".into()))?;
            if gateways.is_empty() {
                return Err(Error::Usage("ipfs fetch needs --gateway URL".into()));
            }
            let mut cache = dest.as_os_str().to_owned();
            cache.push(".blocks");
            let fetcher = Fetcher::new(gateways, std::path::Path::new(&cache), limits);
            let mut bar = Progress::new("fetching", None);
            let report = fetcher
                .fetch_with_progress(&cid, &dest, &mut |done| bar.update(done))
                .map_err(|e| Error::Runtime(format!("{cid}: {e}")))?;
            drop(bar);
            fetcher
                .clear_cache()
                .map_err(|e| Error::Runtime(e.to_string()))?;
            say!(
                "{cid}: {} bytes in {} files, {} blocks ({} from a previous attempt)\n",
                report.bytes,
                report.files,
                report.blocks,
                report.cached
            )
        }
        "publish" => {
            check_image(&path).map_err(fail)?;
            match (api, out) {
                (None, Some(out)) => {
                    let root = write_car(&path, &out, opts).map_err(fail)?;
                    say!("{root}\n")
                }
                (Some(api), None) => {
                    let car = std::env::temp_dir()
                        .join(format!("dedge-publish-{}.car", std::process::id()));
                    let root = write_car(&path, &car, opts).map_err(fail)?;
                    let size = std::fs::metadata(&car).map(|m| m.len()).ok();
                    let mut bar = Progress::new("uploading", size);
                    let sent = dag_import(&api, &car, &root, move |done| bar.update(done));
                    let _ = std::fs::remove_file(&car);
                    sent.map_err(fail)?;
                    say!("{root}\n")
                }
                _ => Err(Error::Usage(
                    "ipfs publish needs --api URL or -o FILE.car".into(),
                )),
            }
        }
        other => Err(Error::Usage(format!("unknown ipfs command `{other}`"))),
    }
}
