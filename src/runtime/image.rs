//! The image store: OCI image layouts (a directory or a tar of one) and
//! `docker save` archives, imported into content-addressed storage with
//! every blob's size and sha256 checked while it streams in, and every
//! layer's uncompressed digest checked against the config's `diff_ids`.
//!
//! Nothing from the image names a path on the host: blobs are stored under
//! their verified digest, the archive's own paths are only matched, never
//! written. Sizes are bounded (blobs, JSON documents, unpacked layers,
//! whole image) so a compression bomb stops at the limit.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Error, Result, io};
use crate::store::{Store, Tree};

/// A `sha256:<64 hex>` content digest (the only algorithm accepted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::Invalid(format!(
                "digest `{s}` is not sha256 (only sha256 is accepted)"
            ))
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::Invalid(format!(
                "digest `{s}` is not 64 lowercase hex digits"
            )));
        }
        Ok(Digest(s.to_string()))
    }

    fn of(hasher: Sha256) -> Digest {
        Digest(format!(
            "sha256:{}",
            alloy_primitives::hex::encode(hasher.finalize())
        ))
    }

    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size limits for an import.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Any one blob as stored (compressed layer, config, manifest).
    pub max_blob: u64,
    /// Any JSON document (index, manifest, config).
    pub max_json: u64,
    /// A layer after decompression.
    pub max_layer_unpacked: u64,
    /// All blobs of one import together.
    pub max_total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blob: 2 << 30,
            max_json: 4 << 20,
            max_layer_unpacked: 4 << 30,
            max_total: 4 << 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The OCI platform a board's architecture runs.
    pub fn of(arch: Arch) -> Platform {
        let (architecture, variant) = match arch {
            Arch::Aarch64 => ("arm64", None),
            Arch::Armv7 => ("arm", Some("v7".to_string())),
            Arch::X86_64 => ("amd64", None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant,
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || other.variant.is_none() || self.variant == other.variant)
    }
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The parts of an image config the runtime honours.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub(crate) entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub(crate) working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: RunConfig,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Compression {
    None,
    Gzip,
}

impl Compression {
    fn of(media_type: &str) -> Result<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Err(Error::Invalid(
                "zstd-compressed layers are not supported yet: rebuild with gzip".into(),
            )),
            other => Err(Error::Invalid(format!(
                "layer media type `{other}` is not a tar layer"
            ))),
        }
    }
}

/// One verified layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    compression: Compression,
    /// sha256 of the uncompressed tar, checked against the config.
    pub diff_id: Digest,
}

/// A verified image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The manifest's digest (for docker archives, of the manifest we wrote).
    pub manifest: Digest,
    pub config: Digest,
    pub platform: Platform,
    pub run: RunConfig,
    pub layers: Vec<Layer>,
}

/// Content-addressed blobs under a directory, image names in sled.
pub struct ImageStore {
    root: PathBuf,
    names: Tree,
    limits: Limits,
}

/// Where an import's files come from before they are verified.
enum Source {
    Dir(PathBuf),
    /// Blobs staged from a tar (already hashed), plus its small files.
    Staged {
        blobs: HashMap<Digest, PathBuf>,
        files: HashMap<String, Vec<u8>>,
    },
}

