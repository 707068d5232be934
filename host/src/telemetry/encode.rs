//! The two forms of `/v1/metrics`, byte for byte as Nomad writes them.
//!
//! JSON is go-metrics' in-memory display (`Timestamp`, `Gauges`, `Points`, `Counters`,
//! `Samples`; each entry with `Name`, `Labels` as a map and its value or aggregate), with
//! Nomad's sorted keys, entries sorted by go-metrics' aggregation key (the name, then
//! `;label=value` in emission order) and float32 gauge values in their shortest form. The
//! Prometheus form is what Nomad's go-metrics sink hands to client_golang's text encoder (format
//! 0.0.4): names with `.`, `-`, `/`, `=` and spaces turned into `_`, `# HELP` repeating the
//! name, families sorted by name, series by label values, floats in Go's `%g` shortest form.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use super::own::{Distribution, LATENCY_BUCKETS};
use super::{Labels, Metric, Value};
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

/// Below 2^53 every integer is a float64 and its shortest digits are its decimal digits.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Appends [`go_float`]'s text. Whole numbers (most gauges: bytes, ticks, counts) take their
/// integer digits, the others the shortest digits of Rust's `{:e}`.
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
    if value < 0.0 {
        out.push('-');
    }
    let magnitude = value.abs();
    if magnitude.fract() == 0.0 && magnitude < EXACT_INTEGERS {
        push_whole(out, magnitude as u64);
    } else {
        push_shortest(out, magnitude);
    }
}

/// A positive whole number below 2^53: its digits less trailing zeros are its shortest digits
/// (any shorter number is at least 1 away, and such floats are at most 1 apart).
fn push_whole(out: &mut String, value: u64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value);
    let mantissa = digits.trim_end_matches('0');
    push_placed(out, &mantissa[..1], &mantissa[1..], digits.len() as i32 - 1);
}

/// A positive finite float's shortest digits, from Rust's `{:e}` formatted on the stack.
fn push_shortest(out: &mut String, value: f64) {
    let mut buffer = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{value:e}"));
    let written = cursor.position() as usize;
    let scientific = std::str::from_utf8(&buffer[..written]).unwrap_or("0e0");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // The digits are the mantissa's first character and what follows its decimal point.
    let (first, rest) = mantissa.split_at(1);
    push_placed(out, first, rest.strip_prefix('.').unwrap_or(rest), exponent);
}

/// Places the shortest digits `first` `rest` (value `first.rest × 10^exponent`) as Go's 'g'
/// places them: with an exponent below 1e-4 and from 1e6 on, else in positional notation.
fn push_placed(out: &mut String, first: &str, rest: &str, exponent: i32) {
    if !(-4..6).contains(&exponent) {
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push_str(if exponent < 0 { "e-" } else { "e+" });
        let exponent = exponent.unsigned_abs();
        if exponent < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(exponent));
        return;
    }
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

/// One label set as every series carrying it is written: `a="1",b="2"` sorted by label name,
/// and its values in that order (client_golang's sort key for the series of a family).
struct LabelText<'a> {
    text: std::ops::Range<usize>,
    values: std::ops::Range<usize>,
    labels: &'a Labels,
}

/// The label sets of a scrape, each escaped and written once however many series share it
/// (the 14 gauges of a task share one).
#[derive(Default)]
struct LabelTexts<'a> {
    sets: Vec<LabelText<'a>>,
    text: String,
    values: Vec<&'a str>,
}

impl<'a> LabelTexts<'a> {
    /// The index of `labels`' text; the caller's metrics share label sets in runs, so the last
    /// set is the one to compare with.
    fn index(&mut self, labels: &'a Labels) -> usize {
        if let Some(last) = self.sets.last()
            && Arc::ptr_eq(last.labels, labels)
        {
            return self.sets.len() - 1;
        }
        let mut order: Vec<&(&'static str, Arc<str>)> = labels.iter().collect();
        order.sort_by_key(|(name, _)| *name);
        let (text_start, values_start) = (self.text.len(), self.values.len());
        for (i, (name, value)) in order.into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(name);
            self.text.push_str("=\"");
            push_label_value(&mut self.text, value);
            self.text.push('"');
            self.values.push(value);
        }
        self.sets.push(LabelText {
            text: text_start..self.text.len(),
            values: values_start..self.values.len(),
            labels,
        });
        self.sets.len() - 1
    }

    fn text(&self, set: usize) -> &str {
        &self.text[self.sets[set].text.clone()]
    }

    fn values(&self, set: usize) -> &[&'a str] {
        &self.values[self.sets[set].values.clone()]
    }
}

/// A family: its Prometheus name and its series (a metric and its label set's index).
struct Family<'a> {
    name: String,
    series: Vec<(&'a Metric, usize)>,
}

/// The families of `metrics` by dotted name; each name's Prometheus form is built once.
#[derive(Default)]
struct Families<'a> {
    list: Vec<Family<'a>>,
    /// Dotted names seen, by the `Arc` the metrics share, with their family's index.
    seen: Vec<(&'a Arc<str>, usize)>,
    /// Where the last name was found: metrics cycle through their names in order.
    last: usize,
}

