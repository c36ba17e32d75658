//! The consumer's cap on output tokens: where each API gives its output-token fields, what a
//! request asks for (per choice and per prompt), and the changes that hold it to the cap, or
//! the refusal when it cannot be held.

use super::choices::{choices, token_value, Choices, TokenValue};
use super::keys::{additional_limit, undefined_limit};
use super::{both_spellings, raw, Change};
use crate::policy::body::{Located, LocatedValue, ObjectEnd, Watched};
use crate::policy::classify::{ApiFamily, Classified, Endpoint};
use crate::policy::compiled::OutputCap;
use crate::policy::config::CapAction;
use crate::policy::reply::{Code, Reply};
use crate::policy::shorten::shorten;

/// One spelling of a watched field: the value, and the key clients send it under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spelling {
    pub what: Watched,
    pub name: &'static str,
}

const fn spelling(what: Watched, name: &'static str) -> Spelling {
    Spelling { what, name }
}

/// Where an endpoint's output-token fields are.
#[derive(Debug, Clone, Copy)]
pub(super) enum OutputFields {
    /// Nothing is generated (embeddings, token counts): no cap.
    None,
    /// The body is the model's own format: a cap cannot be enforced.
    Unenforceable,
    Fields(CapFields),
}

/// An endpoint's output-token fields.
#[derive(Debug, Clone, Copy)]
pub(super) struct CapFields {
    /// Empty: the fields are top-level. Otherwise the spellings of the key of the object that
    /// holds them (giving two is refused).
    pub container: &'static [Spelling],
    /// The first is the one added when none is given.
    pub fields: &'static [Spelling],
    /// The fields are spellings of one field (giving two is refused), each matching the
    /// container spelling at the same index; otherwise distinct fields, each checked.
    spellings: bool,
}

const CHAT: &[Spelling] = &[
    spelling(Watched::MaxCompletionTokens, "max_completion_tokens"),
    spelling(Watched::MaxTokens, "max_tokens"),
];
const MAX_TOKENS: &[Spelling] = &[spelling(Watched::MaxTokens, "max_tokens")];
const RESPONSES: &[Spelling] = &[spelling(Watched::MaxOutputTokens, "max_output_tokens")];
const GENERATION_CONFIG: &[Spelling] = &[
    spelling(Watched::GenerationConfig, "generationConfig"),
    spelling(Watched::GenerationConfigSnake, "generation_config"),
];
const GEMINI: &[Spelling] = &[
    spelling(Watched::GeminiMaxOutputTokens, "maxOutputTokens"),
    spelling(Watched::GeminiMaxOutputTokensSnake, "max_output_tokens"),
];
const INFERENCE_CONFIG: &[Spelling] = &[spelling(Watched::InferenceConfig, "inferenceConfig")];
const BEDROCK: &[Spelling] = &[spelling(Watched::InferenceMaxTokens, "maxTokens")];

pub(super) fn target(classified: &Classified) -> OutputFields {
    use Endpoint::*;
    let top = |fields| {
        OutputFields::Fields(CapFields {
            container: &[],
            fields,
            spellings: false,
        })
    };
    match classified.endpoint {
        ChatCompletions | AzureChatCompletions => top(CHAT),
        Completions | AzureCompletions | Messages => top(MAX_TOKENS),
        Responses => top(RESPONSES),
        GeminiGenerate if classified.counts_tokens => OutputFields::None,
        GeminiGenerate => OutputFields::Fields(CapFields {
            container: GENERATION_CONFIG,
            fields: GEMINI,
            spellings: true,
        }),
        BedrockConverse => OutputFields::Fields(CapFields {
            container: INFERENCE_CONFIG,
            fields: BEDROCK,
            spellings: false,
        }),
        BedrockInvoke => OutputFields::Unenforceable,
        Embeddings | AzureEmbeddings | CountTokens => OutputFields::None,
    }
}

/// Whether a request to this endpoint has output-token fields for the walk to locate.
pub fn has_cap_fields(classified: &Classified) -> bool {
    matches!(target(classified), OutputFields::Fields(_))
}

/// What the cap makes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapOutcome {
    /// 403 `max_output_tokens_exceeded`, with no changes: over the cap with action `refuse`,
    /// more outputs asked for than the cap can share, or an API the cap cannot be enforced on.
    Refused(Reply),
    /// Enforced by changes to the body (none when the request is within the cap).
    Enforced(Enforcement),
}

