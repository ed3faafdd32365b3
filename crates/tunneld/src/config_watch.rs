//! Watching the configuration for `watch = true`: the main file and the folders of its
//! `include` patterns.
//!
//! The file's directory is watched rather than the file: editors save by writing a
//! temporary file and renaming it over the name, and Kubernetes ConfigMaps and ansible
//! swap symlinks, both of which replace the inode a file watch would be attached to. In
//! an include folder, any file the pattern matches that is added, changed, removed or
//! renamed in or out counts.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Kubernetes mounts a ConfigMap's files as symlinks through `..data`, itself a symlink
/// swapped atomically to the new version's directory.
const K8S_DATA: &str = "..data";

/// However busy the directory, a change is reported at most this many debounce
/// periods after it, so a file rewritten without pause still gets reloaded.
const MAX_DELAY_FACTOR: u32 = 10;

/// Keeps the config file watched; dropping it stops watching and closes the channel.
pub struct ConfigWatcher {
    _watcher: RecommendedWatcher,
    debounce: AbortHandle,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

/// What to watch: a folder, and the names in it that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The folder (watched non-recursively).
    pub dir: PathBuf,
    /// A file name, or an include pattern's (`*.toml`).
    pub name: String,
    /// The main file: Kubernetes' `..data` swap counts too.
    pub main: bool,
    /// `dir` with symbolic links resolved, as events may name it.
    canonical: Option<PathBuf>,
}

impl Target {
    /// The main configuration file.
    pub fn main_file(path: &Path) -> anyhow::Result<Target> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a file name", path.display()))?
            .to_owned();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Target {
            canonical: std::fs::canonicalize(&dir).ok(),
            dir,
            name,
            main: true,
        })
    }

    /// Whether a change to `name` in this folder may change the configuration.
    fn matches(&self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        if self.main {
            name == self.name || name == K8S_DATA
        } else {
            tunneld_config::include::file_name_matches(&self.name, name)
        }
    }
}

/// The targets of a configuration: its main file, then each include pattern's folder.
///
/// # Errors
/// The main file's path has no file name.
pub fn targets(config: &tunneld_config::Config) -> anyhow::Result<Vec<Target>> {
    let mut out = vec![Target::main_file(&config.path)?];
    for pattern in &config.daemon.include {
        if let Some((dir, name)) = tunneld_config::include::split_pattern(pattern) {
            out.push(Target {
                canonical: std::fs::canonicalize(&dir).ok(),
                dir,
                name,
                main: false,
            });
        }
    }
    Ok(out)
}

/// Watches `path` (the config file) alone; see [`watch_targets`].
///
/// # Errors
/// As [`watch_targets`].
#[cfg(test)]
pub fn watch_config(
    path: &Path,
    debounce: Duration,
) -> anyhow::Result<(ConfigWatcher, mpsc::Receiver<()>)> {
    watch_targets(&[Target::main_file(path)?], debounce)
}

/// Watches `targets` and sends `()` on the returned channel when the configuration may
/// have changed, debounced: a burst of events less than `debounce` apart yields one
/// notification once the burst settles.
///
/// Watches each folder (non-recursively) and keeps the events naming a file its target
/// matches, or Kubernetes' `..data` for the main file, so rename-over saves and symlink
/// swaps count. Reads of the files (the daemon's own reload) do not. An include folder
/// that cannot be watched (it does not exist yet) is logged and skipped.
///
/// Must be called within a tokio runtime: the debouncing runs as a task on it, and ends
/// when the receiver or the [`ConfigWatcher`] is dropped.
///
/// # Errors
/// When the main file's folder cannot be watched (missing, unreadable, out of inotify
/// watches).
pub fn watch_targets(
    targets: &[Target],
    debounce: Duration,
) -> anyhow::Result<(ConfigWatcher, mpsc::Receiver<()>)> {
    // Raw events from notify's thread; a full channel already holds a wake-up, so
    // dropping more loses nothing.
    let (raw_tx, raw_rx) = mpsc::channel::<()>(16);
    let wanted = targets.to_vec();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if relevant(&event, &wanted) => {
                debug!(?event, "config file event");
                let _ = raw_tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "watching the config file"),
        })
        .context("cannot start watching files")?;
    let mut watched: Vec<&Path> = Vec::new();
    for target in targets {
        if watched.contains(&target.dir.as_path()) {
            continue;
        }
        match watcher.watch(&target.dir, RecursiveMode::NonRecursive) {
            Ok(()) => watched.push(&target.dir),
            Err(e) if target.main => {
                return Err(e).with_context(|| format!("cannot watch {}", target.dir.display()));
            }
            Err(e) => warn!(folder = %target.dir.display(), error = %e,
                            "cannot watch an include folder; files added there are read at the next reload"),
        }
    }

    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(debounce_events(raw_rx, tx, debounce));
    Ok((
        ConfigWatcher {
            _watcher: watcher,
            debounce: task.abort_handle(),
        },
        rx,
    ))
}

