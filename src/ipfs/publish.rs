//! Publishing an image for a lease: the buyer checks it is an OCI image,
//! packs it as a CAR and hands it to a Kubo-compatible RPC
//! (`POST /api/v0/dag/import`), or leaves the CAR for a pinning service.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use cid::Cid;

use super::Error;
use super::car;
use super::unixfs::{Options, add_path};

/// Refuses anything that is not an OCI image layout (directory or tar) or
/// a `docker save` archive, before a byte is uploaded.
pub(crate) fn check_image(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
    if meta.is_dir() {
        for f in ["oci-layout", "index.json"] {
            if !path.join(f).is_file() {
                return Err(Error::Unsupported(format!(
                    "{} is not an OCI image layout: it has no {f}",
                    path.display()
                )));
            }
        }
        return Ok(());
    }
    let file = fs::File::open(path).map_err(|e| Error::Path(path.display().to_string(), e))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .map_err(|e| Error::Path(path.display().to_string(), e))?;
    for e in entries {
        let e = e.map_err(|e| {
            Error::Unsupported(format!("{} is not a tar archive: {e}", path.display()))
        })?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let name = name.trim_start_matches("./");
        if name == "oci-layout" || name == "manifest.json" {
            return Ok(());
        }
    }
    Err(Error::Unsupported(format!(
        "{} holds neither an OCI layout (oci-layout) nor a docker-save archive (manifest.json)",
        path.display()
    )))
}

/// Counts the bytes read through it and reports them.
struct Counted<R, F> {
    inner: R,
    done: u64,
    report: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counted<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}

/// Uploads `car` (whose root is `root`) to `api`'s `dag/import`, pinning
/// the root, and checks the node answers with the same root. `progress`
/// gets the bytes sent so far.
pub(crate) fn dag_import(
    api: &str,
    car: &Path,
    root: &Cid,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<(), Error> {
    let url = format!(
        "{}/api/v0/dag/import?pin-roots=true",
        api.trim_end_matches('/')
    );
    let file = fs::File::open(car).map_err(|e| Error::Path(car.display().to_string(), e))?;
    let boundary = format!("dedge-{:016x}", rand_u64());
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image.car\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = io::Cursor::new(head.into_bytes())
        .chain(Counted {
            inner: file,
            done: 0,
            report: progress,
        })
        .chain(io::Cursor::new(tail.into_bytes()));
    let agent: ureq::Agent = crate::http_agent::agent(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(3600)))
            .http_status_as_error(false),
    );
    let mut resp = agent
        .post(&url)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .send(ureq::SendBody::from_owned_reader(body))
        .map_err(|e| Error::Publish(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| Error::Publish(format!("{url}: reading the answer: {e}")))?;
    if status != 200 {
        return Err(Error::Publish(format!(
            "{url}: HTTP {status}: {}",
            text.trim()
        )));
    }
    // One JSON object per line; the root line names the CID the node pinned.
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|_| Error::Publish(format!("{url}: not Kubo's answer: {line:?}")))?;
        if let Some(c) = v.pointer("/Root/Cid/~1").and_then(|c| c.as_str()) {
            let got: Cid = c
                .parse()
                .map_err(|e| Error::Publish(format!("{url}: root `{c}`: {e}")))?;
            let err = v
                .pointer("/Root/PinErrorMsg")
                .and_then(|m| m.as_str())
                .unwrap_or("");
            if !err.is_empty() {
                return Err(Error::Publish(format!(
                    "{url}: pinning {got} failed: {err}"
                )));
            }
            if got != *root {
                return Err(Error::Publish(format!(
                    "{url}: the node imported root {got}, not {root}"
                )));
            }
            return Ok(());
        }
    }
    Err(Error::Publish(format!(
        "{url}: the answer names no root: {}",
        text.trim()
    )))
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // A boundary only has to be absent from the body; the time will do if
    // the OS has no randomness to give.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b = t.to_le_bytes();
    }
    u64::from_le_bytes(b)
}

/// The root is known only at the end and leads the file: sections go to a
/// scratch file first, then behind the header; the CAR appears by rename.
pub(crate) fn write_car(path: &Path, out: &Path, opts: Options) -> Result<Cid, Error> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::Path(p.clone(), e)
    };
    let sections = out.with_extension("car.sections");
    let partial = out.with_extension("car.partial");
    let result = (|| {
        let mut w = BufWriter::new(fs::File::create(&sections).map_err(io(&sections))?);
        let added = add_path(path, opts, &mut |cid, block| {
            car::write_section(&mut w, cid, block).map_err(Error::Io)
        })?;
        w.flush().map_err(io(&sections))?;
        drop(w);
        let mut f = BufWriter::new(fs::File::create(&partial).map_err(io(&partial))?);
        car::write_header(&mut f, &added.cid).map_err(io(&partial))?;
        let mut src = fs::File::open(&sections).map_err(io(&sections))?;
        std::io::copy(&mut src, &mut f).map_err(io(&partial))?;
        let f = f.into_inner().map_err(|e| io(&partial)(e.into_error()))?;
        f.sync_all().map_err(io(&partial))?;
        fs::rename(&partial, out).map_err(io(out))?;
        Ok(added.cid)
    })();
    let _ = fs::remove_file(&sections);
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}
