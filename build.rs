//! Finds each provider's own scenario tests, `functions/<provider>/scenarios.rs`, and
//! declares them as modules of the one integration-test binary (tests/it), which
//! includes the generated file: a provider's tests live in its folder, and the tests still
//! link the AWS SDK once.

use std::fmt::Write;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let functions = root.join("functions");
    println!("cargo:rerun-if-changed={}", functions.display());
    let mut folders: Vec<_> = std::fs::read_dir(&functions)?.collect::<Result<Vec<_>, _>>()?;
    folders.sort_by_key(|entry| entry.file_name());
    let mut modules = String::new();
    for folder in folders {
        let file = folder.path().join("scenarios.rs");
        if file.is_file() {
            println!("cargo:rerun-if-changed={}", file.display());
            let name = folder.file_name().to_string_lossy().replace('-', "_");
            writeln!(modules, "#[path = {:?}]\nmod {name};", file.display().to_string())?;
        }
    }
    let out = std::env::var("OUT_DIR")?;
    std::fs::write(Path::new(&out).join("provider_scenarios.rs"), modules)?;
    Ok(())
}
