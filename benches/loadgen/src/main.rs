//! `diemcau-loadgen <scenario> [options]`: see `--help` and BENCHMARKS.md.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let options = diemcau_loadgen::Options::parse();
    let json = options.json.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("diemcau-loadgen: cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(diemcau_loadgen::scenario::run(options)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("diemcau-loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    if let Some(path) = json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(&path, text + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("diemcau-loadgen: cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
