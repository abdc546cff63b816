//! `fedamqctl`: rabbitmqctl's verbs and output shapes for fedamq, talking to the
//! broker's management HTTP API (so it works from any host that can reach the port,
//! and needs no Erlang cookie). `fedamqctl help` lists the verbs.
//!
//! Exit codes follow rabbitmqctl's (sysexits): 64 bad usage, 65 a request the broker
//! refused (bad input), 69 broker unreachable or an object not found, 77 not authorised.

mod client;
mod output;
mod verbs;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use output::{Formatter, Output};

/// A failure, with the exit code it gives.
#[derive(Debug)]
pub enum CtlError {
    Usage(String),
    Refused(String),
    NotFound(String),
    Unavailable(String),
    NotAuthorised(String),
}

impl CtlError {
    fn code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 64,
            CtlError::Refused(_) => 65,
            CtlError::NotFound(_) | CtlError::Unavailable(_) => 69,
            CtlError::NotAuthorised(_) => 77,
        }
    }

    fn text(&self) -> &str {
        match self {
            CtlError::Usage(t)
            | CtlError::Refused(t)
            | CtlError::NotFound(t)
            | CtlError::Unavailable(t)
            | CtlError::NotAuthorised(t) => t,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "fedamqctl",
    version,
    about = "Manage a fedamq broker through its management HTTP API, with rabbitmqctl's verbs"
)]
pub struct Cli {
    /// The management API's host.
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "FEDAMQCTL_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// The management API's port.
    #[arg(
        short = 'P',
        long,
        global = true,
        env = "FEDAMQCTL_PORT",
        default_value_t = 15672
    )]
    port: u16,
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "FEDAMQCTL_USER",
        default_value = "guest"
    )]
    username: String,
    #[arg(
        long,
        global = true,
        env = "FEDAMQCTL_PASSWORD",
        default_value = "guest",
        hide_env_values = true
    )]
    password: String,
    /// The virtual host, for the verbs that act in one.
    #[arg(short = 'p', long, global = true, default_value = "/")]
    vhost: String,
    #[arg(long, global = true, value_enum, default_value = "table")]
    formatter: Formatter,
    /// No informational lines.
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
    #[arg(long, global = true)]
    no_table_headers: bool,
    #[command(subcommand)]
    verb: Verb,
}

/// The columns a list verb shows (its defaults when none are named).
#[derive(Debug, Args)]
pub struct Columns {
    columns: Vec<String>,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum Verb {
    ListQueues(Columns),
    ListExchanges(Columns),
    ListBindings(Columns),
    ListConnections(Columns),
    ListChannels(Columns),
    ListConsumers(Columns),
    ListUsers(Columns),
    ListVhosts(Columns),
    ListPermissions(Columns),
    ListPolicies(Columns),
    ListParameters(Columns),
    // Positional names differ from the global options' (`password`, `vhost`): clap
    // keeps one value per name.
    AddUser {
        user: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    DeleteUser {
        user: String,
    },
    ChangePassword {
        user: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    AddVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    DeleteVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    SetPolicy {
        name: String,
        pattern: String,
        /// The definition, a JSON object.
        definition: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[arg(long = "apply-to", default_value = "all")]
        apply_to: String,
    },
    ClearPolicy {
        name: String,
    },
    SetParameter {
        component: String,
        name: String,
        /// The value, JSON.
        value: String,
    },
    ClearParameter {
        component: String,
        name: String,
    },
    /// Writes the definitions to a file (`-` for stdout).
    ExportDefinitions {
        file: String,
    },
    /// Reads definitions from a file (`-` for stdin) and imports them.
    ImportDefinitions {
        file: String,
    },
    CloseConnection {
        name: String,
        explanation: String,
    },
    Status,
    /// The federation links (empty until federation exists).
    FederationStatus(Columns),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    let out = Output {
        formatter: cli.formatter,
        quiet: cli.quiet,
        headers: !cli.no_table_headers,
    };
    let run = client::Client::new(&cli.host, cli.port, &cli.username, &cli.password)
        .and_then(|client| verbs::run(&client, &cli.verb, &cli.vhost, out));
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error:\n{}", e.text());
            ExitCode::from(e.code())
        }
    }
}
