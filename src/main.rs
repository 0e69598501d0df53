//! The `dovetail` binary: parses the command line and runs it.

fn main() {
    let cli = dovetail::cli::parse();
    dovetail::cli::init_tracing(cli.log_format);
    match dovetail::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
