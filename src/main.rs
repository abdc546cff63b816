//! The `fedamq` binary: parse the command line, load the configuration, raise the
//! open-files limit, serve until SIGINT or SIGTERM.

use clap::Parser;
use fedamq::Server;
use fedamq::config::{self, Cli};

/// Messages are allocated on the publisher's thread and freed on the consumer's: glibc's
/// malloc takes an arena lock on such frees (10 % of the broker's profile under load);
/// mimalloc frees to the owning thread's page without one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fedamq: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    raise_open_files_limit();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fedamq: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let broker = match Server::start(config).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("fedamq: cannot listen: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("fedamq listening on {}", broker.local_addr());
        if let Some(http) = broker.management_addr() {
            // Not println!: a parent that read only the first line may have closed the
            // pipe, and a failed write must not stop the broker.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "management API on http://{http}");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        broker.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

/// Each connection holds a socket; the common default soft limit of 1,024 open files is
/// far too low for a broker, so raise the soft limit to the hard limit.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open files limit: {n}"),
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
