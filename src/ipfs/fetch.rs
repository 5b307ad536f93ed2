//! Fetching a UnixFS DAG from IPFS trustless gateways, verified by the
//! agent itself: a gateway is trusted for nothing.
//!
//! The whole DAG is asked for as one CAR (`?format=car&dag-scope=all`,
//! `order=dfs; dups=y`), and every block must be the one the depth-first
//! UnixFS walk expects next, hash to its CID, be dag-pb or raw, fit the
//! limits, and agree with its parent on its size. Content goes to disk as
//! it is verified, one block in memory at a time, under `DEST.partial`,
//! renamed to `DEST` only when the walk is complete: nothing is ever half
//! imported. Verified blocks are also kept in a block cache; when a stream
//! fails (truncated, tampered, 5xx, too slow) the walk goes on block by
//! block (`?format=raw`) from the cache and the gateways in turn, and a
//! fetch after an agent restart re-downloads no verified block.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cid::Cid;

use super::Error;
use super::car;
use super::pb::{Kind, Node, Unixfs};
use super::unixfs::{CidVersion, DAG_PB, RAW, cid_of};

/// What one fetch may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Content bytes written (the image's size, from the lease).
    pub max_total: u64,
    /// One block (the gateway spec's client cap is 2 MiB).
    pub max_block: usize,
    /// Directory and tree depth.
    pub max_depth: usize,
    /// The whole fetch, all retries included.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total: 4 << 30,
            max_block: 2 << 20,
            max_depth: 64,
            deadline: Duration::from_secs(600),
        }
    }
}

/// What a fetch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub blocks: u64,
    /// Blocks taken from the cache instead of the network.
    pub cached: u64,
    pub bytes: u64,
    pub files: u64,
    /// Per-block requests made after a stream failed.
    pub raw_requests: u64,
}

/// Where the next expected block goes once verified.
#[derive(Debug)]
enum Into {
    /// An entry of a directory (or the root): created at this path.
    Entry(PathBuf),
    /// A chunk of the file being written, of this many content bytes.
    Chunk(u64),
}

#[derive(Debug)]
struct Expected {
    cid: Cid,
    into: Into,
    depth: usize,
}

/// Fetches DAGs from a list of gateways, caching verified blocks.
pub struct Fetcher {
    gateways: Vec<String>,
    cache: PathBuf,
    limits: Limits,
    agent: ureq::Agent,
}

const CAR_ACCEPT: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=y";

impl Fetcher {
    /// `cache` holds verified blocks between attempts (and restarts).
    pub fn new(gateways: Vec<String>, cache: &Path, limits: Limits) -> Fetcher {
        let agent = crate::http_agent::agent(
            ureq::Agent::config_builder()
                .timeout_global(Some(limits.deadline))
                .timeout_recv_body(Some(Duration::from_secs(30)))
                .http_status_as_error(false),
        );
        Fetcher {
            gateways: gateways
                .into_iter()
                .map(|g| g.trim_end_matches('/').to_string())
                .collect(),
            cache: cache.to_path_buf(),
            limits,
            agent,
        }
    }

    fn cache_path(&self, cid: &Cid) -> PathBuf {
        self.cache.join(cid.to_string())
    }

    /// Fetches `root` into `dest` (a file or a directory tree), which must
    /// not exist yet.
    pub fn fetch(&self, root: &Cid, dest: &Path) -> Result<Report, Error> {
        self.fetch_with_progress(root, dest, &mut |_| {})
    }

