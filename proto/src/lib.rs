//! The gRPC API of Shotgun Cache: generated message and service types, and the encoded file
//! descriptor set for reflection. **Architecture Invariant:** this crate does no I/O.
//!
//! The API is documented in the `.proto` files themselves (`shotgun_cache/v1/*.proto`):
//! - `types.proto`: typed values, entity links, the filter tree, records, per-type sync state;
//! - `query.proto`: `QueryService` (Find, FindOne, Count, GetSchema, SyncStatus, Watch);
//! - `syncer.proto`: `SyncerService` (Status, Resync, Refresh).
//!
//! [`auth`] holds the bearer-token check both services put in front of their API.
//!
//! Wire types stop at each service's gRPC adapter; the services convert them to domain types.
//! `FindResponse` is written by hand (see [`find_response`]) so a server can send records it
//! encoded before; every other message is generated.

pub mod auth;
pub mod find_response;

pub use prost_types;
pub use tonic;

/// Package `shotgun_cache.v1`: every message, enum, client and server of the API.
pub mod v1 {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("shotgun_cache.v1");
    pub use crate::find_response::FindResponse;
}

/// The encoded `FileDescriptorSet` of every `.proto` file (with its imports), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("shotgun_cache_descriptor");
