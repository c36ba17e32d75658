//! Request limits that edit the body: a consumer's cap on output tokens, and usage reporting
//! for OpenAI-style streams. Pure functions of the walked body; `decide_body` merges the edits
//! they ask for with the model rewrite and the redactions, into one copy of the body.
//!
//! The walk locates the values these read (`Watch`); nothing here parses the body again.

use std::collections::BTreeMap;
use std::ops::Range;

use keys::{reads_as_number, undefined_limit};

use super::body::{Found, Located, ObjectEnd, Watched};
use super::classify::{ApiFamily, Classified, Endpoint};
use super::compile::OutputCap;
use super::config::CapAction;
use super::extract::display_model;
use super::redact::Edit;
use super::reply::{Code, Reply};
use super::usage::UsageFormat;

mod keys;
pub mod stream_usage;

pub use super::body::watch::{has_stream_flag, reports_stream_usage};

/// Whether a model-specific request field limits generated tokens, or multiplies them, whatever
/// the model family spells it: `max_tokens`, `max_tokens_to_sample`, `maxTokenCount`,
/// `max_gen_len`, `max_new_tokens`, `n`, `num_generations`, `candidateCount`, ... Matched
/// loosely on purpose: a false match only asks the client to use `inferenceConfig.maxTokens`
/// instead, or to leave the field out.
fn limits_output_tokens(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let choices = matches!(
        key.as_str(),
        "n" | "best_of"
            | "num_generations"
            | "numgenerations"
            | "candidate_count"
            | "candidatecount"
            | "num_return_sequences"
            | "numresults"
            | "num_results"
    );
    choices || (key.contains("max") && (key.contains("token") || key.contains("gen_len")))
}

/// Model-specific numeric settings known to leave the length and number of outputs alone:
/// sampling, penalties and seeds, in the spellings model families use. Every other number in
/// `additionalModelRequestFields` may bound output (`max_length`, `num_predict`, `length`, ...)
/// and is refused for a capped consumer: a list of what limits output could never be complete.
/// Anthropic's `thinking.budget_tokens` is here because Anthropic refuses one that is not
/// below `max_tokens`, which the cap sets.
const NEUTRAL_NUMBERS: &[&str] = &[
    "temperature",
    "top_p",
    "topp",
    "top_k",
    "topk",
    "min_p",
    "minp",
    "seed",
    "random_seed",
    "randomseed",
    "presence_penalty",
    "presencepenalty",
    "frequency_penalty",
    "frequencypenalty",
    "repetition_penalty",
    "repetitionpenalty",
    "repeat_penalty",
    "budget_tokens",
];

/// Whether a key's numeric value is known not to change how much is generated.
fn neutral_number(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    NEUTRAL_NUMBERS.contains(&key.as_str())
}

/// Whether a value is a number, or text a lenient parser reads as one (`"5000"`, `"5_000"`,
/// `"0x1388"`, full-width or other Unicode digits).
fn numeric(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(_) => true,
        serde_json::Value::String(text) => reads_as_number(text),
        _ => false,
    }
}

/// The first key, at any depth of `additionalModelRequestFields`, that limits or multiplies
/// output tokens, or that holds a number not known to leave output alone. Bedrock hands the
/// object to the model as it is, and models nest their own settings (Amazon Nova reads
/// `inferenceConfig.max_new_tokens` there), so every level is read; a number in a list belongs
/// to the list's key. `Err` when the value cannot be read (it was validated by the walk, so
/// never in practice).
fn additional_limit(raw: &[u8]) -> Result<Option<String>, ()> {
    fn find(key: Option<&str>, value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::Object(object) => object.iter().find_map(|(key, value)| {
                if limits_output_tokens(key) {
                    Some(key.clone())
                } else {
                    find(Some(key), value)
                }
            }),
            serde_json::Value::Array(items) => items.iter().find_map(|item| find(key, item)),
            value if numeric(value) => match key {
                Some(key) if neutral_number(key) => None,
                Some(key) => Some(key.to_owned()),
                None => Some(String::new()),
            },
            _ => None,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|_| ())?;
    Ok(find(None, &value))
}

