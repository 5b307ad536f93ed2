//! Running buyers' OCI images: the verified image store (`image`), safe
//! unpacking (`unpack`), what to run (`spec`), the sandbox (`process` forks,
//! `rootfs` mounts, `sys` makes the raw calls), control groups (`cgroup`),
//! the lifecycle with restart recovery (`container`) and port forwarding
//! into a container's network namespace (`net`). `docs/sandbox.md` gives the
//! order of the steps and why.

#[forbid(unsafe_code)]
pub mod cgroup;
pub mod container;
#[forbid(unsafe_code)]
pub mod image;
#[forbid(unsafe_code)]
pub mod net;
pub mod process;
#[forbid(unsafe_code)]
pub mod rootfs;
#[forbid(unsafe_code)]
pub mod spec;
pub mod sys;
#[forbid(unsafe_code)]
pub mod unpack;

/// What can go wrong handling an image; each names the blob or file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("bad image: {0}")]
    Invalid(String),
    #[error("blob {digest}: {why}")]
    Blob { digest: String, why: String },
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("no image named `{0}`")]
    NoSuchImage(String),
    #[error("cgroup {0}")]
    Cgroup(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("container `{0}`: {1}")]
    Container(String, String),
    #[error("no container `{0}`")]
    NoSuchContainer(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
