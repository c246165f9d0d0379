//! Which end of the connection the engine plays.

/// The side of a WebSocket connection.
///
/// The role decides the masking rules (a client masks every frame it sends and rejects
/// masked frames; a server does the opposite) and who closes TCP first (the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake.
    Client,
    /// The end that accepted it.
    Server,
}
