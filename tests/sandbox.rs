//! The sandbox with real namespaces and cgroups, running images built by
//! umoci from Debian's busybox-static. Needs root and the cgroup
//! controllers (cpu, cpuacct, memory, pids, freezer); without them each
//! test says SKIP loudly. CI runs as root.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dedge::board::values::{Arch, CgroupMode};
use dedge::runtime::cgroup::{Cgroup, Limits};
use dedge::runtime::container::{Exit, State};
use dedge::runtime::image::Platform;
use dedge::runtime::net::Forward;

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/oci.rs"]
mod oci;
#[path = "common/sandbox.rs"]
mod sandbox;
use oci::{build_image, install_busybox, run};
use sandbox::{Env, can_run, limits};

const CMD: &[&str] = &[];

#[test]
fn runs_the_image_config_and_captures_output() {
    if !can_run("runs_the_image_config_and_captures_output") {
        return;
    }
    let env = Env::new();
    env.image(
        "hello",
        |root| std::fs::create_dir_all(root.join("etc")).unwrap(),
        &[
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo $GREETING from $(pwd) as $(id -u):$(id -g); echo oops >&2; exit 7",
            "--config.env",
            "GREETING=hi",
            "--config.workingdir",
            "/etc",
        ],
    );
    let (r, out) = env.run("hello", "hello", CMD, limits(64, 64, 500));
    assert_eq!(r.exit, Some(Exit::Code(7)));
    assert_eq!(r.state, State::Stopped);
    assert_eq!(out, "hi from /etc as 0:0\n");
    assert_eq!(env.stderr("hello"), "oops\n");
    // A given command replaces Cmd.
    let (r, out) = env.run("cmd", "hello", &["echo", "replaced"], limits(64, 64, 500));
    assert_eq!((r.exit, out.as_str()), (Some(Exit::Code(0)), "replaced\n"));
}

