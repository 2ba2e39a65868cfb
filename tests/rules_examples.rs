//! Every rules file shipped in `examples/` must load without diagnostics.

use std::path::Path;

#[test]
fn every_example_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        if let Err(err) = sluice::rules::load_file(&path) {
            panic!("{} does not parse:\n{err}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the quickstart and richer examples, found {checked}"
    );
}