impl<'a> Families<'a> {
    fn of(&mut self, name: &'a Arc<str>) -> &mut Family<'a> {
        let n = self.seen.len();
        let found = (0..n)
            .map(|i| (self.last + 1 + i) % n)
            .find(|&i| Arc::ptr_eq(self.seen[i].0, name))
            .or_else(|| self.seen.iter().position(|(seen, _)| seen[..] == name[..]));
        let index = match found {
            Some(at) => {
                self.last = at;
                self.seen[at].1
            }
            None => {
                let prometheus = prometheus_name(name);
                let family = match self.list.iter().position(|family| family.name == prometheus) {
                    Some(family) => family,
                    None => {
                        self.list.push(Family { name: prometheus, series: Vec::new() });
                        self.list.len() - 1
                    }
                };
                self.seen.push((name, family));
                self.last = self.seen.len() - 1;
                family
            }
        };
        &mut self.list[index]
    }
}

/// The text exposition format 0.0.4.
pub fn prometheus(metrics: &[Metric]) -> String {
    let mut families = Families::default();
    let mut labels = LabelTexts::default();
    for metric in metrics {
        let set = labels.index(&metric.labels);
        families.of(&metric.name).series.push((metric, set));
    }
    let mut families = families.list;
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::with_capacity(metrics.len() * 128);
    for Family { name, mut series } in families {
        // Series sharing a label set compare equal without looking at the values.
        series.sort_by(|a, b| if a.1 == b.1 { Ordering::Equal } else { labels.values(a.1).cmp(labels.values(b.1)) });
        let kind = match series[0].0.value {
            Value::Gauge(_) => "gauge",
            Value::Counter(_) => "counter",
            Value::Distribution(_) => "histogram",
        };
        let _ = write!(out, "# HELP {name} {name}\n# TYPE {name} {kind}\n");
        for (metric, set) in series {
            push_series(&mut out, &name, labels.text(set), &metric.value);
        }
    }
    out
}

/// `name<suffix>{labels,le="…"} value` lines of one series; `labels` as [`LabelTexts`] writes
/// them, a histogram's `le` last.
fn push_series(out: &mut String, name: &str, labels: &str, value: &Value) {
    let mut line = |suffix: &str, le: Option<&str>, value: f64| {
        out.push_str(name);
        out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            out.push('{');
            out.push_str(labels);
            if let Some(le) = le {
                if !labels.is_empty() {
                    out.push(',');
                }
                out.push_str("le=\"");
                out.push_str(le);
                out.push('"');
            }
            out.push('}');
        }
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
            (999_999.0, "999999"),
            (1_048_576.0, "1.048576e+06"),
            (-1_048_576.0, "-1.048576e+06"),
            (123_456_789_012.0, "1.23456789012e+11"),
            (1e15, "1e+15"),
            (9_007_199_254_740_993.0, "9.007199254740992e+15"),
            (1e21, "1e+21"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (value, text) in cases {
            assert_eq!(go_float(value), text, "{value}");
        }
    }

    proptest::proptest! {
        /// The integer path writes what the general one writes, for every whole number it takes.
        #[test]
        fn whole_numbers_take_their_shortest_digits(digits in 1u64..(1 << 53), zeros in 0u32..16) {
            let value = digits.saturating_mul(10u64.pow(zeros)) % (1 << 53);
            proptest::prop_assume!(value > 0);
            let (mut whole, mut shortest) = (String::new(), String::new());
            push_whole(&mut whole, value);
            push_shortest(&mut shortest, value as f64);
            proptest::prop_assert_eq!(whole, shortest);
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
    fn families_and_series_sort_whatever_the_input_order() {
        // One label set shared by series that are not adjacent, label names emitted in two
        // orders within a family, and two dotted names that are one Prometheus name.
        let shared: Labels = Arc::new([("task", Arc::from("web")), ("alloc_id", Arc::from("b"))]);
        let rss = |labels: &Labels, value| Metric {
            name: "nomad.client.allocs.memory.rss".into(),
            labels: Arc::clone(labels),
            value: Value::Gauge(value),
        };
        let metrics = [
            rss(&shared, 3.0),
            gauge("nomad.client.allocs.cpu.user", &[("task", "web"), ("alloc_id", "b")], 0.5),
            gauge("nomad.client.allocs.memory.rss", &[("alloc_id", "a"), ("task", "db")], 1.0),
            rss(&shared, 4.0),
            gauge("nomad.client.allocs.memory.rss", &[("alloc_id", "a"), ("task", "api")], 2.0),
            gauge("nomad_client.allocs.memory.rss", &[("alloc_id", "a"), ("task", "cache")], 5.0),
            Metric { name: "allocd.gc.collections".into(), labels: Arc::new([]), value: Value::Counter(7) },
        ];
        assert_eq!(
            prometheus(&metrics),
            "# HELP allocd_gc_collections allocd_gc_collections\n\
             # TYPE allocd_gc_collections counter\n\
             allocd_gc_collections 7\n\
             # HELP nomad_client_allocs_cpu_user nomad_client_allocs_cpu_user\n\
             # TYPE nomad_client_allocs_cpu_user gauge\n\
             nomad_client_allocs_cpu_user{alloc_id=\"b\",task=\"web\"} 0.5\n\
             # HELP nomad_client_allocs_memory_rss nomad_client_allocs_memory_rss\n\
             # TYPE nomad_client_allocs_memory_rss gauge\n\
             nomad_client_allocs_memory_rss{alloc_id=\"a\",task=\"api\"} 2\n\
             nomad_client_allocs_memory_rss{alloc_id=\"a\",task=\"cache\"} 5\n\
             nomad_client_allocs_memory_rss{alloc_id=\"a\",task=\"db\"} 1\n\
             nomad_client_allocs_memory_rss{alloc_id=\"b\",task=\"web\"} 3\n\
             nomad_client_allocs_memory_rss{alloc_id=\"b\",task=\"web\"} 4\n"
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
            value: Value::Distribution(Box::new(latency)),
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
