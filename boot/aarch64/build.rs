//! Links the AArch64 kernel with its own linker script (upper-half addresses,
//! the arm64 image header first, boot tables and stack outside `.bss`).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rerun-if-changed={dir}/linker.ld");
}
