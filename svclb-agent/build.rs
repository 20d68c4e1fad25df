use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // Nightly when installed (build-std), else stable with RUSTC_BOOTSTRAP=1, which
    // `cargo xtask setup` exports for machines without nightly.
    let toolchain = if std::env::var_os("RUSTC_BOOTSTRAP").is_some() {
        Toolchain::Custom("stable")
    } else {
        Toolchain::Nightly
    };
    aya_build::build_ebpf(
        [Package {
            name: "svclb-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../svclb-ebpf"),
            ..Default::default()
        }],
        toolchain,
    )
}
