//! Shared test support: strategies for protocol values.
//!
//! `arbitrary.rs` is generated from spec/ by `cargo xtask codegen` (one strategy per
//! method); `prims.rs` is the hand-written strategies for the wire primitives it uses.

#![allow(dead_code)]

pub mod arbitrary;
pub mod broker;
pub mod etcd;
pub mod fault_proxy;
pub mod federation;
pub mod ha_checker;
pub mod ha_inproc;
pub mod ha_pair;
pub mod management;
pub mod prims;
pub mod rabbitmq;
pub mod raw;
pub mod tls;
