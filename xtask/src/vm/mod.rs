//! `cargo xtask test --kernel 6.1 [--tests a,b | --set smoke] [-- ARGS]`: the project's
//! host-built test binaries run inside Debian's other kernels under qemu. Kernels are
//! fetched with apt into `target/vm/` (cached, never installed on the host); each VM
//! shares the host's root read-only, so the same binaries, agent and network tools run
//! inside. Results per kernel and test binary; non-zero exit when any kernel fails.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cmd, test::Totals, toolchain};

pub mod guest;
pub mod initramfs;
pub mod kernels;
pub mod qemu;
pub mod sets;

/// What one test binary gave in a guest.
struct Binary {
    name: String,
    totals: Totals,
    /// Its exit code; None when it never finished (the VM stopped first).
    rc: Option<i32>,
    secs: f64,
}

impl Binary {
    fn failed(&self) -> bool {
        self.rc != Some(0) || self.totals.failed > 0 || self.totals.passed == 0
    }
}

/// What one kernel run gave.
struct KernelResult {
    name: String,
    abi: String,
    /// Fetching/unpacking the kernel and building the initramfs.
    prepare: Duration,
    boot: Option<Duration>,
    /// Everything, preparation included.
    wall: Duration,
    binaries: Vec<Binary>,
    error: Option<String>,
}

/// The test executables of the svclb-tests package, by target name.
fn test_binaries(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut c = Command::new("cargo");
    toolchain::apply(&mut c);
    let out = c
        .current_dir(root)
        .args([
            "test",
            "-p",
            "svclb-tests",
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the tests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if v["reason"] == "compiler-artifact"
            && is_test
            && let (Some(name), Some(exe)) =
                (v["target"]["name"].as_str(), v["executable"].as_str())
        {
            bins.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    bins.sort();
    Ok(bins)
}

/// Debian packages the VM runs need on the host (`cargo xtask setup` installs them too):
/// qemu, a static busybox for the initramfs, kmod (depmod, modprobe --show-depends),
/// cpio and gzip for the initramfs, xz and zstd for the kernel payload and modules.
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "kmod",
    "cpio",
    "gzip",
    "xz-utils",
    "zstd",
];

/// Installs the missing `HOST_PACKAGES` with apt.
fn host_packages() -> Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("vm: installing {}", missing.join(" "));
    cmd::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub struct Selection<'a> {
    pub kernels: Vec<String>,
    pub tests: Vec<String>,
    pub set: Option<String>,
    pub args: &'a [String],
    pub timeout: Duration,
}

pub fn run(sel: &Selection) -> Result<()> {
    cmd::ensure_root("`cargo xtask test --kernel`")?;
    host_packages()?;
    let root = cmd::workspace_root();
    crate::test::build(&root)?;
    let bins = test_binaries(&root)?;
    let plan: Vec<(String, PathBuf, Vec<String>)> = match &sel.set {
        Some(set) => sets::plan(set, &bins, sel.args)?,
        None => {
            let wanted: Vec<&(String, PathBuf)> = if sel.tests.is_empty() {
                bins.iter().collect()
            } else {
                sel.tests
                    .iter()
                    .map(|t| {
                        bins.iter()
                            .find(|(n, _)| n == t)
                            .with_context(|| format!("no test target {t} in svclb-tests"))
                    })
                    .collect::<Result<_>>()?
            };
            wanted
                .into_iter()
                .map(|(n, p)| (n.clone(), p.clone(), sel.args.to_vec()))
                .collect()
        }
    };
    // The guest runs this binary as its PID 1. The build above may have replaced it
    // (it is a workspace binary too): the path, not the running file, is what counts.
    let exe = std::env::current_exe().context("the xtask binary")?;
    let xtask = PathBuf::from(
        exe.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_owned(),
    );
    let cache = root.join("target/vm");
    let workdir = root.join("tests");
    let env = test_env(&workdir);
    qemu::catch_interrupts();
    let mut results = Vec::new();
    for name in &sel.kernels {
        let mut r = KernelResult {
            name: name.clone(),
            abi: String::new(),
            prepare: Duration::ZERO,
            boot: None,
            wall: Duration::ZERO,
            binaries: Vec::new(),
            error: None,
        };
        let started = Instant::now();
        if let Err(e) = run_kernel(&mut r, &cache, &plan, &xtask, &workdir, &env, sel.timeout) {
            println!("vm {name}: {e:#}");
            r.error = Some(format!("{e:#}"));
        }
        r.wall = started.elapsed();
        results.push(r);
        if qemu::interrupted().is_some() {
            break;
        }
    }
    report(&results)
}

/// The test binaries' environment: what `cargo test` gives them (package directory and
/// variables) and what the caller set for them (logging, svclb's own variables).
fn test_env(workdir: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), "/root".to_owned()),
        (
            "CARGO_MANIFEST_DIR".to_owned(),
            workdir.display().to_string(),
        ),
        (
            "CARGO_MANIFEST_PATH".to_owned(),
            workdir.join("Cargo.toml").display().to_string(),
        ),
        ("CARGO_PKG_NAME".to_owned(), "svclb-tests".to_owned()),
        (
            "CARGO_PKG_VERSION".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ];
    let default_path =
        "/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    env.push((
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| default_path.to_owned()),
    ));
    env.push((
        "RUST_BACKTRACE".to_owned(),
        std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "1".to_owned()),
    ));
    // The tests stretch their waits for the agent by this (tests/src/slowdown.rs): TCG
    // runs the agent's start (eBPF loads, probes) 10-30x slower than the host.
    if std::env::var_os("SVCLB_TEST_SLOWDOWN").is_none() {
        let factor = if qemu::hardware_kvm() { "1" } else { "4" };
        env.push(("SVCLB_TEST_SLOWDOWN".to_owned(), factor.to_owned()));
    }
    for (k, v) in std::env::vars() {
        let passed = k.starts_with("SVCLB_")
            || k.starts_with("RUST_LOG")
            || k == "RUST_TEST_THREADS"
            || k == "RUST_MIN_STACK";
        if passed && !v.contains(['\t', '\n']) {
            env.push((k, v));
        }
    }
    env
}

