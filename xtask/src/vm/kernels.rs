//! Debian's kernels as the VMs boot them: found and downloaded with apt under a private
//! configuration (the host's apt state is untouched, nothing is installed), unpacked
//! once into `target/vm/kernels/<abi>/` and reused by later runs.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::cmd;

/// A kernel ready to boot.
pub struct Kernel {
    /// What the user asked for: `5.10`.
    pub name: String,
    /// The package's ABI: `5.10.0-46-amd64`.
    pub abi: String,
    /// The unpacked package (boot/, lib/modules/<abi>/).
    pub root: PathBuf,
    /// What qemu boots: the ELF vmlinux when it could be extracted, else the bzImage.
    pub image: PathBuf,
}

impl Kernel {
    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules")
    }
}

/// The Debian suites that carry each supported kernel line (plain `amd64` flavour: the
/// `cloud` one has no 9p).
fn suites(name: &str) -> Result<&'static [&'static str]> {
    Ok(match name {
        "5.10" => &["bullseye", "bullseye-updates", "bullseye-security"],
        "6.1" => &["bookworm", "bookworm-updates", "bookworm-security"],
        "6.12" => &["trixie", "trixie-updates", "trixie-security"],
        other => bail!("no Debian suite known for kernel {other} (choose 5.10, 6.1 or 6.12)"),
    })
}

/// The mirror the host's own sources name (the same host is reachable from here).
fn mirror() -> String {
    let mut text = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            if e.path()
                .extension()
                .is_some_and(|x| x == "sources" || x == "list")
            {
                text.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    mirror_in(&text).unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// The Debian archive URL of apt sources text, one-line or deb822 (pure).
pub fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.strip_prefix("URIs:").or_else(|| {
                l.strip_prefix("deb ")
                    .map(|r| r.trim_start_matches(|c| c != 'h'))
            })
        })
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map(|w| w.trim_end_matches('/').to_owned())
}

/// The newest `linux-image-<ABI>-unsigned` of line `name` in an `apt-cache search`
/// listing (pure).
pub fn newest_abi(name: &str, listing: &str) -> Option<String> {
    let mut best: Option<(Vec<u64>, String)> = None;
    for line in listing.lines() {
        let Some(pkg) = line.split_whitespace().next() else {
            continue;
        };
        let Some(abi) = pkg
            .strip_prefix("linux-image-")
            .and_then(|p| p.strip_suffix("-unsigned"))
        else {
            continue;
        };
        // The plain flavour of this line: 5.10.0-46-amd64, 6.12.57+deb13-amd64.
        let Some(version) = abi.strip_suffix("-amd64") else {
            continue;
        };
        if version.contains("cloud") || version.contains("rt") {
            continue;
        }
        let rest = match version.strip_prefix(name) {
            Some(r) if r.starts_with('.') || r.starts_with('-') => r,
            _ => continue,
        };
        let key: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, abi.to_owned()));
        }
    }
    best.map(|(_, abi)| abi)
}

/// Where an XZ or zstd payload of a bzImage may start, in file order (pure). The magic
/// bytes can also occur by chance before the real payload: callers try each in turn.
pub fn payload_offsets(image: &[u8]) -> Vec<(usize, &'static str)> {
    const MAGICS: &[(&[u8], &str)] = &[
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    ];
    let mut found: Vec<(usize, &'static str)> = MAGICS
        .iter()
        .flat_map(|&(magic, tool)| {
            image
                .windows(magic.len())
                .enumerate()
                .filter(move |(_, w)| *w == magic)
                .map(move |(i, _)| (i, tool))
        })
        .collect();
    found.sort();
    found
}

/// Downloads (once) and unpacks kernel line `name` under `cache`.
pub fn prepare(name: &str, cache: &Path) -> Result<Kernel> {
    let apt = AptDir::new(name, cache)?;
    let listing = apt.run("apt-cache", &["search", "^linux-image-.*-amd64-unsigned$"])?;
    let abi = newest_abi(name, &listing).with_context(|| {
        format!(
            "no linux-image-{name}*-amd64-unsigned in {:?}",
            suites(name)
        )
    })?;
    let root = cache.join("kernels").join(&abi);
    let done = root.join(".unpacked");
    if !done.exists() {
        let dl = cache.join("downloads");
        fs::create_dir_all(&dl)?;
        let pkg = format!("linux-image-{abi}-unsigned");
        println!("vm: downloading {pkg}");
        let mut c = apt.command("apt-get");
        c.current_dir(&dl).args(["download", "-q", &pkg]);
        cmd::run(&mut c)?;
        let deb = fs::read_dir(&dl)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
            })
            .with_context(|| format!("{pkg} was not downloaded into {}", dl.display()))?;
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        // trixie ships modules under usr/lib/modules.
        let usr = root.join("usr/lib/modules");
        if usr.exists() && !root.join("lib/modules").exists() {
            fs::create_dir_all(root.join("lib"))?;
            fs::rename(&usr, root.join("lib/modules"))?;
        }
        // The packages carry no modules.dep.
        cmd::run(Command::new("depmod").arg("-b").arg(&root).arg(&abi))?;
        extract_vmlinux(
            &root.join(format!("boot/vmlinuz-{abi}")),
            &root.join("vmlinux"),
        );
        fs::remove_file(&deb).ok();
        fs::write(&done, "")?;
    }
    let vmlinux = root.join("vmlinux");
    let image = if vmlinux.exists() {
        vmlinux
    } else {
        root.join(format!("boot/vmlinuz-{abi}"))
    };
    ensure!(image.exists(), "no kernel image in {}", root.display());
    Ok(Kernel {
        name: name.to_owned(),
        abi,
        root,
        image,
    })
}