#[test]
fn the_container_sees_nothing_of_the_host() {
    if !can_run("the_container_sees_nothing_of_the_host") {
        return;
    }
    let env = Env::new();
    env.image("iso", |_| {}, &[]);
    // A host marker the container must not be able to see.
    let marker = env.dir.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let agent = std::env::current_exe().unwrap();
    let script = format!(
        "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; readlink /proc/1/exe; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; \
         test -e {marker} && echo SEES-MARKER; test -e {agent} && echo SEES-AGENT; \
         grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; \
         touch /rootfs-write 2>/dev/null && echo ROOT-WRITABLE; \
         touch /tmp/ok && echo tmp-writable; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo PROC-SYS-WRITABLE; \
         wc -c < /proc/timer_list; ls /dev | tr '\\n' ' '",
        marker = marker.display(),
        agent = agent.display()
    );
    let (r, out) = env.run("iso", "iso", &["sh", "-c", &script], limits(64, 64, 500));
    assert_eq!(r.exit, Some(Exit::Code(0)), "{out}\n{}", env.stderr("iso"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "sandbox");
    let procs: u32 = lines[2].parse().unwrap();
    assert!(procs <= 5, "sees {procs} processes: host PIDs leak in");
    assert_eq!(lines[3], "/bin/busybox", "init is not the image's program");
    assert_eq!(lines[4], "lo", "network namespace has more than loopback");
    assert!(!out.contains("SEES-MARKER"), "host files visible");
    assert!(
        !out.contains("SEES-AGENT"),
        "the agent's binary is reachable"
    );
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE.
    assert!(out.contains("CapEff:\t00000000000004fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000000004fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("ROOT-WRITABLE"), "rootfs is writable");
    assert!(out.contains("tmp-writable"));
    assert!(!out.contains("PROC-SYS-WRITABLE"));
    // The host's timer_list is kilobytes; masked, it reads as /dev/null.
    assert!(out.contains("\n0\n"), "/proc/timer_list not masked: {out}");
    let dev: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
    ] {
        assert!(dev.contains(&d), "/dev lacks {d}: {dev:?}");
    }
    assert!(
        dev.len() <= 14,
        "/dev has more than the minimal set: {dev:?}"
    );
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    if !can_run("a_fork_bomb_stops_at_the_pids_limit") {
        return;
    }
    let env = Env::new();
    env.image("bomb", |_| {}, &[]);
    // The inner shell forks until the limit stops it (ash gives up on a
    // failed fork); the outer one then needs no fork to report and stay up.
    let script = "sh -c 'while :; do sleep 30 & done'; echo started; exec sleep 30";
    env.create("bomb", "bomb", &["sh", "-c", script], limits(64, 16, 500))
        .unwrap();
    env.rt().start("bomb").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.stdout("bomb").contains("started") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = env.rt().stats("bomb").unwrap();
    assert!(stats.pids <= 16, "pids {} over the limit", stats.pids);
    assert!(stats.pids >= 8, "the bomb did not run: {} pids", stats.pids);
    assert!(
        env.stderr("bomb").contains("fork"),
        "{}",
        env.stderr("bomb")
    );
    let r = env.rt().kill("bomb", Duration::from_millis(100)).unwrap();
    assert!(matches!(
        r.exit,
        Some(Exit::Signal(9)) | Some(Exit::Code(_))
    ));
    assert!(
        env.rt().stats("bomb").unwrap().pids == 0,
        "processes survived the kill"
    );
}

#[test]
fn a_memory_hog_is_oom_killed_and_the_agent_lives() {
    if !can_run("a_memory_hog_is_oom_killed_and_the_agent_lives") {
        return;
    }
    let env = Env::new();
    env.image("hog", |_| {}, &[]);
    // Doubles a shell string until it passes 32 MiB.
    let script = "x=0123456789abcdef; while true; do x=$x$x; done";
    let (r, _) = env.run("hog", "hog", &["sh", "-c", script], limits(32, 16, 1000));
    assert_eq!(r.exit, Some(Exit::Signal(9)), "{r:?}");
    assert!(r.oom_kills >= 1, "no OOM kill recorded: {r:?}");
    // /tmp is memory too: filling it past the limit is stopped the same way.
    let (r, out) = env.run(
        "tmpfill",
        "hog",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/f bs=1M count=64 && echo filled",
        ],
        limits(16, 16, 1000),
    );
    assert!(!out.contains("filled") && r.oom_kills >= 1, "{r:?}");
}

#[test]
fn a_cpu_hog_is_throttled_to_its_quota() {
    if !can_run("a_cpu_hog_is_throttled_to_its_quota") {
        return;
    }
    let env = Env::new();
    env.image("cpu", |_| {}, &[]);
    env.create(
        "cpu",
        "cpu",
        &["sh", "-c", "while :; do :; done"],
        limits(32, 16, 200),
    )
    .unwrap();
    env.rt().start("cpu").unwrap();
    let t0 = Instant::now();
    let c0 = env.rt().stats("cpu").unwrap().cpu_ns;
    std::thread::sleep(Duration::from_millis(1500));
    let used = env.rt().stats("cpu").unwrap().cpu_ns - c0;
    let wall = t0.elapsed().as_nanos() as u64;
    env.rt().kill("cpu", Duration::ZERO).unwrap();
    let share = used as f64 / wall as f64;
    // Quota 0.2 core: well under half a core even with scheduler slack,
    // and clearly running.
    assert!(share < 0.35, "used {share:.2} of a core with a 0.2 quota");
    assert!(share > 0.05, "the hog barely ran: {share:.3}");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !can_run("pause_freezes_and_resume_thaws") {
        return;
    }
    let env = Env::new();
    env.image("tick", |_| {}, &[]);
    env.create(
        "tick",
        "tick",
        &["sh", "-c", "while :; do echo t; sleep 0.02; done"],
        limits(32, 16, 500),
    )
    .unwrap();
    env.rt().start("tick").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(env.rt().pause("tick").unwrap().state, State::Paused);
    let frozen = env.stdout("tick").len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.stdout("tick").len(), frozen, "output grew while frozen");
    env.rt().resume("tick").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(env.stdout("tick").len() > frozen, "no output after resume");
    // Killing a paused container works (it cannot run a TERM handler).
    env.rt().pause("tick").unwrap();
    let r = env.rt().kill("tick", Duration::from_secs(5)).unwrap();
    assert_eq!(r.exit, Some(Exit::Signal(9)));
}

