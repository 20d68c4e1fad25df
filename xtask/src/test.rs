//! `cargo xtask test`: the project's test command. Builds the workspace (the end-to-end
//! tests run the agent, pod and probe binaries from the target directory), then runs
//! every test: unit, packet fixtures (BPF_PROG_TEST_RUN) and network-namespace end to end.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{cmd, toolchain};

/// Cargo arguments selecting every host crate (the eBPF crate only builds for BPF).
const PACKAGES: &[&str] = &["--workspace", "--exclude", "svclb-ebpf"];

/// Builds every binary the tests run (agent, pod, probe; the eBPF object inside).
pub fn build(root: &std::path::Path) -> Result<()> {
    let mut build = Command::new("cargo");
    if toolchain::apply(&mut build) {
        println!(
            "test: no nightly toolchain, building the eBPF crate with stable + RUSTC_BOOTSTRAP=1"
        );
    }
    cmd::run(
        build
            .current_dir(root)
            .arg("build")
            .args(PACKAGES)
            .arg("--bins"),
    )
}

pub fn run(test_args: &[String]) -> Result<()> {
    cmd::ensure_root("`cargo xtask test`")?;
    let started = Instant::now();
    let root = cmd::workspace_root();
    build(&root)?;
    let built = started.elapsed();

    let mut test = Command::new("cargo");
    toolchain::apply(&mut test);
    test.current_dir(&root)
        .arg("test")
        .args(PACKAGES)
        .arg("--no-fail-fast");
    if !test_args.is_empty() {
        test.arg("--").args(test_args);
    }
    println!("$ {}", cmd::describe(&test));
    let mut child = test
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;

    println!();
    println!(
        "test: build {:.0?}, tests {:.0?}; {} test binaries, {} with failures",
        built,
        started.elapsed() - built,
        totals.suites,
        totals.failed_suites
    );
    println!(
        "summary: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() || totals.failed > 0 {
        bail!("tests failed ({status})");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Sums of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    pub suites: u64,
    pub failed_suites: u64,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Adds `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out`.
    pub fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        self.suites += 1;
        let count = |what: &str| -> u64 {
            rest.split(';')
                .find_map(|part| part.trim().strip_suffix(what))
                .and_then(|n| n.split_whitespace().last()?.parse().ok())
                .unwrap_or(0)
        };
        let failed = count(" failed");
        self.passed += count(" passed");
        self.failed += failed;
        self.ignored += count(" ignored");
        if failed > 0 || rest.starts_with("FAILED") {
            self.failed_suites += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn sums_libtest_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add("running 2 tests");
        t.add("test result: FAILED. 10 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.1s");
        assert_eq!(
            t,
            Totals {
                suites: 2,
                failed_suites: 1,
                passed: 13,
                failed: 2,
                ignored: 1
            }
        );
    }
}
