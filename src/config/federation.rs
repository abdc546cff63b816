//! Federation in the TOML file: `[[federation_upstream]]`, `[[federation_upstream_set]]`
//! and `[[policy]]`, the same things RabbitMQ keeps as runtime parameters and policies.
//!
//! They become RabbitMQ's definitions JSON and are imported at start-up through the one
//! definitions path (after `load_definitions`), so the file, the HTTP API, `fedamqctl`
//! and a definitions file all set the same objects with the same checks.
//!
//! ```toml
//! [[federation_upstream]]
//! name = "site-a"
//! vhost = "/"                          # the default
//! uri = "amqp://fed:secret@site-a:5672" # or a list; every other key is the upstream's
//! max-hops = 1                         # (RabbitMQ's federation-upstream keys)
//!
//! [[federation_upstream_set]]
//! name = "sites"
//! upstreams = [{ upstream = "site-a" }]
//!
//! [[policy]]
//! name = "federate"
//! pattern = "^federated\\."
//! apply-to = "exchanges"               # the default: all
//! priority = 0
//! definition = { federation-upstream-set = "all" }
//! ```

use serde_json::{Map, Value as Json, json};

type Toml = toml::Value;

/// Problems name the key as `federation_upstream[2].name`.
pub type Problem = (String, String);

/// The definitions document (`parameters` and `policies`) the three tables make; None
/// when the file has none of them.
pub fn definitions(
    upstreams: Option<&[Toml]>,
    sets: Option<&[Toml]>,
    policies: Option<&[Toml]>,
) -> Result<Option<Json>, Problem> {
    if upstreams.is_none() && sets.is_none() && policies.is_none() {
        return Ok(None);
    }
    let mut parameters = Vec::new();
    for (i, t) in upstreams.unwrap_or_default().iter().enumerate() {
        let at = format!("federation_upstream[{i}]");
        let (vhost, name, rest) = named(t, &at)?;
        if !rest.contains_key("uri") {
            return Err((format!("{at}.uri"), "is required".into()));
        }
        parameters.push(json!({
            "component": "federation-upstream", "vhost": vhost, "name": name,
            "value": Json::Object(rest),
        }));
    }
    for (i, t) in sets.unwrap_or_default().iter().enumerate() {
        let at = format!("federation_upstream_set[{i}]");
        let (vhost, name, mut rest) = named(t, &at)?;
        let upstreams = rest
            .remove("upstreams")
            .ok_or_else(|| (format!("{at}.upstreams"), "is required".to_owned()))?;
        if let Some(k) = rest.keys().next() {
            return Err((format!("{at}.{k}"), "unknown key".into()));
        }
        parameters.push(json!({
            "component": "federation-upstream-set", "vhost": vhost, "name": name,
            "value": upstreams,
        }));
    }
    let mut out = Vec::new();
    for (i, t) in policies.unwrap_or_default().iter().enumerate() {
        let at = format!("policy[{i}]");
        let (vhost, name, mut rest) = named(t, &at)?;
        let mut take = |key: &str| rest.remove(key);
        let pattern =
            take("pattern").ok_or_else(|| (format!("{at}.pattern"), "is required".to_owned()))?;
        let definition = take("definition")
            .ok_or_else(|| (format!("{at}.definition"), "is required".to_owned()))?;
        let apply_to = take("apply-to").unwrap_or_else(|| json!("all"));
        let priority = take("priority").unwrap_or_else(|| json!(0));
        if let Some(k) = rest.keys().next() {
            return Err((format!("{at}.{k}"), "unknown key".into()));
        }
        out.push(json!({
            "vhost": vhost, "name": name, "pattern": pattern, "apply-to": apply_to,
            "priority": priority, "definition": definition,
        }));
    }
    Ok(Some(json!({ "parameters": parameters, "policies": out })))
}

/// A table's `vhost` (default "/") and `name`, and its other keys as JSON.
fn named(t: &Toml, at: &str) -> Result<(String, String, Map<String, Json>), Problem> {
    let Json::Object(mut map) =
        serde_json::to_value(t).map_err(|e| (at.to_owned(), e.to_string()))?
    else {
        return Err((at.to_owned(), "must be a table".into()));
    };
    let mut text = |key: &str, default: Option<&str>| match map.remove(key) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err((
            format!("{at}.{key}"),
            "must be a non-empty string".to_owned(),
        )),
        None => default
            .map(str::to_owned)
            .ok_or_else(|| (format!("{at}.{key}"), "is required".to_owned())),
    };
    let vhost = text("vhost", Some("/"))?;
    let name = text("name", None)?;
    Ok((vhost, name, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(text: &str, key: &str) -> Vec<Toml> {
        let doc: toml::Table = text.parse().unwrap();
        doc.get(key)
            .and_then(Toml::as_array)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn the_three_tables_become_parameters_and_policies() {
        let text = r#"
            [[federation_upstream]]
            name = "a"
            uri = ["amqp://h1", "amqp://h2"]
            max-hops = 2
            [[federation_upstream_set]]
            name = "s"
            vhost = "v"
            upstreams = [{ upstream = "a" }]
            [[policy]]
            name = "p"
            pattern = "^x"
            apply-to = "exchanges"
            definition = { federation-upstream-set = "all" }
        "#;
        let (u, s, p) = (
            tables(text, "federation_upstream"),
            tables(text, "federation_upstream_set"),
            tables(text, "policy"),
        );
        let d = definitions(Some(&u), Some(&s), Some(&p)).unwrap().unwrap();
        assert_eq!(
            d["parameters"][0],
            json!({"component": "federation-upstream", "vhost": "/", "name": "a",
                   "value": {"uri": ["amqp://h1", "amqp://h2"], "max-hops": 2}})
        );
        assert_eq!(
            d["parameters"][1],
            json!({"component": "federation-upstream-set", "vhost": "v", "name": "s",
                   "value": [{"upstream": "a"}]})
        );
        assert_eq!(
            d["policies"][0],
            json!({"vhost": "/", "name": "p", "pattern": "^x", "apply-to": "exchanges",
                   "priority": 0, "definition": {"federation-upstream-set": "all"}})
        );
        assert_eq!(definitions(None, None, None).unwrap(), None);
    }

    #[test]
    fn problems_name_the_key() {
        let u = tables(
            "[[federation_upstream]]\nname = \"a\"\n",
            "federation_upstream",
        );
        assert_eq!(
            definitions(Some(&u), None, None).unwrap_err().0,
            "federation_upstream[0].uri"
        );
        let p = tables(
            "[[policy]]\nname = \"p\"\npattern = \"x\"\ndefinition = {}\ncolour = 1\n",
            "policy",
        );
        assert_eq!(
            definitions(None, None, Some(&p)).unwrap_err().0,
            "policy[0].colour"
        );
        let p = tables("[[policy]]\npattern = \"x\"\n", "policy");
        assert_eq!(
            definitions(None, None, Some(&p)).unwrap_err().0,
            "policy[0].name"
        );
    }
}
