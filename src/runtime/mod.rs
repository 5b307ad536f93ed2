//! Running buyers' OCI images: the verified image store now; unpacking, the
//! sandbox (namespaces, pivot_root, cgroups) and the lifecycle next.

pub mod image;
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
