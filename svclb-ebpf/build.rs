use which::which;

/// Rebuild when bpf-linker changes (a new LLVM can change the emitted code). Cargo does
/// not track the linker otherwise.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