impl ImageStore {
    pub fn open(root: &Path, store: &Store, limits: Limits) -> Result<ImageStore> {
        for d in ["blobs/sha256", "tmp"] {
            fs::create_dir_all(root.join(d)).map_err(io(&root.join(d)))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            names: store.tree("images")?,
            limits,
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Imports the image at `path` (layout directory, layout tar, or
    /// docker-save tar) as `name`. `reference` picks a manifest by its
    /// `org.opencontainers.image.ref.name` when the index has several;
    /// `platform` picks from multi-platform indexes and must match the config.
    pub fn import(
        &self,
        path: &Path,
        reference: Option<&str>,
        platform: &Platform,
        name: &str,
    ) -> Result<Image> {
        let meta = fs::metadata(path).map_err(io(path))?;
        let staging = Scratch::new(&self.root.join("tmp"), "import")?;
        fs::create_dir(&staging.0).map_err(io(&staging.0))?;
        let source = if meta.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            self.stage_tar(path, &staging.0)?
        };
        let image = match self.read_json(&source, "manifest.json") {
            Ok(docker) => self.import_docker(&source, &docker, platform)?,
            Err(_) => self.import_oci(&source, reference, platform)?,
        };
        self.names.put(name, &image)?;
        Ok(image)
    }

    /// Streams a tar once: files under `blobs/sha256/` and docker layer
    /// tars are copied into staging while hashed; small JSON files are kept.
    fn stage_tar(&self, path: &Path, staging: &Path) -> Result<Source> {
        let file = File::open(path).map_err(io(path))?;
        let mut archive = tar::Archive::new(file);
        let mut blobs = HashMap::new();
        let mut files = HashMap::new();
        let mut total = 0u64;
        let entries = archive.entries().map_err(io(path))?;
        for (i, entry) in entries.enumerate() {
            let mut entry = entry.map_err(io(path))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue; // docker's `<id>/layer.tar` symlinks point at blobs we stage anyway
            }
            let name = entry
                .path()
                .map_err(io(path))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let size = entry.header().size().map_err(io(path))?;
            if name.ends_with(".json") || name == "oci-layout" || name == "repositories" {
                if size > self.limits.max_json {
                    return Err(Error::TooLarge(format!(
                        "{name} is {size} bytes (limit {})",
                        self.limits.max_json
                    )));
                }
                let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry.read_to_end(&mut buf).map_err(io(path))?;
                files.insert(name, buf);
                continue;
            }
            let is_blob = name.starts_with("blobs/sha256/") || name.ends_with(".tar");
            if !is_blob {
                continue;
            }
            total = total.saturating_add(size);
            if size > self.limits.max_blob || total > self.limits.max_total {
                return Err(Error::TooLarge(format!(
                    "{name}: {size} bytes, {total} in all (limits {} and {})",
                    self.limits.max_blob, self.limits.max_total
                )));
            }
            let dest = staging.join(format!("blob-{i}"));
            let digest = copy_hashed(&mut entry, &dest, self.limits.max_blob)?;
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if hex != digest.hex() {
                    return Err(Error::Blob {
                        digest: format!("sha256:{hex}"),
                        why: format!("content hashes to {digest}"),
                    });
                }
            }
            blobs.insert(digest, dest);
        }
        Ok(Source::Staged { blobs, files })
    }

    fn read_json(&self, source: &Source, name: &str) -> Result<Vec<u8>> {
        match source {
            Source::Dir(dir) => {
                let p = dir.join(name);
                let len = fs::metadata(&p).map_err(io(&p))?.len();
                if len > self.limits.max_json {
                    return Err(Error::TooLarge(format!(
                        "{name} is {len} bytes (limit {})",
                        self.limits.max_json
                    )));
                }
                fs::read(&p).map_err(io(&p))
            }
            Source::Staged { files, .. } => files
                .get(name)
                .cloned()
                .ok_or_else(|| Error::NotAnImage(format!("no {name} in the archive"))),
        }
    }

    /// Stores the blob `d` (checking size and digest) and returns its path.
    fn take_blob(&self, source: &Source, d: &Digest, size: Option<u64>) -> Result<PathBuf> {
        let dest = self.blob_path(d);
        let from = match source {
            Source::Dir(dir) => dir.join("blobs/sha256").join(d.hex()),
            Source::Staged { blobs, .. } => blobs.get(d).cloned().ok_or_else(|| Error::Blob {
                digest: d.to_string(),
                why: "missing from the archive".into(),
            })?,
        };
        let len = fs::metadata(&from)
            .map_err(|_| Error::Blob {
                digest: d.to_string(),
                why: "missing from the image".into(),
            })?
            .len();
        if let Some(want) = size {
            if len != want {
                return Err(Error::Blob {
                    digest: d.to_string(),
                    why: format!("{len} bytes, the descriptor says {want}"),
                });
            }
        }
        if len > self.limits.max_blob {
            return Err(Error::TooLarge(format!(
                "blob {d} is {len} bytes (limit {})",
                self.limits.max_blob
            )));
        }
        // Hash as we copy into staging, then rename into place: a blob under
        // its digest is always whole and verified.
        let tmp = Scratch::new(&self.root.join("tmp"), "blob")?;
        let mut input = File::open(&from).map_err(io(&from))?;
        let got = copy_hashed(&mut input, &tmp.0, self.limits.max_blob)?;
        if &got != d {
            return Err(Error::Blob {
                digest: d.to_string(),
                why: format!("content hashes to {got}"),
            });
        }
        fs::rename(&tmp.0, &dest).map_err(io(&dest))?;
        Ok(dest)
    }

