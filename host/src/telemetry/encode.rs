//! The two forms of `/v1/metrics`, byte for byte as Nomad writes them.
//!
//! JSON is go-metrics' in-memory display (`Timestamp`, `Gauges`, `Points`, `Counters`,
//! `Samples`; each entry with `Name`, `Labels` as a map and its value or aggregate), with
//! Nomad's sorted keys, entries sorted by go-metrics' aggregation key (the name, then
//! `;label=value` in emission order) and float32 gauge values in their shortest form. The
//! Prometheus form is what Nomad's go-metrics sink hands to client_golang's text encoder (format
//! 0.0.4): names with `.`, `-`, `/`, `=` and spaces turned into `_`, `# HELP` repeating the
//! name, families sorted by name, series by label values, floats in Go's `%g` shortest form.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::own::{Distribution, LATENCY_BUCKETS};
use super::{Metric, Value};
use crate::api::wire;

/// The content type client_golang gives the text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Display<'a> {
    counters: Option<Vec<Sampled<'a>>>,
    gauges: Vec<Gauge<'a>>,
    points: [(); 0],
    samples: Option<Vec<Sampled<'a>>>,
    timestamp: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Gauge<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    name: &'a str,
    value: f64,
}

/// go-metrics' `SampledValue`: an aggregate of the values recorded.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Sampled<'a> {
    count: u64,
    labels: BTreeMap<&'a str, &'a str>,
    max: f64,
    mean: f64,
    min: f64,
    name: &'a str,
    rate: f64,
    stddev: f64,
    sum: f64,
}

/// go-metrics' aggregation key, the display's sort order.
fn hash(metric: &Metric) -> String {
    let mut key = metric.name.to_string();
    for (name, value) in metric.labels.iter() {
        let _ = write!(key, ";{name}={value}");
    }
    key
}

fn labels(metric: &Metric) -> BTreeMap<&str, &str> {
    metric.labels.iter().map(|(name, value)| (*name, &**value)).collect()
}

/// A float32 as Go's JSON encoder writes it: the shortest digits that read back as that float32.
fn float32(value: f32) -> f64 {
    value.to_string().parse().unwrap_or_default()
}

fn sampled<'a>(metric: &'a Metric, aggregate: &Distribution, seconds: f64) -> Sampled<'a> {
    let count = aggregate.count as f64;
    let variance = count * aggregate.sum_squares - aggregate.sum * aggregate.sum;
    let stddev = if aggregate.count > 1 { (variance / (count * (count - 1.0))).max(0.0).sqrt() } else { 0.0 };
    Sampled {
        count: aggregate.count,
        labels: labels(metric),
        max: aggregate.max,
        mean: if aggregate.count == 0 { 0.0 } else { aggregate.sum / count },
        min: aggregate.min,
        name: &metric.name,
        rate: aggregate.sum / seconds.max(1.0),
        stddev,
        sum: aggregate.sum,
    }
}

/// The JSON display; `timestamp` is Go's `time.String()` of the interval shown, `seconds` the
/// time the cumulative counters and samples cover (for their `Rate`).
pub fn json(metrics: &[Metric], timestamp: &str, seconds: f64, pretty: bool) -> Vec<u8> {
    let mut sorted: Vec<(String, &Metric)> = metrics.iter().map(|metric| (hash(metric), metric)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for (_, metric) in sorted {
        match &metric.value {
            Value::Gauge(value) => {
                gauges.push(Gauge { labels: labels(metric), name: &metric.name, value: float32(*value) })
            }
            Value::Counter(count) => {
                let ones = Distribution {
                    count: *count,
                    sum: *count as f64,
                    sum_squares: *count as f64,
                    min: 1.0,
                    max: 1.0,
                    ..Distribution::default()
                };
                counters.push(sampled(metric, &ones, seconds));
            }
            Value::Distribution(aggregate) => samples.push(sampled(metric, aggregate, seconds)),
        }
    }
    let display = Display {
        counters: (!counters.is_empty()).then_some(counters),
        gauges,
        points: [],
        samples: (!samples.is_empty()).then_some(samples),
        timestamp,
    };
    wire::to_json(&display, pretty)
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as client_golang writes sample values.
pub fn go_float(value: f64) -> String {
    let mut out = String::new();
    push_go_float(&mut out, value);
    out
}

/// Appends [`go_float`]'s text: the shortest digits (Rust's `{:e}`, formatted on the stack),
/// placed as Go's 'g' places them.
fn push_go_float(out: &mut String, value: f64) {
    if value.is_nan() {
        return out.push_str("NaN");
    }
    if value.is_infinite() {
        return out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    }
    if value == 0.0 {
        return out.push('0');
    }
    let mut buffer = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{:e}", value.abs()));
    let written = cursor.position() as usize;
    let scientific = std::str::from_utf8(&buffer[..written]).unwrap_or("0e0");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value < 0.0 {
        out.push('-');
    }
    // Shortest 'g' switches to an exponent below 1e-4 and from 1e6 on.
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.abs());
        return;
    }
    // The digits are the mantissa's first character and what follows its decimal point.
    let (first, rest) = mantissa.split_at(1);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if exponent < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(first);
        out.push_str(rest);
        return;
    }
    let (whole, fraction) = rest.split_at(rest.len().min(exponent as usize));
    out.push_str(first);
    out.push_str(whole);
    out.extend(std::iter::repeat_n('0', exponent as usize - whole.len()));
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
}