/// The format the response's usage comes in; `None` when the response reports none.
pub fn usage_format(classified: &Classified) -> Option<UsageFormat> {
    use Endpoint::*;
    match classified.endpoint {
        ChatCompletions | Completions | Embeddings | AzureChatCompletions | AzureCompletions
        | AzureEmbeddings => Some(UsageFormat::OpenAiChat),
        Responses => Some(UsageFormat::OpenAiResponses),
        Messages => Some(UsageFormat::Anthropic),
        CountTokens => None,
        GeminiGenerate if classified.counts_tokens => None,
        GeminiGenerate => Some(UsageFormat::Gemini),
        BedrockConverse | BedrockInvoke => Some(UsageFormat::BedrockConverse),
    }
}

/// A change the limits ask of the body, before the changes are merged into edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The value at `span` becomes `text`.
    Replace { span: Range<usize>, text: String },
    /// `member` (`"key":value`) is added to the object that closes at `object`.
    Insert { object: ObjectEnd, member: String },
}

/// The edits for a set of changes. Members added to one object become one insertion before
/// its brace, with a comma only where one is needed.
pub fn into_edits(changes: Vec<Change>) -> Vec<Edit> {
    let mut edits = Vec::with_capacity(changes.len());
    let mut inserts: BTreeMap<usize, (bool, String)> = BTreeMap::new();
    for change in changes {
        match change {
            Change::Replace { span, text } => edits.push(Edit { span, text }),
            Change::Insert { object, member } => {
                let (empty, text) = inserts
                    .entry(object.close)
                    .or_insert_with(|| (object.empty, String::new()));
                if !(*empty && text.is_empty()) {
                    text.push(',');
                }
                text.push_str(&member);
            }
        }
    }
    edits.extend(inserts.into_iter().map(|(close, (_, text))| Edit {
        span: close..close,
        text,
    }));
    edits
}

fn raw<'b>(body: &'b [u8], found: &Found) -> &'b [u8] {
    body.get(found.span()).unwrap_or_default()
}

const INCLUDE_USAGE: &str = r#"{"include_usage":true}"#;

/// The change that makes a streamed response end with its usage, if the body needs one:
/// `stream_options.include_usage` set to `true` when `stream` is `true`. A `stream_options`
/// or `include_usage` of a type the provider refuses anyway is left for it to refuse.
pub fn stream_usage(body: &[u8], located: &Located) -> Option<Change> {
    let stream = located.get(Watched::Stream)?;
    if raw(body, &stream) != b"true" {
        return None;
    }
    let Some(options) = located.get(Watched::StreamOptions) else {
        return Some(Change::Insert {
            object: located.top?,
            member: format!(r#""stream_options":{INCLUDE_USAGE}"#),
        });
    };
    if raw(body, &options) == b"null" {
        return Some(Change::Replace {
            span: options.span(),
            text: INCLUDE_USAGE.to_owned(),
        });
    }
    let object = options.object?;
    match located.get(Watched::IncludeUsage) {
        None => Some(Change::Insert {
            object,
            member: r#""include_usage":true"#.to_owned(),
        }),
        Some(include) if matches!(raw(body, &include), b"false" | b"null") => {
            Some(Change::Replace {
                span: include.span(),
                text: "true".to_owned(),
            })
        }
        Some(_) => None,
    }
}

/// A field by the name clients send.
#[derive(Debug, Clone, Copy)]
struct Field {
    what: Watched,
    name: &'static str,
}

const fn field(what: Watched, name: &'static str) -> Field {
    Field { what, name }
}

/// Where an endpoint's output-token fields are.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Nothing is generated (embeddings, token counts): no cap.
    None,
    /// The body is the model's own format: a cap cannot be enforced.
    Unenforceable,
    Fields {
        /// Empty: the fields are top-level. Otherwise the spellings of the key of the object
        /// that holds them (giving two is refused).
        container: &'static [Field],
        /// The first is the one added when none is given.
        fields: &'static [Field],
        /// The fields are spellings of one field (giving two is refused), each matching the
        /// container spelling at the same index; otherwise distinct fields, each checked.
        spellings: bool,
    },
}

