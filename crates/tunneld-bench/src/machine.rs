//! The facts about the machine a run was taken on, for the top of the report.

use std::path::Path;

use crate::report::Machine;

/// nproc, CPU model, kernel, OpenSSH and tunneld versions, and the source commit.
pub fn machine(tunneld: &Path) -> Machine {
    let output = |program: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args);
        cmd.output()
            .ok()
            .map(|o| {
                // ssh -V answers on stderr.
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text).trim().to_owned()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".to_owned())
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                Some(
                    l.strip_prefix("model name")?
                        .split_once(':')?
                        .1
                        .trim()
                        .to_owned(),
                )
            })
        })
        .unwrap_or_else(|| "?".to_owned());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut commit = output("git", &["-C", workspace, "describe", "--always", "--dirty"]);
    if commit != "?" {
        commit = format!("commit {commit}");
    }
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model,
        kernel: output("uname", &["-r"]),
        openssh: output("ssh", &["-V"]),
        tunneld: output(&tunneld.display().to_string(), &["--version"]),
        commit,
    }
}
