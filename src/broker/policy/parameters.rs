//! Runtime parameters: `{component, vhost, name, value}` records that features read
//! their settings from (federation upstreams and upstream sets, for the federation
//! issue). The value is JSON, kept as given once its component has checked it.

use serde_json::Value;

use super::PolicyError;

/// A component's check of a value: the reason it refuses it.
type Check = fn(&Value) -> Result<(), String>;

/// The components a parameter may belong to, with the check each makes of a value.
const COMPONENTS: &[(&str, Check)] = &[
    ("federation-upstream", check_upstream),
    ("federation-upstream-set", check_upstream_set),
];

/// One runtime parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub component: String,
    pub vhost: String,
    pub name: String,
    pub value: Value,
}

impl Parameter {
    /// Checks the component exists and accepts the value (RabbitMQ's texts).
    pub fn new(
        component: &str,
        vhost: &str,
        name: &str,
        value: Value,
    ) -> Result<Parameter, PolicyError> {
        let Some((_, check)) = COMPONENTS.iter().find(|(c, _)| *c == component) else {
            return Err(PolicyError::validation(format!(
                "component {component} not found"
            )));
        };
        if name.is_empty() {
            return Err(PolicyError::validation("parameter name must not be empty"));
        }
        check(&value).map_err(PolicyError::validation)?;
        Ok(Parameter {
            component: component.to_owned(),
            vhost: vhost.to_owned(),
            name: name.to_owned(),
            value,
        })
    }
}

/// Whether `component` is one parameters can be set for.
pub fn is_component(component: &str) -> bool {
    COMPONENTS.iter().any(|(c, _)| *c == component)
}

fn check_upstream(v: &Value) -> Result<(), String> {
    let Value::Object(map) = v else {
        return Err(format!(
            "federation-upstream must be a JSON object, got {v}"
        ));
    };
    match map.get("uri") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(uris)) if !uris.is_empty() && uris.iter().all(Value::is_string) => Ok(()),
        Some(other) => Err(format!(
            "uri should be a string or a list of strings, actually was {other}"
        )),
        None => Err("Key \"uri\" not found in federation-upstream".into()),
    }
}

fn check_upstream_set(v: &Value) -> Result<(), String> {
    let Value::Array(items) = v else {
        return Err(format!("federation-upstream-set must be a list, got {v}"));
    };
    for item in items {
        if !item.get("upstream").is_some_and(Value::is_string) {
            return Err(format!("Key \"upstream\" not found in {item}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn components_check_their_values() {
        assert!(
            Parameter::new("federation-upstream", "/", "u", json!({"uri": "amqp://h"})).is_ok()
        );
        assert!(
            Parameter::new(
                "federation-upstream",
                "/",
                "u",
                json!({"uri": ["amqp://a", "amqp://b"]})
            )
            .is_ok()
        );
        assert!(
            Parameter::new(
                "federation-upstream-set",
                "/",
                "s",
                json!([{"upstream": "u"}])
            )
            .is_ok()
        );
        for (c, v, text) in [
            ("federation-upstream", json!({}), "Key \"uri\" not found"),
            ("federation-upstream", json!({"uri": 1}), "uri should be"),
            ("federation-upstream", json!("x"), "must be a JSON object"),
            (
                "federation-upstream-set",
                json!([{}]),
                "Key \"upstream\" not found",
            ),
            ("shovel", json!({}), "component shovel not found"),
        ] {
            let e = Parameter::new(c, "/", "n", v).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.reason().contains(text), "{}", e.reason());
        }
        assert!(is_component("federation-upstream") && !is_component("policy"));
    }
}
