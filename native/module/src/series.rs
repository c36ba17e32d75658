//! One worker's metric series for one configuration: each distinct set of label values of a
//! metric the configuration defined, numbered for the pipeline's metric ids.

use std::cell::RefCell;
use std::sync::Arc;

use envoy_abi::EnvoyFilter;
use posturio::pipeline::MetricKind;

use crate::metrics::TEMPLATES;

/// Series are bounded by the policy (every label value comes from it or from a fixed set);
/// this cap only keeps a mistake from growing without end.
const MAX_SERIES: usize = 100_000;

pub struct Series {
    /// Envoy's id for each row of `TEMPLATES`, `None` where Envoy refused the definition.
    defined: Arc<[Option<usize>]>,
    /// Each series: its template row and label values; its index is the pipeline's id.
    series: RefCell<Vec<(usize, Vec<String>)>>,
}

impl Series {
    pub fn new(defined: Arc<[Option<usize>]>) -> Self {
        Series {
            defined,
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
                series.push((template, values));
                series.len().checked_sub(1)?
            }
            None => return None,
        };
        u32::try_from(index).ok()
    }

    /// Envoy's metric id and label values of series `id`, if it is of kind `kind`.
    fn resolve(&self, id: u32, kind: MetricKind) -> Option<(usize, Vec<String>)> {
        let series = self.series.borrow();
        let (row, values) = series.get(usize::try_from(id).ok()?)?;
        let (template_kind, _, _) = TEMPLATES.get(*row)?;
        if *template_kind != kind {
            return None;
        }
        let envoy_id = (*self.defined.get(*row)?)?;
        Some((envoy_id, values.clone()))
    }

    pub fn increment(&self, envoy: &EnvoyFilter, id: u32, by: u64) -> bool {
        let Some((envoy_id, values)) = self.resolve(id, MetricKind::Counter) else {
            return false;
        };
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        envoy.increment_counter(envoy_id, &values, by)
    }

    pub fn record(&self, envoy: &EnvoyFilter, id: u32, value: u64) -> bool {
        let Some((envoy_id, values)) = self.resolve(id, MetricKind::Histogram) else {
            return false;
        };
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        envoy.record_histogram(envoy_id, &values, value)
    }
}