/// Holds `target/vm/runs/<name>.lock` while a run of kernel `name` uses its directory:
/// two concurrent runs of one kernel would wipe each other's results.
fn lock(cache: &Path, name: &str) -> Result<fs::File> {
    let runs = cache.join("runs");
    fs::create_dir_all(&runs)?;
    let path = runs.join(format!("{name}.lock"));
    let f = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock on an open descriptor; released when the file is closed.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        bail!(
            "another `cargo xtask test --kernel {name}` is running ({} is locked)",
            path.display()
        );
    }
    Ok(f)
}

/// The result of binary `name` in `out`, once its `.rc` exists (the guest writes it last).
fn binary_result(out: &Path, name: &str) -> Option<Binary> {
    let rc = fs::read_to_string(out.join(format!("{name}.rc"))).ok()?;
    let mut b = finished_or_not(out, name);
    b.rc = Some(rc.trim().parse().unwrap_or(-1));
    Some(b)
}

/// What `out` holds of binary `name`, finished or not.
fn finished_or_not(out: &Path, name: &str) -> Binary {
    let log = fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
    let mut totals = Totals::default();
    log.lines().for_each(|l| totals.add(l));
    let secs = fs::read_to_string(out.join(format!("{name}.secs")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0.0);
    Binary {
        name: name.to_owned(),
        totals,
        rc: None,
        secs,
    }
}

/// Prints one finished binary: its libtest result and failure lines.
fn print_binary(kernel: &str, out: &Path, b: &Binary) {
    let log = fs::read_to_string(out.join(format!("{}.log", b.name))).unwrap_or_default();
    for line in log.lines() {
        let failure = line.starts_with("thread '")
            || (line.starts_with("test ") && line.ends_with(" FAILED"))
            || line.starts_with("test result: ")
            || line.starts_with("error: ")
            || line.starts_with("vm-guest: ");
        if failure {
            println!("vm {kernel}: {}: {line}", b.name);
        }
    }
    println!(
        "vm {kernel}: {}: {} (exit {}, {:.0} s; log {})",
        b.name,
        if b.failed() { "FAILED" } else { "ok" },
        b.rc.map_or("none".to_owned(), |rc| rc.to_string()),
        b.secs,
        out.join(format!("{}.log", b.name)).display()
    );
}

fn run_kernel(
    r: &mut KernelResult,
    cache: &Path,
    plan: &[(String, PathBuf, Vec<String>)],
    xtask: &Path,
    workdir: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let name = r.name.clone();
    let _lock = lock(cache, &name)?;
    let k = kernels::prepare(&name, cache)?;
    r.abi = k.abi.clone();
    let run_dir = cache.join("runs").join(&name);
    let _ = fs::remove_dir_all(&run_dir);
    let out = run_dir.join("out");
    fs::create_dir_all(&out)?;
    let text: String = plan
        .iter()
        .map(|(n, b, a)| guest::plan_line(n, b, a))
        .collect();
    fs::write(out.join("plan.tsv"), text)?;
    fs::write(out.join("env.tsv"), guest::env_text(env))?;
    let guest_cmd = format!(
        "{} vm-guest {} --modules {} --workdir {}",
        xtask.display(),
        initramfs::GUEST_OUT,
        k.modules().display(),
        workdir.display()
    );
    let initrd = initramfs::build(&k, &run_dir, &guest_cmd)?;
    r.prepare = started.elapsed();
    println!(
        "vm {name}: booting {} ({} test binaries; serial log {})",
        k.abi,
        plan.len(),
        run_dir.join("serial.log").display()
    );
    let serial = run_dir.join("serial.log");
    let mut reported = 0;
    let mut booted = false;
    let mut progress = || {
        if !booted && out.join("uname").exists() {
            booted = true;
            println!(
                "vm {name}: guest up after {:.1?}",
                started.elapsed() - r.prepare
            );
        }
        // The guest runs the plan in order: print each binary as it finishes.
        while let Some(b) = plan
            .get(reported)
            .and_then(|(n, _, _)| binary_result(&out, n))
        {
            print_binary(&name, &out, &b);
            reported += 1;
        }
    };
    let run = qemu::boot(&k, &initrd, &out, &serial, timeout, &mut progress);
    progress();
    r.binaries = plan
        .iter()
        .map(|(n, _, _)| binary_result(&out, n).unwrap_or_else(|| finished_or_not(&out, n)))
        .collect();
    let run = run?;
    r.boot = Some(run.boot);
    println!(
        "vm {name}: powered off; boot {:.1?}, qemu {:.0?} ({})",
        run.boot, run.total, run.accel
    );
    let problems = fs::read_to_string(out.join("guest.log")).unwrap_or_default();
    if !problems.trim().is_empty() {
        println!("vm {name}: guest setup problems:\n{problems}");
    }
    if !out.join("done").exists() {
        bail!(
            "the guest stopped before finishing the plan (serial log {})",
            serial.display()
        );
    }
    Ok(())
}

fn report(results: &[KernelResult]) -> Result<()> {
    println!();
    println!("| kernel | test binary | passed | failed | ignored | exit | time |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut failed = false;
    for r in results {
        let kernel = format!(
            "{} ({})",
            r.name,
            if r.abi.is_empty() { "?" } else { &r.abi }
        );
        for b in &r.binaries {
            failed |= b.failed();
            let t = &b.totals;
            println!(
                "| {kernel} | {} | {} | {} | {} | {} | {:.0} s |",
                b.name,
                t.passed,
                t.failed,
                t.ignored,
                b.rc.map_or("did not finish".to_owned(), |rc| rc.to_string()),
                b.secs
            );
        }
        if let Some(e) = &r.error {
            failed = true;
            let first = e.lines().next().unwrap_or_default();
            println!("| {kernel} | (VM) | - | - | - | {first} | |");
        }
    }
    println!();
    for r in results {
        let sum = |f: fn(&Totals) -> u64| r.binaries.iter().map(|b| f(&b.totals)).sum::<u64>();
        println!(
            "vm {}: {} passed, {} failed, {} ignored; wall {:.0?} (kernel and initramfs {:.1?}, boot {})",
            r.name,
            sum(|t| t.passed),
            sum(|t| t.failed),
            sum(|t| t.ignored),
            r.wall,
            r.prepare,
            r.boot.map_or("-".to_owned(), |b| format!("{b:.1?}"))
        );
    }
    if let Some(sig) = qemu::interrupted() {
        bail!("interrupted by signal {sig}");
    }
    if failed {
        bail!("tests failed in a VM (logs under target/vm/runs/<kernel>/out)");
    }
    if results.iter().all(|r| r.binaries.is_empty()) {
        bail!("no test ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_counts_once_its_exit_code_is_written() {
        let out = std::env::temp_dir().join(format!("xtask-vm-test-{}", std::process::id()));
        fs::create_dir_all(&out).unwrap();
        fs::write(
            out.join("e2e.log"),
            "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 9 filtered out; finished in 3.00s\n",
        )
        .unwrap();
        assert!(
            binary_result(&out, "e2e").is_none(),
            "no .rc: still running"
        );
        let unfinished = finished_or_not(&out, "e2e");
        assert!(unfinished.failed() && unfinished.rc.is_none());

        fs::write(out.join("e2e.secs"), "3.5\n").unwrap();
        fs::write(out.join("e2e.rc"), "101\n").unwrap();
        let b = binary_result(&out, "e2e").unwrap();
        assert_eq!((b.rc, b.secs), (Some(101), 3.5));
        assert_eq!((b.totals.passed, b.totals.failed), (1, 1));
        assert!(b.failed());

        fs::write(out.join("ok.log"), "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.00s\n").unwrap();
        fs::write(out.join("ok.rc"), "0\n").unwrap();
        assert!(!binary_result(&out, "ok").unwrap().failed());
        // Exit 0 with nothing run (a filter that matched nothing) is no pass.
        fs::write(out.join("none.log"), "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 21 filtered out; finished in 0.00s\n").unwrap();
        fs::write(out.join("none.rc"), "0\n").unwrap();
        assert!(binary_result(&out, "none").unwrap().failed());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn plan_and_env_lines_are_tab_separated() {
        let l = guest::plan_line(
            "e2e",
            Path::new("/t/e2e-1"),
            &["--test-threads".into(), "1".into()],
        );
        assert_eq!(l, "e2e\t/t/e2e-1\t--test-threads\t1\n");
        let env = guest::env_text(&[("A".into(), "x y".into()), ("B".into(), String::new())]);
        assert_eq!(env, "A\tx y\nB\t\n");
    }
}
