//! The plan: what the request filter decided for a model served through a pool cluster,
//! handed to the upstream filter of every attempt through Envoy's filter state
//! (`posturio_plan`, never on the wire). For each target it says the path to send and the
//! model's text at each span of the forwarded body; the upstream filter splices the target's
//! texts in, and never decides anything itself.

use std::fmt;
use std::ops::Range;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::classify::ApiFamily;
use super::shorten::loggable;

/// The filter state key the request filter writes the plan under.
pub const PLAN_PROPERTY: &str = "posturio_plan";
/// The filter state key the upstream filter writes the serving provider under.
pub const SERVED_PROPERTY: &str = "posturio_served";
/// The filter state key the upstream filter writes the number of attempts under.
pub const ATTEMPTS_PROPERTY: &str = "posturio_attempts";
/// The filter state key the first attempt's upstream filter records the request's header
/// names under (one per line): a later attempt removes every header not among them.
pub const HEADERS_PROPERTY: &str = "posturio_headers";
/// The filter state key the upstream filter writes the code of an attempt it refused under:
/// nothing reached a provider, so the request filter records the refusal and charges nothing.
pub const REFUSED_PROPERTY: &str = "posturio_refused";
/// The request header naming the attempt's target, read by the pool cluster's credential
/// injector and removed before the request leaves Envoy.
pub const TARGET_HEADER: &str = "x-posturio-target";
/// The version of the plan's format.
pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub v: u32,
    /// The catalogue name the client asked for.
    pub model: String,
    /// The API family of the request.
    pub family: ApiFamily,
    /// The shape the caller's replies take.
    pub shape: ApiFamily,
    /// The forwarded body's length; `None` for a request without a body.
    pub body_length: Option<usize>,
    /// The byte ranges of the model strings in the forwarded body, in order.
    pub spans: Vec<[usize; 2]>,
    /// Each target by provider name, in the configured order: the first one's texts are the
    /// forwarded body's.
    pub targets: Targets,
}

/// What one target gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTarget {
    /// The `:path` to send.
    pub path: String,
    /// The JSON text for each span, in the order of `Plan::spans`.
    pub texts: Vec<String>,
    /// The body's length once this target's texts are in; `None` without a body.
    pub body_length: Option<usize>,
}

/// The targets, in order, written as one JSON object (provider name → target). A provider
/// named twice is refused on reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets(pub Vec<(String, PlanTarget)>);

/// Why a forwarded body does not match its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpliceError {
    /// The body is not the length the plan says.
    Length { expected: usize, found: usize },
    /// A span is not where the plan says, or does not hold the first target's text.
    Span(usize),
    /// The plan is inconsistent (texts and spans do not match, or the spans overlap).
    Plan,
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SpliceError::Length { expected, found } => write!(
                f,
                "the forwarded body has {found} bytes where the plan says {expected}"
            ),
            SpliceError::Span(index) => write!(
                f,
                "the forwarded body does not hold the model's text at span {index}"
            ),
            SpliceError::Plan => write!(f, "the plan's spans and texts do not agree"),
        }
    }
}

/// The client's message when the gateway's own wiring fails (a pool reached without a plan,
/// an endpoint that names no target, a pool without its upstream filter): what failed, that
/// it is not the caller's fault, and the request id to quote. Cluster, provider and metadata
/// names stay in the log.
pub fn misconfigured(model: Option<&str>, request_id: Option<&str>) -> String {
    let routing = match model {
        Some(model) => format!(
            "the gateway's routing for model {} is misconfigured",
            loggable(model)
        ),
        None => "the gateway's routing for this request is misconfigured".to_owned(),
    };
    let quote = match request_id {
        Some(id) => format!(
            "quote request id {} to the gateway's operator",
            loggable(id)
        ),
        None => "tell the gateway's operator".to_owned(),
    };
    format!("{routing}; this is not a fault in your request: {quote}")
}

impl Plan {
    pub fn target(&self, provider: &str) -> Option<&PlanTarget> {
        self.targets
            .0
            .iter()
            .find(|(name, _)| name == provider)
            .map(|(_, target)| target)
    }

    /// The target whose texts the forwarded body holds.
    pub fn first(&self) -> Option<&PlanTarget> {
        self.targets.0.first().map(|(_, target)| target)
    }

    /// The JSON text of the plan, as written to filter state.
    pub fn to_json(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }

    /// A plan read back; `None` when it is not a plan of this version.
    pub fn from_json(bytes: &[u8]) -> Option<Plan> {
        let plan: Plan = serde_json::from_slice(bytes).ok()?;
        (plan.v == PLAN_VERSION && !plan.targets.0.is_empty()).then_some(plan)
    }

    /// The body `target` is sent, from the forwarded `body`: `Ok(None)` when it is the
    /// forwarded body itself (the target's texts are the first target's). The forwarded body
    /// is checked against the plan first, so a body that does not match is never half
    /// rewritten.
    pub fn splice(&self, body: &[u8], target: &PlanTarget) -> Result<Option<Vec<u8>>, SpliceError> {
        let first = self.first().ok_or(SpliceError::Plan)?;
        let expected = self.body_length.unwrap_or(0);
        if body.len() != expected {
            return Err(SpliceError::Length {
                expected,
                found: body.len(),
            });
        }
        if first.texts.len() != self.spans.len() || target.texts.len() != self.spans.len() {
            return Err(SpliceError::Plan);
        }
        let mut at = 0usize;
        for (index, (span, text)) in self.spans.iter().zip(&first.texts).enumerate() {
            let range = span_range(*span).ok_or(SpliceError::Plan)?;
            if range.start < at {
                return Err(SpliceError::Plan);
            }
            if body.get(range.clone()) != Some(text.as_bytes()) {
                return Err(SpliceError::Span(index));
            }
            at = range.end;
        }
        if target.texts == first.texts {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(target.body_length.unwrap_or(body.len()));
        let mut at = 0usize;
        for (span, text) in self.spans.iter().zip(&target.texts) {
            let range = span_range(*span).ok_or(SpliceError::Plan)?;
            out.extend_from_slice(body.get(at..range.start).ok_or(SpliceError::Plan)?);
            out.extend_from_slice(text.as_bytes());
            at = range.end;
        }
        out.extend_from_slice(body.get(at..).ok_or(SpliceError::Plan)?);
        if target.body_length.is_some_and(|length| length != out.len()) {
            return Err(SpliceError::Plan);
        }
        Ok(Some(out))
    }
}

fn span_range([start, end]: [usize; 2]) -> Option<Range<usize>> {
    (start <= end).then_some(start..end)
}

impl Serialize for Targets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, target) in &self.0 {
            map.serialize_entry(name, target)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetsVisitor;
        impl<'de> Visitor<'de> for TargetsVisitor {
            type Value = Targets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of targets by provider name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Targets, A::Error> {
                let mut targets: Vec<(String, PlanTarget)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if targets.iter().any(|(known, _)| *known == name) {
                        return Err(de::Error::custom("a target is named twice"));
                    }
                    let target = map.next_value()?;
                    targets.push((name, target));
                }
                Ok(Targets(targets))
            }
        }
        deserializer.deserialize_map(TargetsVisitor)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
