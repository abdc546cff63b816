//! Managing the broker from outside: definitions import and export in RabbitMQ's format
//! (the HTTP API joins it here).

pub mod definitions;
