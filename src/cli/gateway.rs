//! `dedge gateway register|advertise`: put a gateway on the market.

use std::path::PathBuf;

use super::chain_args::{self, ChainArgs, runtime};
use super::{Error, say};
use crate::chain::tx::TxSender;
use crate::market::{self, Capabilities};
use crate::units::HumanDuration;

pub(crate) const USAGE: &str = "\
Usage: dedge gateway register --board BOARD --operator-key FILE [--operator-passphrase-file FILE]
       dedge gateway advertise --board BOARD [--ttl DURATION] [--no-edgex-check]

  register    the operator (its key file; passphrase from the file given or
              DEDGE_OPERATOR_PASSPHRASE) binds the board's gateway key, which
              signs its consent (EIP-712)
  advertise   the gateway advertises its endpoint, capability document and
              price for the registry's fee in EDG (dedge_advertise); default
              --ttl 30d, at most 90d. The devices listed are the EdgeX
              catalogue (`dedge edgex ls`): only what EdgeX serves, with
              profiles and value types; --no-edgex-check advertises the
              board's [[edgex.devices]] unchecked (EdgeX down)

Options:
  -h, --help  print this help
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}"),
        Some(other) => return Err(other.unexpected().into()),
    };
    let mut chain = ChainArgs::default();
    let mut operator_key: Option<PathBuf> = None;
    let mut operator_pass: Option<PathBuf> = None;
    let mut edgex_check = true;
    let mut ttl: HumanDuration = "30d".parse().map_err(|e| Error::Runtime(format!("{e}")))?;
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                chain.set(&name, parser.value()?)?;
            }
            Long("operator-key") => operator_key = Some(parser.value()?.into()),
            Long("operator-passphrase-file") => operator_pass = Some(parser.value()?.into()),
            Long("no-edgex-check") => edgex_check = false,
            Long("ttl") => {
                ttl = parser
                    .value()?
                    .string()?
                    .parse()
                    .map_err(|e| Error::Usage(format!("--ttl: {e}")))?;
            }
            Short('h') | Long("help") => return say!("{USAGE}"),
            other => return Err(other.unexpected().into()),
        }
    }
    if chain.board.is_none() {
        return Err(Error::Usage(format!(
            "gateway {sub} needs --board BOARD\n{}",
            chain_args::HELP
        )));
    }
    let chain = chain.connect()?;
    let store = chain.cli_store()?;
    let nonces = store.tree("nonces").map_err(runtime)?;
    let gateway = chain.gateway_signer()?;
    match sub.as_str() {
        "register" => {
            let key = operator_key
                .ok_or_else(|| Error::Usage("register needs --operator-key FILE".into()))?;
            let operator = chain_args::operator_signer(&key, operator_pass.as_deref())?;
            let tx = TxSender::new(
                &chain.rpc,
                &operator,
                chain.d.chain_id,
                nonces,
                chain.policy(),
            );
            market::register_gateway(&tx, &gateway, &chain.d).map_err(runtime)?;
            say!(
                "gateway {} bound to operator {}\n",
                gateway.address(),
                operator.address()
            )
        }
        "advertise" => {
            let board = &chain.board()?.board;
            let mut caps = Capabilities::from_board(board);
            match board.edgex.as_ref().filter(|e| !e.devices.is_empty()) {
                Some(e) if edgex_check => {
                    let cat = super::edgex::read_catalogue(e).map_err(|err| {
                        Error::Runtime(format!(
                            "{err}\nThe advert lists only devices EdgeX serves: start EdgeX, \
                             or pass --no-edgex-check to advertise the board's offers unchecked."
                        ))
                    })?;
                    caps.devices = cat.offers();
                }
                Some(_) => log::warn!("advertising the board's EdgeX offers unchecked"),
                None => {}
            }
            let tx = TxSender::new(
                &chain.rpc,
                &gateway,
                chain.d.chain_id,
                nonces,
                chain.policy(),
            );
            let endpoint = board.agent.public.to_string();
            market::advertise(&tx, &chain.d, &endpoint, &caps, ttl.get()).map_err(runtime)?;
            say!(
                "gateway {} advertised at {endpoint} until now + {ttl}\n",
                gateway.address()
            )
        }
        other => Err(Error::Usage(format!("unknown gateway command `{other}`"))),
    }
}
