//! The guest's initramfs: static busybox and the kernel's own 9p/virtio/overlay modules;
//! `/init` mounts the host's `/` read-only over 9p under a tmpfs overlay (so the host's
//! binaries run unchanged and the guest may write anywhere) and the writable results
//! share, then switches root and runs `xtask vm-guest`.
use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result, ensure};

use super::kernels::Kernel;

/// The 9p tags qemu exports (see qemu.rs).
pub const ROOT_TAG: &str = "hostroot";
pub const OUT_TAG: &str = "vmout";
/// Where the results share is mounted in the guest.
pub const GUEST_OUT: &str = "/vmout";

const MODULES: &[&str] = &["9pnet_virtio", "9p", "overlay", "virtio_pci"];

/// The insmod order for `MODULES` with their dependencies (modprobe --show-depends),
/// as paths under the kernel's modules directory; built-in ones are skipped.
fn module_files(k: &Kernel) -> Result<Vec<std::path::PathBuf>> {
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    for m in MODULES {
        let o = Command::new("modprobe")
            .arg("-d")
            .arg(&k.root)
            .args(["-S", &k.abi, "--show-depends", m])
            .output()
            .context("running modprobe (kmod)")?;
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                let p = std::path::PathBuf::from(path.trim());
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    Ok(out)
}

/// Copies a module, decompressed: busybox's insmod first hands the file as it is to
/// the kernel, which logs "Invalid ELF header magic" for a compressed one (6.12's
/// `.ko.xz`) before busybox retries.
fn copy_module(from: &Path, to: &Path) -> Result<()> {
    let tool = match from.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        _ => {
            fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
            return Ok(());
        }
    };
    let out = fs::File::create(to)?;
    let status = Command::new(tool)
        .args(["-dc", "-q"])
        .arg(from)
        .stdout(out)
        .status()
        .with_context(|| format!("running {tool} (apt-get install xz-utils zstd)"))?;
    ensure!(status.success(), "{tool} -dc {} failed", from.display());
    Ok(())
}

/// Builds `<dir>/initrd.gz` for kernel `k`, whose guest then runs `guest_cmd`.
pub fn build(k: &Kernel, dir: &Path, guest_cmd: &str) -> Result<std::path::PathBuf> {
    let tree = dir.join("initrd");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("bin"))?;
    fs::create_dir_all(tree.join("mods"))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no busybox (apt-get install busybox-static)")?;
    fs::copy(busybox, tree.join("bin/busybox"))?;
    let mut loads = String::new();
    for (i, m) in module_files(k)?.iter().enumerate() {
        let name = format!("{i:02}.ko");
        copy_module(m, &tree.join("mods").join(&name))?;
        loads.push_str(&format!(
            "$B insmod /mods/{name} || echo \"vm init: insmod {} failed\"\n",
            m.display()
        ));
    }
    let init = format!(
        r#"#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /lower /upper /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
fail() {{ echo "vm init: $1 failed"; $B poweroff -f; }}
{loads}$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose {ROOT_TAG} /lower || fail "mounting the host root (9p)"
$B mount -t tmpfs tmpfs /upper
$B mkdir -p /upper/u /upper/w
$B mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || fail "the overlay on the host root"
$B mkdir -p /newroot{GUEST_OUT}
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {OUT_TAG} /newroot{GUEST_OUT} || fail "mounting the results share (9p)"
$B umount /proc /sys
exec $B switch_root /newroot {guest_cmd}
fail "switch_root"
"#
    );
    let init_path = tree.join("init");
    fs::write(&init_path, init)?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755))?;
    let out = dir.join("initrd.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            tree.display(),
            out.display()
        ))
        .status()
        .context("running cpio (apt-get install cpio)")?;
    ensure!(status.success(), "building the initramfs failed");
    Ok(out)
}
