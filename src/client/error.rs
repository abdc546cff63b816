//! What can end a client connection.

use crate::protocol::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0}")]
    Decode(#[from] DecodeError),
    /// The server closed the connection or a channel (`code` 0: the socket, with no
    /// close method).
    #[error("the server closed the {what}: {code} {text}")]
    Closed {
        what: &'static str,
        code: u16,
        text: String,
    },
    /// The server announced the identifier we were told to refuse: it is ourselves.
    #[error("refusing to connect to ourselves: the server's identifier {0:?} is our own")]
    SelfConnection(String),
    #[error("{0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The socket closed with no close method.
    pub(super) fn socket_closed(when: &str) -> Error {
        Error::Closed {
            what: "connection",
            code: 0,
            text: format!("socket closed {when}"),
        }
    }
}