/// The ELF inside a bzImage: under TCG, booting it saves the decompression (about half
/// the boot). Best effort: without it qemu boots the bzImage.
fn extract_vmlinux(bzimage: &Path, out: &Path) {
    let Ok(image) = fs::read(bzimage) else { return };
    let tmp = out.with_extension("part");
    for (offset, tool) in payload_offsets(&image) {
        if decompress_to(&image[offset..], tool, &tmp)
            && fs::read(&tmp).is_ok_and(|b| b.len() > 1 << 20 && b.starts_with(b"\x7fELF"))
        {
            fs::rename(&tmp, out).ok();
            return;
        }
    }
    fs::remove_file(&tmp).ok();
}

/// Decompresses `data` with `tool` into `to`; whether the tool ran. Trailing bytes
/// after the stream make the tools complain, so their exit status is not judged: the
/// caller checks for an ELF.
fn decompress_to(data: &[u8], tool: &str, to: &Path) -> bool {
    use std::io::Write as _;
    let Ok(f) = fs::File::create(to) else {
        return false;
    };
    let mut c = Command::new(tool);
    c.args(["-dc", "-q"]);
    if tool == "xz" {
        c.arg("--single-stream");
    }
    let Ok(mut child) = c
        .stdin(std::process::Stdio::piped())
        .stdout(f)
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(data);
    }
    child.wait().is_ok()
}

/// A private apt configuration for one kernel line's suites.
struct AptDir {
    dir: PathBuf,
}

impl AptDir {
    fn new(name: &str, cache: &Path) -> Result<Self> {
        let dir = cache.join("apt").join(name);
        for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let mirror = mirror();
        let security = mirror.replace("/debian", "/debian-security");
        let mut sources = String::new();
        for suite in suites(name)? {
            let base = if suite.ends_with("-security") {
                &security
            } else {
                &mirror
            };
            sources.push_str(&format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {base} {suite} main\n"
            ));
        }
        fs::write(dir.join("sources.list"), sources)?;
        let apt = AptDir { dir };
        // Lists are refreshed once a day at most.
        let stamp = apt.dir.join("updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() < 86_400));
        if !fresh {
            cmd::run(apt.command("apt-get").args(["update", "-q"]))
                .with_context(|| format!("apt-get update for {:?}", suites(name)))?;
            // apt-get update succeeds with warnings when a mirror is unreachable.
            let lists = fs::read_dir(apt.dir.join("lists"))?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"));
            ensure!(
                lists,
                "apt-get update fetched no package lists from {mirror}"
            );
            fs::write(&stamp, "")?;
        }
        Ok(apt)
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        let d = &self.dir;
        for (k, v) in [
            ("Dir::Etc::SourceList", d.join("sources.list")),
            ("Dir::Etc::SourceParts", d.join("sources.list.d")),
            ("Dir::State::Lists", d.join("lists")),
            ("Dir::Cache", d.join("cache")),
        ] {
            c.arg("-o").arg(format!("{k}={}", v.display()));
        }
        // Downloads into a root-owned directory need not drop to _apt.
        c.args(["-o", "APT::Sandbox::User=root"]);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String> {
        let out = self.command(tool).args(args).output()?;
        ensure!(out.status.success(), "{tool} {args:?} failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_plain_abi_of_the_line() {
        let listing = "\
linux-image-5.10.0-45-amd64-unsigned - Linux 5.10 for 64-bit PCs
linux-image-5.10.0-46-amd64-unsigned - Linux 5.10 for 64-bit PCs
linux-image-5.10.0-46-cloud-amd64-unsigned - Linux 5.10 for x86-64 cloud
linux-image-5.10.0-46-rt-amd64-unsigned - Linux 5.10 for 64-bit PCs, PREEMPT_RT
linux-image-6.12.57+deb13-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.9+deb13-amd64-unsigned - Linux 6.12
linux-image-6.1.0-40-amd64-unsigned - Linux 6.1";
        assert_eq!(
            newest_abi("5.10", listing).as_deref(),
            Some("5.10.0-46-amd64")
        );
        assert_eq!(
            newest_abi("6.12", listing).as_deref(),
            Some("6.12.57+deb13-amd64")
        );
        assert_eq!(
            newest_abi("6.1", listing).as_deref(),
            Some("6.1.0-40-amd64")
        );
        assert_eq!(newest_abi("4.19", listing), None);
    }

    #[test]
    fn mirror_from_either_sources_format_ignoring_comments() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025/\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "# deb http://x/debian sid main\ndeb [arch=amd64] http://ftp.de.debian.org/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            mirror_in("deb http://deb.debian.org/debian-security bookworm-security main"),
            None
        );
    }

    #[test]
    fn finds_every_compressed_payload_candidate_in_order() {
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
        let zstd = [0x28, 0xb5, 0x2f, 0xfd];
        let mut img = vec![1u8; 10];
        img.extend_from_slice(&zstd);
        img.extend_from_slice(&[0u8; 86]);
        img.extend_from_slice(&xz);
        img.extend_from_slice(&[0u8; 4]);
        img.extend_from_slice(&xz);
        assert_eq!(
            payload_offsets(&img),
            vec![(10, "zstd"), (100, "xz"), (110, "xz")]
        );
        assert!(payload_offsets(&[0u8; 64]).is_empty());
    }
}
