//! Frames: a 4-byte big-endian length, then that many bytes. The length is
//! checked against the cap before anything is allocated, so a peer cannot
//! make us reserve memory by announcing a large frame.

use std::io::{Read, Write};

use super::{Error, Result};

pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8], max: usize) -> Result<()> {
    if payload.len() > max {
        return Err(Error::Malformed(format!(
            "frame of {} bytes is over the limit of {max}",
            payload.len()
        )));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Malformed("frame length does not fit 32 bits".into()))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

pub(crate) fn read_frame(r: &mut impl Read, max: usize) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::Malformed(format!(
            "peer announced a frame of {len} bytes, over the limit of {max}"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_allocation() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello", 16).unwrap();
        write_frame(&mut wire, b"", 16).unwrap();
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r, 16).unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 16).unwrap(), b"");
        assert!(matches!(read_frame(&mut r, 16), Err(Error::Io(_))));
        // 4 GiB announced: refused from the header alone.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut &huge[..], 16),
            Err(Error::Malformed(_))
        ));
        assert!(write_frame(&mut Vec::new(), &[0; 17], 16).is_err());
        // Truncated body.
        let short = [0, 0, 0, 5, b'a'];
        assert!(matches!(read_frame(&mut &short[..], 16), Err(Error::Io(_))));
    }
}
