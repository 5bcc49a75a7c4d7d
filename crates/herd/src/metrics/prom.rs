//! `/metrics`: the board's view in the Prometheus text format (version 0.0.4), encoded by
//! prometheus-client from a collector that reads one [`View`] per scrape.
//!
//! prometheus-client (the Prometheus project's Rust client) over the `metrics` facade: the
//! numbers already exist, merged across workers, when a scrape comes; a custom collector
//! encodes them as they are (constant counters, gauges and a histogram from its bucket
//! counts), with no global recorder and no HTTP stack pulled in (the exporter crate brings
//! hyper and tokio, which the primary does not run).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::board::View;
use super::local::BUCKETS;
use super::RestartReason;

#[derive(Debug)]
struct Collect(View);

type R = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> R {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> R {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter family with one label.
fn counters(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (String, u64)>,
) -> R {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (l, v) in values {
        ConstCounter::new(v).encode(m.encode_family(&[(label, l)])?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> R {
        let v = &self.0;
        let t = &v.totals;
        const CLASS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        counters(
            &mut e,
            "herd_requests",
            "HTTP requests answered, by status class.",
            "class",
            CLASS
                .iter()
                .zip(t.by_class)
                .map(|(c, n)| (c.to_string(), n)),
        )?;
        counters(
            &mut e,
            "herd_slot_requests",
            "HTTP requests answered, by worker slot (every worker the slot had).",
            "slot",
            v.slots
                .iter()
                .map(|(s, sv)| (s.to_string(), sv.totals.requests())),
        )?;
        {
            let mut m = e.encode_descriptor(
                "herd_request_duration_seconds",
                "Time from a request's arrival to its answer.",
                None,
                MetricType::Histogram,
            )?;
            let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(t.buckets).collect();
            buckets.push((f64::INFINITY, t.buckets[BUCKETS.len()]));
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                t.duration_ns as f64 / 1e9,
                t.buckets.iter().sum(),
                &buckets,
                None,
            )?;
        }
        gauge(
            &mut e,
            "herd_connections_open",
            "Connections open in the workers.",
            v.open as i64,
        )?;
        counter(
            &mut e,
            "herd_connections",
            "Connections served (accepted, handed over or adopted).",
            t.connections,
        )?;
        counter(
            &mut e,
            "herd_received_bytes",
            "Bytes read from clients.",
            t.bytes_in,
        )?;
        counter(
            &mut e,
            "herd_sent_bytes",
            "Bytes written to clients.",
            t.bytes_out,
        )?;
        for (name, help, pick) in [
            (
                "herd_listen_queue_length",
                "Connections waiting in a slot's accept queue (TCP_INFO tcpi_unacked).",
                1,
            ),
            (
                "herd_listen_queue_backlog",
                "The accept queue's limit (TCP_INFO tcpi_sacked).",
                2,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (slot, sv) in &v.slots {
                for (addr, q, b) in &sv.queues {
                    let n = if pick == 1 { *q } else { *b };
                    ConstGauge::new(i64::from(n)).encode(m.encode_family(&[
                        ("slot", slot.to_string()),
                        ("address", addr.to_string()),
                    ])?)?;
                }
            }
        }
        if let Some((overflows, drops)) = listen_drops() {
            counter(
                &mut e,
                "herd_listen_overflows",
                "Accept queue overflows in this network namespace (/proc/net/netstat ListenOverflows).",
                overflows,
            )?;
            counter(
                &mut e,
                "herd_listen_drops",
                "SYNs dropped by listeners in this network namespace (/proc/net/netstat ListenDrops).",
                drops,
            )?;
        }
        counters(
            &mut e,
            "herd_restarts",
            "Workers replaced, by reason.",
            "reason",
            RestartReason::ALL
                .into_iter()
                .filter(|r| *r != RestartReason::Stop)
                .map(|r| (r.as_str().to_string(), v.restarts[r as usize])),
        )?;
        gauge(
            &mut e,
            "herd_reload_generation",
            "Rolling reloads started since the primary started.",
            v.generation as i64,
        )?;
        counters(
            &mut e,
            "herd_reloads",
            "Rolling reloads that ended, by result (failed: stopped and rolled back).",
            "result",
            [
                ("ok".to_string(), v.reloads[0]),
                ("failed".to_string(), v.reloads[1]),
            ],
        )?;
        if let Some((r, _)) = &v.last_reload {
            gauge(
                &mut e,
                "herd_last_reload_success",
                "1 when the last rolling reload completed, 0 when it rolled back.",
                i64::from(r.is_ok()),
            )?;
        }
        gauge(
            &mut e,
            "herd_workers",
            "Worker processes alive.",
            v.workers.len() as i64,
        )?;
        gauge(
            &mut e,
            "herd_workers_target",
            "Workers the cluster aims at.",
            v.target as i64,
        )?;
        gauge(
            &mut e,
            "herd_slots_down",
            "Slots without a worker, waiting out a crash backoff.",
            v.slots.values().filter(|s| s.down.is_some()).count() as i64,
        )?;
        {
            let mut m = e.encode_descriptor(
                "herd_worker_resident_memory_bytes",
                "Resident memory of a slot's live workers.",
                None,
                MetricType::Gauge,
            )?;
            for slot in v.slots.keys() {
                let rss: u64 = v
                    .workers
                    .iter()
                    .filter(|w| w.slot == *slot)
                    .map(|w| w.rss)
                    .sum();
                ConstGauge::new(rss as i64)
                    .encode(m.encode_family(&[("slot", slot.to_string())])?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "herd_worker_cpu_seconds",
                "CPU time (user + system) of every worker a slot had.",
                None,
                MetricType::Counter,
            )?;
            for (slot, sv) in &v.slots {
                ConstCounter::new(sv.cpu_seconds)
                    .encode(m.encode_family(&[("slot", slot.to_string())])?)?;
            }
        }
        counters(
            &mut e,
            "herd_ipc_messages",
            "IPC messages between the primary and its workers, by direction.",
            "direction",
            [
                ("from_workers".to_string(), v.ipc_in),
                ("to_workers".to_string(), v.ipc_out),
            ],
        )?;
        Ok(())
    }
}

/// ListenOverflows and ListenDrops from /proc/net/netstat.
fn listen_drops() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |k: &str| {
        let i = names.iter().position(|n| *n == k)?;
        values.get(i)?.parse().ok()
    };
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

/// The metrics as Prometheus text.
pub(crate) fn render(view: &View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(view.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        tracing::warn!("could not encode the metrics");
    }
    out
}
