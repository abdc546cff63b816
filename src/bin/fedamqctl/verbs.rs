//! Each verb: the requests it makes and what it prints. List verbs share one shape
//! ([`List`]): an endpoint, rabbitmqctl's default columns, and the JSON field behind
//! each column name where rabbitmqctl's differs from the API's.

use std::io::{Read, Write};

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::output::{self, Output};
use crate::{Columns, CtlError, HaVerb, Verb};

/// A list verb.
struct List {
    /// "Listing {what} ..."
    what: &'static str,
    /// Whether it lists one vhost's objects (`-p`).
    per_vhost: bool,
    defaults: &'static [&'static str],
}

fn listing(verb: &Verb) -> Option<(List, &Columns)> {
    let (what, per_vhost, defaults, cols): (_, _, &'static [&'static str], _) = match verb {
        Verb::ListQueues(c) => ("queues", true, &["name", "messages"], c),
        Verb::ListExchanges(c) => ("exchanges", true, &["name", "type"], c),
        Verb::ListBindings(c) => (
            "bindings",
            true,
            &[
                "source_name",
                "source_kind",
                "destination_name",
                "destination_kind",
                "routing_key",
                "arguments",
            ],
            c,
        ),
        Verb::ListConnections(c) => (
            "connections",
            false,
            &["user", "peer_host", "peer_port", "state"],
            c,
        ),
        Verb::ListChannels(c) => (
            "channels",
            false,
            &["pid", "user", "consumer_count", "messages_unacknowledged"],
            c,
        ),
        Verb::ListConsumers(c) => (
            "consumers",
            true,
            &[
                "queue_name",
                "channel_pid",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
                "active",
                "arguments",
            ],
            c,
        ),
        Verb::ListUsers(c) => ("users", false, &["user", "tags"], c),
        Verb::ListVhosts(c) => ("vhosts", false, &["name"], c),
        Verb::ListPermissions(c) => (
            "permissions",
            true,
            &["user", "configure", "write", "read"],
            c,
        ),
        Verb::ListPolicies(c) => (
            "policies",
            true,
            &[
                "vhost",
                "name",
                "pattern",
                "apply-to",
                "definition",
                "priority",
            ],
            c,
        ),
        Verb::ListParameters(c) => (
            "runtime parameters",
            true,
            &["component", "name", "value"],
            c,
        ),
        Verb::FederationStatus(c) => (
            "federation links",
            false,
            &[
                "upstream",
                "exchange",
                "upstream_exchange",
                "queue",
                "upstream_queue",
                "vhost",
                "status",
                "uri",
                "error",
            ],
            c,
        ),
        _ => return None,
    };
    Some((
        List {
            what,
            per_vhost,
            defaults,
        },
        cols,
    ))
}

/// The API path of a list.
fn list_path<'a>(verb: &Verb, vhost: &'a str) -> Vec<&'a str> {
    match verb {
        Verb::ListQueues(_) => vec!["queues", vhost],
        Verb::ListExchanges(_) => vec!["exchanges", vhost],
        Verb::ListBindings(_) => vec!["bindings", vhost],
        Verb::ListConnections(_) => vec!["connections"],
        Verb::ListChannels(_) => vec!["channels"],
        Verb::ListConsumers(_) => vec!["consumers", vhost],
        Verb::ListUsers(_) => vec!["users"],
        Verb::ListVhosts(_) => vec!["vhosts"],
        Verb::ListPermissions(_) => vec!["vhosts", vhost, "permissions"],
        Verb::ListPolicies(_) => vec!["policies", vhost],
        // No per-vhost list of every component in the API: filtered below.
        Verb::ListParameters(_) => vec!["parameters"],
        _ => vec!["federation-links"],
    }
}

/// The value of rabbitmqctl's `column` in an API item.
fn field(item: &Value, column: &str) -> Value {
    let path = match column {
        "user" if item.get("name").is_some() && item.get("user").is_none() => "name",
        "source_name" => "source",
        "source_kind" => return json!("exchange"),
        "destination_name" => "destination",
        "destination_kind" => "destination_type",
        "queue_name" => "queue.name",
        "channel_pid" => "channel_details.name",
        "pid" => "name",
        other => other,
    };
    let mut v = item;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn run_list(
    client: &Client,
    verb: &Verb,
    list: List,
    cols: &Columns,
    vhost: &str,
    out: Output,
) -> Result<(), CtlError> {
    let columns: Vec<String> = if cols.columns.is_empty() {
        list.defaults.iter().map(|c| c.to_string()).collect()
    } else {
        cols.columns.clone()
    };
    if list.per_vhost {
        out.info(&format!("Listing {} for vhost {vhost} ...", list.what));
    } else {
        out.info(&format!("Listing {} ...", list.what));
    }
    let items = client.get(&list_path(verb, vhost))?;
    let rows: Vec<Map<String, Value>> = items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|i| !matches!(verb, Verb::ListParameters(_)) || i["vhost"] == vhost)
        .map(|item| {
            columns
                .iter()
                .map(|c| (c.clone(), field(item, c)))
                .collect()
        })
        .collect();
    out.table(&columns, &rows);
    Ok(())
}

