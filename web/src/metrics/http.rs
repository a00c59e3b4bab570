//! Request latency histograms, kept in memory by this process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::exposition::{Exposition, Kind};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The metric family name.
const FAMILY: &str = "cascade_http_request_duration_seconds";

/// The route label of requests no route matched (kept as one series, so probing random paths
/// cannot create unbounded label values).
pub(crate) const UNMATCHED: &str = "unmatched";

/// Latency histograms of the HTTP requests this process served, by route pattern (e.g.
/// `/v1/jobs/{number}`), method and status. Cheap to clone; clones share the histograms.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    routes: Arc<Mutex<BTreeMap<String, Vec<Series>>>>,
}

/// One histogram: one route, method and status.
#[derive(Debug)]
struct Series {
    method: String,
    status: u16,
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl HttpMetrics {
    /// Records one request that took `seconds`.
    pub(crate) fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let bucket = BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS.len());
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let series = match routes.get_mut(route) {
            Some(series) => series,
            None => routes.entry(route.to_owned()).or_default(),
        };
        let index = match series.iter().position(|s| s.status == status && s.method == method) {
            Some(index) => index,
            None => {
                series.push(Series { method: method.to_owned(), status, buckets: [0; BUCKETS.len() + 1], sum: 0.0 });
                series.len() - 1
            }
        };
        let one = &mut series[index];
        one.buckets[bucket] += 1;
        one.sum += seconds;
    }

    /// Writes the histogram family (the family header even when nothing was observed yet).
    pub(crate) fn write(&self, out: &mut Exposition) {
        out.family(FAMILY, Kind::Histogram, "Time to answer an HTTP request, by route pattern, method and status.");
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for (route, series) in routes.iter() {
            for one in series {
                let status = one.status.to_string();
                let labels = [("route", route.as_str()), ("method", one.method.as_str()), ("code", status.as_str())];
                let mut cumulative = 0;
                for (bound, count) in BUCKETS.iter().map(f64::to_string).chain(["+Inf".to_owned()]).zip(one.buckets) {
                    cumulative += count;
                    let [route, method, code] = labels;
                    out.sample(&format!("{FAMILY}_bucket"), &[route, method, code, ("le", &bound)], cumulative);
                }
                out.sample(&format!("{FAMILY}_sum"), &labels, one.sum);
                out.sample(&format!("{FAMILY}_count"), &labels, cumulative);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_matches() {
        let metrics = HttpMetrics::default();
        metrics.observe("/v1/stats", "GET", 200, 0.0007);
        metrics.observe("/v1/stats", "GET", 200, 0.003);
        metrics.observe("/v1/stats", "GET", 200, 30.0);
        metrics.observe("/v1/stats", "GET", 503, 0.0001);
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();
        let line = |needle: &str| text.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("{needle}\n{text}"));
        let ok = r#"route="/v1/stats",method="GET",code="200""#;
        assert!(line(&format!("{FAMILY}_bucket{{{ok},le=\"0.0005\"}}")).ends_with(" 0"));
        assert!(line(&format!("{FAMILY}_bucket{{{ok},le=\"0.001\"}}")).ends_with(" 1"));
        assert!(line(&format!("{FAMILY}_bucket{{{ok},le=\"0.005\"}}")).ends_with(" 2"));
        assert!(line(&format!("{FAMILY}_bucket{{{ok},le=\"10\"}}")).ends_with(" 2"));
        assert!(line(&format!("{FAMILY}_bucket{{{ok},le=\"+Inf\"}}")).ends_with(" 3"));
        assert!(line(&format!("{FAMILY}_count{{{ok}}}")).ends_with(" 3"));
        assert!(line(&format!("{FAMILY}_count{{route=\"/v1/stats\",method=\"GET\",code=\"503\"}}")).ends_with(" 1"));
    }
}