/// True for an event that may have changed a target: anything touching a name a target
/// of its folder matches, other than opening or reading it. A rescan notice (events were
/// lost) counts too.
fn relevant(event: &Event, targets: &[Target]) -> bool {
    if event.need_rescan() {
        return true;
    }
    if let EventKind::Access(access) = event.kind
        && access != AccessKind::Close(AccessMode::Write)
    {
        return false;
    }
    event.paths.iter().any(|p| {
        let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
            return false;
        };
        targets.iter().any(|t| {
            let here = t.dir.as_path() == dir || t.canonical.as_deref() == Some(dir);
            here && t.matches(name)
        })
    })
}

/// Forwards one `()` per burst of raw events, once `debounce` has passed without one
/// (or `MAX_DELAY_FACTOR` periods after the burst began). Ends when either side closes.
async fn debounce_events(mut raw: mpsc::Receiver<()>, tx: mpsc::Sender<()>, debounce: Duration) {
    loop {
        tokio::select! {
            event = raw.recv() => if event.is_none() { return },
            () = tx.closed() => return,
        }
        let latest = Instant::now() + debounce * MAX_DELAY_FACTOR;
        let mut deadline = (Instant::now() + debounce).min(latest);
        loop {
            tokio::select! {
                event = raw.recv() => match event {
                    Some(()) => deadline = (Instant::now() + debounce).min(latest),
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = tx.closed() => return,
            }
        }
        match tx.try_send(()) {
            // Full: a notification is already waiting, which covers this burst too.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DEBOUNCE: Duration = Duration::from_millis(200);
    /// Generous bound for the first notification: inotify plus the debounce, on a busy CI.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tunneld.toml");
        fs::write(&config, "# one\n").unwrap();
        (dir, config)
    }

    async fn expect_one(rx: &mut mpsc::Receiver<()>) {
        expect_one_after(rx, DEBOUNCE).await;
    }

    async fn expect_none(rx: &mut mpsc::Receiver<()>) {
        expect_none_after(rx, DEBOUNCE).await;
    }

    async fn expect_one_after(rx: &mut mpsc::Receiver<()>, debounce: Duration) {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no notification in time")
            .expect("channel closed");
        expect_none_after(rx, debounce).await;
    }

    async fn expect_none_after(rx: &mut mpsc::Receiver<()>, debounce: Duration) {
        if let Ok(got) = tokio::time::timeout(debounce * 3, rx.recv()).await {
            panic!("unexpected notification: {got:?}");
        }
    }

    #[tokio::test]
    async fn write_in_place_notifies_once() {
        let (_dir, config) = setup();
        let (_watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();
        fs::write(&config, "# two\n").unwrap();
        expect_one(&mut rx).await;
    }

    #[tokio::test]
    async fn rename_over_notifies() {
        let (dir, config) = setup();
        let (_watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();
        let tmp = dir.path().join(".tunneld.toml.tmp");
        fs::write(&tmp, "# two\n").unwrap();
        fs::rename(&tmp, &config).unwrap();
        expect_one(&mut rx).await;
    }

    #[tokio::test]
    async fn symlink_swap_notifies() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        let config = dir.path().join("tunneld.toml");
        fs::write(&a, "# a\n").unwrap();
        std::os::unix::fs::symlink("a.toml", &config).unwrap();
        let (_watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();

        // Not the config's name: no notification yet.
        fs::write(&b, "# b\n").unwrap();
        expect_none(&mut rx).await;

        let new = dir.path().join("tunneld.toml.new");
        std::os::unix::fs::symlink("b.toml", &new).unwrap();
        fs::rename(&new, &config).unwrap();
        expect_one(&mut rx).await;
        assert_eq!(fs::read_to_string(&config).unwrap(), "# b\n");
    }

    #[tokio::test]
    async fn kubernetes_data_swap_notifies() {
        let dir = tempfile::tempdir().unwrap();
        for version in ["..v1", "..v2"] {
            fs::create_dir(dir.path().join(version)).unwrap();
            fs::write(dir.path().join(version).join("tunneld.toml"), version).unwrap();
        }
        std::os::unix::fs::symlink("..v1", dir.path().join(K8S_DATA)).unwrap();
        let config = dir.path().join("tunneld.toml");
        std::os::unix::fs::symlink("..data/tunneld.toml", &config).unwrap();
        let (_watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();

        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("..v2", &tmp).unwrap();
        fs::rename(&tmp, dir.path().join(K8S_DATA)).unwrap();
        expect_one(&mut rx).await;
        assert_eq!(fs::read_to_string(&config).unwrap(), "..v2");
    }

    #[tokio::test]
    async fn a_burst_of_writes_notifies_once() {
        // A longer debounce than the other tests, so a stalled machine between two
        // writes does not split the burst.
        let debounce = Duration::from_secs(1);
        let (_dir, config) = setup();
        let (_watcher, mut rx) = watch_config(&config, debounce).unwrap();
        for i in 0..10 {
            fs::write(&config, format!("# write {i}\n")).unwrap();
            // Pacing, well inside the debounce.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        expect_one_after(&mut rx, debounce).await;
    }

    #[tokio::test]
    async fn other_files_and_reads_are_ignored() {
        let (dir, config) = setup();
        let (_watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();
        fs::write(dir.path().join("other.toml"), "# other\n").unwrap();
        fs::write(dir.path().join("tunneld.toml.bak"), "# backup\n").unwrap();
        assert_eq!(fs::read_to_string(&config).unwrap(), "# one\n");
        expect_none(&mut rx).await;
    }

    #[tokio::test]
    async fn include_folders_count_their_matching_files() {
        let (dir, config) = setup();
        let drop_in = dir.path().join("tunnels.d");
        fs::create_dir(&drop_in).unwrap();
        let targets = [
            Target::main_file(&config).unwrap(),
            Target {
                dir: drop_in.clone(),
                name: "*.toml".into(),
                main: false,
                canonical: None,
            },
            // A folder that does not exist is skipped, not an error.
            Target {
                dir: dir.path().join("missing.d"),
                name: "*.toml".into(),
                main: false,
                canonical: None,
            },
        ];
        let (_watcher, mut rx) = watch_targets(&targets, DEBOUNCE).unwrap();
        // Not matched: other names, a swap file, a file of the main folder.
        fs::write(drop_in.join("notes.txt"), "x").unwrap();
        fs::write(drop_in.join(".a.toml.swp"), "x").unwrap();
        fs::write(dir.path().join("b.toml"), "x").unwrap();
        expect_none(&mut rx).await;
        // Added, changed, renamed in, removed.
        fs::write(drop_in.join("a.toml"), "# a\n").unwrap();
        expect_one(&mut rx).await;
        fs::write(drop_in.join("a.toml"), "# a, changed\n").unwrap();
        expect_one(&mut rx).await;
        let tmp = dir.path().join("staged");
        fs::write(&tmp, "# c\n").unwrap();
        fs::rename(&tmp, drop_in.join("c.toml")).unwrap();
        expect_one(&mut rx).await;
        fs::remove_file(drop_in.join("a.toml")).unwrap();
        expect_one(&mut rx).await;
        // The main file still counts.
        fs::write(&config, "# two\n").unwrap();
        expect_one(&mut rx).await;
    }

    #[tokio::test]
    async fn a_bare_file_name_watches_the_current_directory() {
        // "tunneld.toml" has an empty parent, which names the working directory.
        let (_watcher, _rx) = watch_config(Path::new("tunneld.toml"), DEBOUNCE).unwrap();
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("nowhere").join("tunneld.toml");
        assert!(watch_config(&config, DEBOUNCE).is_err());
    }

    #[tokio::test]
    async fn dropping_the_watcher_closes_the_channel() {
        let (_dir, config) = setup();
        let (watcher, mut rx) = watch_config(&config, DEBOUNCE).unwrap();
        drop(watcher);
        let closed = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
        assert_eq!(closed, None);
    }

    #[tokio::test]
    async fn dropping_the_receiver_ends_the_task() {
        let (_dir, config) = setup();
        let (watcher, rx) = watch_config(&config, DEBOUNCE).unwrap();
        drop(rx);
        let handle = watcher.debounce.clone();
        tokio::time::timeout(DEADLINE, async {
            while !handle.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("debounce task still running");
    }
}
