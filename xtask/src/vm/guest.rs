//! `xtask vm-guest DIR`: PID 1 of a test VM, after the initramfs switched to the host's
//! root. Mounts what a node has, runs the plan in a child (`--runner`) while PID 1 reaps
//! the orphans the tests leave behind (a daemonized dnsmasq, a killed agent's children:
//! unreaped, they stay zombies that still answer `kill(pid, 0)`), then powers off.
//!
//! Files in DIR (the writable 9p share): `plan.tsv` and `env.tsv` from the host; `uname`
//! once booted; per test binary `<name>.log` (its output), `<name>.rc` (exit code) and
//! `<name>.secs`; `guest.log` (mount failures), `dmesg.log`, and `done` at the end.
use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result};

/// One line of the plan: `name \t binary \t arg \t arg …`.
pub fn plan_line(name: &str, bin: &Path, args: &[String]) -> String {
    let mut l = format!("{name}\t{}", bin.display());
    for a in args {
        l.push('\t');
        l.push_str(a);
    }
    l.push('\n');
    l
}

/// `env.tsv`: the test binaries' whole environment, `KEY \t VALUE` per line.
pub fn env_text(vars: &[(String, String)]) -> String {
    vars.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
}

/// PID 1: mounts, the runner child, reaping, power off. Never returns (PID 1 exiting
/// panics the kernel).
pub fn init(dir: &Path, modules: &Path, workdir: &Path) -> ! {
    let mut problems = Vec::new();
    let mut mount = |fstype: &str, target: &str, extra: &[&str]| {
        let _ = fs::create_dir_all(target);
        let ok = Command::new("mount")
            .args(["-t", fstype])
            .args(extra)
            .arg(fstype)
            .arg(target)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            problems.push(format!("mount -t {fstype} {target} failed"));
        }
    };
    mount("proc", "/proc", &[]);
    mount("sysfs", "/sys", &[]);
    mount("devtmpfs", "/dev", &[]);
    mount("devpts", "/dev/pts", &[]);
    mount("tmpfs", "/dev/shm", &["-o", "mode=1777"]);
    mount("tmpfs", "/run", &["-o", "mode=755"]);
    let _ = fs::create_dir_all("/run/netns");
    mount("bpf", "/sys/fs/bpf", &[]);
    mount("cgroup2", "/sys/fs/cgroup", &[]);
    mount("tmpfs", "/tmp", &["-o", "mode=1777"]);
    // The guest kernel's modules (ip_vs, nf_tables, …) where modprobe looks.
    let _ = fs::create_dir_all("/lib/modules");
    if !Command::new("mount")
        .arg("--bind")
        .arg(modules)
        .arg("/lib/modules")
        .status()
        .is_ok_and(|s| s.success())
    {
        problems.push(format!("bind {} on /lib/modules failed", modules.display()));
    }
    if !Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success())
    {
        problems.push("ip link set lo up failed".into());
    }
    for p in &problems {
        println!("vm-guest: {p}");
    }
    let _ = fs::write(dir.join("guest.log"), problems.join("\n"));
    let _ = fs::write(
        dir.join("uname"),
        fs::read("/proc/sys/kernel/osrelease").unwrap_or_default(),
    );

    let runner = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg("vm-guest")
            .arg(dir)
            .arg("--modules")
            .arg(modules)
            .arg("--workdir")
            .arg(workdir)
            .arg("--runner")
            .stdin(Stdio::null())
            .spawn()
    });
    match runner {
        Ok(child) => reap_until(child.id() as libc::pid_t),
        Err(e) => println!("vm-guest: cannot start the runner: {e}"),
    }
    if let Some(out) = crate::cmd::output(&mut Command::new("dmesg")) {
        let _ = fs::write(dir.join("dmesg.log"), out);
    }
    let _ = fs::write(dir.join("done"), "");
    // SAFETY: sync and power off; nothing runs after this.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    std::process::exit(0)
}

/// Waits for any child (orphans are re-parented to PID 1) until `runner` has exited.
fn reap_until(runner: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == runner
            || (pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return;
        }
    }
}

/// The runner: every binary of the plan in turn, output to its log and the console.
pub fn runner(dir: &Path, workdir: &Path) -> Result<()> {
    let plan = fs::read_to_string(dir.join("plan.tsv")).context("reading plan.tsv")?;
    let env = fs::read_to_string(dir.join("env.tsv")).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('\t')).collect();
    for line in plan.lines() {
        let mut parts = line.split('\t');
        let (Some(name), Some(bin)) = (parts.next(), parts.next()) else {
            continue;
        };
        let args: Vec<&str> = parts.collect();
        println!("vm-guest: {name}: {bin} {}", args.join(" "));
        let started = Instant::now();
        let rc = run_one(dir, name, bin, &args, workdir, &env);
        let secs = started.elapsed().as_secs_f64();
        println!("vm-guest: {name}: exit {rc} after {secs:.0} s");
        let _ = fs::write(dir.join(format!("{name}.secs")), format!("{secs:.1}\n"));
        // Written last: the host takes `.rc` as "this binary is finished".
        let _ = fs::write(dir.join(format!("{name}.rc")), format!("{rc}\n"));
    }
    Ok(())
}

/// Runs one test binary as `cargo test` would (package directory, cargo's variables);
/// its exit code, 128 + signal when killed, 126/127 when it could not start.
fn run_one(
    dir: &Path,
    name: &str,
    bin: &str,
    args: &[&str],
    workdir: &Path,
    env: &[(&str, &str)],
) -> i32 {
    let log = match fs::File::create(dir.join(format!("{name}.log"))) {
        Ok(log) => log,
        Err(e) => {
            println!("vm-guest: {name}: cannot create its log: {e}");
            return 126;
        }
    };
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(workdir)
        .env_clear()
        .envs(env.iter().copied())
        .env("CARGO_CRATE_NAME", name.replace('-', "_"))
        .stdin(Stdio::null());
    match log.try_clone() {
        Ok(err) => c.stdout(log).stderr(err),
        Err(_) => c.stdout(log).stderr(Stdio::null()),
    };
    match c.status() {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            println!("vm-guest: {name}: cannot run {bin}: {e}");
            let _ = fs::write(
                dir.join(format!("{name}.log")),
                format!("vm-guest: cannot run {bin}: {e}\n"),
            );
            127
        }
    }
}
