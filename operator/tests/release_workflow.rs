//! `.github/workflows/release.yml` runs only on GitHub, on a tag push. actionlint checks it here: the workflow
//! syntax, the expressions and their types, the inputs of the actions it uses and, when shellcheck is installed,
//! its `run` scripts. actionlint is built from the Go module proxy (`e2e/tools/actionlint`, pinned in its go.mod)
//! into `target/tools/actionlint` once. What the workflow must agree on with the Dockerfiles and the chart is
//! checked in `images.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

const WORKFLOW: &str = ".github/workflows/release.yml";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

/// The actionlint version that `e2e/tools/actionlint/go.mod` requires.
fn pinned_version() -> String {
    let go_mod = std::fs::read_to_string(repo_root().join("e2e/tools/actionlint/go.mod")).expect("read go.mod");
    go_mod
        .lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .filter_map(|l| l.strip_prefix("github.com/rhysd/actionlint "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .next()
        .expect("go.mod requires github.com/rhysd/actionlint")
}

fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("-version").output().ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Some(stdout.lines().next()?.trim().to_string())
}

/// `target/tools/actionlint` at the pinned version, built when missing or at another version.
fn actionlint() -> PathBuf {
    let binary = repo_root().join("target/tools/actionlint");
    let version = pinned_version();
    if version_of(&binary).as_deref() == Some(version.as_str()) {
        return binary;
    }
    // Build beside the final path, then rename: tests running at once never see half a binary.
    let partial = binary.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::create_dir_all(binary.parent().unwrap()).expect("create target/tools");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg("github.com/rhysd/actionlint/cmd/actionlint")
        .current_dir(repo_root().join("e2e/tools/actionlint"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .expect("run go build (Go is needed to build actionlint)");
    assert!(
        output.status.success(),
        "go build actionlint {version} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &binary).expect("move actionlint into place");
    assert_eq!(
        version_of(&binary).as_deref(),
        Some(version.as_str()),
        "the actionlint just built is not {version}"
    );
    binary
}

#[test]
fn release_workflow_passes_actionlint() {
    let output = Command::new(actionlint())
        .args(["-no-color", "-verbose", WORKFLOW])
        .current_dir(repo_root())
        .output()
        .expect("run actionlint");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "actionlint finds problems in {WORKFLOW}:\n{stdout}\n{stderr}"
    );
    // -verbose names each file it lints: the workflow was read, not skipped.
    assert!(
        stderr.contains(&format!("Linting {WORKFLOW}")),
        "actionlint did not lint {WORKFLOW}:\n{stderr}"
    );
    if stderr.contains("Rule \"shellcheck\" was disabled") {
        eprintln!("shellcheck is not installed: actionlint checked the workflow without its run scripts");
    }
}
