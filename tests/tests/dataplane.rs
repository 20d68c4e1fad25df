//! The eBPF dataplane backend against the real kernel, without traffic: pinning,
//! delta writes, adoption by a restarted agent, dump, and cleanup leaving nothing.
//! Needs root (CAP_BPF) and bpffs at /sys/fs/bpf.
use std::path::PathBuf;

use svclb_agent::{
    dataplane::{
        Dataplane,
        ebpf::{EbpfDataplane, EbpfOptions, cleanup},
    },
    dump,
    model::DesiredState,
};
use svclb_tests::synthetic;

struct Pins(PathBuf);

impl Pins {
    fn new(tag: &str) -> Self {
        Pins(PathBuf::from(format!(
            "/sys/fs/bpf/svclb-test-{}-{tag}",
            std::process::id()
        )))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = cleanup(&self.0);
    }
}

fn opts(p: &Pins) -> EbpfOptions {
    EbpfOptions {
        bpffs: p.0.clone(),
        tc_ifaces: vec![],
        xdp_ifaces: vec![],
        xdp_mode: aya::programs::XdpMode::Skb,
        debug_log: false,
        socket_lb: None,
        proc_sys: Default::default(),
        kernel_features: Default::default(),
    }
}

#[test]
fn sync_adopt_dump_cleanup() {
    let pins = Pins::new("dp");
    let desired = synthetic::state(50, 3);
    {
        let mut dp = EbpfDataplane::start(&opts(&pins)).expect("start");
        let r = dp.sync(&desired).unwrap();
        // 50 frontends + 150 slots + 150 backends + 50 names.
        assert_eq!(r.writes, 400);
        assert_eq!(
            dp.sync(&desired).unwrap().writes,
            0,
            "re-applying writes nothing"
        );
    }
    // A restarted agent adopts the pins: nothing to write.
    {
        let mut dp = EbpfDataplane::start(&opts(&pins)).expect("restart");
        assert_eq!(
            dp.sync(&desired).unwrap().writes,
            0,
            "adoption must not rewrite"
        );
        let view = dump::read(&pins.0).unwrap();
        assert_eq!(view.frontends.len(), 50);
        let fe = view
            .frontends
            .iter()
            .find(|f| f.service == "bench/svc-7:http/TCP")
            .unwrap();
        assert_eq!(fe.address, synthetic::vip(7));
        assert_eq!(fe.backend_count, 3);
        let addrs: Vec<_> = fe.backends.iter().map(|b| b.address).collect();
        assert_eq!(
            addrs,
            (0..3)
                .map(|j| synthetic::endpoint_ip(7, j))
                .collect::<Vec<_>>()
        );

        // Remove a Service and one endpoint of another.
        let mut smaller = desired.clone();
        smaller.sets.remove(&synthetic::set_key(3));
        smaller
            .sets
            .get_mut(&synthetic::set_key(4))
            .unwrap()
            .endpoints
            .pop();
        let r = dp.sync(&smaller).unwrap();
        // svc-3: 1 frontend + 3 slots + 3 backends + 1 name; svc-4: 1 count + 1 slot + 1 backend.
        assert_eq!(r.writes, 8 + 3);
        let view = dump::read(&pins.0).unwrap();
        assert_eq!(view.frontends.len(), 49);
        assert!(
            view.frontends
                .iter()
                .all(|f| f.service != "bench/svc-3:http/TCP")
        );
        let fe4 = view
            .frontends
            .iter()
            .find(|f| f.service == "bench/svc-4:http/TCP")
            .unwrap();
        assert_eq!(fe4.backends.len(), 2);
        // Everything removed: the maps are empty (catches leaked entries).
        dp.sync(&DesiredState::default()).unwrap();
        let view = dump::read(&pins.0).unwrap();
        assert!(view.frontends.is_empty());
        let text = dump::render_text(&view);
        assert!(text.contains("0 frontends"), "{text}");
    }
    cleanup(&pins.0).unwrap();
    assert!(!pins.0.exists(), "cleanup leaves no pins");
}

/// A map pinned by an older agent under a layout version this one no longer uses is
/// removed on start, and by cleanup.
#[test]
fn pins_of_older_map_layouts_are_removed() {
    let pins = Pins::new("old");
    drop(EbpfDataplane::start(&opts(&pins)).expect("start"));
    // Pin some map under a name of the past (what an older agent left behind).
    let old = pins.0.join("maps").join("SVCLB_CNT_V0");
    pin_old_layout(&pins, &old);
    assert!(old.exists());
    drop(EbpfDataplane::start(&opts(&pins)).expect("restart"));
    assert!(
        !old.exists(),
        "a restarted agent removes pins of older layouts"
    );
    pin_old_layout(&pins, &old);
    cleanup(&pins.0).unwrap();
    assert!(!pins.0.exists(), "cleanup removes every version");
}

fn pin_old_layout(pins: &Pins, old: &std::path::Path) {
    let current = pins.0.join("maps").join(svclb_common::MAP_CONFIG);
    aya::maps::MapData::from_pin(current)
        .unwrap()
        .pin(old)
        .unwrap();
}
