//! One worker's metric series for one configuration: each distinct set of label values of a
//! metric the configuration defined, numbered for the pipeline's metric ids.
//!
//! The request filter records in its own configuration's metrics. The upstream filter of a
//! pool cluster records in a request filter configuration's: Envoy puts an upstream filter's
//! metrics under its cluster's stats prefix (`cluster.<name>.wasmcustom.posturio_...`), where
//! the Wasm build's share one namespace whatever the filter.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use envoy_abi::{EnvoyFilter, EnvoyFilterConfig};
use posturio::pipeline::MetricKind;

use crate::metrics::TEMPLATES;

/// The request filter configurations alive now: Envoy's id for each and the metric ids it
/// defined. The upstream filter records in the latest.
static REQUEST_CONFIGS: Mutex<Vec<(usize, Defined)>> = Mutex::new(Vec::new());

/// Envoy's id for each row of `TEMPLATES`, `None` where Envoy refused the definition.
pub type Defined = Arc<[Option<usize>]>;

/// A request filter configuration was accepted: its metrics serve upstream filters too.
pub fn request_config_accepted(envoy_id: usize, defined: Arc<[Option<usize>]>) {
    REQUEST_CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((envoy_id, defined));
}

/// A request filter configuration is gone.
pub fn request_config_gone(envoy_id: usize) {
    REQUEST_CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(id, _)| *id != envoy_id);
}

/// Every counter series any worker has recorded, under any configuration: its `TEMPLATES`
/// row and label values. Envoy keeps a dynamic module's metrics in its filter configuration's
/// stats scope, and frees a series once no scope holds it; a policy update replaces the
/// configuration, so the new one takes up each series at once (`carry_over`) and the counters
/// go on from their values, as the Wasm build's (kept by its VM) do.
static KNOWN_COUNTERS: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());

/// A new request filter configuration takes up every counter series recorded so far, adding
/// 0, before the configuration it replaces (and the streams still using that one) let go.
/// Histograms start afresh: Envoy has no way to add nothing to one.
pub fn carry_over(envoy: &EnvoyFilterConfig, defined: &[Option<usize>]) {
    let known = KNOWN_COUNTERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (row, values) in known.iter() {
        if let Some(id) = defined.get(*row).copied().flatten() {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            envoy.increment_counter(id, &values, 0);
        }
    }
}

/// Where a series is recorded.
enum Sink {
    /// Through the stream, with this configuration's metric ids.
    Stream(Arc<[Option<usize>]>),
    /// In the latest request filter configuration's metrics.
    RequestConfig,
}

/// Series are bounded by the policy (every label value comes from it or from a fixed set);
/// this cap only keeps a mistake from growing without end.
const MAX_SERIES: usize = 100_000;

/// Most label values passed without a heap buffer.
const LABELS_ON_STACK: usize = 8;

pub struct Series {
    sink: Sink,
    /// Each series: its template row and label values; its index is the pipeline's id.
    series: RefCell<Vec<(usize, Vec<String>)>>,
}

impl Series {
    /// Series recorded through the stream, with Envoy's id for each row of `TEMPLATES`
    /// (`None` where Envoy refused the definition).
    pub fn new(defined: Arc<[Option<usize>]>) -> Self {
        Series {
            sink: Sink::Stream(defined),
            series: RefCell::new(Vec::new()),
        }
    }

    /// Series recorded in the request filter's metrics (the upstream filter's).
    pub fn in_request_config() -> Self {
        Series {
            sink: Sink::RequestConfig,
            series: RefCell::new(Vec::new()),
        }
    }

    /// The id of the series of `template` with these label values, numbered on first use.
    pub fn define<'a>(
        &self,
        template: usize,
        values: impl Iterator<Item = &'a str>,
    ) -> Option<u32> {
        let values: Vec<String> = values.map(str::to_owned).collect();
        let mut series = self.series.borrow_mut();
        let index = match series
            .iter()
            .position(|(row, known)| *row == template && *known == values)
        {
            Some(index) => index,
            None if series.len() < MAX_SERIES => {
                if matches!(TEMPLATES.get(template), Some((MetricKind::Counter, _, _))) {
                    let mut known = KNOWN_COUNTERS
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if known.len() < MAX_SERIES
                        && !known
                            .iter()
                            .any(|(row, known)| *row == template && *known == values)
                    {
                        known.push((template, values.clone()));
                    }
                }
                series.push((template, values));
                series.len().checked_sub(1)?
            }
            None => return None,
        };
        u32::try_from(index).ok()
    }

    /// The template row and label values of series `id`, if it is of kind `kind`.
    fn with_series<R>(
        &self,
        id: u32,
        kind: MetricKind,
        use_series: impl FnOnce(usize, &[&str]) -> Option<R>,
    ) -> Option<R> {
        let series = self.series.borrow();
        let (row, values) = series.get(usize::try_from(id).ok()?)?;
        let (template_kind, _, _) = TEMPLATES.get(*row)?;
        if *template_kind != kind {
            return None;
        }
        // On the stack: this runs at every increment (the widest template has 5 labels).
        let mut on_stack = [""; LABELS_ON_STACK];
        if values.len() > LABELS_ON_STACK {
            let on_heap: Vec<&str> = values.iter().map(String::as_str).collect();
            return use_series(*row, &on_heap);
        }
        for (slot, value) in on_stack.iter_mut().zip(values) {
            *slot = value.as_str();
        }
        use_series(*row, on_stack.get(..values.len())?)
    }

    fn update(&self, envoy: &EnvoyFilter, id: u32, kind: MetricKind, value: u64) -> bool {
        self.with_series(id, kind, |row, values| match &self.sink {
            Sink::Stream(defined) => {
                let envoy_id = defined.get(row).copied().flatten()?;
                Some(match kind {
                    MetricKind::Counter => envoy.increment_counter(envoy_id, values, value),
                    MetricKind::Histogram => envoy.record_histogram(envoy_id, values, value),
                })
            }
            Sink::RequestConfig => {
                let configs = REQUEST_CONFIGS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let (config, defined) = configs.last()?;
                let envoy_id = defined.get(row).copied().flatten()?;
                envoy_abi::with_config_metrics(*config, |metrics| match kind {
                    MetricKind::Counter => metrics.increment_counter(envoy_id, values, value),
                    MetricKind::Histogram => metrics.record_histogram(envoy_id, values, value),
                })
            }
        })
        .unwrap_or(false)
    }

    pub fn increment(&self, envoy: &EnvoyFilter, id: u32, by: u64) -> bool {
        self.update(envoy, id, MetricKind::Counter, by)
    }

    pub fn record(&self, envoy: &EnvoyFilter, id: u32, value: u64) -> bool {
        self.update(envoy, id, MetricKind::Histogram, value)
    }
}
