//! Compiles the repository's shipped templates (`templates/*.yaml`, `*.yml`; not its
//! sub-folders) into the binary, so a binary started anywhere without `TEMPLATES_DIR` still
//! has them (docs/configuration.md). Writes `$OUT_DIR/built_in_templates.rs`: a list of
//! (file name, text) pairs, each text an `include_str!` of the file.
//!
//! Also makes the release binary small (docs/operations.md, "The binary"): its debug
//! information (line tables only, see the workspace's Cargo.toml) stored compressed —
//! backtraces still name file and line — and its relocations packed.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        release_link_args();
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("../../templates");
    // A folder: cargo reruns this script when anything in it changes (a file added included).
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the templates folder {}: {e}", dir.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for path in &files {
        let path = path.canonicalize().expect("a template file's path");
        let name = path.file_name().expect("a file name").to_string_lossy();
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display()).expect("a String");
    }
    code.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("built_in_templates.rs"), code).expect("write into OUT_DIR");
}

/// The release binary's linker flags. zlib, not zstd: std's backtrace reads only zlib.
fn release_link_args() {
    for arg in [
        // Understood by GNU ld, lld and mold alike.
        "-Wl,--compress-debug-sections=zlib",
        // String tail merging (`.debug_str` halves).
        "-Wl,-O2",
        // RELR: the position-independent binary's relative relocations in a few kB instead of
        // 24 bytes each (needs glibc 2.36 to run: Debian 12, the image's distroless/cc).
        "-Wl,-z,pack-relative-relocs",
    ] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    // lld (rustc's own linker for this target, unless configured otherwise) also takes the
    // compression level: the best zlib has, rather than its fastest.
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let default_linker = std::env::var_os("RUSTC_LINKER").is_none()
        && !rustflags.contains("linker")
        && !rustflags.contains("link-self-contained")
        && !rustflags.contains("fuse-ld");
    if default_linker && std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") {
        // Every debug section but `.debug_gdb_scripts`, which is loaded (cannot be compressed).
        println!("cargo::rustc-link-arg-bins=-Wl,--compress-sections=.debug_[!g]*=zlib:9");
    }
}
