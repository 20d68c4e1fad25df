//! Where the agent pins things under bpffs:
//! `<root>/maps/<MAP_NAME>`, `<root>/links/{tc,xdp}-<ifname>`,
//! `<root>/links/sock-<hook>`, and `<root>/links/tcnl-<ifname>`: a directory marking
//! a netlink TC filter (bpffs holds no plain files; the filter itself is no pin).
use std::path::{Path, PathBuf};

pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/svclb";

#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// TCX link.
    Tc,
    /// Netlink (clsact) filter, marked by a directory.
    TcNetlink,
    Xdp,
    /// A socket program on the cgroup root; the "interface" is its hook (`connect4`).
    Sock,
}

impl Hook {
    /// Every hook whose attachments are listed under the links directory.
    pub const ALL: [Hook; 4] = [Hook::Tc, Hook::TcNetlink, Hook::Xdp, Hook::Sock];

    pub fn prefix(self) -> &'static str {
        match self {
            Hook::Tc => "tc-",
            Hook::TcNetlink => "tcnl-",
            Hook::Xdp => "xdp-",
            Hook::Sock => "sock-",
        }
    }
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PinLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn link(&self, hook: Hook, iface: &str) -> PathBuf {
        self.links_dir().join(format!("{}{iface}", hook.prefix()))
    }
    /// Every svclb map pin in the maps directory, whatever its layout version.
    pub fn pinned_maps(&self) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(self.maps_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<_> = dir
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("SVCLB_"))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Pinned links of `hook`, as (interface name, pin path).
    pub fn pinned_links(&self, hook: Hook) -> Vec<(String, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(self.links_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<_> = dir
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let iface = name.strip_prefix(hook.prefix())?.to_string();
                Some((iface, e.path()))
            })
            .collect();
        out.sort();
        out
    }
}
