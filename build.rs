//! Records the git commit and target triple for `dedge version`.

use std::process::Command;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=DEDGE_TARGET={target}");

    // A source tarball has no .git: DEDGE_GIT_COMMIT lets packagers say which
    // commit it was cut from.
    println!("cargo:rerun-if-env-changed=DEDGE_GIT_COMMIT");
    let commit = std::env::var("DEDGE_GIT_COMMIT").ok().or_else(git_commit);
    println!(
        "cargo:rustc-env=DEDGE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git_commit() -> Option<String> {
    let git_dir = git(&["rev-parse", "--git-dir"])?;
    // Rerun when HEAD moves (commit, checkout).
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
    }
    // No "-dirty" mark: build scripts do not rerun on source edits, so it
    // would go stale and lie.
    git(&["rev-parse", "--short=12", "HEAD"])
}
