//! The `tunneld` command: runs the daemon and checks configuration files.
//!
//! Layout:
//! - `main` (this file): the command line and exit codes.
//! - `daemon`: `tunneld run`: logging, the runtime, signals.

mod daemon;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Run(ConfigArg),
    /// Validate the configuration file and print a summary of each tunnel.
    Check(ConfigArg),
}

/// Loads the file and refuses what this version cannot do yet, printing every problem.
fn load(path: &std::path::Path) -> Option<tunneld_config::Config> {
    let config = match tunneld_config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return None;
        }
    };
    let unsupported: Vec<&String> = config
        .tunnels
        .iter()
        .filter(|(_, t)| !t.proxy_jump.is_empty())
        .map(|(name, _)| name)
        .collect();
    for name in &unsupported {
        eprintln!(
            "{}: tunnel \"{name}\": {}",
            path.display(),
            tunneld_core::PROXY_JUMP_UNSUPPORTED
        );
    }
    unsupported.is_empty().then_some(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(arg) => check(&arg.path()),
        Command::Run(arg) => {
            let Some(config) = load(&arg.path()) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            match daemon::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tunneld: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Some(config) => {
            for t in config.tunnels.values() {
                println!("{}", summary(t));
            }
            println!(
                "{}: ok, {} tunnel{}",
                path.display(),
                config.tunnels.len(),
                if config.tunnels.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EXIT_CONFIG),
    }
}

fn summary(t: &tunneld_config::TunnelConfig) -> String {
    let hosts: Vec<String> = t.hosts.iter().map(|h| h.to_string()).collect();
    let mut forwards = Vec::new();
    forwards.extend(t.local.iter().map(|f| format!("-L {}", f.spec)));
    forwards.extend(t.remote.iter().map(|f| format!("-R {}", f.spec)));
    forwards.extend(t.dynamic.iter().map(|f| format!("-D {}", f.spec)));
    format!(
        "{}: {}@{}  {}",
        t.name,
        t.user,
        hosts.join(","),
        forwards.join("  ")
    )
}