    fn blob_json<T: for<'de> Deserialize<'de>>(
        &self,
        source: &Source,
        desc: &Descriptor,
        what: &str,
    ) -> Result<(Digest, T)> {
        let d = Digest::parse(&desc.digest)?;
        if desc.size > self.limits.max_json {
            return Err(Error::TooLarge(format!(
                "{what} {d} is {} bytes (limit {})",
                desc.size, self.limits.max_json
            )));
        }
        let path = self.take_blob(source, &d, Some(desc.size))?;
        let bytes = fs::read(&path).map_err(io(&path))?;
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{what} {d}: {e}")))?;
        Ok((d, v))
    }

    fn import_oci(
        &self,
        source: &Source,
        reference: Option<&str>,
        platform: &Platform,
    ) -> Result<Image> {
        let layout = self.read_json(source, "oci-layout").map_err(|_| Error::NotAnImage("neither an OCI layout (oci-layout, index.json) nor a docker-save archive (manifest.json)".into()))?;
        let v: serde_json::Value = serde_json::from_slice(&layout)
            .map_err(|e| Error::Invalid(format!("oci-layout: {e}")))?;
        if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
            return Err(Error::Invalid(format!(
                "oci-layout version {v} is not 1.0.0"
            )));
        }
        let index: Index = serde_json::from_slice(&self.read_json(source, "index.json")?)
            .map_err(|e| Error::Invalid(format!("index.json: {e}")))?;
        let desc = pick_by_ref(&index.manifests, reference)?;
        self.resolve(source, desc, platform, 0)
    }

    /// Follows nested indexes to the manifest for `platform`, then verifies it.
    fn resolve(
        &self,
        source: &Source,
        desc: &Descriptor,
        platform: &Platform,
        depth: u32,
    ) -> Result<Image> {
        if depth > 4 {
            return Err(Error::Invalid("image indexes nest too deep".into()));
        }
        match desc.media_type.as_str() {
            "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json" => {
                let (_, index): (_, Index) = self.blob_json(source, desc, "index")?;
                let choice = index
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
                    .ok_or_else(|| {
                        let have: Vec<String> = index
                            .manifests
                            .iter()
                            .filter_map(|m| m.platform.as_ref())
                            .map(|p| {
                                format!(
                                    "{}/{}{}",
                                    p.os,
                                    p.architecture,
                                    p.variant
                                        .as_deref()
                                        .map(|v| format!("/{v}"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect();
                        Error::Invalid(format!(
                            "no manifest for {}/{}; the index has: {}",
                            platform.os,
                            platform.architecture,
                            have.join(", ")
                        ))
                    })?;
                self.resolve(source, choice, platform, depth + 1)
            }
            _ => {
                let (manifest_digest, manifest): (_, Manifest) =
                    self.blob_json(source, desc, "manifest")?;
                self.verify(source, manifest_digest, &manifest, platform)
            }
        }
    }

    fn verify(
        &self,
        source: &Source,
        manifest_digest: Digest,
        m: &Manifest,
        platform: &Platform,
    ) -> Result<Image> {
        let (config_digest, config): (_, ConfigFile) =
            self.blob_json(source, &m.config, "config")?;
        let img_platform = Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
        };
        if !platform.matches(&img_platform) {
            return Err(Error::Invalid(format!(
                "image is for {}/{}, this gateway runs {}/{}",
                config.os, config.architecture, platform.os, platform.architecture
            )));
        }
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::Invalid(format!(
                "{} layers but {} diff_ids in the config",
                m.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let d = Digest::parse(&desc.digest)?;
            let compression = Compression::of(&desc.media_type)?;
            let path = self.take_blob(source, &d, Some(desc.size))?;
            let want = Digest::parse(diff_id)?;
            let got = uncompressed_digest(&path, compression, self.limits.max_layer_unpacked)?;
            if got != want {
                return Err(Error::Blob {
                    digest: d.to_string(),
                    why: format!(
                        "uncompressed content hashes to {got}, the config's diff_id is {want}"
                    ),
                });
            }
            layers.push(Layer {
                digest: d,
                size: desc.size,
                compression,
                diff_id: want,
            });
        }
        Ok(Image {
            manifest: manifest_digest,
            config: config_digest,
            platform: img_platform,
            run: config.config,
            layers,
        })
    }

    /// A `docker save` archive: config and uncompressed layer tars, named in
    /// manifest.json; the layers' digests are their diff_ids.
    fn import_docker(
        &self,
        source: &Source,
        manifest_json: &[u8],
        platform: &Platform,
    ) -> Result<Image> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(manifest_json)
            .map_err(|e| Error::Invalid(format!("manifest.json: {e}")))?;
        let [entry] = entries.as_slice() else {
            return Err(Error::Invalid(format!(
                "manifest.json lists {} images; import one at a time",
                entries.len()
            )));
        };
        let config_bytes = self.read_json(source, &entry.config)?;
        let config_digest = Digest::of(Sha256::new_with_prefix(&config_bytes));
        let Source::Staged { blobs, .. } = source else {
            return Err(Error::NotAnImage(
                "a docker-save archive must be a tar file".into(),
            ));
        };
        // Stage the config as a blob too, so the store holds the whole image.
        let config_path = self
            .root
            .join("tmp")
            .join(format!("config-{}", config_digest.hex()));
        fs::write(&config_path, &config_bytes).map_err(io(&config_path))?;
        let _cleanup = Scratch(config_path.clone());
        let mut blobs = blobs.clone();
        blobs.insert(config_digest.clone(), config_path);
        let staged = Source::Staged {
            blobs,
            files: HashMap::new(),
        };
        let mut layers = Vec::new();
        for name in &entry.layers {
            // Layer files are named after their sha256 (`<hex>.tar` or `<hex>/layer.tar`).
            let hex = name.trim_end_matches("/layer.tar").trim_end_matches(".tar");
            let d = Digest::parse(&format!("sha256:{hex}")).map_err(|_| {
                Error::Invalid(format!("layer `{name}` is not named by its digest"))
            })?;
            let size = fs::metadata(self.staged_path(&staged, &d)?)
                .map(|m| m.len())
                .ok();
            layers.push(Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                digest: d.to_string(),
                size: size.unwrap_or(0),
                platform: None,
                annotations: HashMap::new(),
            });
        }
        let manifest = Manifest {
            config: Descriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                digest: config_digest.to_string(),
                size: config_bytes.len() as u64,
                platform: None,
                annotations: HashMap::new(),
            },
            layers,
        };
        // Record the OCI manifest we derived, so the store is uniform.
        let manifest_bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": manifest.config, "layers": manifest.layers,
        }))
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let manifest_digest = Digest::of(Sha256::new_with_prefix(&manifest_bytes));
        let image = self.verify(&staged, manifest_digest.clone(), &manifest, platform)?;
        let path = self.blob_path(&manifest_digest);
        fs::write(&path, &manifest_bytes).map_err(io(&path))?;
        Ok(image)
    }

    fn staged_path(&self, source: &Source, d: &Digest) -> Result<PathBuf> {
        match source {
            Source::Staged { blobs, .. } => blobs.get(d).cloned().ok_or_else(|| Error::Blob {
                digest: d.to_string(),
                why: "missing from the archive".into(),
            }),
            Source::Dir(dir) => Ok(dir.join("blobs/sha256").join(d.hex())),
        }
    }

    /// Applies the image's layers in order to the (empty) directory `rootfs`.
    pub fn unpack(
        &self,
        image: &Image,
        rootfs: &Path,
        opts: super::unpack::Options,
    ) -> Result<super::unpack::Report> {
        let mut total = super::unpack::Report::default();
        for layer in &image.layers {
            let path = self.blob_path(&layer.digest);
            let file = File::open(&path).map_err(io(&path))?;
            let reader: Box<dyn Read> = match layer.compression {
                Compression::None => Box::new(file),
                Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
            };
            let r = super::unpack::apply_layer(
                rootfs,
                reader.take(self.limits.max_layer_unpacked),
                opts,
            )?;
            total.files += r.files;
            total.dirs += r.dirs;
            total.symlinks += r.symlinks;
            total.hardlinks += r.hardlinks;
            total.whiteouts += r.whiteouts;
            total.bytes += r.bytes;
            total.dropped.extend(r.dropped);
        }
        Ok(total)
    }

    pub fn get(&self, name: &str) -> Result<Image> {
        self.names
            .get(name)?
            .ok_or_else(|| Error::NoSuchImage(name.to_string()))
    }

    pub fn list(&self) -> Result<Vec<(String, Image)>> {
        self.names
            .iter::<Image>()
            .map(|r| {
                r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                    .map_err(Error::from)
            })
            .collect()
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        Ok(self.names.remove(name)?)
    }

    /// Deletes blobs no stored image references; returns (blobs, bytes) freed.
    pub fn gc(&self) -> Result<(usize, u64)> {
        let mut keep = BTreeSet::new();
        for (_, img) in self.list()? {
            keep.insert(img.manifest.hex().to_string());
            keep.insert(img.config.hex().to_string());
            keep.extend(img.layers.iter().map(|l| l.digest.hex().to_string()));
        }
        let dir = self.root.join("blobs/sha256");
        let (mut n, mut bytes) = (0, 0);
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                n += 1;
            }
        }
        Ok((n, bytes))
    }
}

