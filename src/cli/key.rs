//! `dedge key new|address`: the gateway's or buyer's chain key.

use std::path::{Path, PathBuf};

use super::{Error, say};
use crate::board::BoardFile;
use crate::chain::{Signer, keystore};

pub(crate) const USAGE: &str = "\
Usage: dedge key new (FILE [--gateway] | --board BOARD) [--passphrase-file FILE]
       dedge key address (FILE | --board BOARD) [--passphrase-file FILE]

Creates, or reads, an encrypted key file (Web3 Secret Storage v3, the format
geth and Foundry use). The passphrase comes from --passphrase-file, else the
board's identity.passphrase_file, else the DEDGE_PASSPHRASE environment
variable; never from the command line or the board file itself.

  new       write a fresh key to FILE (or the board's identity.key_file),
            mode 600; refuses to overwrite; prints the address. A gateway's
            key (--board, or --gateway) is written with scrypt N = 2^13,
            r = 8, p = 4: 8 MiB to unlock at each agent start, the work of
            the N = 2^15, p = 1 (32 MiB) that other keys get
  address   decrypt FILE and print its address

Options:
  --board BOARD            use the key and passphrase files a board names
  --gateway                FILE is a gateway's key (see `new`)
  --passphrase-file FILE   read the passphrase from FILE
  -h, --help               print this help
";

struct Args {
    file: PathBuf,
    passphrase_file: Option<PathBuf>,
    /// The scrypt cost of a new key: a gateway's own key is unlocked on the
    /// board at every agent start.
    cost: keystore::Cost,
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Args>, Error> {
    use lexopt::prelude::*;
    let mut file = None;
    let mut board = None;
    let mut passphrase_file = None;
    let mut gateway = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("board") => board = Some(PathBuf::from(parser.value()?)),
            Long("gateway") => gateway = true,
            Long("passphrase-file") => passphrase_file = Some(PathBuf::from(parser.value()?)),
            Short('h') | Long("help") => {
                say!("{USAGE}")?;
                return Ok(None);
            }
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            other => return Err(other.unexpected().into()),
        }
    }
    match (file, board) {
        (Some(file), None) => Ok(Some(Args {
            file,
            passphrase_file,
            cost: if gateway {
                keystore::Cost::Gateway
            } else {
                keystore::Cost::Standard
            },
        })),
        (None, Some(board)) => {
            let b = BoardFile::load(&board).map_err(|e| Error::Config(e.to_string()))?;
            Ok(Some(Args {
                file: b.board.identity.key_file.clone(),
                passphrase_file: passphrase_file.or(b.board.identity.passphrase_file.clone()),
                cost: keystore::Cost::Gateway,
            }))
        }
        (Some(_), Some(_)) => Err(Error::Usage("give FILE or --board, not both".into())),
        (None, None) => Err(Error::Usage("missing FILE (or --board BOARD)".into())),
    }
}

fn passphrase(file: Option<&Path>) -> Result<Vec<u8>, Error> {
    keystore::passphrase(file).map_err(|e| Error::Config(e.to_string()))
}

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}"),
        Some(other) => return Err(other.unexpected().into()),
    };
    let Some(args) = parse(parser)? else {
        return Ok(());
    };
    let pass = passphrase(args.passphrase_file.as_deref())?;
    match sub.as_str() {
        "new" => {
            if let Some(dir) = args.file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Runtime(format!("cannot create {}: {e}", dir.display())))?;
            }
            let signer = Signer::random().map_err(|e| Error::Runtime(e.to_string()))?;
            keystore::save_at(&args.file, &signer, &pass, args.cost)
                .map_err(|e| Error::Runtime(e.to_string()))?;
            say!("{}\n", signer.address())
        }
        "address" => {
            let signer =
                keystore::load(&args.file, &pass).map_err(|e| Error::Config(e.to_string()))?;
            say!("{}\n", signer.address())
        }
        other => Err(Error::Usage(format!(
            "unknown key command `{other}`; try `dedge key new FILE`"
        ))),
    }
}
