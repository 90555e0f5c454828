//! Application close codes (4000–4999), one per reason a server closes a connection.

/// Why the server closed a connection. Each reason has its own close code; the DISCONNECT
/// frame sent just before the close carries the human-readable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 4000: `op` missing, not a number, or not 1–15.
    InvalidOpcode,
    /// 4001: a server-only opcode was sent.
    OpcodeNotAllowed,
    /// 4002: INIT's `d` is invalid.
    InvalidPayload,
    /// 4003: HEARTBEAT, SUBSCRIBE or UNSUBSCRIBE before a successful INIT.
    NotInitialized,
    /// 4004: no successful INIT within `init_timeout`.
    InitTimeout,
    /// 4005: no heartbeat within 1.5 × `heartbeat_interval` + `heartbeat_grace`.
    HeartbeatTimeout,
    /// 4006: every subscribed user left the guild.
    NoUsersLeft,
    /// 4007: UNSUBSCRIBE removed the last subscription.
    Unsubscribed,
    /// 4008: the outbound queue went past `max_queued_bytes`.
    SlowConsumer,
    /// 4009: too many connections from the client's address.
    TooManyConnections,
    /// 4010: an inbound message was larger than `max_frame_bytes`.
    MessageTooLarge,
    /// 4011: the server is shutting down.
    ShuttingDown,
    /// 4012: the client broke the WebSocket protocol.
    ProtocolError,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::InvalidOpcode => 4000,
            CloseReason::OpcodeNotAllowed => 4001,
            CloseReason::InvalidPayload => 4002,
            CloseReason::NotInitialized => 4003,
            CloseReason::InitTimeout => 4004,
            CloseReason::HeartbeatTimeout => 4005,
            CloseReason::NoUsersLeft => 4006,
            CloseReason::Unsubscribed => 4007,
            CloseReason::SlowConsumer => 4008,
            CloseReason::TooManyConnections => 4009,
            CloseReason::MessageTooLarge => 4010,
            CloseReason::ShuttingDown => 4011,
            CloseReason::ProtocolError => 4012,
        }
    }
}

pub const INVALID_CONNECTION: &str = "Invalid websocket connection.";
pub const INIT_TIMEOUT: &str = "You did not initialize in time.";
pub const HEARTBEAT_TIMEOUT: &str = "Connection timed out.";
pub const NO_USERS_LEFT: &str = "There is no user to monitor anymore.";
pub const UNSUBSCRIBED: &str = "You require at least one user to be subscribed. Connection closed.";
pub const SLOW_CONSUMER: &str = "Slow consumer";
pub const TOO_MANY_CONNECTIONS: &str = "Too many connections from your address.";
pub const SHUTTING_DOWN: &str = "The server is shutting down.";
