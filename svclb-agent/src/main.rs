fn main() {
    println!("{} bytes of eBPF", svclb_agent::EBPF_OBJECT.len());
}
