//! Files and sockets where another local user may have planted a symbolic link.
//!
//! Whoever owns a symbolic link chooses where it points. tunneld often runs as root or as
//! a service user, and reads keys (and writes known_hosts) at paths given in its config:
//! following a link that some other user owns would let that user pick which file is read
//! as our key, or which file we append to. Links owned by us or by root are followed, as
//! OpenSSH follows them (`~/.ssh/known_hosts` kept in a dotfiles repository, for one).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Refuses `path` when it is a symbolic link owned by a user other than us and root.
/// A missing path passes: opening it reports that.
///
/// # Errors
/// A message naming the link and its owner.
pub fn check_link(path: &Path, what: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_symlink() || trusted_owner(meta.uid()) {
        return Ok(());
    }
    Err(format!(
        "{what} {} is a symbolic link owned by uid {}, not by us or root; not following it \
         (a link's owner chooses where it points)",
        path.display(),
        meta.uid()
    ))
}

fn trusted_owner(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Binds a Unix socket at `path` with `mode` (and `group`), never exposing it, or
/// anything else, with other permissions.
///
/// Binding in place and then `chmod`ing the path would follow whatever is at the path by
/// then: in a directory others can write, a link swapped in between would hand our mode
/// and group to the file it points at. So the socket is bound in a fresh directory only we
/// can enter, given its mode and group there, then renamed over `path` (a rename replaces
/// a link, it does not follow it). When that staging path would be too long for a socket
/// address, the socket is bound in place.
///
/// # Errors
/// Naming the path; nothing is left behind.
pub fn bind_unix(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> std::io::Result<std::os::unix::net::UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = dir.join(format!(".tunneld-{:08x}", rand::random::<u32>()));
    let staged = staging.join("s");
    // sun_path holds 108 bytes with the terminating NUL.
    if staged.as_os_str().len() >= 108 {
        let listener = std::os::unix::net::UnixListener::bind(path)?;
        if let Err(e) = set_mode_and_group(path, mode, group) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        return Ok(listener);
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| annotate(e, &staging))?;
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        set_mode_and_group(&staged, mode, group)?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    bound
}

fn set_mode_and_group(path: &Path, mode: u32, group: Option<u32>) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
    }
    Ok(())
}

fn annotate(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_its_mode_and_no_staging_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let _l = bind_unix(&path, 0o660, None).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        assert_eq!(meta.mode() & 0o777, 0o660);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.sock"]);
        // Connectable at its final path.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("b.sock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let _l = bind_unix(&path, 0o666, None).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(
            std::fs::metadata(&target).unwrap().mode() & 0o777,
            0o600,
            "the link's target kept its mode"
        );
        assert!(
            !std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn links_of_ours_pass_and_plain_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check_link(&file, "identity file").is_ok());
        assert!(check_link(&link, "identity file").is_ok());
        assert!(check_link(&dir.path().join("missing"), "identity file").is_ok());
    }

    #[test]
    fn a_link_owned_by_another_user_is_refused() {
        // Needs root to give a link away.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        let err = check_link(&link, "identity file").unwrap_err();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}
