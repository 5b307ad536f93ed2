//! `dedge board check [--host] FILE...`

use std::path::PathBuf;

use super::{Error, err_line, say};
use crate::board::{BoardFile, HostFacts};

pub(crate) const USAGE: &str = "\
Usage: dedge board check [--host] FILE...

Checks board files: TOML syntax, unknown keys, types and units, and whether
the values can describe a working gateway. Every problem is reported as
FILE:LINE:COLUMN with a fix.

Options:
  --host      also check each board against this machine: architecture, CPUs,
              physical memory, disk, cgroup controllers, key file permissions
  -h, --help  print this help

Exit codes: 0 all files are valid, 2 a file has problems or cannot be read.
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    match parser.next()? {
        Some(Value(v)) if v == "check" => check(parser),
        Some(Value(v)) => Err(Error::Usage(format!(
            "unknown board command `{}`; try `dedge board check FILE`",
            v.to_string_lossy()
        ))),
        Some(Short('h') | Long("help")) => {
            say!("{USAGE}")
        }
        Some(other) => Err(other.unexpected().into()),
        None => Err(Error::Usage(
            "missing board command; try `dedge board check FILE`".into(),
        )),
    }
}

fn check(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut host = false;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("host") => host = true,
            Short('h') | Long("help") => {
                return say!("{USAGE}");
            }
            Value(v) => files.push(v.into()),
            other => return Err(other.unexpected().into()),
        }
    }
    if files.is_empty() {
        return Err(Error::Usage("board check needs at least one FILE".into()));
    }
    let facts = host.then(HostFacts::detect);
    let mut failed = 0usize;
    for file in &files {
        let result = BoardFile::load(file).and_then(|b| match &facts {
            Some(f) => b.check_host(f).map(|()| b),
            None => Ok(b),
        });
        match result {
            Ok(b) => say!("ok    {}  {}\n", file.display(), summary(&b))?,
            Err(e) => {
                failed += 1;
                err_line(format_args!("{e}"));
            }
        }
    }
    if failed > 0 {
        return Err(Error::Config(format!(
            "{failed} of {} board file{} invalid",
            files.len(),
            if files.len() == 1 { " is" } else { "s are" }
        )));
    }
    Ok(())
}

fn summary(file: &BoardFile) -> String {
    let b = &file.board;
    let devices = b.edgex.as_ref().map_or(0, |e| e.devices.len());
    format!(
        "{} ({}, {} mCPU, {} memory, {} disk, {} device{})",
        b.board.model,
        b.board.arch,
        b.resources.cpu_millicores,
        b.resources.memory,
        b.resources.disk,
        devices,
        if devices == 1 { "" } else { "s" }
    )
}
