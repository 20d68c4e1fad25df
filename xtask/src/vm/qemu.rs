//! One qemu run: the kernel, the initramfs, the host's `/` read-only and the results
//! directory writable over 9p, no network card (the tests make their own namespaces).
//! Hardware KVM only where its module is loaded (this machine's /dev/kvm is a
//! paravirtual device that cannot run guests), falling back to TCG when a KVM guest does
//! not boot. qemu never outlives this process: killed on a timeout, an error, Ctrl-C or
//! SIGTERM (and by the kernel, PR_SET_PDEATHSIG, when xtask itself is killed).
use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    initramfs::{OUT_TAG, ROOT_TAG},
    kernels::Kernel,
};

/// How long a guest may take to reach its PID 1 (4–6 s is usual under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn hardware_kvm() -> bool {
    Path::new("/dev/kvm").exists()
        && (Path::new("/sys/module/kvm_intel").exists()
            || Path::new("/sys/module/kvm_amd").exists())
}

/// The signal that interrupted the run (SIGINT, SIGTERM, SIGHUP), 0 while none has.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    INTERRUPTED.store(sig, Ordering::SeqCst);
}

/// Catches Ctrl-C and SIGTERM so the VM loop can kill qemu and report.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// The signal that interrupted the run, if one did.
pub fn interrupted() -> Option<i32> {
    Some(INTERRUPTED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// A running qemu, killed and reaped when dropped.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a VM run went.
pub struct Booted {
    /// From starting qemu to the guest's PID 1 writing `uname`.
    pub boot: Duration,
    /// From starting qemu to its exit.
    pub total: Duration,
    pub accel: &'static str,
}

/// Boots `k` until the guest powers off, at most `timeout`; serial output to `serial`.
/// `progress` is called about five times a second while the guest runs.
pub fn boot(
    k: &Kernel,
    initrd: &Path,
    out: &Path,
    serial: &Path,
    timeout: Duration,
    progress: &mut dyn FnMut(),
) -> Result<Booted> {
    let accels: &[&'static str] = if hardware_kvm() {
        &["kvm", "tcg"]
    } else {
        &["tcg"]
    };
    for (i, &accel) in accels.iter().enumerate() {
        let last = i + 1 == accels.len();
        let _ = fs::remove_file(out.join("uname"));
        let started = Instant::now();
        let mut vm = Vm(command(k, initrd, out, serial, accel)?
            .spawn()
            .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?);
        let mut boot = None;
        loop {
            if let Some(sig) = interrupted() {
                bail!("interrupted by signal {sig}: qemu killed");
            }
            if boot.is_none() && out.join("uname").exists() {
                boot = Some(started.elapsed());
            }
            if let Some(status) = vm.0.try_wait()? {
                let Some(boot) = boot else {
                    bail!(
                        "the guest powered off before it reached the tests ({status}); serial log {}:\n{}",
                        serial.display(),
                        tail(serial)
                    );
                };
                if !status.success() {
                    bail!(
                        "qemu exited with {status} (serial log {})",
                        serial.display()
                    );
                }
                return Ok(Booted {
                    boot,
                    total: started.elapsed(),
                    accel,
                });
            }
            if boot.is_none() && started.elapsed() > BOOT_TIMEOUT {
                drop(vm);
                if !last {
                    println!(
                        "vm {}: no boot with {accel} in {BOOT_TIMEOUT:?}, trying TCG",
                        k.name
                    );
                    break;
                }
                bail!(
                    "the guest did not boot within {BOOT_TIMEOUT:?}: qemu killed; serial log {}:\n{}",
                    serial.display(),
                    tail(serial)
                );
            }
            if started.elapsed() > timeout {
                bail!(
                    "the {} VM did not finish within {timeout:?}: qemu killed (serial log {})",
                    k.name,
                    serial.display()
                );
            }
            progress();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    unreachable!("the last accelerator returns or fails")
}

fn command(k: &Kernel, initrd: &Path, out: &Path, serial: &Path, accel: &str) -> Result<Command> {
    let log = fs::File::create(serial).with_context(|| format!("creating {}", serial.display()))?;
    let mut c = Command::new("qemu-system-x86_64");
    match accel {
        "kvm" => c.args(["-accel", "kvm", "-cpu", "host"]),
        _ => c.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    c.args(["-smp", "2", "-m", "3072"])
        .args(["-nic", "none", "-nographic", "-no-reboot", "-kernel"])
        .arg(&k.image)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-virtfs")
        .arg(format!(
            "local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag={OUT_TAG},security_model=none",
            out.display()
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(c)
}

/// The last lines of the serial log (where a panic or the init script's error is).
fn tail(serial: &Path) -> String {
    let text = fs::read_to_string(serial).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
