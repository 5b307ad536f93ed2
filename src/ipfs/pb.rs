//! The two protobuf messages UnixFS is made of, encoded byte for byte as
//! Kubo (boxo) writes them, and decoded strictly enough to walk a DAG.
//!
//! dag-pb `PBNode`: links (field 2) first, then data (field 1). `PBLink`:
//! Hash (1), Name (2), Tsize (3), in that order, Name written even when
//! empty (the UnixFS spec says it SHOULD NOT be, Kubo writes it; CIDs
//! follow Kubo). UnixFS `Data`: Type (1), Data (2), filesize (3),
//! blocksizes (4, one unpacked entry each).

use super::Error;

/// UnixFS node types (the `Type` enum of unixfs.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

impl Kind {
    fn from_u64(v: u64) -> Option<Kind> {
        Some(match v {
            0 => Kind::Raw,
            1 => Kind::Directory,
            2 => Kind::File,
            3 => Kind::Metadata,
            4 => Kind::Symlink,
            5 => Kind::HamtShard,
            _ => return None,
        })
    }
}

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The child's CID in binary form (for CIDv0, the bare multihash).
    pub hash: Vec<u8>,
    pub name: String,
    /// Size of the child's block plus its own links' Tsizes.
    pub(crate) tsize: u64,
}

/// The UnixFS `Data` message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unixfs {
    pub(crate) kind: Option<Kind>,
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) filesize: Option<u64>,
    pub(crate) blocksizes: Vec<u64>,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub links: Vec<Link>,
    pub data: Option<Vec<u8>>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_u64(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(field << 3);
    put_varint(out, v);
}

impl Unixfs {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(k) = self.kind {
            put_u64(&mut out, 1, k as u64);
        }
        if let Some(d) = &self.data {
            put_bytes(&mut out, 2, d);
        }
        if let Some(s) = self.filesize {
            put_u64(&mut out, 3, s);
        }
        for b in &self.blocksizes {
            put_u64(&mut out, 4, *b);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Unixfs, Error> {
        let mut u = Unixfs::default();
        let mut r = Reader { buf: bytes };
        while !r.buf.is_empty() {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, 0) => {
                    let v = r.varint()?;
                    u.kind =
                        Some(Kind::from_u64(v).ok_or_else(|| bad(format!("UnixFS type {v}")))?);
                }
                (2, 2) => u.data = Some(r.bytes()?.to_vec()),
                (3, 0) => u.filesize = Some(r.varint()?),
                (4, 0) => u.blocksizes.push(r.varint()?),
                (4, 2) => {
                    // Packed blocksizes: legal protobuf, never written by Kubo.
                    let mut p = Reader { buf: r.bytes()? };
                    while !p.buf.is_empty() {
                        u.blocksizes.push(p.varint()?);
                    }
                }
                (5 | 6, 0) => {
                    r.varint()?; // hashType, fanout (HAMT shards)
                }
                (7, 0) | (8, 2) => {
                    r.skip(wire)?; // mode, mtime
                }
                _ => return Err(bad(format!("UnixFS field {field} (wire type {wire})"))),
            }
        }
        Ok(u)
    }
}

impl Node {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.links {
            let mut link = Vec::with_capacity(l.hash.len() + l.name.len() + 16);
            put_bytes(&mut link, 1, &l.hash);
            put_bytes(&mut link, 2, l.name.as_bytes());
            put_u64(&mut link, 3, l.tsize);
            put_bytes(&mut out, 2, &link);
        }
        if let Some(d) = &self.data {
            put_bytes(&mut out, 1, d);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Node, Error> {
        let mut n = Node::default();
        let mut r = Reader { buf: bytes };
        while !r.buf.is_empty() {
            match r.key()? {
                (1, 2) => n.data = Some(r.bytes()?.to_vec()),
                (2, 2) => n.links.push(decode_link(r.bytes()?)?),
                (f, w) => return Err(bad(format!("dag-pb field {f} (wire type {w})"))),
            }
        }
        Ok(n)
    }
}

fn decode_link(bytes: &[u8]) -> Result<Link, Error> {
    let mut r = Reader { buf: bytes };
    let (mut hash, mut name, mut tsize) = (None, String::new(), 0);
    while !r.buf.is_empty() {
        match r.key()? {
            (1, 2) => hash = Some(r.bytes()?.to_vec()),
            (2, 2) => {
                name = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| bad("link name is not UTF-8".into()))?;
            }
            (3, 0) => tsize = r.varint()?,
            (f, w) => return Err(bad(format!("dag-pb link field {f} (wire type {w})"))),
        }
    }
    let hash = hash.ok_or_else(|| bad("link without a hash".into()))?;
    Ok(Link { hash, name, tsize })
}

fn bad(why: String) -> Error {
    Error::Block(format!("malformed dag-pb: {why}"))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint".into()))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes".into()))
    }

    fn key(&mut self) -> Result<(u64, u64), Error> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("length overflow".into()))?;
        if n > self.buf.len() {
            return Err(bad("length past the end".into()));
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    fn skip(&mut self, wire: u64) -> Result<(), Error> {
        match wire {
            0 => self.varint().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            _ => Err(bad(format!("wire type {wire}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_bytes_are_kubos() {
        // `hello world\n` as Kubo stores it (CIDv0 leaf).
        let leaf = Node {
            links: vec![],
            data: Some(
                Unixfs {
                    kind: Some(Kind::File),
                    data: Some(b"hello world\n".to_vec()),
                    filesize: Some(12),
                    blocksizes: vec![],
                }
                .encode(),
            ),
        };
        let mut want = vec![0x0a, 0x12, 0x08, 0x02, 0x12, 0x0c];
        want.extend_from_slice(b"hello world\n");
        want.extend_from_slice(&[0x18, 0x0c]);
        assert_eq!(leaf.encode(), want);
        let back = Node::decode(&want).unwrap();
        assert_eq!(back, leaf);
        let u = Unixfs::decode(back.data.as_deref().unwrap()).unwrap();
        assert_eq!(u.filesize, Some(12));
    }

    #[test]
    fn links_come_first_with_an_empty_name() {
        let n = Node {
            links: vec![Link {
                hash: vec![0x12, 0x20, 1, 2],
                name: String::new(),
                tsize: 262158,
            }],
            data: Some(vec![0x08, 0x02]),
        };
        let b = n.encode();
        assert_eq!(&b[..2], &[0x12, 0x0c]); // field 2 (links) first
        assert_eq!(&b[2..8], &[0x0a, 0x04, 0x12, 0x20, 1, 2]);
        assert_eq!(&b[8..10], &[0x12, 0x00]); // empty Name written
        assert_eq!(Node::decode(&b).unwrap(), n);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0xff][..],
            &[0x0a, 0x05, 1],
            &[0x12, 0x02, 0x18],
            &[0x08; 12],
            &[0x1a, 0],
        ] {
            assert!(Node::decode(bad).is_err(), "{bad:?}");
        }
        assert!(Unixfs::decode(&[0x08, 0x09]).is_err());
    }
}
