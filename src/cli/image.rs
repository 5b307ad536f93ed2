//! `dedge image import|ls|rm|gc`: the gateway's verified image store.

use std::path::PathBuf;

use super::chain_args::runtime;
use super::{Error, say};
use crate::board::BoardFile;
use crate::runtime::image::{ImageStore, Limits, Platform};
use crate::store::Store;

pub(crate) const USAGE: &str = "\
Usage: dedge image import PATH --board BOARD [--ref REF] [--name NAME]
       dedge image ls --board BOARD [--json]
       dedge image rm NAME --board BOARD
       dedge image gc --board BOARD

  import  an OCI image layout (directory or tar) or a docker-save archive;
          every blob and layer digest is checked, the platform must be the
          board's; --ref picks a tag when the layout has several
  ls      the images in the store
  rm      forget an image (its blobs go at the next gc)
  gc      delete blobs no image references

The store lives in the board's data_dir (images/ and the cli state).
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}"),
        Some(other) => return Err(other.unexpected().into()),
    };
    let (mut board, mut reference, mut name, mut arg, mut json) =
        (None::<PathBuf>, None, None, None, false);
    while let Some(a) = parser.next()? {
        match a {
            Long("board") => board = Some(parser.value()?.into()),
            Long("ref") => reference = Some(parser.value()?.string()?),
            Long("name") => name = Some(parser.value()?.string()?),
            Long("json") => json = true,
            Short('h') | Long("help") => return say!("{USAGE}"),
            Value(v) if arg.is_none() => arg = Some(v),
            other => return Err(other.unexpected().into()),
        }
    }
    let board = board.ok_or_else(|| Error::Usage("image commands need --board BOARD".into()))?;
    let board = BoardFile::load(&board)
        .map_err(|e| Error::Config(e.to_string()))?
        .board;
    let data = &board.agent.data_dir;
    let state = Store::open(&data.join("cli")).map_err(runtime)?;
    let images =
        ImageStore::open(&data.join("images"), &state, Limits::default()).map_err(runtime)?;
    match sub.as_str() {
        "import" => {
            let path = PathBuf::from(arg.ok_or_else(|| Error::Usage("import needs PATH".into()))?);
            let name = name.unwrap_or_else(|| {
                path.file_stem()
                    .map_or("image".into(), |s| s.to_string_lossy().into_owned())
            });
            let img = images
                .import(
                    &path,
                    reference.as_deref(),
                    &Platform::of(board.board.arch),
                    &name,
                )
                .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))?;
            say!(
                "{name} {} ({} layers, verified)\n",
                img.manifest,
                img.layers.len()
            )
        }
        "ls" => {
            let list = images.list().map_err(runtime)?;
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|(n, i)| serde_json::json!({"name": n, "manifest": i.manifest.as_str(), "layers": i.layers.len(),
                        "size": i.layers.iter().map(|l| l.size).sum::<u64>(), "platform": i.platform}))
                    .collect();
                return say!("{}\n", serde_json::Value::Array(v));
            }
            for (n, i) in &list {
                let size = crate::units::ByteSize(i.layers.iter().map(|l| l.size).sum());
                say!(
                    "{n:<24} {}  {}/{}  {} layers  {size}\n",
                    &i.manifest.as_str()[..19],
                    i.platform.os,
                    i.platform.architecture,
                    i.layers.len()
                )?;
            }
            Ok(())
        }
        "rm" => {
            let n = arg
                .ok_or_else(|| Error::Usage("rm needs NAME".into()))?
                .string()?;
            images
                .remove(&n)
                .map_err(|e| Error::Runtime(e.to_string()))?;
            say!("removed {n}\n")
        }
        "gc" => {
            let (n, bytes) = images.gc().map_err(runtime)?;
            say!("freed {n} blobs, {}\n", crate::units::ByteSize(bytes))
        }
        other => Err(Error::Usage(format!("unknown image command `{other}`"))),
    }
}
