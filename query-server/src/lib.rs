//! shotgun-cache-query-server library.
