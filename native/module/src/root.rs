//! The filter configuration: read once on Envoy's main thread (a bad policy is rejected there,
//! each mistake logged with its JSON path), then compiled again on each worker the first time
//! it serves a stream, as each Wasm VM compiles its own. The pipeline shares its policy and
//! metric ids by `Rc`, which must stay on one thread; so each worker keeps its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use envoy_abi::{EnvoyFilter, EnvoyFilterConfig, HttpFilterConfig, MetricType};
use posturio::pipeline::metrics::MetricIds;
use posturio::pipeline::{configure, configure_role, Attempt, Configured, MetricKind, Request};
use posturio::policy::Policy;

use crate::filter::PosturioFilter;
use crate::host::{NativeHost, StreamState};
use crate::logger;
use crate::metrics::TEMPLATES;
use crate::series::{self, Series};

/// What the configuration makes each stream's filter.
enum Role {
    /// The request filter, with the policy's JSON (compiled per worker).
    Request(Vec<u8>),
    /// The per-attempt filter of a pool cluster (`{"role": "upstream"}`).
    Upstream,
}

pub struct PosturioConfig {
    /// Tells this configuration's per-worker state from another's.
    id: u64,
    /// Envoy's id for it.
    envoy_id: usize,
    role: Role,
    /// Envoy's id for each row of `TEMPLATES`.
    metrics: Arc<[Option<usize>]>,
}

/// One worker's state for one configuration.
struct Worker {
    policy: Option<Rc<Policy>>,
    metric_ids: Rc<RefCell<MetricIds>>,
    series: Rc<Series>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Configurations alive now; a worker drops its state for the others (after a reload).
static LIVE: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Bumped when a configuration goes, so a worker knows to sweep.
static GONE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WORKERS: RefCell<(u64, HashMap<u64, Worker>)> = RefCell::new((0, HashMap::new()));
}

impl HttpFilterConfig for PosturioConfig {
    type Filter = PosturioFilter;
    const LOG_PREFIX: &'static str = logger::PREFIX;

    fn new(envoy: &EnvoyFilterConfig, _name: &[u8], config: &[u8]) -> Option<Self> {
        logger::install();
        let defined = define_metrics(envoy);
        let host = NativeHost::detached(Rc::new(Series::new(Arc::clone(&defined))));
        let role = match configure_role(&host, config)? {
            Configured::Request(policy) => {
                if let Some((namespace, path)) = policy.identity.metadata() {
                    if path.len() != 1 {
                        log::error!(
                            "invalid configuration: identity.metadata.path: {} keys under \
                             \"{namespace}\"; the native module reads one key of a metadata \
                             namespace (Envoy's dynamic module ABI reaches no nested value): \
                             have the filter before Posturio write the name as a top-level \
                             string, or use the Wasm build",
                            path.len()
                        );
                        return None;
                    }
                }
                Role::Request(config.to_vec())
            }
            Configured::Upstream => Role::Upstream,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).push(id);
        if matches!(role, Role::Request(_)) {
            series::carry_over(envoy, &defined);
            series::request_config_accepted(envoy.id(), Arc::clone(&defined));
        }
        Some(PosturioConfig {
            id,
            envoy_id: envoy.id(),
            role,
            metrics: defined,
        })
    }

    fn new_filter(&self, envoy: &EnvoyFilter) -> Option<PosturioFilter> {
        let (policy, metric_ids, series) = self.worker()?;
        let stream = Rc::new(StreamState::default());
        let host = NativeHost::new(envoy.handle(), series, Rc::clone(&stream));
        Some(match self.role {
            Role::Request(_) => {
                PosturioFilter::request(Request::new(host, policy, metric_ids), stream)
            }
            Role::Upstream => PosturioFilter::attempt(Attempt::new(host, metric_ids), stream),
        })
    }
}

type WorkerParts = (Option<Rc<Policy>>, Rc<RefCell<MetricIds>>, Rc<Series>);

impl PosturioConfig {
    /// This worker's policy, metric ids and series for this configuration, made on first use.
    fn worker(&self) -> Option<WorkerParts> {
        WORKERS.with(|workers| {
            let mut workers = workers.borrow_mut();
            let (seen, states) = &mut *workers;
            let gone = GONE.load(Ordering::Acquire);
            if *seen != gone {
                *seen = gone;
                let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
                states.retain(|id, _| live.contains(id));
            }
            if let Some(worker) = states.get(&self.id) {
                return Some((
                    worker.policy.clone(),
                    Rc::clone(&worker.metric_ids),
                    Rc::clone(&worker.series),
                ));
            }
            let series = Rc::new(match self.role {
                Role::Request(_) => Series::new(Arc::clone(&self.metrics)),
                Role::Upstream => Series::in_request_config(),
            });
            let policy = match &self.role {
                Role::Request(json) => {
                    let host = NativeHost::detached(Rc::clone(&series));
                    // Compiled on the main thread already; failing here would be a bug, and
                    // the stream is then closed rather than served without a policy.
                    Some(Rc::new(configure(&host, json)?))
                }
                Role::Upstream => None,
            };
            let worker = Worker {
                policy,
                metric_ids: Rc::new(RefCell::new(MetricIds::default())),
                series,
            };
            let parts = (
                worker.policy.clone(),
                Rc::clone(&worker.metric_ids),
                Rc::clone(&worker.series),
            );
            states.insert(self.id, worker);
            Some(parts)
        })
    }
}

impl Drop for PosturioConfig {
    fn drop(&mut self) {
        series::request_config_gone(self.envoy_id);
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id| *id != self.id);
        GONE.fetch_add(1, Ordering::Release);
    }
}

/// Defines every metric the pipeline records; Envoy accepts definitions only now.
fn define_metrics(envoy: &EnvoyFilterConfig) -> Arc<[Option<usize>]> {
    TEMPLATES
        .iter()
        .map(|(kind, name, labels)| {
            let kind = match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let id = envoy.define_metric(kind, name, labels);
            if id.is_none() {
                log::warn!("Envoy refused the metric {name}; it is not recorded");
            }
            id
        })
        .collect()
}
