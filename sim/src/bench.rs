//! `dvt-sim bench`: the simulated API server's own ceiling, measured through kube-rs as the
//! operator uses it. Later benchmarks of the operator are read against these figures.
//!
//! Figures are printed, one per line, never asserted: timing depends on the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

use crate::{SimError, SimOptions, SimServer};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Objects created (ConfigMaps of about 200 bytes, as the operator's smaller objects).
    pub objects: usize,
    /// Requests in flight at once, as a controller's concurrency.
    pub concurrency: usize,
    /// Timed full lists of all objects.
    pub lists: usize,
    /// Watchers open at once for the fan-out figure.
    pub watchers: usize,
    /// Writes each watcher must see in the fan-out figure.
    pub fan_out_writes: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            objects: 10_000,
            concurrency: 16,
            lists: 20,
            watchers: 100,
            fan_out_writes: 1_000,
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("{what} failed: {source}")]
    Api {
        what: &'static str,
        source: kube::Error,
    },
    #[error("a list returned {listed} of the {created} objects created")]
    ListIncomplete { listed: usize, created: usize },
    #[error("watcher {watcher} saw {seen} of {expected} events before the deadline")]
    WatchIncomplete {
        watcher: usize,
        seen: usize,
        expected: usize,
    },
}

fn api_error(what: &'static str) -> impl Fn(kube::Error) -> BenchError {
    move |source| BenchError::Api { what, source }
}

/// One printed figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<32} {:>12.2} {}", self.name, self.value, self.unit)
    }
}

fn config_map(name: String, size: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some([("bench".to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some([("payload".to_owned(), "x".repeat(size))].into()),
        ..ConfigMap::default()
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a simulator, measures it, stops it, and returns the figures in print order.
pub async fn run(options: &BenchOptions) -> Result<Vec<Figure>, BenchError> {
    let server = SimServer::start(SimOptions {
        // Keep every event so that no watcher of the fan-out figure is sent 410 Gone.
        history: options.objects * 3 + options.fan_out_writes + 1_000,
        ..SimOptions::default()
    })
    .await?;
    let client = server.client()?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut figures = Vec::new();

    // 1. Sustained creates, then merge patches, at the given concurrency.
    for (name, patch) in [("creates", false), ("merge patches", true)] {
        let started = Instant::now();
        stream::iter(0..options.objects)
            .map(|i| {
                let api = api.clone();
                async move {
                    let name = format!("bench-{i:05}");
                    if patch {
                        let body = serde_json::json!({"data": {"payload": "y".repeat(200)}});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                            .await
                            .map(drop)
                    } else {
                        api.create(&PostParams::default(), &config_map(name, 200))
                            .await
                            .map(drop)
                    }
                }
            })
            .buffer_unordered(options.concurrency)
            .try_collect::<Vec<()>>()
            .await
            .map_err(api_error("a write"))?;
        let elapsed = started.elapsed();
        figures.push(Figure {
            name: if name == "creates" {
                "writes/s (create)"
            } else {
                "writes/s (merge patch)"
            },
            value: options.objects as f64 / elapsed.as_secs_f64(),
            unit: "per second",
        });
    }

    // 2. List latency: every object, and a selective label selector over the same set.
    let mut samples = Vec::with_capacity(options.lists);
    for _ in 0..options.lists {
        let started = Instant::now();
        let listed = api
            .list(&ListParams::default())
            .await
            .map_err(api_error("a list"))?;
        samples.push(started.elapsed());
        if listed.items.len() != options.objects {
            return Err(BenchError::ListIncomplete {
                listed: listed.items.len(),
                created: options.objects,
            });
        }
    }
    samples.sort();
    figures.push(Figure {
        name: "list all, median",
        value: millis(percentile(&samples, 50.0)),
        unit: "ms",
    });
    figures.push(Figure {
        name: "list all, p99",
        value: millis(percentile(&samples, 99.0)),
        unit: "ms",
    });
    let mut selective = Vec::with_capacity(options.lists);
    for _ in 0..options.lists {
        let started = Instant::now();
        api.list(&ListParams::default().labels("bench=none"))
            .await
            .map_err(api_error("a selective list"))?;
        selective.push(started.elapsed());
    }
    selective.sort();
    figures.push(Figure {
        name: "list by label (0 match), median",
        value: millis(percentile(&selective, 50.0)),
        unit: "ms",
    });

    // 3. Watch fan-out: `watchers` streams from the current resourceVersion, then writes; the
    //    figure is how long until every watcher has seen every write.
    let resource_version = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(api_error("a list for the watch start"))?
        .metadata
        .resource_version
        .unwrap_or_default();
    let expected = options.fan_out_writes;
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::with_capacity(options.watchers);
    for watcher in 0..options.watchers {
        let mut events = api
            .watch(&WatchParams::default(), &resource_version)
            .await
            .map_err(api_error("a watch"))?
            .boxed();
        let delivered = delivered.clone();
        watchers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < expected {
                match tokio::time::timeout(Duration::from_secs(120), events.next()).await {
                    Ok(Some(Ok(WatchEvent::Modified(_)))) => {
                        seen += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) | Err(_) => break,
                }
            }
            (watcher, seen)
        }));
    }
    let started = Instant::now();
    stream::iter(0..expected)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("bench-{:05}", i % options.objects.max(1));
                let body = serde_json::json!({"data": {"payload": format!("fan-out-{i}")}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(options.concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map_err(api_error("a fan-out write"))?;
    let writes_done = started.elapsed();
    for handle in watchers {
        let (watcher, seen) = handle.await.unwrap_or((usize::MAX, 0));
        if seen < expected {
            return Err(BenchError::WatchIncomplete {
                watcher,
                seen,
                expected,
            });
        }
    }
    let all_seen = started.elapsed();
    let events = delivered.load(Ordering::Relaxed);
    figures.push(Figure {
        name: "watch fan-out: watchers",
        value: options.watchers as f64,
        unit: "streams",
    });
    figures.push(Figure {
        name: "watch fan-out: writes/s",
        value: expected as f64 / writes_done.as_secs_f64(),
        unit: "per second",
    });
    figures.push(Figure {
        name: "watch fan-out: events/s",
        value: events as f64 / all_seen.as_secs_f64(),
        unit: "delivered per second",
    });
    figures.push(Figure {
        name: "watch fan-out: lag after writes",
        value: millis(all_seen.saturating_sub(writes_done)),
        unit: "ms",
    });
    server.stop().await;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    /// A tiny run proves every figure is produced and plausible (not timed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_produces_every_figure() {
        let figures = run(&BenchOptions {
            objects: 50,
            concurrency: 4,
            lists: 3,
            watchers: 3,
            fan_out_writes: 20,
        })
        .await
        .unwrap();
        let names: Vec<&str> = figures.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "writes/s (create)",
                "writes/s (merge patch)",
                "list all, median",
                "list all, p99",
                "list by label (0 match), median",
                "watch fan-out: watchers",
                "watch fan-out: writes/s",
                "watch fan-out: events/s",
                "watch fan-out: lag after writes",
            ]
        );
        assert!(
            figures
                .iter()
                .all(|f| f.value.is_finite() && f.value >= 0.0)
        );
        assert!(figures[0].value > 0.0 && figures[1].value > 0.0);
    }
}