const CHAT: &[Field] = &[
    field(Watched::MaxCompletionTokens, "max_completion_tokens"),
    field(Watched::MaxTokens, "max_tokens"),
];
const MAX_TOKENS: &[Field] = &[field(Watched::MaxTokens, "max_tokens")];
const RESPONSES: &[Field] = &[field(Watched::MaxOutputTokens, "max_output_tokens")];
const GENERATION_CONFIG: &[Field] = &[
    field(Watched::GenerationConfig, "generationConfig"),
    field(Watched::GenerationConfigSnake, "generation_config"),
];
const GEMINI: &[Field] = &[
    field(Watched::GeminiMaxOutputTokens, "maxOutputTokens"),
    field(Watched::GeminiMaxOutputTokensSnake, "max_output_tokens"),
];
const INFERENCE_CONFIG: &[Field] = &[field(Watched::InferenceConfig, "inferenceConfig")];
const BEDROCK: &[Field] = &[field(Watched::InferenceMaxTokens, "maxTokens")];

fn target(classified: &Classified) -> Target {
    use Endpoint::*;
    let top = |fields| Target::Fields {
        container: &[],
        fields,
        spellings: false,
    };
    match classified.endpoint {
        ChatCompletions | AzureChatCompletions => top(CHAT),
        Completions | AzureCompletions | Messages => top(MAX_TOKENS),
        Responses => top(RESPONSES),
        GeminiGenerate if classified.counts_tokens => Target::None,
        GeminiGenerate => Target::Fields {
            container: GENERATION_CONFIG,
            fields: GEMINI,
            spellings: true,
        },
        BedrockConverse => Target::Fields {
            container: INFERENCE_CONFIG,
            fields: BEDROCK,
            spellings: false,
        },
        BedrockInvoke => Target::Unenforceable,
        Embeddings | AzureEmbeddings | CountTokens => Target::None,
    }
}

/// Whether a request to this endpoint has output-token fields for the walk to locate.
pub fn has_cap_fields(classified: &Classified) -> bool {
    matches!(target(classified), Target::Fields { .. })
}

/// What the cap makes of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CapOutcome {
    /// The changes enforcement makes: values over the cap lowered (with `clamp`), the field
    /// added when the request gives none.
    pub changes: Vec<Change>,
    /// A value was over the cap and is lowered to it.
    pub clamped: bool,
    /// The request gave no value, and is given the cap.
    pub added: bool,
    /// 403 `max_output_tokens_exceeded`: the request asks for more than the cap (or the cap
    /// cannot be enforced on this API).
    pub over: Option<Reply>,
    /// Whether `over` refuses the request (action `refuse`, or an API the cap cannot be
    /// enforced on) rather than being clamped.
    pub refused: bool,
}

/// The consumer and its cap, and the shape of replies to the request.
#[derive(Debug, Clone, Copy)]
pub struct CapRequest<'a> {
    pub cap: OutputCap,
    pub consumer: &'a str,
    pub shape: ApiFamily,
}

/// A token count as a request gives it.
enum TokenValue {
    Null,
    /// `0`, `-0` or a negative integer: proto3 (Gemini) reads 0 as "not set", and servers that
    /// take 0 or a negative count as "no limit" or "the model's default" exist, so such a
    /// value is treated as absent and replaced by the cap.
    Unset,
    Count(u64),
    Invalid,
}

/// Only a JSON integer literal (no fraction or exponent) that fits a u64, a zero or negative
/// one, or `null`: providers differ on what else they accept, and the filter must read what
/// they read.
fn token_value(text: &[u8]) -> TokenValue {
    if text == b"null" {
        return TokenValue::Null;
    }
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return TokenValue::Invalid;
    }
    if negative || digits.iter().all(|digit| *digit == b'0') {
        return TokenValue::Unset;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .map_or(TokenValue::Invalid, TokenValue::Count)
}

