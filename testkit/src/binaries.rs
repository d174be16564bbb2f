//! The workspace's binaries (`flyhook`, `flyte-sim`) as child processes: found where cargo put
//! them (its `target_directory`, so `CARGO_TARGET_DIR` and cargo's configuration count, never a
//! `target/` path by hand), and killed when dropped, so a run that fails half way leaves none
//! behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;

use crate::vars::Vars;

/// Which build of a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    fn build_flag(self) -> &'static str {
        match self {
            Profile::Debug => "",
            Profile::Release => " --release",
        }
    }
}

/// Where cargo puts this workspace's builds, as `cargo metadata` says.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    static TARGET: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = TARGET.get() {
        return Ok(dir.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
            manifest,
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("no target_directory in cargo metadata")?;
    Ok(TARGET.get_or_init(|| PathBuf::from(dir)).clone())
}

/// The binary `name` of `profile`: `CARGO_BIN_EXE_<name>` where cargo provides it (a test of
/// the binary's own package), else in cargo's target directory. It must have been built.
pub fn binary(name: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return Ok(path.into());
    }
    let path = target_dir()?.join(profile.dir()).join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: cargo build{} -p {name}",
        path.display(),
        profile.build_flag()
    );
    Ok(path)
}

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Reaped(Child);

impl Reaped {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Kills it now, as `kill -9` would: no chance to ack, nack or close anything.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program args…` with `vars` (and `RUST_LOG=warn` unless `vars` set it; set empty, the
/// binary's own default filter applies, as a user runs it), its output discarded but for its
/// stderr when `show_stderr`.
pub fn spawn(
    program: &Path,
    args: &[String],
    vars: &Vars,
    show_stderr: bool,
) -> anyhow::Result<Reaped> {
    let mut command = Command::new(program);
    command.env("RUST_LOG", "warn").envs(vars);
    if vars.get("RUST_LOG").is_some_and(String::is_empty) {
        command.env_remove("RUST_LOG");
    }
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(if show_stderr {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .map(Reaped)
        .with_context(|| format!("starting {} {}", program.display(), args.join(" ")))
}
