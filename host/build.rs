//! Link settings for the `allocd` binary that `Cargo.toml` cannot express.
//!
//! On GNU/Linux the binary's relative relocations are packed (DT_RELR, `-z pack-relative-relocs`):
//! the loader reads a few KiB instead of a 350 KiB relocation table it would otherwise keep mapped
//! for the life of the agent (see README, Performance). The linker leaves the table as it was
//! when the C library cannot load packed relocations (glibc < 2.36).

fn main() {
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
