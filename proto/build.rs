//! Compiles `shotgun_cache/v1/*.proto` with protox (no system protoc) into prost/tonic code, and
//! writes the encoded file descriptor set that the servers register for reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "shotgun_cache/v1/types.proto",
        "shotgun_cache/v1/query.proto",
        "shotgun_cache/v1/syncer.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("shotgun_cache_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Maps (a record's fields, summaries) as BTreeMap: the wire order is the key order, the
        // same answer always encodes to the same bytes, and no per-call SipHash of every key.
        .btree_map(".")
        // Written by hand (src/find_response.rs) so a server can send records it encoded before.
        .extern_path(
            ".shotgun_cache.v1.FindResponse",
            "crate::find_response::FindResponse",
        )
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
