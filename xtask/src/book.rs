//! `cargo xtask book`: builds the mdBook in `docs/`, installing mdbook 0.4
//! with `cargo install` first when it is not there.

use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::error::Error;
use crate::kbuild::{self, Workspace};
use crate::setup::find_on_path;

/// The mdbook versions the book is written for.
pub const MDBOOK_VERSION: &str = "^0.4";

/// The arguments of the install command.
pub fn install_args() -> Vec<String> {
    ["install", "mdbook", "--locked", "--version", MDBOOK_VERSION].map(String::from).to_vec()
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
fn cargo_bin_dir() -> Option<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(home) => Some(PathBuf::from(home).join("bin")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin")),
    }
}

/// The mdbook to run: on PATH, else where cargo installs it.
fn find_mdbook() -> Option<PathBuf> {
    find_on_path("mdbook").or_else(|| cargo_bin_dir().map(|d| d.join("mdbook")).filter(|p| p.is_file()))
}

fn build(ws: &Workspace, mdbook: &PathBuf) -> Result<(), Error> {
    println!("xtask: running: {} build docs", mdbook.display());
    let status = Command::new(mdbook)
        .args(["build", "docs"])
        .current_dir(&ws.root)
        .status()
        .map_err(|e| Error::Setup(format!("could not start {}: {e}", mdbook.display())))?;
    if status.success() {
        println!("xtask: the book is in {}", ws.root.join("docs").join("book").display());
        Ok(())
    } else {
        Err(Error::Build(format!("`mdbook build docs` failed ({status}); see its messages above")))
    }
}

/// `cargo xtask book`.
pub fn run(ws: &Workspace) -> Result<(), Error> {
    if let Some(mdbook) = find_mdbook() {
        return build(ws, &mdbook);
    }
    let args = install_args();
    println!("xtask: mdbook is not installed; running: cargo {}", args.join(" "));
    let status = Command::new(kbuild::cargo_program())
        .args(&args)
        .status()
        .map_err(|e: io::Error| Error::Setup(format!("could not start cargo to install mdbook: {e}")))?;
    if !status.success() {
        return Err(Error::Setup(format!(
            "`cargo {}` failed ({status}); install mdbook 0.4 yourself and retry",
            args.join(" ")
        )));
    }
    let mdbook = find_mdbook().ok_or_else(|| {
        Error::Setup("mdbook was installed but is neither on PATH nor in $CARGO_HOME/bin".into())
    })?;
    build(ws, &mdbook)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_a_locked_0_4() {
        assert_eq!(install_args().join(" "), "install mdbook --locked --version ^0.4");
    }
}
