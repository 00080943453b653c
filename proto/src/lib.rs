//! The gRPC API of Shotgun Cache: generated message and service types, and the encoded file
//! descriptor set for reflection. **Architecture Invariant:** this crate does no I/O.
