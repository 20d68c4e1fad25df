//! A manifest directory as a live source: polled, re-read when its fingerprint changes.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{error, warn};

use crate::{
    metrics::Metrics,
    source::{
        Objects,
        change::Change,
        manifests::{dir_fingerprint, load_dir},
    },
};

pub struct ManifestSource {
    dir: PathBuf,
    tick: Interval,
    last_fp: Option<u64>,
    loaded: bool,
    objects: Objects,
    metrics: Metrics,
}

impl ManifestSource {
    pub fn new(dir: &Path, poll: Duration, metrics: Metrics) -> Self {
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ManifestSource {
            dir: dir.to_owned(),
            tick,
            last_fp: None,
            loaded: false,
            objects: Objects::default(),
            metrics,
        }
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The next change of the directory's content. Cancel-safe.
    pub async fn next(&mut self) -> Change {
        loop {
            self.tick.tick().await;
            let fp = match dir_fingerprint(&self.dir) {
                Ok(fp) => fp,
                Err(e) => {
                    warn!(dir = %self.dir.display(), error = %e, "cannot read the manifests directory");
                    continue;
                }
            };
            if self.last_fp == Some(fp) {
                continue;
            }
            self.last_fp = Some(fp);
            let noticed = Instant::now();
            let (objects, errors) = match load_dir(&self.dir) {
                Ok(x) => x,
                Err(e) => {
                    error!(error = %e, "cannot load manifests; the data path is left as it is");
                    continue;
                }
            };
            for e in &errors {
                error!("{e}");
                self.metrics.object_error(e.metric_label());
            }
            self.objects = objects;
            let first = !std::mem::replace(&mut self.loaded, true);
            return Change::Changed {
                noticed: (!first).then_some(noticed),
                triggered: Vec::new(),
            };
        }
    }
}
