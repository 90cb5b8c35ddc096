//! Fingerprints of the development secrets (the values of `local.env.example` and the
//! files of `dev-keys/`), so that a function on Lambda can refuse to start with one
//! without the binary holding them: `OUT_DIR/development_secrets.rs`.

use std::fmt::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A value as compared: without whitespace, quotes or written-out newlines (`\n`), so that
/// a PEM pasted with other line breaks is the same value.
fn normalized(value: &str) -> String {
    value.replace("\\n", "").chars().filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'').collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut values = Vec::new();
    let env_file = root.join("local.env.example");
    println!("cargo:rerun-if-changed={}", env_file.display());
    for line in std::fs::read_to_string(&env_file)?.lines() {
        if let Some((_, value)) = line.trim().split_once('=').filter(|_| !line.trim_start().starts_with('#')) {
            values.push(normalized(value));
        }
    }
    let keys = root.join("dev-keys");
    println!("cargo:rerun-if-changed={}", keys.display());
    let mut files: Vec<_> = std::fs::read_dir(&keys)?.collect::<Result<Vec<_>, _>>()?;
    files.sort_by_key(|entry| entry.file_name());
    for file in files.iter().filter(|f| f.path().extension().is_some_and(|e| e != "md")) {
        values.push(normalized(&std::fs::read_to_string(file.path())?));
    }
    // Short values (a port, an algorithm's name) are no secret's.
    values.retain(|value| value.len() >= 16);
    values.sort();
    values.dedup();
    let mut out = String::from(
        "/// SHA-256 of each development secret, normalized.\nconst DEVELOPMENT_DIGESTS: &[[u8; 32]] = &[\n",
    );
    for value in &values {
        writeln!(out, "    {:?},", <[u8; 32]>::from(Sha256::digest(value.as_bytes())))?;
    }
    out.push_str("];\n");
    std::fs::write(Path::new(&std::env::var("OUT_DIR")?).join("development_secrets.rs"), out)?;
    Ok(())
}
