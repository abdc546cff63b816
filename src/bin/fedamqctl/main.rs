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

/// A list verb's arguments.
#[derive(Debug, Args)]
pub struct Columns {
    /// The columns to show (rabbitmqctl's defaults when none are named).
    columns: Vec<String>,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum Verb {
    /// Queues of a vhost (default columns: name messages).
    ListQueues(Columns),
    /// Exchanges of a vhost (name type).
    ListExchanges(Columns),
    /// Bindings of a vhost.
    ListBindings(Columns),
    /// Client connections (user peer_host peer_port state).
    ListConnections(Columns),
    /// Channels.
    ListChannels(Columns),
    /// Consumers of a vhost.
    ListConsumers(Columns),
    /// Users and their tags.
    ListUsers(Columns),
    /// Virtual hosts.
    ListVhosts(Columns),
    /// Users' permissions in a vhost.
    ListPermissions(Columns),
    /// Policies of a vhost.
    ListPolicies(Columns),
    /// Runtime parameters of a vhost.
    ListParameters(Columns),
    // Positional names differ from the global options' (`password`, `vhost`): clap
    // keeps one value per name.
    /// Adds a user (no tags, no permissions).
    AddUser {
        user: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    /// Deletes a user.
    DeleteUser { user: String },
    /// Changes a user's password.
    ChangePassword {
        user: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
    /// Sets a user's configure, write and read patterns in a vhost (-p).
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    /// Adds a vhost.
    AddVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    /// Deletes a vhost and everything in it.
    DeleteVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    /// Sets a policy in a vhost (-p).
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
    /// Clears a policy.
    ClearPolicy { name: String },
    /// Sets a runtime parameter in a vhost (-p).
    SetParameter {
        component: String,
        name: String,
        /// The value, JSON.
        value: String,
    },
    /// Clears a runtime parameter.
    ClearParameter { component: String, name: String },
    /// Writes the definitions to a file (`-` for stdout).
    ExportDefinitions { file: String },
    /// Reads definitions from a file (`-` for stdin) and imports them.
    ImportDefinitions { file: String },
    /// Closes a connection (by name, as list_connections name shows it) with a reason.
    CloseConnection { name: String, explanation: String },
    /// The node: versions, listeners, object totals.
    Status,
    /// The federation links: one per federated exchange and upstream.
    FederationStatus(Columns),
    /// Restarts a federation link of a vhost (-p), by the id federation_status shows.
    RestartFederationLink { id: String },
    /// Tunnels this node opened (outgoing) and those opened to it (incoming)
    /// (direction service remote state reason sent received resent last_error).
    ListTunnels(Columns),
    /// The HA pair: `ha status`, `ha failback`, `ha promote`.
    Ha {
        #[command(subcommand)]
        verb: HaVerb,
    },
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum HaVerb {
    /// This broker's HA state, role, epoch, and the peer as last heard.
    Status,
    /// Hands control back to the primary (on the passive primary or the active backup).
    Failback,
    /// Makes this broker active without an active peer (its peer is gone for good).
    Promote,
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
