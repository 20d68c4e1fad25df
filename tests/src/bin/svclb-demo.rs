//! The sandbox demo behind `cargo xtask demo` (see svclb_tests::demo). Needs root.
fn main() -> anyhow::Result<()> {
    svclb_tests::demo::run()
}
