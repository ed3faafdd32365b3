//! The release `tunneld` binary, for the programs that measure or soak it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::timeout;

/// Bound of `cargo build --release -p tunneld`.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds `target/release/tunneld` beside the running program (a no-op when it is fresh)
/// and returns its path. If cargo is unavailable or fails, an existing binary is used with
/// a warning. `who` prefixes the messages.
///
/// # Errors
/// The running program is not in `target/<profile>/`, or the build fails and there is no
/// binary to fall back on.
pub async fn release_tunneld(who: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().with_context(|| format!("the {who}'s own path"))?;
    // target/<profile>/<program> -> target/release/tunneld
    let target = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("the {who} is not in target/<profile>/"))?;
    let bin = target.join("release").join("tunneld");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("{who}: building the tunneld release binary ({cargo} build --release -p tunneld)");
    let build = tokio::process::Command::new(&cargo)
        .args(["build", "--release", "-p", "tunneld", "--bin", "tunneld"])
        .arg("--target-dir")
        .arg(target)
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status();
    let failure = match timeout(BUILD_TIMEOUT, build).await {
        Ok(Ok(s)) if s.success() => None,
        Ok(Ok(s)) => Some(format!("cargo build exited with {s}")),
        Ok(Err(e)) => Some(format!("cannot run {cargo}: {e}")),
        Err(_) => Some(format!("cargo build took over {BUILD_TIMEOUT:?}")),
    };
    match (failure, bin.exists()) {
        (None, true) => Ok(bin),
        (None, false) => bail!("cargo build succeeded but {} is missing", bin.display()),
        (Some(why), true) => {
            eprintln!(
                "{who}: warning: {why}; using the existing {}",
                bin.display()
            );
            Ok(bin)
        }
        (Some(why), false) => bail!("{why}, and there is no {}", bin.display()),
    }
}