/// The name Prometheus sees: go-metrics' prometheus sink replaces these characters with `_`.
fn prometheus_name(name: &str) -> String {
    name.chars().map(|c| if matches!(c, ' ' | '.' | '=' | '-' | '/') { '_' } else { c }).collect()
}

fn push_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        return out.push_str(value);
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

/// `name{a="1",b="2"}` with `labels` already sorted by name and `extra` (a histogram's `le`) last.
fn push_series_name(out: &mut String, name: &str, suffix: &str, labels: &[(&str, &str)], extra: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let extra = extra.map(|le| ("le", le));
    for (i, (label, value)) in labels.iter().copied().chain(extra).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        push_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// The positions of a metric's labels in name order; one is shared by every series that has
/// the same label names in the same order (all of a family, as allocd emits them).
fn name_order(metric: &Metric) -> Vec<usize> {
    let mut order: Vec<usize> = (0..metric.labels.len()).collect();
    order.sort_by_key(|&i| metric.labels[i].0);
    order
}

/// A family's series, each with the index of its label order in `orders`.
#[derive(Default)]
struct Family<'a> {
    orders: Vec<Vec<usize>>,
    series: Vec<(&'a Metric, usize)>,
}

impl<'a> Family<'a> {
    fn add(&mut self, metric: &'a Metric) {
        let same_names = |(first, _): &(&Metric, usize)| {
            first.labels.len() == metric.labels.len()
                && first.labels.iter().zip(metric.labels.iter()).all(|(a, b)| a.0 == b.0)
        };
        let order = match self.series.iter().find(|series| same_names(series)) {
            Some((_, order)) => *order,
            None => {
                self.orders.push(name_order(metric));
                self.orders.len() - 1
            }
        };
        self.series.push((metric, order));
    }

    /// Label values in name order, the sort key client_golang uses within a family.
    fn values(&self, (metric, order): &(&'a Metric, usize)) -> impl Iterator<Item = &'a str> {
        self.orders[*order].iter().map(move |&i| &*metric.labels[i].1)
    }
}

/// The text exposition format 0.0.4.
pub fn prometheus(metrics: &[Metric]) -> String {
    // Grouped by dotted name first, so each family's Prometheus name is built once.
    let mut by_name: HashMap<&str, Family> = HashMap::new();
    for metric in metrics {
        by_name.entry(&metric.name).or_default().add(metric);
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (name, group) in by_name {
        let family = families.entry(prometheus_name(name)).or_default();
        for (metric, _) in group.series {
            family.add(metric);
        }
    }
    let mut out = String::with_capacity(metrics.len() * 128);
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for (name, mut family) in families {
        let mut series = std::mem::take(&mut family.series);
        series.sort_by(|a, b| family.values(a).cmp(family.values(b)));
        let kind = match series[0].0.value {
            Value::Gauge(_) => "gauge",
            Value::Counter(_) => "counter",
            Value::Distribution(_) => "histogram",
        };
        let _ = write!(out, "# HELP {name} {name}\n# TYPE {name} {kind}\n");
        for (metric, order) in series {
            labels.clear();
            labels.extend(family.orders[order].iter().map(|&i| (metric.labels[i].0, &*metric.labels[i].1)));
            push_series(&mut out, &name, &labels, &metric.value);
        }
    }
    out
}

fn push_series(out: &mut String, name: &str, labels: &[(&str, &str)], value: &Value) {
    let mut line = |suffix: &str, extra: Option<&str>, value: f64| {
        push_series_name(out, name, suffix, labels, extra);
        out.push(' ');
        push_go_float(out, value);
        out.push('\n');
    };
    match value {
        Value::Gauge(value) => line("", None, f64::from(*value)),
        Value::Counter(count) => line("", None, *count as f64),
        Value::Distribution(aggregate) => {
            for (bound, count) in LATENCY_BUCKETS.iter().zip(aggregate.buckets) {
                line("_bucket", Some(&go_float(*bound)), count as f64);
            }
            line("_bucket", Some("+Inf"), aggregate.count as f64);
            line("_sum", None, aggregate.sum);
            line("_count", None, aggregate.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn floats_read_like_go() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1_000_000.0, "1e+06"),
            (16_777_216_000.0, "1.6777216e+10"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (123456.0, "123456"),
            (0.000123, "0.000123"),
            (1.5e-7, "1.5e-07"),
            (4096.0, "4096"),
            (f64::from(33.33f32), "33.33000183105469"),
        ];
        for (value, text) in cases {
            assert_eq!(go_float(value), text, "{value}");
        }
    }

    fn gauge(name: &str, labels: &[(&'static str, &str)], value: f32) -> Metric {
        let labels = labels.iter().map(|(n, v)| (*n, Arc::from(*v))).collect();
        Metric { name: name.into(), labels, value: Value::Gauge(value) }
    }

    #[test]
    fn prometheus_text_is_client_golangs() {
        let metrics = [
            gauge("nomad.client.host.cpu.user", &[("node_id", "n"), ("cpu", "cpu1")], 2.5),
            gauge("nomad.client.host.cpu.user", &[("node_id", "n"), ("cpu", "cpu0")], 33.33),
            gauge("nomad.client.host.memory.total", &[("node_id", "n")], 16_777_216_000.0),
        ];
        assert_eq!(
            prometheus(&metrics),
            "# HELP nomad_client_host_cpu_user nomad_client_host_cpu_user\n\
             # TYPE nomad_client_host_cpu_user gauge\n\
             nomad_client_host_cpu_user{cpu=\"cpu0\",node_id=\"n\"} 33.33000183105469\n\
             nomad_client_host_cpu_user{cpu=\"cpu1\",node_id=\"n\"} 2.5\n\
             # HELP nomad_client_host_memory_total nomad_client_host_memory_total\n\
             # TYPE nomad_client_host_memory_total gauge\n\
             nomad_client_host_memory_total{node_id=\"n\"} 1.6777216e+10\n"
        );
    }

    #[test]
    fn label_values_are_escaped_and_histograms_spelled_out() {
        let odd = gauge("x.y", &[("task", "a\"b\\c\nd")], 1.0);
        assert_eq!(prometheus(&[odd]), "# HELP x_y x_y\n# TYPE x_y gauge\nx_y{task=\"a\\\"b\\\\c\\nd\"} 1\n");
        let mut latency = Distribution::default();
        latency.buckets[3..].fill(1);
        (latency.count, latency.sum) = (1, 0.004);
        let histogram = Metric {
            name: "allocd.plugin.call_seconds".into(),
            labels: Arc::new([]),
            value: Value::Distribution(latency),
        };
        let text = prometheus(&[histogram]);
        assert!(text.contains("allocd_plugin_call_seconds_bucket{le=\"0.0025\"} 0\nallocd_plugin_call_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(
            text.ends_with(
                "_bucket{le=\"+Inf\"} 1\nallocd_plugin_call_seconds_sum 0.004\nallocd_plugin_call_seconds_count 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_is_the_go_metrics_display() {
        let metrics = [
            gauge("nomad.client.host.cpu.user", &[("node_id", "n"), ("cpu", "cpu0")], 33.33),
            Metric {
                name: "allocd.plugin.calls".into(),
                labels: Arc::new([("plugin", Arc::from("p"))]),
                value: Value::Counter(3),
            },
        ];
        let text = String::from_utf8(json(&metrics, "2026-12-01 15:20:00 +0000 UTC", 3.0, false)).unwrap();
        assert_eq!(
            text,
            r#"{"Counters":[{"Count":3,"Labels":{"plugin":"p"},"Max":1.0,"Mean":1.0,"Min":1.0,"Name":"allocd.plugin.calls","Rate":1.0,"Stddev":0.0,"Sum":3.0}],"Gauges":[{"Labels":{"cpu":"cpu0","node_id":"n"},"Name":"nomad.client.host.cpu.user","Value":33.33}],"Points":[],"Samples":null,"Timestamp":"2026-12-01 15:20:00 +0000 UTC"}"#
        );
    }
}
