//! CAR v1 (content-addressable archive): a dag-cbor header naming the root,
//! then `varint(len) ‖ CID ‖ block` sections. The writer is for publishing
//! (`dedge ipfs car`); the reader streams a gateway's response with limits.

use std::io::{self, Read, Write};

use cid::Cid;

use super::Error;
use super::pb::put_varint;

/// A CAR header: `{"roots": [root], "version": 1}` in dag-cbor, keys in
/// canonical (length-first) order.
fn header(root: &Cid) -> Vec<u8> {
    let cid = root.to_bytes();
    let mut h = Vec::with_capacity(cid.len() + 24);
    h.push(0xa2); // map(2)
    h.push(0x65); // text(5)
    h.extend_from_slice(b"roots");
    h.push(0x81); // array(1)
    h.extend_from_slice(&[0xd8, 0x2a]); // tag(42): CID
    byte_string_head(&mut h, cid.len() + 1);
    h.push(0x00); // multibase identity prefix
    h.extend_from_slice(&cid);
    h.push(0x67); // text(7)
    h.extend_from_slice(b"version");
    h.push(0x01);
    h
}

fn byte_string_head(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

/// Writes the CAR v1 header naming `root`.
pub fn write_header(out: &mut impl Write, root: &Cid) -> io::Result<()> {
    let h = header(root);
    let mut len = Vec::new();
    put_varint(&mut len, h.len() as u64);
    out.write_all(&len)?;
    out.write_all(&h)
}

/// Writes one `varint(len) ‖ CID ‖ block` section.
pub fn write_section(out: &mut impl Write, cid: &Cid, data: &[u8]) -> io::Result<()> {
    let c = cid.to_bytes();
    let mut len = Vec::new();
    put_varint(&mut len, (c.len() + data.len()) as u64);
    out.write_all(&len)?;
    out.write_all(&c)?;
    out.write_all(data)
}

/// Reads a CAR v1 stream section by section, never holding more than one
/// block; a header over 64 KiB or a section over `max_block` is refused.
pub struct Reader<R: Read> {
    input: R,
    max_block: usize,
    /// The root the header names.
    pub root: Cid,
}

const MAX_HEADER: u64 = 64 * 1024;

impl<R: Read> Reader<R> {
    pub fn new(mut input: R, max_block: usize) -> Result<Reader<R>, Error> {
        let len =
            read_varint(&mut input)?.ok_or_else(|| Error::Car("empty stream: no header".into()))?;
        if len == 0 || len > MAX_HEADER {
            return Err(Error::Car(format!("header of {len} bytes")));
        }
        let mut h = vec![0u8; len as usize];
        input
            .read_exact(&mut h)
            .map_err(|_| Error::Car("stream ends inside the header".into()))?;
        let root = parse_header(&h)?;
        Ok(Reader {
            input,
            max_block,
            root,
        })
    }

    /// The next block, or `None` at a clean end of stream (between sections).
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, Error> {
        let Some(len) = read_varint(&mut self.input)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| Error::Car("section length overflow".into()))?;
        // A CID is at most ~70 bytes here; the block is the rest.
        if len > self.max_block + 128 {
            return Err(Error::Car(format!(
                "a section of {len} bytes is over the {} byte block limit",
                self.max_block
            )));
        }
        let mut section = vec![0u8; len];
        self.input
            .read_exact(&mut section)
            .map_err(|_| Error::Car("stream ends inside a block (truncated)".into()))?;
        let mut cursor = io::Cursor::new(&section[..]);
        let cid =
            Cid::read_bytes(&mut cursor).map_err(|e| Error::Car(format!("section CID: {e}")))?;
        let at = cursor.position() as usize;
        section.drain(..at);
        Ok(Some((cid, section)))
    }
}

