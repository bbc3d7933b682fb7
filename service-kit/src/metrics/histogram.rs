//! A Prometheus histogram with fixed latency buckets, for the hand-written exporter.

use std::fmt::Write as _;

/// Upper bounds of the latency buckets, in seconds: 1 ms to 10 s, about three a decade
/// (a token signature through p11-kit takes a few ms, a request waiting out the token's
/// operation timeout up to 10 s). Above the last, only `+Inf`.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram with the fixed [`BUCKETS`]: observations per bucket (not yet
/// cumulative: [`Histogram::render`] sums them), their number and their sum in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Counts one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Appends the series `name_bucket` (cumulative, `le` ascending, ending with `+Inf`),
    /// `name_sum` and `name_count`, each with `labels` (`key="value",…`, may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count;
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}");
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{labels} {:.6}", self.sum);
        let _ = writeln!(out, "{name}_count{labels} {count}");
    }
}

/// The `# HELP` and `# TYPE` lines of a histogram family.
pub(super) fn histogram_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_then_sum_and_count() {
        let mut histogram = Histogram::default();
        for seconds in [0.0005, 0.001, 0.003, 0.2, 0.2, 42.0] {
            histogram.observe(seconds);
        }
        let mut out = String::new();
        histogram.render(&mut out, "demo_seconds", "operation=\"sign\"");
        let expected = [
            ("0.001", 2),
            ("0.0025", 2),
            ("0.005", 3),
            ("0.01", 3),
            ("0.025", 3),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 5),
            ("0.5", 5),
            ("1", 5),
            ("2.5", 5),
            ("5", 5),
            ("10", 5),
            ("+Inf", 6),
        ]
        .iter()
        .map(|(le, count)| format!("demo_seconds_bucket{{operation=\"sign\",le=\"{le}\"}} {count}\n"))
        .collect::<String>()
            + "demo_seconds_sum{operation=\"sign\"} 42.404500\n\
               demo_seconds_count{operation=\"sign\"} 6\n";
        assert_eq!(out, expected);

        let mut unlabelled = String::new();
        Histogram::default().render(&mut unlabelled, "empty_seconds", "");
        assert!(
            unlabelled.starts_with("empty_seconds_bucket{le=\"0.001\"} 0\n"),
            "{unlabelled}"
        );
        assert!(unlabelled.ends_with("empty_seconds_sum 0.000000\nempty_seconds_count 0\n"));
    }
}
