//! Black-box tests of the query-server over real gRPC: a server started in-process on
//! `127.0.0.1:0` (or the real binary, for the multi-process test) over a real SQLite store file
//! filled through `Store::commit`.

mod processes;
mod rpcs;
mod support;
mod watch;