/// Reads a varint; `None` on end of stream before its first byte.
fn read_varint(r: &mut impl Read) -> Result<Option<u64>, Error> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(Error::Car("stream ends inside a length".into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(Error::Car("length varint over 10 bytes".into()))
}

/// Takes the single root out of a dag-cbor `{"roots": [CID], "version": 1}`.
fn parse_header(h: &[u8]) -> Result<Cid, Error> {
    let bad = |why: &str| Error::Car(format!("header: {why}"));
    let mut p = Cbor { b: h };
    let entries = p.head(5).ok_or_else(|| bad("not a map"))?;
    let (mut root, mut version) = (None, None);
    for _ in 0..entries {
        let klen = p.head(3).ok_or_else(|| bad("key is not text"))?;
        let key = p.take(klen as usize).ok_or_else(|| bad("truncated key"))?;
        match key {
            b"roots" => {
                let n = p.head(4).ok_or_else(|| bad("roots is not an array"))?;
                if n != 1 {
                    return Err(bad(&format!("{n} roots, expected one")));
                }
                if p.take(2) != Some(&[0xd8, 0x2a][..]) {
                    return Err(bad("root is not a CID (tag 42)"));
                }
                let blen = p.head(2).ok_or_else(|| bad("CID is not bytes"))?;
                let bytes = p.take(blen as usize).ok_or_else(|| bad("truncated CID"))?;
                let cid = bytes
                    .split_first()
                    .filter(|(prefix, _)| **prefix == 0)
                    .map(|(_, c)| c)
                    .ok_or_else(|| bad("CID without the identity prefix"))?;
                root = Some(Cid::try_from(cid).map_err(|e| bad(&e.to_string()))?);
            }
            b"version" => version = p.head(0),
            _ => return Err(bad("unknown key")),
        }
    }
    if version != Some(1) {
        return Err(bad("not CAR version 1"));
    }
    if !p.b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    root.ok_or_else(|| bad("no roots"))
}

/// Just enough CBOR for a CAR header.
struct Cbor<'a> {
    b: &'a [u8],
}

impl<'a> Cbor<'a> {
    /// An item head of major type `major`; returns its argument.
    fn head(&mut self, major: u8) -> Option<u64> {
        let (&first, rest) = self.b.split_first()?;
        if first >> 5 != major {
            return None;
        }
        self.b = rest;
        let n = match first & 0x1f {
            v @ 0..=23 => u64::from(v),
            24 => u64::from(*self.take(1)?.first()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some(n)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipfs::unixfs::{CidVersion, add_reader};

    #[test]
    fn a_written_car_reads_back_block_for_block() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7) as u8).collect();
        let mut blocks = Vec::new();
        let root = add_reader(&data[..], CidVersion::V0, &mut |c, b| {
            blocks.push((*c, b.to_vec()));
            Ok(())
        })
        .unwrap()
        .cid;
        let mut car = Vec::new();
        write_header(&mut car, &root).unwrap();
        for (c, b) in &blocks {
            write_section(&mut car, c, b).unwrap();
        }
        // The header bytes as the research probe and go-car write them.
        assert_eq!(
            &car[..10],
            &[0x38, 0xa2, 0x65, b'r', b'o', b'o', b't', b's', 0x81, 0xd8]
        );
        let mut r = Reader::new(&car[..], 1 << 20).unwrap();
        assert_eq!(r.root, root);
        let mut back = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            back.push(b);
        }
        assert_eq!(back, blocks);
    }

    #[test]
    fn truncation_and_oversize_are_errors() {
        let root = add_reader(&b"abc"[..], CidVersion::V1, &mut |_, _| Ok(()))
            .unwrap()
            .cid;
        let mut car = Vec::new();
        write_header(&mut car, &root).unwrap();
        write_section(&mut car, &root, &[7u8; 1000]).unwrap();
        for cut in [1, 5, car.len() - 1] {
            let r = Reader::new(&car[..cut], 1 << 20).and_then(|mut r| r.next_block().map(|_| ()));
            assert!(r.is_err(), "cut at {cut} accepted");
        }
        let mut r = Reader::new(&car[..], 100).unwrap();
        let e = r.next_block().unwrap_err().to_string();
        assert!(e.contains("over the 100 byte block limit"), "{e}");
        assert!(Reader::new(&[0x02, 0xa0, 0x00][..], 100).is_err());
    }
}