/// Checks and enforces the output-token cap on a walked body. `Err` is a 400: the body gives
/// the cap's fields in a form the filter will not guess at.
pub fn output_cap(
    classified: &Classified,
    body: &[u8],
    located: &Located,
    request: CapRequest<'_>,
) -> Result<CapOutcome, Reply> {
    let (container, fields, spellings) = match target(classified) {
        Target::None => return Ok(CapOutcome::default()),
        Target::Unenforceable => {
            return Ok(CapOutcome {
                over: Some(Reply::new(
                    Code::MaxOutputTokensExceeded,
                    request.shape,
                    format!(
                        "consumer \"{}\" may ask for at most {} output tokens, which cannot be \
                         enforced on {}: its body is the model's own format; use the Converse \
                         API (/model/{{modelId}}/converse) instead",
                        request.consumer,
                        request.cap.limit,
                        classified.endpoint.name()
                    ),
                )),
                refused: true,
                ..CapOutcome::default()
            })
        }
        Target::Fields {
            container,
            fields,
            spellings,
        } => (container, fields, spellings),
    };
    let invalid = |message: String| Reply::new(Code::InvalidRequest, request.shape, message);
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
                display_model(&key)
            )));
        }
    }
    let undefined = undefined_limit(classified.endpoint, body)
        .map_err(|()| invalid("the request body could not be read".to_owned()))?;
    if let Some(key) = undefined {
        let limit_field = fields.first().map_or("max_tokens", |field| field.name);
        return Err(invalid(format!(
            "\"{}\" is not a parameter of the {} API and may limit or lengthen output on an \
             OpenAI-compatible server (a consumer with an output-token cap may send only the \
             API's own parameters and sampling settings such as \"top_k\"); set the limit with \
             \"{limit_field}\" and leave the field out",
            display_model(&key),
            classified.endpoint.name()
        )));
    }
    // The cap bounds what one request produces in all: with several choices, each may have
    // its share of it.
    let choices = choices(body, located, request.shape)?;
    let limit = request.cap.limit.checked_div(choices.count).unwrap_or(0);
    if limit == 0 {
        return Ok(CapOutcome {
            over: Some(Reply::new(
                Code::MaxOutputTokensExceeded,
                request.shape,
                format!(
                    "{} asks for {}; consumer \"{}\" may have at most {} output tokens per \
                     request, fewer than one per {}",
                    choices.subject(),
                    choices.describe(false),
                    request.consumer,
                    request.cap.limit,
                    choices.unit()
                ),
            )),
            refused: true,
            ..CapOutcome::default()
        });
    }
    let mut outcome = CapOutcome::default();

    // The object that holds the fields, and the spelling of its key (for names in messages,
    // and for the spelling of a field added to it).
    let (object, prefix, spelling) = match container {
        [] => (located.top, "", 0),
        _ => {
            let mut present = container
                .iter()
                .enumerate()
                .filter_map(|(index, key)| Some((index, *key, located.get(key.what)?)));
            let first = present.next();
            if let (Some((_, one, _)), Some((_, other, _))) = (first, present.next()) {
                return Err(invalid(both_spellings(one.name, other.name)));
            }
            let (Some(default_key), Some(default_field)) = (container.first(), fields.first())
            else {
                return Ok(outcome);
            };
            match first {
                None => {
                    outcome.changes.push(Change::Insert {
                        object: top_of(located, request.shape)?,
                        member: format!(
                            r#""{}":{{"{}":{limit}}}"#,
                            default_key.name, default_field.name
                        ),
                    });
                    outcome.added = true;
                    return Ok(outcome);
                }
                Some((index, key, found)) => {
                    let field = fields.get(index).unwrap_or(default_field);
                    if raw(body, &found) == b"null" {
                        outcome.changes.push(Change::Replace {
                            span: found.span(),
                            text: format!(r#"{{"{}":{limit}}}"#, field.name),
                        });
                        outcome.added = true;
                        return Ok(outcome);
                    }
                    let Some(object) = found.object else {
                        return Err(invalid(format!("\"{}\" must be an object", key.name)));
                    };
                    (Some(object), key.name, index)
                }
            }
        }
    };
    let name = |field: &Field| {
        if prefix.is_empty() {
            field.name.to_owned()
        } else {
            format!("{prefix}.{}", field.name)
        }
    };

    let mut given = false;
    let mut nulls = Vec::new();
    let mut spelled: Option<&Field> = None;
    for field in fields {
        let Some(found) = located.get(field.what) else {
            continue;
        };
        if spellings {
            if let Some(other) = spelled {
                return Err(invalid(both_spellings(&name(other), &name(field))));
            }
            spelled = Some(field);
        }
        match token_value(raw(body, &found)) {
            TokenValue::Null => nulls.push((field.what, found)),
            TokenValue::Unset => {
                // As if absent: the cap takes the value's place, whatever the action.
                given = true;
                outcome.changes.push(Change::Replace {
                    span: found.span(),
                    text: limit.to_string(),
                });
                outcome.added = true;
            }
            TokenValue::Invalid => {
                return Err(invalid(format!(
                    "\"{}\" must be a whole number of tokens (a JSON integer, 0 or more) or null",
                    name(field)
                )))
            }
            TokenValue::Count(asked) => {
                given = true;
                if asked <= limit {
                    continue;
                }
                outcome.over.get_or_insert_with(|| {
                    let message = if choices.count > 1 {
                        format!(
                            "\"{}\" asks for {asked} output tokens for each of {}; consumer \
                             \"{}\" may ask for at most {} in all, {limit} per {}",
                            name(field),
                            choices.describe(true),
                            request.consumer,
                            request.cap.limit,
                            choices.unit()
                        )
                    } else {
                        format!(
                            "\"{}\" asks for {asked} output tokens; consumer \"{}\" may ask for \
                             at most {limit}",
                            name(field),
                            request.consumer
                        )
                    };
                    Reply::new(Code::MaxOutputTokensExceeded, request.shape, message)
                });
                outcome.changes.push(Change::Replace {
                    span: found.span(),
                    text: limit.to_string(),
                });
                outcome.clamped = true;
            }
        }
    }
    if outcome.over.is_some() && request.cap.action == CapAction::Refuse {
        return Ok(CapOutcome {
            over: outcome.over,
            refused: true,
            ..CapOutcome::default()
        });
    }
    if given {
        return Ok(outcome);
    }

    // None given: the cap is. A spelling given as null is replaced (adding the other spelling
    // would give two); otherwise the first field, in the container's spelling, is added.
    let added = if spellings {
        fields.get(spelling).or(fields.first())
    } else {
        fields.first()
    };
    let Some(added) = added else {
        return Ok(outcome);
    };
    let null = nulls
        .iter()
        .find(|(what, _)| spellings || *what == added.what);
    match null {
        Some((_, found)) => outcome.changes.push(Change::Replace {
            span: found.span(),
            text: limit.to_string(),
        }),
        None => {
            let object = match object {
                Some(object) => object,
                None => top_of(located, request.shape)?,
            };
            outcome.changes.push(Change::Insert {
                object,
                member: format!(r#""{}":{limit}"#, added.name),
            });
        }
    }
    outcome.added = true;
    Ok(outcome)
}

/// How many outputs one request generates: prompts times choices, and the fields that say so.
#[derive(Debug, Clone, Copy)]
struct Choices {
    /// Every output the provider generates: `prompts` times `per_prompt`.
    count: u64,
    /// The prompts a completions request gives in a list; 1 otherwise.
    prompts: u64,
    /// The choices generated for each prompt.
    per_prompt: u64,
    /// The choice-count field that gives `per_prompt`.
    name: &'static str,
}

impl Choices {
    /// The fields that multiply the outputs, for the start of a message.
    fn subject(&self) -> String {
        match (self.prompts > 1, self.per_prompt > 1) {
            (true, true) => format!("\"prompt\" with \"{}\"", self.name),
            (true, false) => "\"prompt\"".to_owned(),
            (false, _) => format!("\"{}\"", self.name),
        }
    }

    /// How many outputs, and why: `4 choices ("n")` (the field only `with_field`),
    /// `16 outputs (8 prompts, 2 choices each from "n")`.
    fn describe(&self, with_field: bool) -> String {
        match (self.prompts > 1, self.per_prompt > 1) {
            (true, true) => format!(
                "{} outputs ({} prompts, {} choices each from \"{}\")",
                self.count, self.prompts, self.per_prompt, self.name
            ),
            (true, false) => format!("{} outputs (one per prompt)", self.count),
            (false, _) if with_field => format!("{} choices (\"{}\")", self.count, self.name),
            (false, _) => format!("{} choices", self.count),
        }
    }

    /// What the cap is shared among.
    fn unit(&self) -> &'static str {
        if self.prompts > 1 {
            "output"
        } else {
            "choice"
        }
    }
}

