//! What the steps learn of a request and hand on: the `Pending` request once its headers are
//! read, the `Facts` every record shows, the `Decision` with its `Forward` (or the local
//! answer), and what a budgeted request reserves and its answer settles.

use crate::policy::budget::Reserve;
use crate::policy::classify::Classified;
use crate::policy::guards::GuardRequest;
use crate::policy::inspect::Fired;
use crate::policy::limits::AskedOutput;
use crate::policy::model_list::ModelListRequest;
use crate::policy::plan::Plan;
use crate::policy::usage::{Usage, UsageFormat};
use crate::policy::{ApiFamily, Reply};

/// What a request is, once its headers are read. Kept until the body arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub(crate) kind: RequestKind,
    /// The consumer the request is evaluated as; `None` when it has no identity (or an unknown
    /// one) and the policy has no `default` consumer.
    pub(crate) consumer: Option<String>,
    /// The request path, query included, as the client sent it less any `key` parameter (an
    /// API key, when the policy reads keys).
    pub(crate) path: String,
    /// `path` differs from the client's: it must be forwarded even if nothing else changes it.
    pub(crate) path_rewritten: bool,
    pub(crate) shape: ApiFamily,
    /// Why the request's headers make its answer's usage unreadable, if they do; refused for
    /// a consumer with a budget once the body is read (audit mode records it instead).
    pub(crate) unread_headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Endpoint(Classified),
    Passthrough(usize),
    /// A consumer's model list, answered by the gateway (`model_list.rs`).
    ModelList(ModelListRequest),
}

impl Pending {
    /// The API shape replies to this request take.
    pub fn shape(&self) -> ApiFamily {
        self.shape
    }

    /// The `:path` to forward: the rewritten one, else this request's own when it differs
    /// from the client's.
    pub(crate) fn forward_path(&self, rewritten: Option<String>) -> Option<String> {
        rewritten.or_else(|| self.path_rewritten.then(|| self.path.clone()))
    }
}

/// The decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Refuse(Reply),
    Forward(Forward),
    /// Answered by the gateway itself with 200 and this JSON body (a model list).
    AnswerLocally(Vec<u8>),
}

/// How to forward an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub cluster: String,
    /// The new `:path`, when the model is in the path or the provider's `base_path` applies.
    pub path: Option<String>,
    /// The new body, when the model is rewritten, text redacted, the output-token cap applied
    /// or stream usage asked for. Every other byte is the client's.
    pub body: Option<Vec<u8>>,
    /// Set when the policy would have refused the request but audit mode let it through.
    pub audited: Option<Reply>,
    /// The format the response reports its token usage in; `None` when it reports none
    /// (token counts, passthrough calls).
    pub usage: Option<UsageFormat>,
    /// For a model served through a pool cluster: what each target gets, written to filter
    /// state for the upstream filter (`crate::policy::plan`).
    pub plan: Option<Plan>,
    /// What the consumer's guards are asked before the request goes (`guards.rs`); `None`
    /// when no guard applies or none has text to judge.
    pub guards: Option<Box<GuardRequest>>,
}

/// What a decision was about, for the log and the access log. Never prompt text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub consumer: Option<String>,
    pub family: Option<&'static str>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub provider: Option<String>,
    pub rules: Vec<Fired>,
    pub redactions: usize,
    /// An output-token value over the consumer's cap was lowered to it.
    pub output_cap_clamped: bool,
    /// The request asked for no output-token limit and was given the consumer's cap.
    pub output_cap_added: bool,
    /// `stream_options.include_usage: true` was set so the stream reports its usage.
    pub stream_usage_added: bool,
    /// The output the request asks for, read for a budgeted consumer's reservation.
    pub asked_output: Option<AskedOutput>,
    /// Each guard asked, with its outcome (`allow`, `flagged`, `error`, `timeout`).
    pub guards: Vec<(String, &'static str)>,
}

/// What a forwarded request holds against its consumer's budget until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub consumer: String,
    /// When it was reserved, in seconds since the epoch: a window that began since no longer
    /// holds it.
    pub at: u64,
    pub amount: Reserve,
}

/// What a settled request was charged, for the access log and the decision line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement {
    /// The usage the provider reported; `None` when it is unknown.
    pub usage: Option<Usage>,
    /// The reported usage's cost; `None` when the usage is unknown or the model has no price.
    pub cost_microusd: Option<u64>,
    /// What budgets (and the fleet limit) were charged.
    pub charged_tokens: u64,
    /// The same in micro-dollars; `None` when the model has no price.
    pub charged_microusd: Option<u64>,
    /// What the request had reserved, for a budgeted consumer.
    pub reserved: Option<Reserve>,
}