impl CapOutcome {
    /// What audit mode records: the refusal, or the reply a clamped value would have had.
    pub fn over(self) -> Option<Reply> {
        match self {
            CapOutcome::Refused(reply) => Some(reply),
            CapOutcome::Enforced(enforcement) => enforcement.over,
        }
    }
}

/// The changes that enforce the cap, and what they do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Enforcement {
    /// Values over the cap lowered to it (action `clamp`), or the field added when the
    /// request gives none.
    pub changes: Vec<Change>,
    /// A value was over the cap and is lowered to it.
    pub clamped: bool,
    /// The request gave no value, and is given the cap.
    pub added: bool,
    /// The 403 a clamped value would have had: what audit mode records.
    pub over: Option<Reply>,
}

impl Enforcement {
    /// The cap is given to a request that gave no value.
    fn added(change: Change) -> Self {
        Enforcement {
            changes: vec![change],
            added: true,
            ..Enforcement::default()
        }
    }
}

/// The consumer and its cap, and the shape of replies to the request.
#[derive(Debug, Clone, Copy)]
pub struct CapRequest<'a> {
    pub cap: OutputCap,
    pub consumer: &'a str,
    pub shape: ApiFamily,
}

/// Checks and enforces the output-token cap on a walked body. `Err` is a 400: the body gives
/// the cap's fields in a form the filter will not guess at.
pub fn output_cap(
    classified: &Classified,
    body: &[u8],
    located: &Located,
    request: CapRequest<'_>,
) -> Result<CapOutcome, Reply> {
    let target = match target(classified) {
        OutputFields::None => return Ok(CapOutcome::Enforced(Enforcement::default())),
        OutputFields::Unenforceable => {
            return Ok(CapOutcome::Refused(unenforceable(classified, request)))
        }
        OutputFields::Fields(target) => target,
    };
    refuse_unread_limits(classified, body, located, &target, request.shape)?;
    // The cap bounds what one request produces in all: with several choices, each may have
    // its share of it.
    let choices = choices(body, located, request.shape)?;
    let limit = request.cap.limit.checked_div(choices.count).unwrap_or(0);
    if limit == 0 {
        return Ok(CapOutcome::Refused(too_many_outputs(&choices, request)));
    }
    let holder = match holder(body, located, &target, limit, request.shape)? {
        Ok(holder) => holder,
        Err(settled) => return Ok(CapOutcome::Enforced(settled)),
    };
    let mut outcome = Enforcement::default();
    let given = check_fields(
        body,
        located,
        &target,
        &holder,
        Share { limit, choices },
        request,
        &mut outcome,
    )?;
    if let (Some(over), CapAction::Refuse) = (&outcome.over, request.cap.action) {
        return Ok(CapOutcome::Refused(over.clone()));
    }
    if given.any {
        return Ok(CapOutcome::Enforced(outcome));
    }
    add_cap(
        located,
        &target,
        &holder,
        &given.nulls,
        limit,
        request.shape,
        &mut outcome,
    )?;
    Ok(CapOutcome::Enforced(outcome))
}

/// The refusal for an API whose body is the model's own format.
fn unenforceable(classified: &Classified, request: CapRequest<'_>) -> Reply {
    Reply::new(
        Code::MaxOutputTokensExceeded,
        request.shape,
        format!(
            "consumer \"{}\" may ask for at most {} output tokens, which cannot be enforced on \
             {}: its body is the model's own format; use the Converse API \
             (/model/{{modelId}}/converse) instead",
            request.consumer,
            request.cap.limit,
            classified.endpoint.name()
        ),
    )
}