/// A path under the store's tmp directory, removed (file or tree) on drop
/// unless it was renamed away.
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: &Path, prefix: &str) -> Result<Scratch> {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).map_err(|e| Error::Invalid(format!("random source: {e}")))?;
        Ok(Scratch(dir.join(format!(
            "{prefix}-{}",
            alloy_primitives::hex::encode(r)
        ))))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0).or_else(|_| fs::remove_file(&self.0));
    }
}

fn pick_by_ref<'a>(manifests: &'a [Descriptor], reference: Option<&str>) -> Result<&'a Descriptor> {
    const REF: &str = "org.opencontainers.image.ref.name";
    match reference {
        Some(r) => manifests
            .iter()
            .find(|m| m.annotations.get(REF).map(String::as_str) == Some(r))
            .ok_or_else(|| {
                let refs: Vec<&str> = manifests
                    .iter()
                    .filter_map(|m| m.annotations.get(REF).map(String::as_str))
                    .collect();
                Error::Invalid(format!(
                    "no manifest tagged `{r}`; the index has: {}",
                    refs.join(", ")
                ))
            }),
        None => match manifests {
            [one] => Ok(one),
            [] => Err(Error::Invalid("index.json lists no manifest".into())),
            _ => Err(Error::Invalid(format!(
                "index.json lists {} manifests: name one with IMAGE:REF",
                manifests.len()
            ))),
        },
    }
}

