use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logs on standard error; standard output carries the addresses printed at start.
    diemcau::logging::init();
    let command_line = diemcau::config::CommandLine::parse();
    let config = match command_line.command {
        None => command_line.hub,
        Some(diemcau::config::Command::Account(command)) => {
            return match diemcau::auth::cli::run(command) {
                Ok(report) => {
                    println!("{report}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("diemcau: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(diemcau::config::Command::Node(command)) => {
            return report(
                diemcau::cascade::cli::run(command).map_err(diemcau::store::StoreError::Internal),
            );
        }
        Some(
            diemcau::config::Command::Backup { data, .. }
            | diemcau::config::Command::Restore { data, .. },
        ) if data.database.url.is_some() => {
            return report(Err(diemcau::store::StoreError::Internal(
                "the data is in PostgreSQL: back it up and restore it with PostgreSQL's own \
                 tools (pg_dump, pg_restore, or the cluster's continuous archiving); see \
                 docs/operations.md"
                    .to_owned(),
            )));
        }
        Some(diemcau::config::Command::Backup { file, data }) => {
            return report(
                diemcau::store::backup::backup(&data.data_dir, &file)
                    .map(|copy| format!("diemcau: backup written to {copy}")),
            );
        }
        Some(diemcau::config::Command::Restore { file, data }) => {
            return report(diemcau::store::backup::restore(&data.data_dir, &file).map(
                |(copy, kept)| {
                    let kept = kept.map_or(String::new(), |k| {
                        format!(
                            "\ndiemcau: the database it replaced is kept as {}",
                            k.display()
                        )
                    });
                    format!("diemcau: restored {copy}{kept}")
                },
            ));
        }
    };
    match &config.database.url {
        Some(url) => println!(
            "diemcau: data in PostgreSQL at {url}, files in {}",
            config.data_dir.display()
        ),
        None => println!("diemcau: data in {}", config.data_dir.display()),
    }
    let hub = match diemcau::start(config).await {
        Ok(hub) => hub,
        Err(e) => {
            eprintln!("diemcau: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = hub.http_addr();
    let host = if addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let scheme = hub
        .base_url()
        .split("://")
        .next()
        .unwrap_or("http")
        .to_owned();
    let base = format!("{scheme}://{host}:{}", addr.port());
    println!("diemcau: listening on {base}");
    println!("  organizer: {base}/organizer.html (create a meeting, send the join links)");
    println!("  reports:   {base}/meetings.html");
    println!("  log in:    {base}/login.html (accounts: `diemcau account list`)");
    let media: Vec<String> = hub
        .media_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    println!("  media UDP (open in the firewall): {}", media.join(", "));
    let media_tcp: Vec<String> = hub
        .media_tcp_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    if !media_tcp.is_empty() {
        println!(
            "  media TCP (open in the firewall): {}",
            media_tcp.join(", ")
        );
    }
    #[cfg(all(unix, feature = "testkit"))]
    if let Err(e) = hub.fail_media_on_sigusr1() {
        eprintln!("diemcau: cannot listen for SIGUSR1: {e}");
    }
    hub.run_until_signal().await;
    std::process::ExitCode::SUCCESS
}

/// Prints what a command did, or why it failed, and gives its exit status.
fn report(outcome: Result<String, diemcau::store::StoreError>) -> std::process::ExitCode {
    match outcome {
        Ok(text) => {
            println!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("diemcau: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
