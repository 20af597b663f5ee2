//! Compiles the repository's shipped templates (`templates/*.yaml`, `*.yml`; not its
//! sub-folders) into the binary, so a binary started anywhere without `TEMPLATES_DIR` still
//! has them (docs/configuration.md). Writes `$OUT_DIR/built_in_templates.rs`: a list of
//! (file name, text) pairs, each text an `include_str!` of the file.
//!
//! Also has the release binary's debug information (line tables only, see the workspace's
//! Cargo.toml) stored compressed: backtraces still name file and line, the binary is a
//! fraction of the size (docs/operations.md, "The binary").

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo::rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
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