/// Refuses limits the cap would not see: in Bedrock's model fields, or under a name the API
/// does not define (see `keys`).
fn refuse_unread_limits(
    classified: &Classified,
    body: &[u8],
    located: &Located,
    target: &CapFields,
    shape: ApiFamily,
) -> Result<(), Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidRequest, shape, message);
    if let Some(found) = located.get(Watched::AdditionalModelRequestFields) {
        // Bedrock hands these to the model untouched: a limit there would bypass the cap.
        let key = additional_limit(raw(body, &found)).map_err(|()| {
            invalid("\"additionalModelRequestFields\" could not be read".to_owned())
        })?;
        if let Some(key) = key {
            return Err(invalid(format!(
                "\"additionalModelRequestFields\" sets \"{}\", which may limit or multiply \
                 output tokens in the model's own format (only sampling settings such as \
                 \"temperature\" or \"top_k\" are passed for a consumer with an output-token \
                 cap); set the limit with \"inferenceConfig.maxTokens\" and leave the field out",
                shorten(&key)
            )));
        }
    }
    let undefined = undefined_limit(classified.endpoint, body)
        .map_err(|()| invalid("the request body could not be read".to_owned()))?;
    if let Some(key) = undefined {
        let limit_field = target
            .fields
            .first()
            .map_or("max_tokens", |field| field.name);
        return Err(invalid(format!(
            "\"{}\" is not a parameter of the {} API and may limit or lengthen output on an \
             OpenAI-compatible server (a consumer with an output-token cap may send only the \
             API's own parameters and sampling settings such as \"top_k\"); set the limit with \
             \"{limit_field}\" and leave the field out",
            shorten(&key),
            classified.endpoint.name()
        )));
    }
    Ok(())
}

/// The refusal for a request whose outputs leave less than one token each.
fn too_many_outputs(choices: &Choices, request: CapRequest<'_>) -> Reply {
    Reply::new(
        Code::MaxOutputTokensExceeded,
        request.shape,
        format!(
            "{} asks for {}; consumer \"{}\" may have at most {} output tokens per request, \
             fewer than one per {}",
            choices.subject(),
            choices.describe(false),
            request.consumer,
            request.cap.limit,
            choices.unit()
        ),
    )
}

/// The object that holds the fields as the request gives it, and the spelling of its key (for
/// names in messages, and for the spelling of a field added to it).
struct Holder {
    object: Option<ObjectEnd>,
    /// The key's name, for `prefix.field` in messages; empty for the top level.
    prefix: &'static str,
    /// The index of the key's spelling in `CapFields::container`.
    spelling: usize,
}

impl Holder {
    /// A field's name as messages give it.
    fn name(&self, field: &Spelling) -> String {
        if self.prefix.is_empty() {
            field.name.to_owned()
        } else {
            format!("{}.{}", self.prefix, field.name)
        }
    }
}

/// Finds the object that holds the fields. `Ok(Err(outcome))` when that settles the request:
/// no holder (it is added with the cap), a null one (it is replaced by one with the cap), or an
/// endpoint without fields.
fn holder(
    body: &[u8],
    located: &Located,
    target: &CapFields,
    limit: u64,
    shape: ApiFamily,
) -> Result<Result<Holder, Enforcement>, Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidRequest, shape, message);
    if target.container.is_empty() {
        return Ok(Ok(Holder {
            object: located.top,
            prefix: "",
            spelling: 0,
        }));
    }
    let mut present = target
        .container
        .iter()
        .enumerate()
        .filter_map(|(index, key)| Some((index, *key, located.get(key.what)?)));
    let first = present.next();
    if let (Some((_, one, _)), Some((_, other, _))) = (first, present.next()) {
        return Err(invalid(both_spellings(one.name, other.name)));
    }
    let (Some(default_key), Some(default_field)) =
        (target.container.first(), target.fields.first())
    else {
        return Ok(Err(Enforcement::default()));
    };
    let Some((index, key, found)) = first else {
        return Ok(Err(Enforcement::added(Change::Insert {
            object: top_of(located, shape)?,
            member: format!(
                r#""{}":{{"{}":{limit}}}"#,
                default_key.name, default_field.name
            ),
        })));
    };
    let field = target.fields.get(index).unwrap_or(default_field);
    if raw(body, &found) == b"null" {
        return Ok(Err(Enforcement::added(Change::Replace {
            span: found.span.range(),
            text: format!(r#"{{"{}":{limit}}}"#, field.name),
        })));
    }
    let Some(object) = found.object else {
        return Err(invalid(format!("\"{}\" must be an object", key.name)));
    };
    Ok(Ok(Holder {
        object: Some(object),
        prefix: key.name,
        spelling: index,
    }))
}

/// The cap's share per output, and the outputs it is shared among.
#[derive(Debug, Clone, Copy)]
struct Share {
    limit: u64,
    choices: Choices,
}

