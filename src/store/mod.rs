//! Durable local state: leases, channels, nonces, event cursors.
//!
//! sled 0.34 is the user's choice and is no longer released, so it stays
//! behind this module: the rest of the crate sees named trees of
//! postcard-encoded values and one `flush` that means "on disk".

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the state database at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("state database: {0}")]
    Db(#[from] sled::Error),
    #[error("state database: cannot open its log {} to sync it: {source}", path.display())]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database: cannot sync its log to disk: {0}")]
    Sync(#[source] std::io::Error),
    #[error(
        "state database: an earlier flush failed, so nothing since is known durable; restart to recover"
    )]
    Failed,
    #[error(
        "state database: a record for `{tree}` with a {key}-byte key and a {value}-byte value is over the limits ({MAX_KEY}-byte keys, {MAX_RECORD}-byte values)"
    )]
    TooLarge {
        tree: String,
        key: usize,
        value: usize,
    },
    #[error("state database: cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("state database: record in `{tree}` is corrupt: {source}")]
    Decode {
        tree: String,
        #[source]
        source: postcard::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The largest value a tree takes, and the largest key. sled 0.34 writes a
/// log message over a quarter segment (131,052 bytes) to a file of its own
/// under `blobs/` with no sync of any kind, and a power cut then leaves a
/// database that does not open (a blob of length 0) or has gone back in
/// time (a blob lost). A leaf holds at most 17 records before it splits,
/// and is written whole: 17 of these at their largest stay under a blob.
pub const MAX_RECORD: usize = 6 << 10;
pub const MAX_KEY: usize = 256;

/// Group commit: threads that ask for a flush while one is under way wait
/// for the next, which one of them runs for all; a flush is never skipped
/// for a write made before it was asked (each flush ends in an fsync).
#[derive(Default)]
struct Commit {
    state: Mutex<Flushes>,
    done: Condvar,
}

#[derive(Default)]
struct Flushes {
    /// Tickets handed out: one per flush asked.
    asked: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    running: bool,
}

/// Ends a running fsync: what it made durable (if it succeeded), `running`
/// cleared and the waiters woken, in one critical section. A drop guard,
/// so an fsync that panics (a test build: releases abort) leaves no one
/// waiting for good.
struct Ending<'a> {
    commit: &'a Commit,
    upto: u64,
    ok: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let mut st = self.commit.lock();
        if self.ok {
            st.durable = st.durable.max(self.upto);
        }
        st.running = false;
        self.commit.done.notify_all();
    }
}

impl Commit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Flushes> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once every write made before the call is durable. The
    /// writes of ticket `mine` were made before it was taken, so a flush
    /// started after it covers them; a flush that fails makes nobody
    /// durable, and each waiter then tries (and fails) on its own.
    fn flush(&self, fsync: impl Fn() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        st.asked += 1;
        let mine = st.asked;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.running = true;
            let mut ending = Ending {
                commit: self,
                upto: st.asked,
                ok: false,
            };
            drop(st);
            let result = fsync();
            ending.ok = result.is_ok();
            drop(ending);
            result?;
            st = self.lock();
        }
    }
}

/// What every handle on one database shares: the group commit, the log
/// file to sync, and the count of flushes asked.
#[derive(Default)]
struct Durability {
    commit: Commit,
    /// sled's log (`<path>/db`). sled's own flush ends with
    /// `sync_file_range` on Linux, which neither commits the file's size
    /// and extents nor flushes the device's write cache: after a power cut
    /// a write it "flushed" can be gone. `fdatasync` on this handle does
    /// both. None for a temporary database.
    log: Option<std::fs::File>,
    /// Flushes asked (each one an fsync unless another flush covered its
    /// writes): what the group-commit test counts.
    flushes: AtomicU64,
    /// Set by the first sync that fails. Linux may drop the dirty pages
    /// of a failed `fdatasync` and report the next one clean, so a later
    /// success proves nothing: every flush fails from then on (fail
    /// closed, as PostgreSQL does) until the process restarts and sled
    /// recovers from what is really on disk.
    failed: std::sync::atomic::AtomicBool,
}

impl Durability {
    /// sled's flush, then the log's `fdatasync`, group-committed.
    fn flush(&self, db: &sled::Tree) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.commit.flush(|| {
            if self.failed.load(Ordering::SeqCst) {
                return Err(Error::Failed);
            }
            let synced = db
                .flush()
                .map_err(Error::from)
                .and_then(|_| match &self.log {
                    Some(log) => log.sync_data().map_err(Error::Sync),
                    None => Ok(()),
                });
            if synced.is_err() {
                self.failed.store(true, Ordering::SeqCst);
            }
            synced
        })
    }
}