/// Copies at most `limit` bytes from `input` to a new file at `dest`,
/// hashing on the way; fails past the limit.
fn copy_hashed(input: &mut impl Read, dest: &Path, limit: u64) -> Result<Digest> {
    let mut out = File::create(dest).map_err(io(dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(dest))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(Error::TooLarge(format!("a blob exceeds {limit} bytes")));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io(dest))?;
    }
    out.sync_all().map_err(io(dest))?;
    Ok(Digest::of(hasher))
}

/// sha256 of a layer after decompression, refusing to inflate past `limit`.
fn uncompressed_digest(path: &Path, compression: Compression, limit: u64) -> Result<Digest> {
    let file = File::open(path).map_err(io(path))?;
    let mut reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
    };
    let mut hasher = Sha256::new();
    let mut limited = (&mut reader).take(limit + 1);
    let n = io::copy(&mut limited, &mut HashWriter(&mut hasher)).map_err(io(path))?;
    if n > limit {
        return Err(Error::TooLarge(format!(
            "a layer inflates past {limit} bytes (compression bomb?)"
        )));
    }
    Ok(Digest::of(hasher))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
/// CPU architecture of the gateway; picks the image platform too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Aarch64,
    Armv7,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl Arch {
    /// The architecture this binary was built for, if a board can have it.
    pub fn of_this_build() -> Option<Arch> {
        match std::env::consts::ARCH {
            "aarch64" => Some(Arch::Aarch64),
            "arm" => Some(Arch::Armv7),
            "x86_64" => Some(Arch::X86_64),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The OCI platform (`os/architecture[/variant]`) images must be built for.
    pub(crate) const fn oci_platform(self) -> &'static str {
        match self {
            Arch::Aarch64 => "linux/arm64",
            Arch::Armv7 => "linux/arm/v7",
            Arch::X86_64 => "linux/amd64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
