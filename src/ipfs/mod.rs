//! Content addressing as IPFS does it: CIDs, UnixFS DAGs built exactly as
//! Kubo builds them (`unixfs`), their protobuf encoding (`pb`), and CAR v1
//! files (`car`), the container format of the trustless gateway protocol.

pub mod car;
pub mod fetch;
pub mod pb;
pub mod publish;
pub mod unixfs;

/// What can go wrong adding, encoding or reading IPFS data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}: {1}")]
    Path(String, #[source] std::io::Error),
    #[error("bad CID: {0}")]
    Cid(String),
    #[error("{0}")]
    Block(String),
    #[error("CAR: {0}")]
    Car(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("fetch: {0}")]
    Fetch(String),
    #[error("limit: {0}")]
    Limit(String),
    #[error("publish: {0}")]
    Publish(String),
    #[error("internal error building a DAG")]
    Internal,
}
