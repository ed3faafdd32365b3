//! The `tunneld` command: runs the daemon, checks configuration files, and talks to a
//! running daemon over its control socket.
//!
//! Layout:
//! - `main` (this file): the command line and exit codes.
//! - `run`: `tunneld run`: the daemon's loop (signals, reload, watchdog, status).
//! - `control`: the control socket, server and client.
//! - `import`: `tunneld import`: ssh/autossh command lines and ssh_config files as tunnels.
//! - `render`: status as JSON, as a table, and as systemd's `STATUS=` line.
//! - `service`: logging (journald or stderr) and systemd's notify protocol.
//! - `config_watch`: watching the configuration file and its include folders.

mod config_watch;
mod control;
mod import;
mod memory;
mod metrics;
mod render;
mod run;
mod service;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code when no daemon answers (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code for a bad configuration file (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Keeps SSH port forwards alive: named -L/-R/-D tunnels to stock OpenSSH servers.
#[derive(Parser)]
#[command(name = "tunneld", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file [default: $TUNNELD_CONFIG, else /etc/tunneld/tunneld.toml]
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(tunneld_config::default_config_path)
    }
}

#[derive(clap::Args)]
struct ClientArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Control socket of the daemon [default: [daemon] socket of the configuration file]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl ClientArgs {
    /// `--socket`, else the file's `[daemon] socket`, else the default socket.
    fn socket(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        let path = self.config.path();
        match tunneld_config::load(&path) {
            Ok(c) => c.daemon.socket,
            // A file being edited may be invalid: that is when `reload` must still reach
            // the daemon to be told so. Take the socket line alone.
            Err(_) => socket_line(&path).unwrap_or_else(tunneld_config::default_socket_path),
        }
    }
}

/// `socket = "..."` from the `[daemon]` table of a file that may not parse as a whole.
fn socket_line(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut in_daemon = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_daemon = line.trim_end_matches(|c: char| c != ']') == "[daemon]";
            continue;
        }
        let Some(value) = line.strip_prefix("socket").map(str::trim_start) else {
            continue;
        };
        let Some(value) = value.strip_prefix('=').map(str::trim) else {
            continue;
        };
        if in_daemon {
            let quoted = value.strip_prefix('"')?.split('"').next()?;
            return Some(PathBuf::from(quoted));
        }
    }
    None
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Run(ConfigArg),
    /// Validate the configuration file and print a summary of each tunnel.
    Check(ConfigArg),
    /// Ask the running daemon to re-read its configuration file, and print what changed.
    Reload(ClientArgs),
    /// Show the running daemon's tunnels.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Print the status as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print [tunnels.NAME] tables for an ssh or autossh command line, or for the Host
    /// blocks of an ssh_config file.
    Import(import::ImportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (roff): tunneld(1) and one per subcommand, as packaged.
    #[command(hide = true)]
    Man {
        /// Folder to write tunneld.1, tunneld-run.1, ... into.
        dir: PathBuf,
    },
}

/// Loads and checks the file.
///
/// # Errors
/// Every problem, one message each (`FILE:LINE:COL: message` where the position is known).
pub(crate) fn load_config(path: &Path) -> Result<tunneld_config::Config, Vec<String>> {
    tunneld_config::load(path).map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(arg) => check(&arg.path()),
        Command::Run(arg) => {
            let config = match load_config(&arg.path()) {
                Ok(c) => c,
                Err(errors) => {
                    errors.iter().for_each(|e| eprintln!("{e}"));
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match run::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tunneld: {e:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Command::Status { client, json } => {
            client_call(&client.socket(), control::Command::Status, |v| {
                if json {
                    println!("{:#}", v["status"]);
                } else {
                    print!(
                        "{}",
                        render::status_table(&v["status"], std::time::SystemTime::now())
                    );
                }
            })
        }
        Command::Import(args) => import::run(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "tunneld", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match write_man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tunneld: {e:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Reload(client) => client_call(&client.socket(), control::Command::Reload, |v| {
            println!("{}", v["reload"]["summary"].as_str().unwrap_or("reloaded"));
            for file in v["reload"]["files"].as_array().into_iter().flatten() {
                let n = file["tunnels"].as_array().map_or(0, Vec::len);
                println!(
                    "read {}: {}",
                    file["path"].as_str().unwrap_or("?"),
                    tunnels(n)
                );
            }
        }),
    }
}

/// Writes tunneld(1) and a page per visible subcommand into `dir`.
fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut pages = vec![("tunneld".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("tunneld-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs one control-socket call; `show` prints a successful answer.
fn client_call(
    socket: &Path,
    command: control::Command,
    show: impl FnOnce(&serde_json::Value),
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tunneld: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(control::call(socket, command)) {
        Ok(v) if v["ok"] == true => {
            show(&v);
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let errors = v["errors"].as_array().cloned().unwrap_or_default();
            for e in &errors {
                eprintln!("{}", e.as_str().unwrap_or("error"));
            }
            if command == control::Command::Reload {
                eprintln!("tunneld: the daemon kept its previous configuration");
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Err(e @ control::ClientError::Unreachable { .. }) => {
            eprintln!("tunneld: {e}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("tunneld: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match load_config(path) {
        Ok(config) => {
            for t in config.tunnels.values() {
                println!("{}", summary(t));
            }
            // One line per file read: the main file, then each included one.
            for file in &config.files {
                println!(
                    "{}: ok, {}",
                    file.path.display(),
                    tunnels(file.tunnels.len())
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("{e}"));
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// "1 tunnel", "2 tunnels".
fn tunnels(n: usize) -> String {
    format!("{n} tunnel{}", if n == 1 { "" } else { "s" })
}

fn summary(t: &tunneld_config::TunnelConfig) -> String {
    let hosts: Vec<String> = t.hosts.iter().map(|h| h.to_string()).collect();
    let mut forwards = Vec::new();
    forwards.extend(t.local.iter().map(|f| format!("-L {}", f.spec)));
    forwards.extend(t.remote.iter().map(|f| format!("-R {}", f.spec)));
    forwards.extend(t.dynamic.iter().map(|f| format!("-D {}", f.spec)));
    let mut line = format!(
        "{}: {}@{}  {}",
        t.name,
        t.user,
        hosts.join(","),
        forwards.join("  ")
    );
    if !t.proxy_jump.is_empty() {
        let jumps: Vec<String> = t.proxy_jump.iter().map(ToString::to_string).collect();
        line.push_str(&format!("  via {}", jumps.join(",")));
    }
    if let Some(proxy) = &t.proxy.proxy {
        line.push_str(&format!("  through proxy {proxy}"));
    }
    line
}