#[test]
fn kill_sends_term_then_kill_after_the_grace() {
    if !can_run("kill_sends_term_then_kill_after_the_grace") {
        return;
    }
    let env = Env::new();
    env.image("term", |_| {}, &[]);
    // Handles TERM: ends with its own code within the grace.
    env.create(
        "polite",
        "term",
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; echo up; while :; do sleep 0.05; done",
        ],
        limits(32, 16, 500),
    )
    .unwrap();
    env.rt().start("polite").unwrap();
    while !env.stdout("polite").contains("up") {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = env.rt().kill("polite", Duration::from_secs(5)).unwrap();
    assert_eq!(r.exit, Some(Exit::Code(3)));
    // PID 1 without a handler ignores TERM: KILL after the grace.
    env.create("stubborn", "term", &["sleep", "100"], limits(32, 16, 500))
        .unwrap();
    env.rt().start("stubborn").unwrap();
    let t = Instant::now();
    let r = env
        .rt()
        .kill("stubborn", Duration::from_millis(300))
        .unwrap();
    assert_eq!(r.exit, Some(Exit::Signal(9)));
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_restarted_agent_finds_its_containers_and_cleans_the_rest() {
    if !can_run("a_restarted_agent_finds_its_containers_and_cleans_the_rest") {
        return;
    }
    for files in [false, true] {
        restart_recovery(Env::with_records(files));
    }
}

fn restart_recovery(mut env: Env) {
    env.image("r", |_| {}, &[]);
    env.create("long", "r", &["sleep", "100"], limits(32, 16, 500))
        .unwrap();
    env.rt().start("long").unwrap();
    env.create(
        "short",
        "r",
        &["sh", "-c", "sleep 0.2; exit 5"],
        limits(32, 16, 500),
    )
    .unwrap();
    env.rt().start("short").unwrap();
    let never = env
        .create("never", "r", &["true"], limits(32, 16, 500))
        .unwrap();
    // Leftovers with no record: a cgroup and a directory.
    let stray = format!("{}/stray", env.parent);
    Cgroup::create(CgroupMode::Auto, &stray, &Limits::default()).unwrap();
    std::fs::create_dir_all(env.dir.path().join("containers/stray/rootfs")).unwrap();

    // The agent goes away; its shims do not.
    drop(env.rt.take());
    std::thread::sleep(Duration::from_millis(500));
    env.rt = Some(env.open_runtime());

    let long = env.rt().get("long").unwrap();
    assert_eq!(long.state, State::Running);
    assert!(long.init.alive());
    let short = env.rt().get("short").unwrap();
    assert_eq!(
        (short.state, short.exit),
        (State::Stopped, Some(Exit::Code(5)))
    );
    assert!(
        env.rt().get("never").is_err(),
        "never-started container kept"
    );
    assert!(
        !never.init.alive(),
        "never-started container's init still runs"
    );
    assert!(!env.dir.path().join("containers/never").exists());
    assert!(!env.dir.path().join("containers/stray").exists());
    let mut children = Cgroup::children(CgroupMode::Auto, &env.parent).unwrap();
    children.sort();
    assert_eq!(
        children,
        ["long", "short"],
        "stray or never-started cgroups kept"
    );
    // The re-attached container is still under control.
    let r = env.rt().kill("long", Duration::from_millis(100)).unwrap();
    assert_eq!(r.exit, Some(Exit::Signal(9)));
    env.rt().delete("long").unwrap();
    assert!(!env.dir.path().join("containers/long").exists());
}

#[test]
fn a_forwarded_port_reaches_a_host_server_and_nothing_else_does() {
    if !can_run("a_forwarded_port_reaches_a_host_server_and_nothing_else_does") {
        return;
    }
    let env = Env::new();
    env.image("net", |_| {}, &[]);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = server.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in server.incoming().flatten() {
            let mut c = c;
            let mut line = [0u8; 64];
            let n = c.read(&mut line).unwrap_or(0);
            let _ =
                c.write_all(format!("host got {}", String::from_utf8_lossy(&line[..n])).as_bytes());
        }
    });
    let script = format!(
        "echo ping | nc 127.0.0.1 8080; echo; nc -w 1 127.0.0.1 {} </dev/null && echo HOST-REACHABLE; true",
        host.port()
    );
    let r = env
        .create("net", "net", &["sh", "-c", &script], limits(32, 16, 500))
        .unwrap();
    let fwd = Forward::open(r.init.pid, 8080, host).unwrap();
    assert_eq!(fwd.inside().port(), 8080);
    env.rt().start("net").unwrap();
    let r = env.rt().wait("net", Some(Duration::from_secs(20))).unwrap();
    let out = env.stdout("net");
    assert_eq!(r.exit, Some(Exit::Code(0)), "{out} {}", env.stderr("net"));
    assert!(out.starts_with("host got ping"), "{out:?}");
    assert!(
        !out.contains("HOST-REACHABLE"),
        "the host's loopback is reachable"
    );
}