/// The choice-count fields of each API: `n` and `best_of` (OpenAI completions generate
/// `best_of` and return `n`), Gemini's `candidateCount` in either spelling.
const CHOICE_FIELDS: [(Watched, &str); 4] = [
    (Watched::Choices, "n"),
    (Watched::BestOf, "best_of"),
    (Watched::GeminiCandidateCount, "candidateCount"),
    (Watched::GeminiCandidateCountSnake, "candidate_count"),
];

/// The outputs a request asks for: the largest choice count it gives (1 when it gives none,
/// null, 0 or less) times the prompts of a completions `prompt` list. The count is held to
/// the same form as a token count, so the filter reads what the provider reads. More outputs
/// than a u64 holds count as that many.
fn choices(body: &[u8], located: &Located, shape: ApiFamily) -> Result<Choices, Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidRequest, shape, message);
    let given = |what| located.get(what).is_some();
    if given(Watched::GeminiCandidateCount) && given(Watched::GeminiCandidateCountSnake) {
        return Err(invalid(both_spellings("candidateCount", "candidate_count")));
    }
    let mut per_prompt = 1;
    let mut name = "n";
    for (what, field) in CHOICE_FIELDS {
        let Some(found) = located.get(what) else {
            continue;
        };
        match token_value(raw(body, &found)) {
            TokenValue::Null | TokenValue::Unset => {}
            TokenValue::Invalid => {
                return Err(invalid(format!(
                    "\"{field}\" must be a whole number of choices (a JSON integer) or null"
                )))
            }
            TokenValue::Count(count) if count > per_prompt => {
                per_prompt = count;
                name = field;
            }
            TokenValue::Count(_) => {}
        }
    }
    let prompts = located
        .get(Watched::Prompt)
        .map_or(1, |found| prompts(raw(body, &found)));
    Ok(Choices {
        count: prompts.saturating_mul(per_prompt),
        prompts,
        per_prompt,
        name,
    })
}

