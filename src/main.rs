//! The `fedamq` binary: parse the command line, load the configuration, raise the
//! open-files limit, serve until SIGINT or SIGTERM, then close every connection (320)
//! and exit within [`SHUTDOWN_GRACE`] however busy the broker is. SIGHUP reloads the TLS
//! listeners' certificate files (amqps, and the management API's HTTPS).

use std::time::Duration;

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
    // Signals, and the grace given to connections at shutdown, are waited for on this
    // thread with a runtime of its own: the broker's workers may all be busy when the
    // signal comes (a client whose input takes long to handle), and a stop must not
    // wait for them.
    let control = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fedamq: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Listening for signals before serving: a signal that comes early still stops the
    // broker cleanly.
    let mut signal = match control.block_on(async { Signals::listen() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fedamq: cannot listen for signals: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let broker = match runtime.block_on(Server::start(config)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fedamq: cannot start: {e}");
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
    if let Some(tls) = broker.tls_local_addr() {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "fedamq listening for TLS on {tls}");
    }
    if let Some(https) = broker.management_https_addr() {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "management API on https://{https}");
    }
    if let Some(at) = broker.prometheus_addr() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "Prometheus metrics on http://{at}/metrics"
        );
    }
    while let Received::Reload = control.block_on(signal.recv()) {
        // A bad file is logged and the old certificates stay in use.
        let _ = broker.reload_tls();
    }
    tracing::info!("shutting down");
    broker.close_all();
    let closed = runtime.spawn(broker.shutdown());
    if control
        .block_on(async { tokio::time::timeout(SHUTDOWN_GRACE, closed).await })
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}: exiting anyway");
    }
    // What still runs (a client that does not read its connection.close, a task in a
    // long loop) does not hold up the exit.
    runtime.shutdown_background();
    std::process::ExitCode::SUCCESS
}

/// How long connections get at shutdown to send connection.close (320) and hear the
/// client's close-ok before the process exits regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Each connection holds a socket; the common default soft limit of 1,024 open files is
/// far too low for a broker, so raise the soft limit to the hard limit.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open files limit: {n}"),
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

/// SIGINT, SIGTERM and SIGHUP, registered when created.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum Received {
    Stop,
    Reload,
}

impl Signals {
    /// Must run inside the runtime that will wait for the signals.
    fn listen() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal.
    async fn recv(&mut self) -> Received {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => Received::Stop,
            _ = self.terminate.recv() => Received::Stop,
            _ = self.hangup.recv() => Received::Reload,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Received::Stop
        }
    }
}
