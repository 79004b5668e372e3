//! Prometheus metrics in an owned registry. Label values come from config or
//! enums, never from request input.

use hyper::StatusCode;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::RwLock;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub auth_decisions: IntCounterVec,
    pub jwks_refresh: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub verify_cache_hits: IntCounter,
    pub verify_cache_misses: IntCounter,
    pub token_refresh: IntCounterVec,
    pub token_expiry: GaugeVec,
    pub token_waits: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Calls to an issuer's introspection endpoint, by result.
    pub introspection: IntCounterVec,
    /// Introspection answers looked up, by whether the cache held them.
    pub introspection_cache: IntCounterVec,
    pub introspection_duration: HistogramVec,
    /// DPoP proofs the replay caches hold (live or not yet swept).
    pub dpop_replay_entries: IntGauge,
    /// Set from the runtime at each scrape.
    tasks: IntGauge,
    /// Brought up to the access log's own count at each scrape.
    access_log_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tokengate_requests_total",
                "Requests answered, by direction, route and status",
            ),
            &["direction", "route", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokengate_request_duration_seconds",
                "Time from request to response headers",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["direction"],
        )
        .expect("static metric definition");
        let auth_decisions = IntCounterVec::new(
            Opts::new(
                "tokengate_auth_decisions_total",
                "Inbound auth decisions by outcome and reason",
            ),
            &["decision", "reason"],
        )
        .expect("static metric definition");
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "tokengate_jwks_refresh_total",
                "JWKS fetches by issuer and result",
            ),
            &["issuer", "result"],
        )
        .expect("static metric definition");
        let jwks_keys = IntGaugeVec::new(
            Opts::new("tokengate_jwks_keys", "Usable keys per issuer"),
            &["issuer"],
        )
        .expect("static metric definition");
        let verify_cache_hits = IntCounter::new(
            "tokengate_verify_cache_hits_total",
            "Tokens served from the verified-token cache",
        )
        .expect("static metric definition");
        let dpop_replay_entries = IntGauge::new(
            "tokengate_dpop_replay_cache_entries",
            "DPoP proofs remembered against replay",
        )
        .expect("static metric definition");
        let verify_cache_misses = IntCounter::new(
            "tokengate_verify_cache_misses_total",
            "Tokens that needed a full verification",
        )
        .expect("static metric definition");
        let token_refresh = IntCounterVec::new(
            Opts::new(
                "tokengate_token_refresh_total",
                "Outbound token fetches by token and result",
            ),
            &["token", "result"],
        )
        .expect("static metric definition");
        let token_expiry = GaugeVec::new(
            Opts::new(
                "tokengate_token_expiry_seconds",
                "Seconds until the cached outbound token expires",
            ),
            &["token"],
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "tokengate_config_reloads_total",
                "Config reloads (SIGHUP or a changed file) by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let token_waits = IntCounterVec::new(
            Opts::new(
                "tokengate_token_waits_total",
                "Outbound requests that found no valid token and waited for one (none should after start-up)",
            ),
            &["token"],
        )
        .expect("static metric definition");
        let introspection = IntCounterVec::new(
            Opts::new(
                "tokengate_introspection_total",
                "Calls to an issuer's introspection endpoint by result (active, inactive, error)",
            ),
            &["issuer", "result"],
        )
        .expect("static metric definition");
        let introspection_cache = IntCounterVec::new(
            Opts::new(
                "tokengate_introspection_cache_total",
                "Opaque tokens looked up in the introspection cache, by result (hit, miss)",
            ),
            &["issuer", "result"],
        )
        .expect("static metric definition");
        let introspection_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokengate_introspection_duration_seconds",
                "Time an introspection call took",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["issuer"],
        )
        .expect("static metric definition");
        let tasks = IntGauge::new(
            "tokengate_tasks",
            "Tasks alive on the runtime: connections, tunnels and background work",
        )
        .expect("static metric definition");
        let access_log_dropped = IntCounter::new(
            "tokengate_access_log_dropped_total",
            "Access-log lines dropped because stderr could not keep up (the request went on)",
        )
        .expect("static metric definition");
        // process_open_fds, process_resident_memory_bytes, process_cpu_seconds_total…
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(auth_decisions.clone()),
            Box::new(jwks_refresh.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(verify_cache_hits.clone()),
            Box::new(verify_cache_misses.clone()),
            Box::new(token_refresh.clone()),
            Box::new(token_expiry.clone()),
            Box::new(token_waits.clone()),
            Box::new(config_reloads.clone()),
            Box::new(introspection.clone()),
            Box::new(introspection_cache.clone()),
            Box::new(introspection_duration.clone()),
            Box::new(dpop_replay_entries.clone()),
            Box::new(tasks.clone()),
            Box::new(access_log_dropped.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            auth_decisions,
            jwks_refresh,
            jwks_keys,
            verify_cache_hits,
            verify_cache_misses,
            token_refresh,
            token_expiry,
            token_waits,
            config_reloads,
            introspection,
            introspection_cache,
            introspection_duration,
            dpop_replay_entries,
            tasks,
            access_log_dropped,
        }
    }

    /// Histogram handle for one direction, resolved once.
    pub fn duration_for(&self, direction: &str) -> Histogram {
        self.request_duration.with_label_values(&[direction])
    }

    /// Request counters of one route, for the request path.
    pub fn route(&self, direction: &'static str, route: &str) -> RouteCounters {
        RouteCounters {
            direction,
            route: route.to_string(),
            family: self.requests.clone(),
            by_status: RwLock::default(),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let dropped = crate::access_log::dropped();
        self.access_log_dropped
            .inc_by(dropped.saturating_sub(self.access_log_dropped.get()));
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `tokengate_requests_total` for one (direction, route): each status's counter is
/// resolved once, then found by a short scan under a read lock, so the request
/// path neither hashes label strings nor allocates.
pub struct RouteCounters {
    pub direction: &'static str,
    pub route: String,
    family: IntCounterVec,
    by_status: RwLock<Vec<(StatusCode, IntCounter)>>,
}

impl RouteCounters {
    pub fn inc(&self, status: StatusCode) {
        // A poisoned lock only means a panic elsewhere mid-push; the list is still valid.
        let seen = self.by_status.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = seen.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        drop(seen);
        let mut seen = self.by_status.write().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|(s, _)| *s == status) {
            let counter =
                self.family
                    .with_label_values(&[self.direction, &self.route, status.as_str()]);
            seen.push((status, counter));
        }
        if let Some((_, counter)) = seen.iter().find(|(s, _)| *s == status) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_count_per_status_in_the_shared_family() {
        let m = Metrics::new();
        let a = m.route("inbound", "/a");
        let a_again = m.route("inbound", "/a");
        for status in [200, 200, 404, 200] {
            a.inc(StatusCode::from_u16(status).unwrap());
        }
        a_again.inc(StatusCode::OK);
        let count = |status: &str| {
            m.requests
                .with_label_values(&["inbound", "/a", status])
                .get()
        };
        assert_eq!(count("200"), 4);
        assert_eq!(count("404"), 1);
        assert_eq!(count("500"), 0);
    }
}