fn json_arg(what: &str, text: &str) -> Result<Value, CtlError> {
    serde_json::from_str(text).map_err(|e| CtlError::Usage(format!("the {what} is not JSON: {e}")))
}

pub fn run(client: &Client, verb: &Verb, vhost: &str, out: Output) -> Result<(), CtlError> {
    if let Some((list, cols)) = listing(verb) {
        return run_list(client, verb, list, cols, vhost, out);
    }
    match verb {
        Verb::AddUser {
            user,
            new_password: password,
        } => {
            out.info(&format!("Adding user \"{user}\" ..."));
            match client.get(&["users", user]) {
                Ok(_) => return Err(CtlError::Refused(format!("user '{user}' already exists"))),
                Err(CtlError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            client.put(&["users", user], &json!({"password": password, "tags": ""}))?;
        }
        Verb::DeleteUser { user } => {
            out.info(&format!("Deleting user \"{user}\" ..."));
            client
                .delete(&["users", user])
                .map_err(|e| not_found(e, format!("user '{user}' does not exist")))?;
        }
        Verb::ChangePassword {
            user,
            new_password: password,
        } => {
            out.info(&format!("Changing password for user \"{user}\" ..."));
            let current = client
                .get(&["users", user])
                .map_err(|e| not_found(e, format!("user '{user}' does not exist")))?;
            client.put(
                &["users", user],
                &json!({"password": password, "tags": current["tags"]}),
            )?;
        }
        Verb::SetPermissions {
            user,
            configure,
            write,
            read,
        } => {
            out.info(&format!(
                "Setting permissions for user \"{user}\" in vhost \"{vhost}\" ..."
            ));
            client.put(
                &["permissions", vhost, user],
                &json!({"configure": configure, "write": write, "read": read}),
            )?;
        }
        Verb::AddVhost { name: vhost } => {
            out.info(&format!("Adding vhost \"{vhost}\" ..."));
            client.put(&["vhosts", vhost], &json!({}))?;
        }
        Verb::DeleteVhost { name: vhost } => {
            out.info(&format!("Deleting vhost \"{vhost}\" ..."));
            client
                .delete(&["vhosts", vhost])
                .map_err(|e| not_found(e, format!("vhost '{vhost}' does not exist")))?;
        }
        Verb::SetPolicy {
            name,
            pattern,
            definition,
            priority,
            apply_to,
        } => {
            out.info(&format!("Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{vhost}\" ..."));
            let definition = json_arg("definition", definition)?;
            client.put(
                &["policies", vhost, name],
                &json!({"pattern": pattern, "definition": definition, "priority": priority, "apply-to": apply_to}),
            )?;
        }
        Verb::RestartFederationLink { id } => {
            out.info(&format!("Restarting federation link {id} ..."));
            client
                .delete(&["federation-links", vhost, id, "restart"])
                .map_err(|e| not_found(e, format!("no federation link {id} in vhost '{vhost}'")))?;
        }
        Verb::ClearPolicy { name } => {
            out.info(&format!(
                "Clearing policy \"{name}\" on vhost \"{vhost}\" ..."
            ));
            client.delete(&["policies", vhost, name]).map_err(|e| {
                not_found(
                    e,
                    format!("policy '{name}' does not exist in vhost '{vhost}'"),
                )
            })?;
        }
        Verb::SetParameter {
            component,
            name,
            value,
        } => {
            out.info(&format!("Setting runtime parameter \"{name}\" for component \"{component}\" to \"{value}\" in vhost \"{vhost}\" ..."));
            let value = json_arg("value", value)?;
            client.put(
                &["parameters", component, vhost, name],
                &json!({"value": value}),
            )?;
        }
        Verb::ClearParameter { component, name } => {
            out.info(&format!("Clearing runtime parameter \"{name}\" for component \"{component}\" on vhost \"{vhost}\" ..."));
            client.delete(&["parameters", component, vhost, name]).map_err(|e| {
                not_found(e, format!("parameter '{name}' of component '{component}' does not exist in vhost '{vhost}'"))
            })?;
        }
        Verb::ExportDefinitions { file } => {
            let defs = client.get(&["definitions"])?;
            let text = serde_json::to_string_pretty(&defs).unwrap_or_default();
            if file == "-" {
                println!("{text}");
            } else {
                std::fs::write(file, text + "\n")
                    .map_err(|e| CtlError::Usage(format!("cannot write {file}: {e}")))?;
                out.info(&format!("Exported definitions to \"{file}\""));
            }
        }
        Verb::ImportDefinitions { file } => {
            let mut text = String::new();
            let read = if file == "-" {
                std::io::stdin().read_to_string(&mut text).map(|_| ())
            } else {
                std::fs::read_to_string(file).map(|t| text = t)
            };
            read.map_err(|e| CtlError::Usage(format!("cannot read {file}: {e}")))?;
            let defs = json_arg("definitions file", &text)?;
            out.info(&format!("Importing definitions from \"{file}\" ..."));
            client.post(&["definitions"], &defs)?;
        }
        Verb::CloseConnection { name, explanation } => {
            out.info(&format!(
                "Closing connection {name}, reason: {explanation}..."
            ));
            client
                .call(
                    Method::DELETE,
                    &["connections", name],
                    None,
                    &[("x-reason", explanation)],
                )
                .map_err(|e| not_found(e, format!("connection '{name}' does not exist")))?;
        }
        Verb::Status => status(client, out)?,
        Verb::Ha { verb } => ha(client, verb, out)?,
        _ => unreachable!("list verbs are handled above"),
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

fn not_found(e: CtlError, text: String) -> CtlError {
    match e {
        CtlError::NotFound(_) => CtlError::NotFound(text),
        other => other,
    }
}

/// `ha status|failback|promote`: `/api/ha`, and its two actions.
fn ha(client: &Client, verb: &HaVerb, out: Output) -> Result<(), CtlError> {
    let s = match verb {
        HaVerb::Status => {
            out.info("HA pair status ...");
            client.get(&["ha"])?
        }
        HaVerb::Failback => {
            out.info("Failing back to the primary ...");
            client.post(&["ha", "failback"], &json!({}))?
        }
        HaVerb::Promote => {
            out.info("Promoting this broker to active ...");
            client.post(&["ha", "promote"], &json!({}))?
        }
    };
    let age = match s["last_peer_heartbeat_ms"].as_u64() {
        Some(ms) => format!("{ms} ms ago"),
        None => "never".into(),
    };
    let peer = if s["peer"].is_null() {
        "not heard".to_string()
    } else {
        format!(
            "{} {} (epoch {})",
            output::cell(&s["peer"]["state"]),
            output::cell(&s["peer"]["role"]),
            s["peer"]["epoch"]
        )
    };
    let lines = [
        ("State", output::cell(&s["state"])),
        ("Role", output::cell(&s["role"])),
        ("Epoch", output::cell(&s["epoch"])),
        ("Peer", output::cell(&s["peer_address"])),
        ("Peer state", peer),
        ("Last peer heartbeat", age),
        ("Last change", output::cell(&s["reason"])),
        (
            "Arbiter token",
            if s["fencing_token"].is_null() {
                "none".to_string()
            } else {
                output::cell(&s["fencing_token"])
            },
        ),
    ];
    out.object(&s, &lines);
    Ok(())
}

/// `status`: the node, versions, listeners and object totals from `/api/overview`.
fn status(client: &Client, out: Output) -> Result<(), CtlError> {
    let o = client.get(&["overview"])?;
    out.info(&format!("Status of node {} ...", output::cell(&o["node"])));
    let listeners: Vec<String> = o["listeners"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            format!(
                "{}:{} ({})",
                output::cell(&l["ip_address"]),
                l["port"],
                output::cell(&l["protocol"])
            )
        })
        .collect();
    let totals = |k: &str| output::cell(&o["object_totals"][k]);
    let lines = [
        ("Node", output::cell(&o["node"])),
        ("Product", output::cell(&o["product_name"])),
        ("Product version", output::cell(&o["product_version"])),
        ("RabbitMQ version", output::cell(&o["rabbitmq_version"])),
        ("Management version", output::cell(&o["management_version"])),
        ("Listeners", listeners.join(", ")),
        ("Connections", totals("connections")),
        ("Channels", totals("channels")),
        ("Exchanges", totals("exchanges")),
        ("Queues", totals("queues")),
        ("Consumers", totals("consumers")),
        ("Messages", output::cell(&o["queue_totals"]["messages"])),
    ];
    out.object(&o, &lines);
    Ok(())
}
