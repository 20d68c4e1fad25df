//! Draws BENCHMARKS.md's plots from the raw results in `bench-results/`:
//! `pktbench.json` → per-packet cost against the number of Services (one line per
//! hook and case, the no-op XDP floor included); `trafficbench.json` → new-connection
//! rate against the number of Services (one line per mode). Text uses DejaVu Sans
//! (Debian `fonts-dejavu-core`, installed by `cargo xtask setup`).
//! `benchplot DIR` writes `DIR/per-packet.png` and `DIR/conn-rate.png` (the latter only
//! when trafficbench ran).
use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};
use plotters::{prelude::*, style::FontStyle};
use serde_json::Value;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 600);

/// (x = Services, y) points of one line.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn load(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A log-x line chart, one colour per series, legend at the upper left.
fn chart(out: &Path, title: &str, y_label: &str, series: &Series) -> Result<()> {
    let points = series.values().flatten();
    let (x_max, y_max) = points.fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    if series.is_empty() || y_max <= 0.0 {
        bail!("{title}: nothing to plot");
    }
    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((1.0f64..x_max * 2.0).log_scale(), 0.0f64..y_max * 1.15)?;
    c.configure_mesh()
        .x_desc("Services")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).stroke_width(2);
        c.draw_series(LineSeries::new(pts.iter().copied(), color))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Median ns per packet by `hook case` over the Service counts.
fn per_packet(v: &Value) -> Series {
    let mut s = Series::new();
    for r in v["results"].as_array().into_iter().flatten() {
        let (Some(n), Some(hook), Some(case), Some(ns)) = (
            r["services"].as_f64(),
            r["hook"].as_str(),
            r["case"].as_str(),
            r["median_ns"].as_f64(),
        ) else {
            continue;
        };
        s.entry(format!("{hook} {case}")).or_default().push((n, ns));
    }
    s
}

/// Median connections per second by mode over the Service counts.
fn conn_rate(v: &Value) -> Series {
    let mut s = Series::new();
    for r in v.as_array().into_iter().flatten() {
        let (Some(n), Some(mode), Some(rate)) = (
            r["services"].as_f64(),
            r["mode"].as_str(),
            r["conn_per_s"][1].as_f64(),
        ) else {
            continue;
        };
        s.entry(mode.to_string()).or_default().push((n, rate));
    }
    s
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: benchplot DIR (with the bench JSON files)")?;
    let dir = Path::new(&dir);
    let font = std::fs::read(FONT).with_context(|| format!("{FONT} (Debian fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT}: not a usable font"))?;

    let pkt = per_packet(&load(&dir.join("pktbench.json"))?);
    chart(
        &dir.join("per-packet.png"),
        "Per-packet cost (BPF_PROG_TEST_RUN, median)",
        "ns per packet",
        &pkt,
    )?;
    println!("benchplot: {}", dir.join("per-packet.png").display());
    let traffic = dir.join("trafficbench.json");
    if traffic.exists() {
        let rate = conn_rate(&load(&traffic)?);
        chart(
            &dir.join("conn-rate.png"),
            "New connections per second through a ClusterIP (median)",
            "connections / s",
            &rate,
        )?;
        println!("benchplot: {}", dir.join("conn-rate.png").display());
    }
    Ok(())
}