/// Images that try to redirect the sandbox's own mounts are refused, and
/// the host is untouched.
#[test]
fn hostile_images_are_refused_before_anything_runs() {
    if !can_run("hostile_images_are_refused_before_anything_runs") {
        return;
    }
    let env = Env::new();
    let victim = env.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host").unwrap();
    let v = victim.clone();
    env.image(
        "proclink",
        move |root| {
            std::os::unix::fs::symlink(&v, root.join("proc")).unwrap();
        },
        &[],
    );
    let v = victim.clone();
    env.image(
        "devlink",
        move |root| {
            std::os::unix::fs::symlink(&v, root.join("dev")).unwrap();
        },
        &[],
    );
    env.image(
        "tmpfile",
        |root| {
            std::fs::write(root.join("tmp"), "not a dir").unwrap();
        },
        &[],
    );
    for (image, why) in [
        ("proclink", "mount a fresh procfs at /proc"),
        ("devlink", "build /dev"),
        ("tmpfile", "mount /tmp"),
    ] {
        let e = env
            .create(image, image, &["true"], limits(32, 16, 500))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{image}: {e}");
        assert!(e.contains("ENOTDIR"), "{image}: {e}");
        assert!(env.rt().get(image).is_err(), "{image}: record left");
        assert!(!env.dir.path().join("containers").join(image).exists());
    }
    let kept: Vec<PathBuf> = std::fs::read_dir(&victim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept, [victim.join("keep")], "host directory changed");
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "host"
    );
}

#[test]
fn users_workdirs_and_missing_programs() {
    if !can_run("users_workdirs_and_missing_programs") {
        return;
    }
    let env = Env::new();
    env.image(
        "user",
        |root| {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(
                root.join("etc/passwd"),
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(
                root.join("etc/group"),
                "root:x:0:\napp:x:1000:\ngpio:x:997:app\n",
            )
            .unwrap();
        },
        &["--config.user", "app"],
    );
    let (r, out) = env.run(
        "user",
        "user",
        &[
            "sh",
            "-c",
            "id -u; id -G; echo $HOME; grep CapEff /proc/self/status",
        ],
        limits(32, 16, 500),
    );
    assert_eq!(r.exit, Some(Exit::Code(0)), "{}", env.stderr("user"));
    assert_eq!(
        out,
        "1000\n1000 997\n/home/app\nCapEff:\t0000000000000000\n"
    );

    env.image("nowd", |_| {}, &["--config.workingdir", "/nonexistent"]);
    env.create("nowd", "nowd", &["true"], limits(32, 16, 500))
        .unwrap();
    let e = env.rt().start("nowd").unwrap_err().to_string();
    assert!(
        e.contains("enter the working directory") && e.contains("ENOENT"),
        "{e}"
    );

    env.create("noprog", "user", &["no-such-program"], limits(32, 16, 500))
        .unwrap();
    let e = env.rt().start("noprog").unwrap_err().to_string();
    assert!(
        e.contains("execute the command") && e.contains("ENOENT"),
        "{e}"
    );
    assert_eq!(env.rt().get("noprog").unwrap().exit, Some(Exit::Code(126)));
}

#[test]
fn logs_are_capped() {
    if !can_run("logs_are_capped") {
        return;
    }
    let env = Env::new();
    env.image("loud", |_| {}, &[]);
    let (r, out) = env.run(
        "loud",
        "loud",
        &[
            "sh",
            "-c",
            "yes 0123456789 | head -c 3000000; echo; echo last line",
        ],
        limits(64, 16, 1000),
    );
    assert_eq!(r.exit, Some(Exit::Code(0)));
    assert!(
        out.len() <= 64 * 1024 + 16 * 1024,
        "log not capped: {} bytes",
        out.len()
    );
    assert!(
        out.ends_with("\nlast line\n"),
        "the newest output was dropped"
    );
}

#[test]
fn runs_an_image_that_went_through_a_docker_archive() {
    if !can_run("runs_an_image_that_went_through_a_docker_archive") {
        return;
    }
    let env = Env::new();
    let layout = build_image(
        env.dir.path(),
        "viadocker",
        |root| install_busybox(root, &["sh", "echo"]),
        &[
            "--config.cmd",
            "echo",
            "--config.cmd",
            "through docker-archive",
        ],
    );
    let archive = env.dir.path().join("img.docker.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:viadocker", layout.display()))
        .arg(format!(
            "docker-archive:{}:dedge/test:latest",
            archive.display()
        )));
    let here = Platform::of(Arch::of_this_build().unwrap());
    env.images.import(&archive, None, &here, "docker").unwrap();
    let (r, out) = env.run("docker", "docker", CMD, limits(32, 16, 500));
    assert_eq!(
        (r.exit, out.as_str()),
        (Some(Exit::Code(0)), "through docker-archive\n")
    );
}

