//! Sandbox benchmark (not a test): start-to-exit latency and peak RSS of
//! `/bin/true` with memory + pids limits under `dedge sandbox run`, Debian's
//! `crun` and `runc`, on the same unpacked bundle, interleaved in one run;
//! then unpack time of one layer by dedge, `tar -xzf` and `umoci unpack`.
//!
//!     sudo cargo bench --bench sandbox            # 100 runs each
//!     DEDGE_BENCH_RUNS=300 cargo bench --bench sandbox
//!
//! Needs root, crun, umoci and busybox-static (tests/setup.sh); runc is
//! measured where it is installed (the VM rig's guests have crun only:
//! `tests/vm/bench.sh` runs this there).
//! crun refuses this machine's hybrid cgroups (v1 + an empty cgroup2 at
//! /sys/fs/cgroup/unified) unless that mount is gone, so every runtime is
//! started the same way: `unshare -m --propagation private sh -c
//! 'umount /sys/fs/cgroup/unified; exec RUNTIME ...'`.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dedge::board::values::Arch;
use dedge::runtime::image::{ImageStore, Limits, Platform};
use dedge::runtime::unpack::Options;
use dedge::store::Store;

mod common;

const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 64;
/// Idle time before each run (see the comment on the loop);
/// DEDGE_BENCH_PAUSE_MS=0 measures back-to-back runs instead.
fn pause() -> Duration {
    let ms = std::env::var("DEDGE_BENCH_PAUSE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    Duration::from_millis(ms)
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("sandbox bench: {e}");
        std::process::exit(1);
    }
}

fn need(tool: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!("`{tool}` not found: run tests/setup.sh"))
    }
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn bench() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root (namespaces, cgroups)".into());
    }
    for t in ["crun", "umoci", "unshare", "tar"] {
        need(t)?;
    }
    let have_runc = need("runc").is_ok();
    if !have_runc {
        println!("runc not installed: measuring dedge and crun only");
    }
    let runs: usize = std::env::var("DEDGE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(1);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let layout = build_layout(dir)?;
    let bundle = dir.join("bundle");
    sh(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:bench", layout.display()))
        .arg(&bundle))?;
    write_oci_config(&bundle)?;
    let dedge = env!("CARGO_BIN_EXE_dedge");
    let rootfs = bundle.join("rootfs");

    println!("machine: {}", common::machine());
    type Cmd = Box<dyn FnMut() -> String>;
    println!(
        "start-to-exit of /bin/true, memory {} MiB + pids {PIDS} (+ CPU 1 core), {runs} runs each, \
         interleaved in random order, {} ms idle before each:",
        MEMORY >> 20,
        pause().as_millis()
    );
    let dedge_cmd = format!(
        "{dedge} sandbox run --rootfs {} --memory {}M --pids {PIDS} --cpus 1 -- /bin/true",
        rootfs.display(),
        MEMORY >> 20
    );
    // crun and runc keep each stopped container's state until it is deleted.
    let ids: Rc<RefCell<Vec<String>>> = Rc::default();
    let oci = |runtime: &'static str| -> Cmd {
        let (b, ids) = (bundle.display().to_string(), ids.clone());
        let mut k = 0u64;
        Box::new(move || {
            k += 1;
            let id = format!("bench-{}-{runtime}-{k}", std::process::id());
            ids.borrow_mut().push(id.clone());
            format!("{runtime} run --bundle {b} {id}")
        })
    };
    let mut runtimes: Vec<(&str, Cmd)> = vec![
        ("dedge", Box::new(move || dedge_cmd.clone())),
        ("crun", oci("crun")),
        ("wrapper", Box::new(|| "/bin/true".into())),
    ];
    if have_runc {
        runtimes.push(("runc", oci("runc")));
    }
    // Warm the page cache and each runtime's first-use paths.
    for (_, cmd) in runtimes.iter_mut() {
        for _ in 0..3 {
            time_wrapped(&cmd())?;
        }
    }
    // Interleaved in a fresh random order each round, with a pause before
    // each run: on cgroup v1 moving a task into a cgroup waits for an RCU
    // grace period unless another move happened just before, so a runtime
    // that always ran right after another would be measured warm.
    let mut samples: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); runtimes.len()];
    let pause = pause();
    let mut order: Vec<usize> = (0..runtimes.len()).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..runs {
        for k in (1..order.len()).rev() {
            order.swap(k, (rng.next() % (k as u64 + 1)) as usize);
        }
        for &i in &order {
            std::thread::sleep(pause);
            samples[i].push(time_wrapped(&(runtimes[i].1)())?);
        }
    }
    let medians: Vec<(Duration, u64)> = samples
        .iter_mut()
        .map(|s| {
            let mut t: Vec<Duration> = s.iter().map(|x| x.0).collect();
            let mut r: Vec<u64> = s.iter().map(|x| x.1).collect();
            t.sort();
            r.sort();
            (t[t.len() / 2], r[r.len() / 2])
        })
        .collect();
    let base = medians[0].0.as_secs_f64();
    for ((name, _), (t, rss)) in runtimes.iter().zip(&medians) {
        let ratio = t.as_secs_f64() / base;
        println!(
            "  {name:<8} median {:>7.2} ms   peak RSS {:>6.1} MiB   time / dedge's {ratio:.2}",
            t.as_secs_f64() * 1e3,
            *rss as f64 / 1024.0
        );
    }
    let (d, c) = (medians[0].0, medians[1].0);
    print!("  dedge / crun = {:.2}", d.as_secs_f64() / c.as_secs_f64());
    if let Some(r) = medians.get(3) {
        print!(
            ", dedge / runc = {:.2}",
            d.as_secs_f64() / r.0.as_secs_f64()
        );
    }
    println!(" (lower is faster)");
    println!("  (wrapper: unshare + sh + the host's /bin/true, no runtime: the floor)");
    for id in ids.borrow().iter() {
        let runtime = if id.contains("-crun-") {
            "crun"
        } else {
            "runc"
        };
        let _ = Command::new(runtime).args(["delete", "-f", id]).output();
    }
    unpack_bench(dir, &layout)
}