    /// As `fetch`; `progress` gets the content bytes verified so far.
    pub(crate) fn fetch_with_progress(
        &self,
        root: &Cid,
        dest: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Report, Error> {
        if dest.exists() {
            return Err(Error::Fetch(format!("{} already exists", dest.display())));
        }
        fs::create_dir_all(&self.cache)
            .map_err(|e| Error::Path(self.cache.display().to_string(), e))?;
        let partial = partial_path(dest);
        remove_any(&partial)?;
        let started = Instant::now();
        let mut walk = Walk {
            stack: vec![Expected {
                cid: *root,
                into: Into::Entry(partial.clone()),
                depth: 0,
            }],
            file: None,
            report: Report::default(),
            limits: self.limits,
            started,
            progress,
        };
        let result = self.run(&mut walk, root);
        walk.file = None;
        match result {
            Ok(()) => {
                fs::rename(&partial, dest)
                    .map_err(|e| Error::Path(dest.display().to_string(), e))?;
                log::info!(
                    "ipfs {root}: {} blocks ({} cached, {} raw requests), {} bytes",
                    walk.report.blocks,
                    walk.report.cached,
                    walk.report.raw_requests,
                    walk.report.bytes
                );
                Ok(walk.report)
            }
            Err(e) => {
                remove_any(&partial)?;
                Err(e)
            }
        }
    }

    /// Whole-DAG CAR first (unless a previous attempt left blocks in the
    /// cache), then block by block for whatever is still missing.
    fn run(&self, walk: &mut Walk<'_>, root: &Cid) -> Result<(), Error> {
        let mut stream_error = None;
        if !self.cache_path(root).exists() {
            for g in &self.gateways {
                match self.stream(walk, g, root) {
                    Ok(()) => return Ok(()),
                    // The DAG itself is out of bounds: no gateway can fix that.
                    Err(e @ (Error::Limit(_) | Error::Path(..) | Error::Unsupported(_))) => {
                        return Err(e);
                    }
                    // A gateway that breaks the protocol after a complete
                    // DAG (an extra block) is not trusted with the result.
                    Err(e) if walk.stack.is_empty() => return Err(e),
                    Err(e) => {
                        log::warn!("ipfs {root}: CAR from {g}: {e}");
                        stream_error = Some(e);
                        // Blocks already applied: the rest comes block by
                        // block (a new CAR would start again at the root).
                        if walk.report.blocks > 0 {
                            break;
                        }
                    }
                }
            }
        }
        while let Some(next) = walk.peek() {
            walk.check_time()?;
            let block = match self.cached(&next) {
                Some(b) => {
                    walk.report.cached += 1;
                    b
                }
                None => self.raw(walk, &next).map_err(|e| match &stream_error {
                    Some(s) => Error::Fetch(format!(
                        "{} (the CAR stream failed first: {})",
                        detail(&e),
                        detail(s)
                    )),
                    None => e,
                })?,
            };
            walk.accept(&next, &block, |_| Ok(()))?;
        }
        Ok(())
    }

    /// Consumes one CAR response as far as it is right; verified blocks are
    /// applied and cached. Any fault ends the stream with an error.
    fn stream(&self, walk: &mut Walk<'_>, gateway: &str, root: &Cid) -> Result<(), Error> {
        let url = format!("{gateway}/ipfs/{root}?format=car&dag-scope=all");
        let resp = self
            .agent
            .get(&url)
            .header("Accept", CAR_ACCEPT)
            .config()
            .timeout_global(Some(walk.remaining()?))
            .build()
            .call()
            .map_err(|e| Error::Fetch(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::Fetch(format!("{url}: HTTP {status}")));
        }
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !ctype.starts_with("application/vnd.ipld.car") {
            return Err(Error::Fetch(format!(
                "{url}: answered `{ctype}`, not a CAR"
            )));
        }
        let body = resp
            .into_body()
            .into_with_config()
            .limit(
                self.limits
                    .max_total
                    .saturating_mul(2)
                    .saturating_add(1 << 20),
            )
            .reader();
        let mut reader = car::Reader::new(body, self.limits.max_block)?;
        if reader.root != *root {
            return Err(Error::Fetch(format!(
                "{url}: the CAR's root is {}, not {root}",
                reader.root
            )));
        }
        while let Some(next) = walk.peek() {
            walk.check_time()?;
            let Some((cid, block)) = reader
                .next_block()
                .map_err(|e| Error::Fetch(format!("{url}: {e}")))?
            else {
                return Err(Error::Fetch(format!(
                    "{url}: the stream ended with {} blocks still missing (truncated)",
                    walk.stack.len()
                )));
            };
            if cid != next.cid {
                return Err(Error::Fetch(format!(
                    "{url}: sent {cid} where the walk expects {}",
                    next.cid
                )));
            }
            walk.accept(&next, &block, |b| self.store(&cid, b))?;
        }
        if let Some((cid, _)) = reader
            .next_block()
            .map_err(|e| Error::Fetch(format!("{url}: {e}")))?
        {
            return Err(Error::Fetch(format!(
                "{url}: extra block {cid} after the DAG"
            )));
        }
        Ok(())
    }

    /// One block by `?format=raw`, from each gateway in turn until one
    /// gives a block that hashes to its CID.
    fn raw(&self, walk: &mut Walk<'_>, next: &Peeked) -> Result<Vec<u8>, Error> {
        let mut why = Vec::new();
        for g in &self.gateways {
            walk.report.raw_requests += 1;
            let url = format!("{g}/ipfs/{}?format=raw", next.cid);
            let got = self
                .agent
                .get(&url)
                .header("Accept", "application/vnd.ipld.raw")
                .config()
                .timeout_global(Some(walk.remaining()?))
                .build()
                .call()
                .map_err(|e| e.to_string())
                .and_then(|resp| {
                    let status = resp.status().as_u16();
                    if status != 200 {
                        return Err(format!("HTTP {status}"));
                    }
                    let mut b = Vec::new();
                    resp.into_body()
                        .into_with_config()
                        .limit(self.limits.max_block as u64 + 1)
                        .reader()
                        .read_to_end(&mut b)
                        .map_err(|e| e.to_string())?;
                    Ok(b)
                })
                .and_then(|b| {
                    if b.len() > self.limits.max_block {
                        return Err(format!("block over {} bytes", self.limits.max_block));
                    }
                    check_hash(&next.cid, &b).map_err(|e| e.to_string())?;
                    Ok(b)
                });
            match got {
                Ok(b) => {
                    self.store(&next.cid, &b)?;
                    return Ok(b);
                }
                Err(e) => why.push(format!("{url}: {e}")),
            }
        }
        Err(Error::Fetch(format!(
            "block {} from no gateway: {}",
            next.cid,
            why.join("; ")
        )))
    }

    fn cached(&self, next: &Peeked) -> Option<Vec<u8>> {
        let b = fs::read(self.cache_path(&next.cid)).ok()?;
        // A cache file is trusted no more than a gateway.
        check_hash(&next.cid, &b).ok()?;
        Some(b)
    }

    fn store(&self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        let path = self.cache_path(cid);
        let tmp = path.with_extension("tmp");
        let io = |e| Error::Path(tmp.display().to_string(), e);
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(block).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Drops the cached blocks of a finished fetch.
    pub(crate) fn clear_cache(&self) -> Result<(), Error> {
        remove_any(&self.cache)
    }
}

/// An error's message without the `fetch:` its variant adds.
fn detail(e: &Error) -> String {
    match e {
        Error::Fetch(m) => m.clone(),
        other => other.to_string(),
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn remove_any(p: &Path) -> Result<(), Error> {
    let r = match fs::symlink_metadata(p) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
    };
    r.map_err(|e| Error::Path(p.display().to_string(), e))
}

/// A block must hash to its CID (sha2-256 only) and be dag-pb or raw.
fn check_hash(cid: &Cid, block: &[u8]) -> Result<(), Error> {
    let codec = cid.codec();
    if codec != DAG_PB && codec != RAW {
        return Err(Error::Fetch(format!(
            "{cid}: codec {codec:#x} is neither dag-pb nor raw"
        )));
    }
    if cid.hash().code() != 0x12 {
        return Err(Error::Fetch(format!("{cid}: only sha2-256 is accepted")));
    }
    let version = match cid.version() {
        cid::Version::V0 => CidVersion::V0,
        cid::Version::V1 => CidVersion::V1,
    };
    if cid_of(block, codec, version)? != *cid {
        return Err(Error::Fetch(format!(
            "block {cid}: its bytes do not hash to its CID"
        )));
    }
    Ok(())
}

/// The next expected block, without its destination (see `Walk::accept`).
struct Peeked {
    cid: Cid,
}

/// The depth-first UnixFS walk: a stack of expected blocks.
struct Walk<'p> {
    stack: Vec<Expected>,
    /// The file whose chunks are arriving.
    file: Option<fs::File>,
    report: Report,
    limits: Limits,
    started: Instant,
    progress: &'p mut dyn FnMut(u64),
}

impl Walk<'_> {
    fn peek(&self) -> Option<Peeked> {
        self.stack.last().map(|e| Peeked { cid: e.cid })
    }

    fn check_time(&self) -> Result<(), Error> {
        self.remaining().map(|_| ())
    }

    /// Time left of the deadline: every request gets at most this much, so
    /// a gateway that drips bytes cannot stretch the fetch.
    fn remaining(&self) -> Result<Duration, Error> {
        self.limits
            .deadline
            .checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::Limit(format!("fetch took longer than {:?}", self.limits.deadline))
            })
    }

    /// Verifies `block` as the next expected one and applies it; `keep`
    /// stores it in the cache once verified.
    fn accept(
        &mut self,
        next: &Peeked,
        block: &[u8],
        keep: impl FnOnce(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if block.len() > self.limits.max_block {
            return Err(Error::Limit(format!(
                "block {} is {} bytes, over the {} byte limit",
                next.cid,
                block.len(),
                self.limits.max_block
            )));
        }
        check_hash(&next.cid, block)?;
        keep(block)?;
        let Some(exp) = self.stack.pop() else {
            return Err(Error::Internal);
        };
        self.report.blocks += 1;
        if exp.depth > self.limits.max_depth {
            return Err(Error::Limit(format!(
                "DAG deeper than {}",
                self.limits.max_depth
            )));
        }
        let cid = exp.cid;
        if cid.codec() == RAW {
            match exp.into {
                Into::Chunk(size) => self.write_chunk(&cid, block, size)?,
                Into::Entry(path) => {
                    self.create_file(&path)?;
                    self.report.files += 1;
                    self.write_chunk(&cid, block, block.len() as u64)?;
                }
            }
            self.close_finished_file();
            return Ok(());
        }
        let node = Node::decode(block)?;
        let data = Unixfs::decode(node.data.as_deref().unwrap_or_default())?;
        let bad = |why: &str| Error::Fetch(format!("block {cid}: {why}"));
        match (data.kind, exp.into) {
            (Some(Kind::File) | Some(Kind::Raw), into) => {
                let filesize = data.filesize.unwrap_or(0);
                let own = data.data.as_deref().unwrap_or_default();
                if node.links.len() != data.blocksizes.len() {
                    return Err(bad("links and blocksizes differ in number"));
                }
                // Sizes come from the gateway: summed without overflow.
                let total = data
                    .blocksizes
                    .iter()
                    .try_fold(own.len() as u64, |acc, b| acc.checked_add(*b));
                if total != Some(filesize) {
                    return Err(bad("filesize is not the sum of its parts"));
                }
                match into {
                    Into::Chunk(size) if size != filesize => {
                        return Err(bad("its size differs from what its parent says"));
                    }
                    Into::Chunk(_) => {}
                    Into::Entry(path) => {
                        self.create_file(&path)?;
                        self.report.files += 1;
                    }
                }
                self.write_chunk(&cid, own, own.len() as u64)?;
                for (link, size) in node.links.iter().zip(&data.blocksizes).rev() {
                    self.push(&link.hash, Into::Chunk(*size), exp.depth + 1)?;
                }
                self.close_finished_file();
                Ok(())
            }
            (Some(Kind::Directory), Into::Entry(path)) => {
                fs::create_dir(&path).map_err(|e| Error::Path(path.display().to_string(), e))?;
                let mut seen = std::collections::HashSet::new();
                for link in node.links.iter().rev() {
                    check_name(&link.name).map_err(|why| bad(&why))?;
                    if !seen.insert(link.name.as_str()) {
                        return Err(bad(&format!("the name `{}` appears twice", link.name)));
                    }
                    self.push(
                        &link.hash,
                        Into::Entry(path.join(&link.name)),
                        exp.depth + 1,
                    )?;
                }
                Ok(())
            }
            (Some(Kind::Directory), Into::Chunk(_)) => Err(bad("a directory inside a file")),
            (Some(Kind::Symlink), _) => {
                Err(bad("symlinks have no place in an image and are refused"))
            }
            (Some(Kind::HamtShard), _) => Err(Error::Unsupported(format!(
                "{cid}: sharded (HAMT) directories are not fetched"
            ))),
            (other, _) => Err(bad(&format!(
                "UnixFS type {other:?} is not a file or directory"
            ))),
        }
    }

    /// A file's chunks sit on top of the stack until the last one is
    /// written; once the top is no chunk, the file is complete.
    fn close_finished_file(&mut self) {
        if !matches!(
            self.stack.last(),
            Some(Expected {
                into: Into::Chunk(_),
                ..
            })
        ) {
            self.file = None;
        }
    }

    fn push(&mut self, hash: &[u8], into: Into, depth: usize) -> Result<(), Error> {
        let cid = Cid::try_from(hash)
            .map_err(|e| Error::Fetch(format!("a link holds a bad CID: {e}")))?;
        self.stack.push(Expected { cid, into, depth });
        Ok(())
    }

    fn create_file(&mut self, path: &Path) -> Result<(), Error> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::Path(path.display().to_string(), e))?;
        self.file = Some(f);
        Ok(())
    }

    fn write_chunk(&mut self, cid: &Cid, bytes: &[u8], expected: u64) -> Result<(), Error> {
        if bytes.len() as u64 != expected {
            return Err(Error::Fetch(format!(
                "block {cid}: {} bytes where its parent says {expected}",
                bytes.len()
            )));
        }
        self.report.bytes += bytes.len() as u64;
        (self.progress)(self.report.bytes);
        if self.report.bytes > self.limits.max_total {
            return Err(Error::Limit(format!(
                "content over the {} byte limit",
                self.limits.max_total
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let f = self.file.as_mut().ok_or(Error::Internal)?;
        f.write_all(bytes).map_err(Error::Io)
    }
}

/// A directory entry's name must be one plain path component.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("the entry name {name:?} is not a plain file name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::pb::Link;

    /// A walk expecting `root`, writing under a fresh temporary directory.
    fn accept_root(root: &Cid, block: &[u8]) -> Result<(), Error> {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = |_| {};
        let mut walk = Walk {
            stack: vec![Expected {
                cid: *root,
                into: Into::Entry(dir.path().join("out")),
                depth: 0,
            }],
            file: None,
            report: Report::default(),
            limits: Limits::default(),
            started: Instant::now(),
            progress: &mut progress,
        };
        walk.accept(&Peeked { cid: *root }, block, |_| Ok(()))
    }

    fn file_node(filesize: u64, blocksizes: Vec<u64>) -> (Cid, Vec<u8>) {
        let child = cid_of(b"x", RAW, CidVersion::V1).unwrap();
        let node = Node {
            links: blocksizes
                .iter()
                .map(|_| Link {
                    hash: child.to_bytes(),
                    name: String::new(),
                    tsize: 1,
                })
                .collect(),
            data: Some(
                Unixfs {
                    kind: Some(Kind::File),
                    data: None,
                    filesize: Some(filesize),
                    blocksizes,
                }
                .encode(),
            ),
        };
        let block = node.encode();
        (cid_of(&block, DAG_PB, CidVersion::V1).unwrap(), block)
    }

    #[test]
    fn sizes_that_overflow_or_disagree_are_refused() {
        let (cid, block) = file_node(1, vec![u64::MAX, 2]);
        let e = accept_root(&cid, &block).unwrap_err().to_string();
        assert!(e.contains("filesize is not the sum of its parts"), "{e}");
        let (cid, block) = file_node(5, vec![1, 1]);
        assert!(accept_root(&cid, &block).is_err());
        let (cid, block) = file_node(2, vec![1, 1]);
        accept_root(&cid, &block).unwrap();
    }

    #[test]
    fn a_block_that_is_not_the_expected_one_is_refused() {
        let (cid, _) = file_node(2, vec![1, 1]);
        let (_, other) = file_node(3, vec![1, 2]);
        let e = accept_root(&cid, &other).unwrap_err().to_string();
        assert!(e.contains("do not hash to its CID"), "{e}");
    }
}
