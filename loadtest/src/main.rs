//! `lantern-loadtest`: the load-test harness for lantern.
//!
//! `lantern-loadtest run [options]` (the default) starts the simulator and the server, runs
//! the scenarios against their comparators and writes the results. The other subcommands are
//! the processes it starts: `client`, `floor`, `hyper-hello`, `hold`, and `server` (lantern
//! itself, when no `lantern` binary is at hand).

mod client;
mod comparators;
mod harness;
mod procs;
mod report;
mod util;
mod ws;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lantern-loadtest", version, about = "Load-test harness for lantern: scenarios against comparators, A/B/A/B")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write results (JSON, Markdown, SVG); prints the table.
    Run {
        #[command(flatten)]
        opts: harness::Opts,
        /// A few hundred connections and seconds per scenario (a smoke run).
        #[arg(long)]
        tiny: bool,
    },
    /// A load-generating client process (driven by `run` over stdin/stdout).
    Client,
    /// Comparator: the raw fan-out floor.
    Floor,
    /// Comparator: minimal hyper server.
    HyperHello,
    /// Comparator: idle TCP holder.
    Hold,
    /// lantern's server, in this binary's process.
    Server {
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => harness::Opts::try_parse_default().and_then(|o| run(o, false)),
        Some(Cmd::Run { opts, tiny }) => run(opts, tiny),
        Some(Cmd::Client) => client::main(),
        Some(Cmd::Floor) => comparators::floor_main(),
        Some(Cmd::HyperHello) => comparators::hyper_main(),
        Some(Cmd::Hold) => comparators::hold_main(),
        Some(Cmd::Server { config }) => serve(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lantern-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: harness::Opts, tiny: bool) -> Result<(), String> {
    let opts = if tiny { opts.tiny() } else { opts };
    let report = harness::run(opts)?;
    println!("{}", report.markdown());
    Ok(())
}

fn serve(config: &std::path::Path) -> Result<(), String> {
    let config = lantern::config::Config::load(config, &lantern::config::Overrides::default()).map_err(|e| e.to_string())?;
    let server = lantern::server::Server::start(config).map_err(|e| e.to_string())?;
    server.run_until_signal().map_err(|e| e.to_string())
}

impl harness::Opts {
    fn try_parse_default() -> Result<harness::Opts, String> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            opts: harness::Opts,
        }
        Only::try_parse_from(["lantern-loadtest"]).map(|o| o.opts).map_err(|e| e.to_string())
    }
}