/// xorshift64: a fixed-seed shuffle, so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `cmd` the way crun needs on this machine; returns wall time and the
/// peak RSS (KiB) of the largest process in the tree.
fn time_wrapped(cmd: &str) -> Result<(Duration, u64), String> {
    let script = format!("umount /sys/fs/cgroup/unified 2>/dev/null; exec {cmd}");
    common::timed(Command::new("unshare").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]))
}

/// A busybox image plus a payload for the unpack benchmark: 2,000 small
/// files and 8 files of 1 MiB (20 MiB, gzip layer).
fn build_layout(dir: &Path) -> Result<PathBuf, String> {
    let img = dir.join("img");
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&img))?;
    let image = format!("{}:bench", img.display());
    sh(Command::new("umoci").args(["new", "--image", &image]))?;
    let work = dir.join("work");
    sh(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&work))?;
    let root = work.join("rootfs");
    let bin = root.join("bin");
    fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    fs::copy("/bin/busybox", bin.join("busybox")).map_err(|e| format!("busybox: {e}"))?;
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(a)).map_err(|e| e.to_string())?;
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8 & 0x3f | 0x40 // half-compressible text
            })
            .collect()
    };
    for d in 0..20 {
        let sub = root.join(format!("usr/share/payload/{d:02}"));
        fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        for f in 0..100 {
            fs::write(sub.join(format!("f{f:03}")), noise(4096)).map_err(|e| e.to_string())?;
        }
    }
    for f in 0..8 {
        fs::write(
            root.join(format!("usr/share/payload/big{f}")),
            noise(1 << 20),
        )
        .map_err(|e| e.to_string())?;
    }
    sh(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&work))?;
    // The platform this benchmark runs on (the VM rig runs it on ARM kernels).
    let here = Arch::of_this_build().ok_or("not a gateway architecture")?;
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/true",
        "--os",
        "linux",
        "--architecture",
        &Platform::of(here).architecture,
    ]))?;
    Ok(img)
}

/// The bundle's config.json as crun and runc get it: /bin/true, no
/// terminal, read-only root, a cgroup namespace, and the same limits.
fn write_oci_config(bundle: &Path) -> Result<(), String> {
    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut c: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    c["process"]["args"] = serde_json::json!(["/bin/true"]);
    c["process"]["terminal"] = false.into();
    c["root"]["readonly"] = true.into();
    if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
        ns.push(serde_json::json!({"type": "cgroup"}));
    }
    c["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": MEMORY, "swap": MEMORY},
        "pids": {"limit": PIDS},
        "cpu": {"quota": 100000, "period": 100000}
    });
    fs::write(&path, c.to_string()).map_err(|e| e.to_string())
}

fn unpack_bench(dir: &Path, layout: &Path) -> Result<(), String> {
    let store = Store::temporary().map_err(|e| e.to_string())?;
    let images = ImageStore::open(&dir.join("store"), &store, Limits::default())
        .map_err(|e| e.to_string())?;
    let arch = Arch::of_this_build().ok_or("unsupported arch")?;
    let img = images
        .import(layout, Some("bench"), &Platform::of(arch), "bench")
        .map_err(|e| e.to_string())?;
    let blob = images.blob_path(&img.layers[0].digest);
    let size = fs::metadata(&blob).map_err(|e| e.to_string())?.len();
    const K: usize = 11;
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    for k in 0..K {
        let out = dir.join(format!("u{k}"));
        // Rotating order, and dirty pages written back before each one, so
        // no tool pays for another's writeback.
        for j in 0..3 {
            let i = (k + j) % 3;
            let target = ["dedge", "tar", "umoci"][i];
            let dst = out.join(target);
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            let t0 = Instant::now();
            match i {
                0 => {
                    fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
                    images
                        .unpack(&img, &dst, Options::default())
                        .map_err(|e| e.to_string())?;
                }
                1 => {
                    fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
                    sh(Command::new("tar")
                        .arg("-xzf")
                        .arg(&blob)
                        .arg("-C")
                        .arg(&dst))?;
                }
                _ => sh(Command::new("umoci")
                    .args(["unpack", "--image"])
                    .arg(format!("{}:bench", layout.display()))
                    .arg(&dst))?,
            }
            t[i].push(t0.elapsed());
        }
        fs::remove_dir_all(&out).map_err(|e| e.to_string())?;
    }
    let med: Vec<f64> = t
        .iter_mut()
        .map(|v| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "unpack of one gzip layer ({:.1} MiB compressed, 20 MiB in 2,010 files), median of {K}:",
        size as f64 / (1 << 20) as f64
    );
    println!("  dedge        {:>7.1} ms   1.00", med[0]);
    println!(
        "  tar -xzf     {:>7.1} ms   dedge / tar = {:.2}",
        med[1],
        med[0] / med[1]
    );
    println!(
        "  umoci unpack {:>7.1} ms   dedge / umoci = {:.2}",
        med[2],
        med[0] / med[2]
    );
    Ok(())
}
