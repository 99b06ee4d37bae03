//! Compiles canal's .proto files with protox (pure Rust), so no `protoc` is needed on the build machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/CanalProtocol.proto", "proto/EntryProtocol.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // Entries are serialized once and shared between the store and every response without copying.
        .bytes(["."])
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
