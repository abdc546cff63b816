//! Managing the broker from outside: definitions import and export in RabbitMQ's format
//! (`definitions`), and policies, operator policies and runtime parameters in the
//! management API's shapes (`policies`). The HTTP API joins them here.

pub mod definitions;
pub mod policies;

/// Reads a JSON request body as `T`; the error names the path of the field at fault
/// (`users[1].tags: invalid type: …`), or is serde's text for malformed JSON.
pub fn read_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}