/// `dedge sandbox run` as a newcomer types it: an image path, limits, a
/// command; the command's output and exit status come straight back.
#[test]
fn sandbox_run_on_the_command_line() {
    if !can_run("sandbox_run_on_the_command_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(
        dir.path(),
        "cli",
        |root| install_busybox(root, &[]),
        &[
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo hello from $(hostname)",
        ],
    );
    let boards = dir.path().join("boards");
    std::fs::create_dir(&boards).unwrap();
    let board = boards.join("dev.toml");
    std::fs::write(&board, sandbox::dev_board_text()).unwrap();
    let image = format!("{}:cli", layout.display());
    let dedge = |args: &[&str]| {
        let o = bounded::output(
            Command::new(env!("CARGO_BIN_EXE_dedge"))
                .args(["sandbox", "run", "--board"])
                .arg(&board)
                .args(args),
            bounded::DEFAULT,
        )
        .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = dedge(&[
        "--name", "first", &image, "--memory", "64M", "--pids", "64", "--cpus", "0.5",
    ]);
    assert_eq!((code, out.as_str()), (0, "hello from first\n"), "{err}");
    let (code, out, _) = dedge(&[&image, "--", "sh", "-c", "echo $A; exit 42", "--env", "A=b"]);
    assert_eq!(
        (code, out.as_str()),
        (42, "\n"),
        "arguments after the command belong to it"
    );
    let (code, out, _) = dedge(&["--env", "A=b", &image, "sh", "-c", "echo $A; exit 42"]);
    assert_eq!((code, out.as_str()), (42, "b\n"));
    let (code, _, err) = dedge(&[
        "--memory",
        "16M",
        &image,
        "sh",
        "-c",
        "x=0123456789; while :; do x=$x$x; done",
    ]);
    assert_eq!(code, 137);
    assert!(err.contains("out of memory"), "{err}");
    let (code, _, err) = dedge(&["--memory", "3", &image]);
    assert_eq!(code, 2);
    assert!(err.contains("--memory 3"), "{err}");
    let (code, _, err) = dedge(&["--cpus", "lots", &image]);
    assert_eq!(code, 2);
    assert!(err.contains("--cpus lots"), "{err}");
    let (code, _, err) = dedge(&["no-such-image"]);
    assert_eq!(code, 1);
    assert!(err.contains("no image named `no-such-image`"), "{err}");
    // The agent runs with transparent huge pages disabled (`dedge agent`);
    // a container started from such a process gets the system's setting
    // back: here from a `dedge` that inherits the opt-out.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    if ours.contains("THP_enabled:\t1") {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dedge"));
        cmd.args(["sandbox", "run", "--board"]).arg(&board).args([
            &image,
            "sh",
            "-c",
            "grep THP_enabled /proc/self/status",
        ]);
        // SAFETY: between fork and exec only prctl(2) runs, which is
        // async-signal-safe and touches no memory of the parent's.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_thp_disable(true).map_err(std::io::Error::from)
            });
        }
        let o = bounded::output(&mut cmd, bounded::DEFAULT).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "THP_enabled:\t1\n",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("SKIPPED the huge-page check: this kernel reports no THP_enabled: 1");
    }
    // Nothing is left behind: no container directory, no cgroup.
    let data = dir.path().join("target/dev-gateway/data/sandbox");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    let cli_cgroups = Cgroup::children(CgroupMode::Auto, "dedge").unwrap();
    assert!(
        !cli_cgroups.iter().any(|c| c.starts_with("cli-")),
        "the CLI left its cgroup parent behind: {cli_cgroups:?}"
    );
}
