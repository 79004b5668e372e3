//! Prometheus metrics in an owned registry. Label values come from config or
//! enums, never from request input.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
        let token_waits = IntCounterVec::new(
            Opts::new(
                "tokengate_token_waits_total",
                "Outbound requests that found no valid token and waited for one (none should after start-up)",
            ),
            &["token"],
        )
        .expect("static metric definition");
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
        }
    }

    /// Histogram handle for one direction, resolved once.
    pub fn duration_for(&self, direction: &str) -> Histogram {
        self.request_duration.with_label_values(&[direction])
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
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
