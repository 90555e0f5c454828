//! The state of lantern's gateway connection, as every shard and `/health` see it.

/// Connection state of the gateway, broadcast to every shard on each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayStatus {
    pub state: GatewayState,
    /// A complete member list has been received at least once.
    pub members_loaded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayState {
    Connecting,
    /// Identified or resumed and receiving events.
    Connected,
    /// Lost; twilight is reconnecting.
    Reconnecting,
    /// Closed for good (invalid token, disallowed intents): no more events will come.
    Failed,
}

impl GatewayState {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayState::Connecting => "connecting",
            GatewayState::Connected => "connected",
            GatewayState::Reconnecting => "reconnecting",
            GatewayState::Failed => "failed",
        }
    }
}

impl Default for GatewayStatus {
    fn default() -> Self {
        GatewayStatus { state: GatewayState::Connecting, members_loaded: false }
    }
}