/// The agent's (or buyer's) database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    durability: Arc<Durability>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        /// sled's page cache, bytes. Its default is 1 GiB, which on a 512 MiB
        /// board lets the cache grow over weeks into most of the memory. The
        /// agent's records (leases, channels, nonces, cursors, meters) are a
        /// few hundred bytes each and read back rarely: 2 MiB keeps all of a
        /// full board's hot pages, and a miss costs one pread.
        const CACHE_CAPACITY: u64 = 2 << 20;
        /// The file sled 0.34 keeps its log and pages in (`Config::db_path`).
        const LOG: &str = "db";
        /// Its configuration, written when the database is made.
        const CONF: &str = "conf";
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_CAPACITY)
            .open()
            .map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })?;
        // Once at open: sled's `conf` (written at creation, never synced;
        // a torn one fails the next open), the directory (a power cut soon
        // after the database was made must not lose its files' entries)
        // and the directory holding it (which may just have been made).
        let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        sync(&path.join(CONF))
            .and_then(|()| sync(path))
            .and_then(|()| parent.map_or(Ok(()), sync))
            .map_err(Error::Sync)?;
        // Opened after sled created it; read-only is enough for fdatasync.
        let log_path = path.join(LOG);
        let log = std::fs::File::open(&log_path).map_err(|source| Error::OpenLog {
            path: log_path,
            source,
        })?;
        Ok(Store::of(db, Some(log)))
    }

    fn of(db: sled::Db, log: Option<std::fs::File>) -> Store {
        Store {
            db,
            durability: Arc::new(Durability {
                log,
                ..Durability::default()
            }),
        }
    }

    /// A database that vanishes when dropped, for tests and benchmarks.
    pub fn temporary() -> Result<Store> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Store::of(db, None))
    }

    pub fn tree(&self, name: &str) -> Result<Tree> {
        Ok(Tree {
            name: name.to_string(),
            tree: self.db.open_tree(name)?,
            durability: self.durability.clone(),
        })
    }

    /// Makes every write so far durable: on disk and in its file after a
    /// power cut (concurrent callers share one sync). Callers acknowledge
    /// anything to a peer only after this returns.
    pub fn flush(&self) -> Result<()> {
        self.durability.flush(&self.db)
    }

    /// How many flushes were asked of this database so far.
    pub fn flushes(&self) -> u64 {
        self.durability.flushes.load(Ordering::Relaxed)
    }

    /// True once a sync failed: every flush fails from then on.
    pub fn failed(&self) -> bool {
        self.durability.failed.load(Ordering::SeqCst)
    }
}

/// A named keyspace of postcard-encoded values.
#[derive(Clone)]
pub struct Tree {
    name: String,
    tree: sled::Tree,
    durability: Arc<Durability>,
}

