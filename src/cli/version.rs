//! `dedge version`

use super::{Error, no_more_args, say};

pub(crate) const USAGE: &str = "\
Usage: dedge version

Prints the version, the git commit it was built from and the target triple.
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    if let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                return say!("{USAGE}");
            }
            other => return Err(other.unexpected().into()),
        }
    }
    no_more_args(&mut parser)?;
    say!(
        "dedge {}\ncommit {}\ntarget {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("DEDGE_GIT_COMMIT"),
        env!("DEDGE_TARGET")
    )
}