/// How many prompts a completions `prompt` gives, each answered with its own outputs: a list
/// of strings or of token lists gives one per item; a string, or one list of token ids, is one
/// prompt. A list that holds any string or list counts every item, so a mixed list is never
/// counted low.
fn prompts(raw: &[u8]) -> u64 {
    let text = raw.trim_ascii();
    if text.first() != Some(&b'[') {
        return 1;
    }
    let (mut depth, mut in_string, mut escaped, mut expecting) = (0u32, false, false, false);
    let (mut items, mut texts) = (0u64, 0u64);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if expecting && !byte.is_ascii_whitespace() && byte != b']' {
            expecting = false;
            items = items.saturating_add(1);
            if matches!(byte, b'"' | b'[') {
                texts = texts.saturating_add(1);
            }
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                expecting = depth == 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    if texts == 0 {
        1
    } else {
        items
    }
}

fn top_of(located: &Located, shape: ApiFamily) -> Result<ObjectEnd, Reply> {
    located.top.ok_or_else(|| {
        Reply::new(
            Code::InternalError,
            shape,
            "the body could not be rewritten",
        )
    })
}

fn both_spellings(one: &str, other: &str) -> String {
    format!(
        "the body gives both \"{one}\" and \"{other}\", which the provider reads as one field; \
         send one of them"
    )
}

#[cfg(test)]
mod tests;