impl Tree {
    pub fn get<V: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|source| Error::Decode {
                    tree: self.name.clone(),
                    source,
                }),
        }
    }

    pub fn put<V: Serialize>(&self, key: impl AsRef<[u8]>, value: &V) -> Result<()> {
        let bytes = postcard::to_stdvec(value).map_err(|source| Error::Encode {
            what: "record",
            source,
        })?;
        self.fits(key.as_ref(), &bytes)?;
        self.tree.insert(key.as_ref(), bytes)?;
        Ok(())
    }

    /// Refuses a key or a value that could push a node into a blob
    /// (`MAX_RECORD`).
    fn fits(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() > MAX_KEY || value.len() > MAX_RECORD {
            return Err(Error::TooLarge {
                tree: self.name.clone(),
                key: key.len(),
                value: value.len(),
            });
        }
        Ok(())
    }

    /// Makes this tree's writes durable (fsync; sled's trees share one
    /// log, so this is the store's flush, group-committed with it).
    pub fn flush(&self) -> Result<()> {
        self.durability.flush(&self.tree)
    }

    /// The raw bytes at `key`, for records that decode themselves
    /// (versioned formats).
    pub(crate) fn get_bytes(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Every raw record, in key order.
    pub(crate) fn iter_bytes(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_ {
        self.tree.iter().map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    /// Writes `new` at `key` if the record there is still `old` (`None`:
    /// absent). False when another writer changed it first.
    pub(crate) fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        if let Some(new) = new {
            self.fits(key.as_ref(), new)?;
        }
        Ok(self.tree.compare_and_swap(key, old, new)?.is_ok())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// Replaces the record at `key` with `f(old)` atomically (compare and
    /// swap, retried when another writer got there first). A record that
    /// does not decode is an error and stays as it is.
    pub fn update<V: Serialize + DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(Option<V>) -> V,
    ) -> Result<V> {
        let key = key.as_ref();
        loop {
            let old = self.tree.get(key)?;
            let value = old
                .as_ref()
                .map(|b| postcard::from_bytes(b))
                .transpose()
                .map_err(|source| Error::Decode {
                    tree: self.name.clone(),
                    source,
                })?;
            let new = f(value);
            let bytes = postcard::to_stdvec(&new).map_err(|source| Error::Encode {
                what: "record",
                source,
            })?;
            self.fits(key, &bytes)?;
            if self.tree.compare_and_swap(key, old, Some(bytes))?.is_ok() {
                return Ok(new);
            }
        }
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix<V: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, V)>> + '_ {
        self.decoded(self.tree.scan_prefix(prefix))
    }

    /// Every record, in key order.
    pub fn iter<V: DeserializeOwned>(&self) -> impl Iterator<Item = Result<(Vec<u8>, V)>> + '_ {
        self.decoded(self.tree.iter())
    }

    fn decoded<V: DeserializeOwned>(
        &self,
        items: sled::Iter,
    ) -> impl Iterator<Item = Result<(Vec<u8>, V)>> + '_ {
        items.map(move |item| {
            let (k, v) = item?;
            let value = postcard::from_bytes(&v).map_err(|source| Error::Decode {
                tree: self.name.clone(),
                source,
            })?;
            Ok((k.to_vec(), value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Rec {
        n: u64,
        s: String,
    }

    /// sled's flusher thread holds the file lock a moment after the last
    /// handle is dropped (long enough under qemu-user to fail a reopen):
    /// waits for it, as a restarted process never has to.
    fn reopen(path: &std::path::Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(path) {
                Err(e)
                    if e.to_string().contains("lock") && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn values_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let t = store.tree("t").unwrap();
            t.put(
                b"a",
                &Rec {
                    n: 7,
                    s: "x".into(),
                },
            )
            .unwrap();
            t.put(
                b"b",
                &Rec {
                    n: 8,
                    s: "y".into(),
                },
            )
            .unwrap();
            t.remove(b"b").unwrap();
            store.flush().unwrap();
        }
        let store = reopen(dir.path());
        let t = store.tree("t").unwrap();
        assert_eq!(
            t.get::<Rec>(b"a").unwrap(),
            Some(Rec {
                n: 7,
                s: "x".into()
            })
        );
        assert_eq!(t.get::<Rec>(b"b").unwrap(), None);
        let all: Vec<_> = t.iter::<Rec>().collect::<Result<_>>().unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn corrupt_records_are_named() {
        let store = Store::temporary().unwrap();
        let t = store.tree("leases").unwrap();
        t.tree.insert(b"k", &[0xff, 0xff, 0xff][..]).unwrap();
        let err = t.get::<Rec>(b"k").unwrap_err().to_string();
        assert!(err.contains("`leases`"), "{err}");
    }

    #[test]
    fn flushes_asked_during_one_share_the_next_and_a_failed_one_counts_for_nobody() {
        let commit = Arc::new(Commit::default());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        // The first flush blocks inside its fsync until released.
        let first = {
            let (commit, fsyncs) = (commit.clone(), fsyncs.clone());
            std::thread::spawn(move || {
                commit.flush(|| {
                    gate.lock().unwrap().recv().unwrap();
                    fsyncs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        while !commit.lock().running {
            std::thread::yield_now();
        }
        // Two more ask while it runs: its flush started before their
        // writes, so it cannot cover them; one more fsync covers both.
        let later: Vec<_> = (0..2)
            .map(|_| {
                let (commit, fsyncs) = (commit.clone(), fsyncs.clone());
                std::thread::spawn(move || {
                    commit.flush(|| {
                        fsyncs.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        while commit.lock().asked < 3 {
            std::thread::yield_now();
        }
        assert_eq!(
            commit.lock().durable,
            0,
            "nothing durable before a flush ends"
        );
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        for t in later {
            t.join().unwrap().unwrap();
        }
        assert_eq!(
            fsyncs.load(Ordering::SeqCst),
            2,
            "three flushes asked, two run"
        );
        assert_eq!(commit.lock().durable, 3);
        // A failed fsync: an error, and nothing more made durable.
        let failed = commit.flush(|| Err(Error::Sync(std::io::Error::other("disk gone"))));
        assert!(failed.is_err());
        assert_eq!(commit.lock().durable, 3);
        commit.flush(|| Ok(())).unwrap();
        assert_eq!(commit.lock().durable, 5);
        // An fsync that panics (test builds unwind) leaves the next free.
        let c = commit.clone();
        let panicked = std::thread::spawn(move || c.flush(|| panic!("fsync blew up"))).join();
        assert!(panicked.is_err());
        assert!(!commit.lock().running);
        commit.flush(|| Ok(())).unwrap();
    }

    #[test]
    fn a_failed_sync_fails_every_later_flush() {
        // fdatasync on a pipe fails (EINVAL): a stand-in for a disk error.
        let (read, _write) = nix::unistd::pipe().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = Store::of(db, Some(std::fs::File::from(read)));
        let first = store.flush().unwrap_err();
        assert!(matches!(first, Error::Sync(_)), "{first}");
        let later = store.flush().unwrap_err();
        assert!(matches!(later, Error::Failed), "{later}");
        assert!(store.failed());
        assert!(later.to_string().contains("restart"), "{later}");
    }

    /// sled's flush alone ends in `sync_file_range`, not durable across a
    /// power cut: each flush must be followed by an fsync or fdatasync of
    /// the log before it returns. Watched from outside with strace (a
    /// Debian base tool), on a child that runs `flush_child`.
    #[test]
    fn each_flush_syncs_the_log_before_it_returns() {
        if std::process::Command::new("strace")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: strace is not installed; the flush's fdatasync is unchecked");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let out = std::process::Command::new("strace")
            .args(["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,write", "-o"])
            .arg(&trace)
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::flush_child",
                "--ignored",
                "--nocapture",
            ])
            .env("DEDGE_FLUSH_CHILD", dir.path().join("db"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace = std::fs::read_to_string(&trace).unwrap();
        // Between each "put" marker and its "flushed" marker, a sync of
        // `<db>/db`.
        let mut rounds = 0;
        let mut synced = None;
        for line in trace.lines() {
            if line.contains("dedge-flush-child: put") {
                synced = Some(false);
            } else if (line.contains("fdatasync(") || line.contains("fsync("))
                && line.contains("/db/db>")
            {
                synced = synced.map(|_| true);
            } else if line.contains("dedge-flush-child: flushed") {
                assert_eq!(
                    synced,
                    Some(true),
                    "flush {rounds} returned unsynced:\n{trace}"
                );
                rounds += 1;
                synced = None;
            }
        }
        assert_eq!(rounds, FLUSH_ROUNDS, "{trace}");
    }

    const FLUSH_ROUNDS: usize = 5;

    #[test]
    #[ignore = "run by each_flush_syncs_the_log_before_it_returns, under strace"]
    fn flush_child() {
        use std::io::Write;
        let path = std::env::var_os("DEDGE_FLUSH_CHILD").unwrap();
        let store = Store::open(std::path::Path::new(&path)).unwrap();
        let t = store.tree("t").unwrap();
        let mut err = std::io::stderr();
        for n in 0..FLUSH_ROUNDS as u64 {
            t.put(b"k", &Rec { n, s: "x".into() }).unwrap();
            err.write_all(b"dedge-flush-child: put\n").unwrap();
            store.flush().unwrap();
            err.write_all(b"dedge-flush-child: flushed\n").unwrap();
        }
    }

    /// Records at the limit never reach sled's unsynced blob files; the
    /// same sled does write blobs for larger ones (the control), so the
    /// check would see them.
    #[test]
    fn records_are_bounded_below_sleds_blobs() {
        let blobs =
            |dir: &std::path::Path| std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.tree("big").unwrap();
        let err = t.put(b"k", &vec![7u8; MAX_RECORD]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("`big`"), "{err}");
        let err = t.update(b"u", |_: Option<Vec<u8>>| vec![7u8; MAX_RECORD]);
        assert!(matches!(err, Err(Error::TooLarge { .. })), "{err:?}");
        // The largest value that fits (postcard adds its length prefix).
        for round in 0..4u8 {
            let fits = vec![round; MAX_RECORD - 2];
            // A leaf splits past 16 records: these fill one.
            for i in 0..16u32 {
                t.put(i.to_be_bytes(), &fits).unwrap();
            }
            store.flush().unwrap();
        }
        assert_eq!(blobs(dir.path()), 0, "a bounded record went to a blob");
        drop((t, store));

        // The control: the same store, values of 9,000 bytes (under the
        // blob threshold alone) written past the limit, rewritten a few
        // times so that sled writes whole leaves.
        let control = tempfile::tempdir().unwrap();
        let store = Store::open(control.path()).unwrap();
        let t = store.tree("big").unwrap();
        for round in 0..4u8 {
            for i in 0..16u32 {
                t.tree.insert(i.to_be_bytes(), vec![round; 9000]).unwrap();
            }
            store.flush().unwrap();
        }
        assert!(
            blobs(control.path()) > 0,
            "this sled writes no blobs: the check above proves nothing"
        );
    }
}
