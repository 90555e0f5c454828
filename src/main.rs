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
