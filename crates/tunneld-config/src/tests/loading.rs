//! Reading the configuration file, and where it is looked for.

use std::path::PathBuf;

use super::SPEC_EXAMPLE;
use crate::{default_config_path, load};

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = std::env::temp_dir().join(format!("tunneld-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, SPEC_EXAMPLE).unwrap();
    assert_eq!(load(&good).unwrap().tunnels.len(), 2);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[tunnels.t]\nhost = 5\n").unwrap();
    let errs = load(&bad).unwrap_err();
    assert_eq!(errs.errors.len(), 2, "{errs}");
    assert_eq!(errs.errors[0].line, 1);
    assert!(
        errs.to_string()
            .starts_with(&format!("{}:1:10: ", bad.display())),
        "{errs}"
    );

    let missing = dir.join("missing.toml");
    let errs = load(&missing).unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    assert_eq!((errs.errors[0].line, errs.errors[0].col), (0, 0));
    assert_eq!(
        errs.to_string(),
        format!(
            "{}: file not found; create it, or point -c/--config or $TUNNELD_CONFIG at another file",
            missing.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_config_path_is_absolute() {
    // The value depends on $TUNNELD_CONFIG; either way it is a usable path.
    let p = default_config_path();
    match std::env::var_os("TUNNELD_CONFIG") {
        Some(v) if !v.is_empty() => assert_eq!(p, PathBuf::from(v)),
        _ => assert_eq!(p, PathBuf::from("/etc/tunneld/tunneld.toml")),
    }
}
