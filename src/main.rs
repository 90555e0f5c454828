//! The `lantern` command line: `serve` (default), `demo`, `sim`, `commands`.

use clap::{Parser, Subcommand};
use lantern::config::{Config, LogConfig, LogFormat, Overrides};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lantern", version, about = "Live Discord presence over REST, WebSocket and a profile card")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured guild (the default command).
    Serve(ServeArgs),
    /// Run the Discord simulator and the server in one process, on a synthetic guild.
    Demo(lantern::demo::DemoArgs),
    /// Run only the Discord simulator (gateway, REST, CDN and control API on loopback).
    Sim(lantern::demo::SimArgs),
    /// Register or remove the bot's global slash commands (needs `application_id`).
    Commands(CommandsArgs),
    /// Ask the running server for one consistent archive of every shard's data.
    Backup(BackupArgs),
    /// Unpack a backup archive into an empty data directory (for any shard count).
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Path of the configuration file (for `[backup] socket` and `dir`).
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// The server's control socket (default: `[backup] socket` of the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Directory the archive is written to (default: `[backup] dir` of the configuration).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The archive (`lantern-<time>.tar.gz`).
    archive: PathBuf,
    /// The data directory to restore into: empty or missing (default: `[storage] dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Repartition for this many shards now (a server started with another count does it anyway).
    #[arg(long)]
    shards: Option<usize>,
    /// Path of the configuration file (for `[storage] dir`).
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
}

/// The `[storage] dir`, `[backup] dir` and `[backup] socket` of a configuration file, read
/// without the secrets a server needs (the backup commands use nothing else).
fn backup_paths(config: &std::path::Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("cannot read config file {}: {e}", config.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", config.display()))?;
    let get = |table: &str, key: &str| value.get(table).and_then(|t| t.get(key)).and_then(|v| v.as_str()).map(PathBuf::from);
    let storage = get("storage", "dir").unwrap_or_else(|| "shards".into());
    let socket = get("backup", "socket").unwrap_or_else(|| storage.join("control.sock"));
    let out = get("backup", "dir").unwrap_or_else(|| "backups".into());
    Ok((storage, out, socket))
}

fn backup(args: BackupArgs) -> Result<(), String> {
    let (socket, out) = match (args.socket, args.out) {
        (Some(s), Some(o)) => (s, o),
        (s, o) => {
            let (_, dir, socket) = backup_paths(&args.config)?;
            (s.unwrap_or(socket), o.unwrap_or(dir))
        }
    };
    let (path, bytes) = lantern::control::request_backup(&socket, &out)?;
    println!("{} ({bytes} bytes)", path.display());
    Ok(())
}

fn restore(args: RestoreArgs) -> Result<(), String> {
    let dir = match args.data_dir {
        Some(d) => d,
        None => backup_paths(&args.config)?.0,
    };
    let r = lantern::storage::backup::restore(&args.archive, &dir, args.shards).map_err(|e| e.to_string())?;
    println!("restored {} shards from {} into {} ({} shards)", r.from, args.archive.display(), dir.display(), r.to);
    Ok(())
}

#[derive(clap::Args)]
struct CommandsArgs {
    #[command(subcommand)]
    action: CommandsAction,
    /// Path of the configuration file.
    #[arg(long, default_value = "config.toml", global = true)]
    config: PathBuf,
}

#[derive(Subcommand, Clone, Copy)]
enum CommandsAction {
    /// Set the global commands (`/ping`, `/storage …`).
    Register,
    /// Remove every global command.
    Unregister,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Path of the configuration file.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Override `server.port`.
    #[arg(long)]
    port: Option<u16>,
    /// Override `server.shards` (0 = one per core).
    #[arg(long)]
    shards: Option<usize>,
}

fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    // Colours only for a person at a terminal: piped or redirected logs (files, journald,
    // collectors) get plain text.
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(&args.config, &Overrides { port: args.port, shards: args.shards }).map_err(|e| e.to_string())?;
    init_logging(&config.log);
    let server = lantern::server::Server::start(config).map_err(|e| e.to_string())?;
    server.run_until_signal().map_err(|e| e.to_string())
}

fn commands(args: CommandsArgs) -> Result<(), String> {
    let config = Config::load_with(&args.config, &Overrides::default(), false).map_err(|e| e.to_string())?;
    init_logging(&config.log);
    let register = matches!(args.action, CommandsAction::Register);
    let names = lantern::bot::commands::run(&config, register)?;
    if register {
        println!("registered {} global commands: {}", names.len(), names.join(", "));
    } else {
        println!("removed every global command");
    }
    Ok(())
}

/// A panic on any thread ends the process. A shard that died would leave its users
/// unanswered while the others run on, and every acknowledged write is already committed, so
/// stopping at once and letting the supervisor restart the server loses nothing.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(thread = %thread, "panic: {info}; stopping the process");
        report(info);
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    abort_on_panic();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(ServeArgs { config: if args.config.as_os_str().is_empty() { "config.toml".into() } else { args.config }, ..args }),
        Command::Demo(args) => {
            init_logging(&LogConfig { format: LogFormat::Human, level: "info".into() });
            lantern::demo::run_demo(args)
        }
        Command::Commands(args) => commands(args),
        Command::Backup(args) => backup(args),
        Command::Restore(args) => restore(args),
        Command::Sim(args) => {
            init_logging(&LogConfig { format: LogFormat::Human, level: "info".into() });
            lantern::demo::run_sim(args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lantern: {e}");
            ExitCode::FAILURE
        }
    }
}
