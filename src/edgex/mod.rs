//! EdgeX Foundry: the gateway's sensors and actuators, leased to tenants
//! through the agent. So far: a client of the v3 API with the secure-mode
//! login (`client`), the API's JSON as the real services send it
//! (`model`), value types and the check every write a
//! tenant asks for goes through (`value`), following how device-sdk-go
//! parses them. The client, the device catalogue, the per-lease bridge and
//! the simulator come next (issue 7), after the official OpenAPI files and
//! the real services' quirks in `../shared/specs/edgex/`.

pub mod client;
pub mod model;
pub mod value;

/// What can go wrong talking to EdgeX or checking a tenant's request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Value(String),
    /// The service answered with an error status (EdgeX's message kept).
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The service could not be reached or did not answer in time.
    #[error("EdgeX unavailable: {0}")]
    Unavailable(String),
    #[error("EdgeX login: {0}")]
    Auth(String),
}
