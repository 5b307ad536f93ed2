//! `dedge edgex ls`: the device catalogue the gateway would advertise.

use std::path::PathBuf;

use super::chain_args::runtime;
use super::{Error, err_line, say};
use crate::board::{BoardFile, Edgex};
use crate::edgex::catalogue::Catalogue;
use crate::edgex::client::Client;

pub(crate) const USAGE: &str = "\
Usage: dedge edgex ls --board BOARD [--json]

  ls    the devices and commands the board's [[edgex.devices]] offer, as
        the gateway's EdgeX serves them: profile, read/write, value types.
        Offers EdgeX cannot serve (no such device or command, hidden,
        locked, read-only offered for writing...) are left out and listed
        on stderr; `gateway advertise` publishes the same catalogue.

Options:
  --json      the capability document's `devices` and the problems as JSON
  -h, --help  print this help
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    match parser.next()? {
        Some(Value(v)) if v == "ls" => {}
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}"),
        Some(other) => return Err(other.unexpected().into()),
    }
    let (mut board, mut json) = (None::<PathBuf>, false);
    while let Some(a) = parser.next()? {
        match a {
            Long("board") => board = Some(parser.value()?.into()),
            Long("json") => json = true,
            Short('h') | Long("help") => return say!("{USAGE}"),
            other => return Err(other.unexpected().into()),
        }
    }
    let board = board.ok_or_else(|| Error::Usage("edgex ls needs --board BOARD".into()))?;
    let board = BoardFile::load(&board).map_err(|e| Error::Config(e.to_string()))?;
    let edgex = board_edgex(&board)?;
    let cat = read_catalogue(edgex)?;
    if json {
        let v = serde_json::json!({"devices": cat.offers(), "problems": cat.problems});
        return say!("{v}\n");
    }
    say!(
        "{:<32}  {:<32}  {:<28}  {:<5}  {:<5}  VALUE TYPES\n",
        "DEVICE",
        "PROFILE",
        "COMMAND",
        "READ",
        "WRITE"
    )?;
    for d in cat.devices.values() {
        for (name, c) in &d.commands {
            let types: Vec<String> = c
                .resources
                .iter()
                .filter(|r| !r.hidden)
                .map(|r| r.value_type.to_string())
                .collect();
            let yes = |b: bool| if b { "yes" } else { "-" };
            say!(
                "{:<32}  {:<32}  {name:<28}  {:<5}  {:<5}  {}\n",
                d.name,
                d.profile,
                yes(c.read),
                yes(c.write),
                types.join(", ")
            )?;
        }
    }
    Ok(())
}

/// The board's `[edgex]`, or a configuration error.
pub(crate) fn board_edgex(board: &BoardFile) -> Result<&Edgex, Error> {
    board.board.edgex.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "{}: the board has no [edgex] table: this gateway sells no devices",
            board.path.display()
        ))
    })
}

/// Reads the catalogue; its problems go to stderr as warnings.
pub(crate) fn read_catalogue(edgex: &Edgex) -> Result<Catalogue, Error> {
    let client = Client::from_board(edgex).map_err(|e| Error::Config(e.to_string()))?;
    let cat = Catalogue::read(&client, &edgex.devices).map_err(runtime)?;
    for p in &cat.problems {
        err_line(format_args!("warning: not offered: {p}"));
    }
    Ok(cat)
}
