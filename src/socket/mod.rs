//! The WebSocket `/socket` edge: one connection's session (HELLO, requests, deadlines, the
//! writer that drains its outbox, a clean close) and the client→server protocol. Fan-out of
//! changes to subscribers is the [`crate::fanout`] service's.

pub mod conn;
pub mod lanyard;
pub mod protocol;
pub mod wire;
