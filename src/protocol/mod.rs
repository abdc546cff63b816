//! The AMQP 0-9-1 wire protocol.
//!
//! Two halves live here. `generated/` is written by `cargo xtask codegen` from the XML in
//! `spec/`: constants, reply codes, one struct per method, the `Method` enum, content
//! properties, the dispatch traits and the peer agent state machine. Everything else is
//! hand-written and is what the generated code stands on (primitive encoding, short
//! strings, field tables) or what sits beside it (frames, content assembly, the protocol
//! header). Nothing above this module decodes bytes itself.

pub mod generated;

pub mod arguments;
pub mod content;
mod decode_reply;
pub mod error;
pub mod field_table;
pub mod frame;
pub mod header;
pub mod short_string;
pub mod wire;

pub use error::DecodeError;
pub use field_table::{FieldTable, FieldValue};
pub use generated::constants::ReplyCode;
pub use short_string::ShortString;
