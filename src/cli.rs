//! The `dovetail` command line (clap). Each subcommand is a thin adapter over the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dovetail",
    version,
    about = "Multi-master mailbox index replication on Raft"
)]
pub struct Cli {
    /// Log format on stderr: `text` or `json`; levels come from `RUST_LOG` (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses the process's command line, with `serve --config FILE` expanded
/// (`node::config::expand_config_file`); exits with a message on an error.
pub fn parse() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    match crate::node::config::expand_config_file(args) {
        Ok(args) => Cli::parse_from(args),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// imap-next opens an INFO span per protocol fragment it reads or writes (`#[instrument]`),
/// which the fmt layer formats even though nothing is logged inside it: several per FETCHed
/// message, about a tenth of a large FETCH's CPU. They tell an operator nothing, so they are
/// off unless `RUST_LOG` names `imap_next`.
const QUIET_TARGETS: &str = "imap_next=warn";

/// The filter directives: `RUST_LOG` (default `info`), plus [`QUIET_TARGETS`] unless it names
/// them.
fn log_directives(rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) if spec.contains("imap_next") => spec.to_string(),
        Some(spec) => format!("{spec},{QUIET_TARGETS}"),
        None => format!("info,{QUIET_TARGETS}"),
    }
}

/// Installs the tracing subscriber: stderr, `format`, levels from `RUST_LOG` (default `info`;
/// see [`QUIET_TARGETS`]).
pub fn init_tracing(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(rust_log.as_deref()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cluster member.
    Serve(Box<crate::node::config::ServeConfig>),
    /// Run a local cluster of real `dovetail serve` processes (Ctrl-C stops it).
    Dev(crate::node::dev::DevConfig),
    /// Drive a running cluster with a workload (appends, stores, reads, a mix) and report
    /// throughput and latency percentiles per operation.
    Bench(crate::bench::BenchConfig),
    /// Inspect and steer a running cluster through its admin API.
    Ctl(crate::ctl::CtlArgs),
    /// Seed the data directory of one node of a new cluster from a backup (`ctl backup`); run it
    /// once per node, with the same backup and --peer list.
    Restore(crate::backup::restore::RestoreArgs),
    /// Users of a passwd-file: `user hash` prints a `{SCHEME}hash` for a password on stdin.
    User(crate::users::command::UserArgs),
    /// Decode an index file, manifest, snapshot or group directory into text or JSON.
    Dump {
        /// An `.idx` file, `manifest`, `checkpoint.snap`, or a group directory.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// List at most this many records (and tombstones) per mailbox.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(config) => {
            let config = *config;
            config.validate()?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = config.worker_threads {
                runtime.worker_threads(usize::try_from(threads)?);
            }
            let runtime = runtime.enable_all().build()?;
            runtime.block_on(async {
                let peer = tokio::net::TcpListener::bind(config.peer_listen).await?;
                let api = tokio::net::TcpListener::bind(config.api_listen).await?;
                crate::node::server::run(config, peer, api, crate::node::dev::shutdown_signal()).await
            })?;
            Ok(0)
        }
        Command::Dev(config) => {
            tokio::runtime::Runtime::new()?.block_on(crate::node::dev::run(config))?;
            Ok(0)
        }
        Command::Bench(config) => {
            let json = config.json;
            let report = tokio::runtime::Runtime::new()?.block_on(crate::bench::run(config))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", crate::bench::render_table(&report));
            }
            Ok(0)
        }
        Command::Ctl(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(crate::ctl::run(args)))
        }
        Command::Restore(args) => {
            let report = crate::backup::restore::restore(&args)?;
            print!("{}", report.describe());
            Ok(0)
        }
        Command::User(args) => crate::users::command::run(args),
        Command::Dump { path, json, limit } => {
            let dump = crate::dump::dump_path(&path, limit)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &dump)?;
                std::io::Write::write_all(&mut out, b"\n")?;
            } else {
                crate::dump::write_text(&dump, &mut out)?;
            }
            Ok(if dump.healthy() { 0 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn imap_next_spans_are_off_unless_rust_log_names_them() {
        assert_eq!(log_directives(None), "info,imap_next=warn");
        assert_eq!(log_directives(Some("  ")), "info,imap_next=warn");
        assert_eq!(log_directives(Some("debug")), "debug,imap_next=warn");
        assert_eq!(
            log_directives(Some("info,imap_next=trace")),
            "info,imap_next=trace"
        );
        for spec in [log_directives(None), log_directives(Some("debug"))] {
            tracing_subscriber::EnvFilter::try_new(&spec).expect("valid directives");
        }
    }
}
