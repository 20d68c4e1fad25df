//! What the image and kind workflows need from the machine: a Docker engine that answers
//! (not only the `docker` client), and kind and kubectl. Checked first, so a machine
//! without them stops at once with a message that says what is missing.
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd;

/// The image `deploy/` runs (deploy/base/kustomization.yaml `images:`).
pub const IMAGE: &str = "svclb/svclb-agent:0.1.0";

fn found(program: &str) -> bool {
    cmd::succeeds(Command::new("sh").args(["-c", &format!("command -v {program}")]))
}

fn engine_answers() -> bool {
    let mut info = Command::new("docker");
    info.args(["info", "--format", "{{.ServerVersion}}"]);
    cmd::output(&mut info).is_some()
}

const NO_ENGINE: &str = "no Docker engine answers (`docker info` fails: the `docker` client may be \
     installed, but no daemon runs or it is not reachable; start dockerd or use a machine with Docker)";

/// What keeps `what` from running: each of `programs` (name, where to get it) that is
/// not on PATH, and a Docker engine that does not answer. Empty when all is there.
fn problems(
    programs: &[(&str, &str)],
    found: impl Fn(&str) -> bool,
    engine: impl Fn() -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = programs
        .iter()
        .filter(|(p, _)| !found(p))
        .map(|(p, how)| format!("`{p}` is not installed ({how})"))
        .collect();
    if found("docker") && !engine() {
        out.push(NO_ENGINE.into());
    }
    out
}

/// Fails at once, saying everything that is missing, unless the Docker engine answers
/// and every program in `programs` (besides docker) is on PATH.
pub fn require(what: &str, programs: &[(&str, &str)]) -> Result<()> {
    let mut all = vec![("docker", "Docker Engine")];
    all.extend_from_slice(programs);
    let problems = problems(&all, found, engine_answers);
    if !problems.is_empty() {
        bail!("{what} cannot run here:\n  - {}", problems.join("\n  - "));
    }
    Ok(())
}

/// `docker build -f deploy/Dockerfile -t IMAGE <root>`.
pub fn build_image() -> Result<()> {
    let root = cmd::workspace_root();
    cmd::run(
        Command::new("docker")
            .args(["build", "-f"])
            .arg(root.join("deploy/Dockerfile"))
            .args(["-t", IMAGE])
            .arg(&root),
    )
}

/// `cargo xtask image`.
pub fn image() -> Result<()> {
    require("cargo xtask image", &[])?;
    build_image()?;
    println!("image: built {IMAGE}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_piece_is_named() {
        let progs = [
            ("docker", "Docker Engine"),
            ("kind", "k"),
            ("kubectl", "setup"),
        ];
        assert!(problems(&progs, |_| true, || true).is_empty());
        // This machine: a docker client without an engine, no kind.
        let p = problems(&progs, |p| p != "kind", || false);
        assert_eq!(
            p,
            [
                "`kind` is not installed (k)".to_string(),
                NO_ENGINE.to_string()
            ]
        );
        // No docker at all: the engine is not asked.
        let p = problems(
            &progs,
            |p| p == "kubectl",
            || panic!("engine asked without a client"),
        );
        assert_eq!(p.len(), 2);
    }
}
