//! What the defaults depend on: the current user, home directory and runtime directory.
//!
//! Gathered once per parse so that tests can substitute a fixed environment.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The parts of the process environment that configuration defaults depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Env {
    /// Home directory for `~/` expansion ($HOME, else the password database).
    pub home: Option<PathBuf>,
    /// Login name for tunnels without `user` ($USER, else the password database).
    pub user: Option<String>,
    /// Real user id, for the `/tmp` fallback socket name.
    pub uid: u32,
    /// Effective user id: root gets the system-wide socket.
    pub euid: u32,
    /// `$XDG_RUNTIME_DIR`, where a non-root daemon puts its socket.
    pub runtime_dir: Option<PathBuf>,
    /// `https_proxy`, `all_proxy`, `no_proxy` and their capitals, for `proxy = "env"`.
    pub proxy_vars: crate::proxy::ProxyVars,
}

fn non_empty(v: Option<OsString>) -> Option<OsString> {
    v.filter(|s| !s.is_empty())
}

impl Env {
    /// Reads the environment of this process.
    pub fn current() -> Env {
        // SAFETY: getuid and geteuid cannot fail and touch no memory of ours.
        let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
        let mut home = non_empty(std::env::var_os("HOME")).map(PathBuf::from);
        let mut user = non_empty(std::env::var_os("USER")).and_then(|u| u.into_string().ok());
        if (home.is_none() || user.is_none())
            && let Some((name, dir)) = passwd_entry(uid)
        {
            home = home.or(Some(dir));
            user = user.or(Some(name));
        }
        if user.is_none() && euid == 0 {
            user = Some("root".to_owned());
        }
        Env {
            home,
            user,
            uid,
            euid,
            runtime_dir: non_empty(std::env::var_os("XDG_RUNTIME_DIR")).map(PathBuf::from),
            proxy_vars: crate::proxy::ProxyVars::current(),
        }
    }

    /// Expands a leading `~` or `~/` to the home directory.
    pub fn expand_tilde(&self, s: &str) -> Result<PathBuf, String> {
        let rest = match s.strip_prefix('~') {
            None => return Ok(PathBuf::from(s)),
            Some("") => "",
            Some(r) if r.starts_with('/') => &r[1..],
            Some(_) => {
                return Err(format!(
                    "\"{s}\": only \"~/\" is expanded; write the full path"
                ));
            }
        };
        match &self.home {
            Some(home) if rest.is_empty() => Ok(home.clone()),
            Some(home) => Ok(home.join(rest)),
            None => Err(format!(
                "cannot expand \"{s}\": $HOME is not set; write the full path"
            )),
        }
    }

    /// The control socket when `[daemon] socket` is absent.
    pub fn default_socket(&self) -> PathBuf {
        if self.euid == 0 {
            PathBuf::from("/run/tunneld/tunneld.sock")
        } else if let Some(dir) = &self.runtime_dir {
            dir.join("tunneld.sock")
        } else {
            PathBuf::from(format!("/tmp/tunneld-{}.sock", self.uid))
        }
    }

    /// OpenSSH's known_hosts files when `known_hosts` is absent.
    pub fn default_known_hosts(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(home) = &self.home {
            files.push(home.join(".ssh/known_hosts"));
        }
        files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        files
    }
}

/// Login name and home directory of `uid` from the password database.
fn passwd_entry(uid: libc::uid_t) -> Option<(String, PathBuf)> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live local of the stated size; on
        // success the strings in `pwd` point into `buf`, which outlives their use.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so both are NUL-terminated strings in `buf`.
        let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        let name = name.to_str().ok()?.to_owned();
        let dir = PathBuf::from(OsStr::from_bytes(dir.to_bytes()));
        return Some((name, dir));
    }
}

#[cfg(test)]
pub(crate) fn fixed() -> Env {
    Env {
        home: Some(PathBuf::from("/home/alice")),
        user: Some("alice".to_owned()),
        uid: 1000,
        euid: 1000,
        runtime_dir: Some(PathBuf::from("/run/user/1000")),
        proxy_vars: crate::proxy::ProxyVars::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expansion() {
        let env = fixed();
        assert_eq!(
            env.expand_tilde("~/.ssh/id"),
            Ok(PathBuf::from("/home/alice/.ssh/id"))
        );
        assert_eq!(env.expand_tilde("~"), Ok(PathBuf::from("/home/alice")));
        assert_eq!(env.expand_tilde("/etc/x"), Ok(PathBuf::from("/etc/x")));
        assert_eq!(env.expand_tilde("rel/~/x"), Ok(PathBuf::from("rel/~/x")));
        assert!(
            env.expand_tilde("~bob/x")
                .unwrap_err()
                .contains("only \"~/\" is expanded")
        );
        let homeless = Env {
            home: None,
            ..fixed()
        };
        assert!(
            homeless
                .expand_tilde("~/x")
                .unwrap_err()
                .contains("$HOME is not set")
        );
    }

    #[test]
    fn default_socket_paths() {
        let env = fixed();
        assert_eq!(
            env.default_socket(),
            PathBuf::from("/run/user/1000/tunneld.sock")
        );
        let no_xdg = Env {
            runtime_dir: None,
            ..fixed()
        };
        assert_eq!(
            no_xdg.default_socket(),
            PathBuf::from("/tmp/tunneld-1000.sock")
        );
        let root = Env { euid: 0, ..fixed() };
        assert_eq!(
            root.default_socket(),
            PathBuf::from("/run/tunneld/tunneld.sock")
        );
    }

    #[test]
    fn current_env_finds_a_user() {
        // The password database knows whoever runs the tests.
        let env = Env::current();
        assert!(
            env.user.as_deref().is_some_and(|u| !u.is_empty()),
            "{env:?}"
        );
        assert!(env.home.is_some(), "{env:?}");
    }
}