/// What the request gives in the fields.
struct Given {
    /// A field has a count, or a value treated as absent that the cap replaced.
    any: bool,
    /// The fields given as `null`.
    nulls: Vec<(Watched, LocatedValue)>,
}

/// Checks each field the request gives against the cap's share: a count over it is clamped
/// (and `over` says so), a value treated as absent is replaced by it.
fn check_fields(
    body: &[u8],
    located: &Located,
    target: &CapFields,
    holder: &Holder,
    share: Share,
    request: CapRequest<'_>,
    outcome: &mut Enforcement,
) -> Result<Given, Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidRequest, request.shape, message);
    let Share { limit, .. } = share;
    let mut given = Given {
        any: false,
        nulls: Vec::new(),
    };
    let mut spelled: Option<&Spelling> = None;
    for field in target.fields {
        let Some(found) = located.get(field.what) else {
            continue;
        };
        if target.spellings {
            if let Some(other) = spelled {
                return Err(invalid(both_spellings(
                    &holder.name(other),
                    &holder.name(field),
                )));
            }
            spelled = Some(field);
        }
        match token_value(raw(body, &found)) {
            TokenValue::Null => given.nulls.push((field.what, found)),
            TokenValue::Unset => {
                // As if absent: the cap takes the value's place, whatever the action.
                given.any = true;
                outcome.changes.push(Change::Replace {
                    span: found.span.range(),
                    text: limit.to_string(),
                });
                outcome.added = true;
            }
            TokenValue::Invalid => {
                return Err(invalid(format!(
                    "\"{}\" must be a whole number of tokens (a JSON integer, 0 or more) or null",
                    holder.name(field)
                )))
            }
            TokenValue::Count(asked) => {
                given.any = true;
                if asked <= limit {
                    continue;
                }
                outcome
                    .over
                    .get_or_insert_with(|| over_cap(&holder.name(field), asked, share, request));
                outcome.changes.push(Change::Replace {
                    span: found.span.range(),
                    text: limit.to_string(),
                });
                outcome.clamped = true;
            }
        }
    }
    Ok(given)
}

/// The reply for a field that asks for more than the cap's share.
fn over_cap(name: &str, asked: u64, share: Share, request: CapRequest<'_>) -> Reply {
    let Share { limit, choices } = share;
    let message = if choices.count > 1 {
        format!(
            "\"{name}\" asks for {asked} output tokens for each of {}; consumer \"{}\" may ask \
             for at most {} in all, {limit} per {}",
            choices.describe(true),
            request.consumer,
            request.cap.limit,
            choices.unit()
        )
    } else {
        format!(
            "\"{name}\" asks for {asked} output tokens; consumer \"{}\" may ask for at most \
             {limit}",
            request.consumer
        )
    };
    Reply::new(Code::MaxOutputTokensExceeded, request.shape, message)
}

/// None given: the cap is. A spelling given as null is replaced (adding the other spelling
/// would give two); otherwise the first field, in the holder's spelling, is added.
fn add_cap(
    located: &Located,
    target: &CapFields,
    holder: &Holder,
    nulls: &[(Watched, LocatedValue)],
    limit: u64,
    shape: ApiFamily,
    outcome: &mut Enforcement,
) -> Result<(), Reply> {
    let added = if target.spellings {
        target.fields.get(holder.spelling).or(target.fields.first())
    } else {
        target.fields.first()
    };
    let Some(added) = added else {
        return Ok(());
    };
    let null = nulls
        .iter()
        .find(|(what, _)| target.spellings || *what == added.what);
    match null {
        Some((_, found)) => outcome.changes.push(Change::Replace {
            span: found.span.range(),
            text: limit.to_string(),
        }),
        None => {
            let object = match holder.object {
                Some(object) => object,
                None => top_of(located, shape)?,
            };
            outcome.changes.push(Change::Insert {
                object,
                member: format!(r#""{}":{limit}"#, added.name),
            });
        }
    }
    outcome.added = true;
    Ok(())
}

/// The top-level object, where a field or its holder is added.
fn top_of(located: &Located, shape: ApiFamily) -> Result<ObjectEnd, Reply> {
    located.top.ok_or_else(|| {
        Reply::new(
            Code::InternalError,
            shape,
            "the body could not be rewritten",
        )
    })
}
