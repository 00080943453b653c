//! shotgun-cache-syncer library.
