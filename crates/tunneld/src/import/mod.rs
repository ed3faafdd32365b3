//! `tunneld import`: what people run today, an ssh or autossh command line or the `Host`
//! blocks of an ssh_config file, written out as `[tunnels.NAME]` tables.
//!
//! Every option is either mapped to the tunneld key that means the same, or left out
//! with a `# not imported: OPTION: why` comment line; nothing is dropped silently.
//!
//! Layout:
//! - `cmdline`: ssh and autossh argument lists, read as ssh reads them.
//! - `ssh_config`: ssh_config files; `Host` blocks resolved for a host as ssh resolves them.
//! - `options`: each ssh option (`-o`, ssh_config keyword) mapped, or noted with a reason.
//! - `proxy`: `ProxyCommand` as `proxy`, `proxy_jump` or `proxy_command`.
//! - `draft`: one tunnel being imported, and how it is printed as TOML.

mod cmdline;
mod draft;
mod options;
mod proxy;
mod ssh_config;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use draft::{table_name, valid_name};

/// Exit code for input that cannot be imported (as for any other usage error).
const EXIT_USAGE: u8 = 2;
/// Exit code when a file cannot be read.
const EXIT_FAILURE: u8 = 1;

/// `tunneld import` arguments.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  tunneld import -- autossh -M 0 -f -N -o ServerAliveInterval=30 -R 2222:localhost:22 tunnel@public.example.com
  tunneld import 'ssh -N -L 5432:db.internal:5432 -J jump@gw.example.com ops@bastion.example.com'
  tunneld import --ssh-config ~/.ssh/config            # every Host block with a forward
  tunneld import --ssh-config ~/.ssh/config db-tunnel  # these hosts, forwards or not

Append the output to the configuration file, then run tunneld check.")]
pub(crate) struct ImportArgs {
    /// Read Host blocks from this ssh_config file instead of a command line.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Table name for the tunnel of a command line [default: from the destination host].
    #[arg(long, value_name = "NAME", conflicts_with = "ssh_config")]
    name: Option<String>,
    /// The ssh or autossh command line, after `--` or as one quoted argument; with
    /// --ssh-config, the hosts to import [default: every Host block with a forward].
    #[arg(
        value_name = "COMMAND | HOST",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

/// Why an import failed, and the exit code that says so.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

/// Runs `tunneld import`: the tables on stdout; on stderr, a warning for each problem
/// `tunneld check` would still find in them.
pub(crate) fn run(args: &ImportArgs) -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    match import(args, &cwd) {
        Ok(text) => {
            for problem in check(&text) {
                eprintln!("tunneld import: warning: tunneld check will refuse this: {problem}");
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("tunneld import: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The TOML text for `args`; relative paths are resolved against `cwd`, as ssh would.
fn import(args: &ImportArgs, cwd: &Path) -> Result<String, Failure> {
    match &args.ssh_config {
        Some(file) => from_ssh_config(file, &args.args, cwd),
        None => {
            let imported = cmdline::parse(&args.args).map_err(usage)?;
            let name = match &args.name {
                Some(n) if valid_name(n) => n.clone(),
                Some(n) => {
                    return Err(usage(format!(
                        "--name \"{n}\": a tunnel name may contain only letters, digits, '_', '.' and '-'"
                    )));
                }
                None => table_name(&imported.draft.alias),
            };
            Ok(imported.draft.render(&name, &imported.header, cwd))
        }
    }
}

fn from_ssh_config(file: &Path, hosts: &[String], cwd: &Path) -> Result<String, Failure> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| Failure {
        code: EXIT_FAILURE,
        message: format!("cannot read {shown}: {e}"),
    })?;
    let config = ssh_config::SshConfig::parse(&text)
        .map_err(|(line, e)| usage(format!("{shown}:{line}: {e}")))?;
    let (found, notes) = config
        .import(hosts)
        .map_err(|e| usage(format!("{shown}: {e}")))?;
    if found.is_empty() {
        return Err(usage(format!(
            "{shown}: no Host block has a LocalForward, RemoteForward or DynamicForward; name the hosts to import: tunneld import --ssh-config {shown} HOST..."
        )));
    }
    let mut out = String::new();
    for note in &notes {
        out.push_str(&format!("# not imported: {shown}: {note}\n"));
    }
    let mut names = BTreeSet::new();
    for f in found {
        let name = unique(&mut names, table_name(&f.draft.alias));
        let header: Vec<String> = f
            .header
            .iter()
            .map(|h| format!("imported from {shown}: {h}"))
            .collect();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&f.draft.render(&name, &header, cwd));
    }
    Ok(out)
}

/// `name`, or `name-2`, `name-3`... when taken (aliases that differ only in characters a
/// table name cannot hold).
fn unique(taken: &mut BTreeSet<String>, name: String) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// What `tunneld check` would say about the text, as `FILE:LINE:COL: message` lines.
fn check(text: &str) -> Vec<String> {
    match tunneld_config::parse(Path::new("(imported)"), text) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}
