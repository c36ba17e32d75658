//! `posturio eval`: one request through the request pipeline, over the fake host, exactly as
//! the filter runs it; the decision printed as JSON (with the answer itself, for a request the
//! gateway answers, such as a model list). With `--response`, the upstream's answer
//! goes through the pipeline too, and the usage read and the budget charged are printed.

use std::rc::Rc;

use serde_json::{json, Value};

use super::{config_errors, read, CliError, Output};
use crate::pipeline::{FakeHost, Request};
use crate::policy::budget::Counter;
use crate::policy::compiled::Identity;
use crate::policy::usage::UsageFormat;
use crate::policy::{Policy, Reply};

struct EvalArgs {
    config: String,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    /// The consumer as the identity metadata would name it (for `identity.metadata` policies).
    identity: Option<String>,
    request_file: String,
    /// The upstream's answer: a body file and its headers.
    response_file: Option<String>,
    response_headers: Vec<(String, Vec<u8>)>,
    /// What every guard answers: `allow` (the default), `flag` or `error`.
    guard_answer: GuardAnswer,
}

/// A guard's answer in `eval`, where no guard service is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardAnswer {
    Allow,
    Flag,
    Error,
}

impl GuardAnswer {
    fn parse(value: &str) -> Result<GuardAnswer, CliError> {
        match value {
            "allow" => Ok(GuardAnswer::Allow),
            "flag" => Ok(GuardAnswer::Flag),
            "error" => Ok(GuardAnswer::Error),
            other => Err(CliError::Usage(format!(
                "--guard-answer \"{other}\" is not allow, flag or error"
            ))),
        }
    }

    /// An answer both wire shapes read: moderation's `results` and the webhook's `verdict`.
    fn status_and_body(self) -> (u16, String) {
        let (flagged, verdict) = match self {
            GuardAnswer::Allow => (false, "allow"),
            GuardAnswer::Flag => (true, "block"),
            GuardAnswer::Error => return (500, String::new()),
        };
        let body = json!({"results": [{"flagged": flagged}], "verdict": verdict});
        (200, body.to_string())
    }
}

/// `NAME: VALUE`, the name lower-cased.
fn header_flag(flag: &str, header: &str) -> Result<(String, Vec<u8>), CliError> {
    let Some((name, value)) = header.split_once(':') else {
        return Err(CliError::Usage(format!(
            "{flag} \"{header}\" is not 'NAME: VALUE'"
        )));
    };
    Ok((
        name.trim().to_ascii_lowercase(),
        value.trim().as_bytes().to_vec(),
    ))
}

fn parse_args(args: &[String]) -> Result<EvalArgs, CliError> {
    let mut method = "POST".to_owned();
    let mut path = None;
    let mut headers = Vec::new();
    let mut identity = None;
    let mut response_file = None;
    let mut response_headers = Vec::new();
    let mut guard_answer = GuardAnswer::Allow;
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--method" => method = value("--method")?,
            "--path" => path = Some(value("--path")?),
            "--identity" => identity = Some(value("--identity")?),
            "--header" => headers.push(header_flag("--header", &value("--header")?)?),
            "--response" => response_file = Some(value("--response")?),
            "--response-header" => response_headers.push(header_flag(
                "--response-header",
                &value("--response-header")?,
            )?),
            "--guard-answer" => guard_answer = GuardAnswer::parse(&value("--guard-answer")?)?,
            flag if flag.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {flag}")))
            }
            _ => positional.push(arg.clone()),
        }
    }
    let [config, request_file] = <[String; 2]>::try_from(positional)
        .map_err(|_| CliError::Usage("eval takes a CONFIG file and a REQUEST_FILE".to_owned()))?;
    let path = path.ok_or_else(|| CliError::Usage("eval needs --path".to_owned()))?;
    Ok(EvalArgs {
        config,
        method,
        path,
        headers,
        identity,
        request_file,
        response_file,
        response_headers,
        guard_answer,
    })
}

pub fn eval(args: &[String]) -> Result<Output, CliError> {
    let args = parse_args(args)?;
    let policy = match Policy::from_json(&read(&args.config)?) {
        Ok(policy) => policy,
        Err(errors) => {
            return Ok(Output {
                code: 2,
                stdout: String::new(),
                stderr: config_errors(&args.config, &errors),
            })
        }
    };
    // An identity the policy would never read must not look as if it had been used.
    match (&args.identity, &policy.identity) {
        (Some(_), Identity::Header(header)) => {
            return Err(CliError::Usage(format!(
                "--identity gives the consumer of a policy whose identity is metadata; this \
                 policy reads the header \"{header}\": use --header '{header}: NAME'"
            )))
        }
        (Some(_), Identity::Verified(_)) if policy.identity.metadata().is_none() => {
            return Err(CliError::Usage(
                "--identity gives the consumer of a policy whose identity is metadata; this \
                 policy identifies requests by API key or client certificate only"
                    .to_owned(),
            ))
        }
        (Some(_), Identity::None) => {
            return Err(CliError::Usage(
                "--identity gives the consumer of a policy whose identity is metadata; this \
                 policy has no identity, every request is evaluated as default"
                    .to_owned(),
            ))
        }
        _ => {}
    }
    let body = read(&args.request_file)?;
    let response = args.response_file.as_deref().map(read).transpose()?;

    // The request as Envoy would hand it to the filter.
    let mut headers = vec![
        (":method".to_owned(), args.method.into_bytes()),
        (":path".to_owned(), args.path.clone().into_bytes()),
    ];
    if !args.headers.iter().any(|(name, _)| name == "content-type") {
        headers.push(("content-type".to_owned(), b"application/json".to_vec()));
    }
    headers.extend(args.headers);
    let mut host = FakeHost::new(headers, body);
    // The real clock, as Envoy would give it: key expiry and budget windows depend on it.
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        host.now
            .set(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX));
    }
    if let Some(response) = &response {
        host.upstream_headers = upstream_headers(&args.response_headers);
        *host.upstream_chunks.borrow_mut() = vec![response.clone()];
        host.properties
            .borrow_mut()
            .push(("response.code_details".to_owned(), b"via_upstream".to_vec()));
    }
    if let (Some((namespace, path)), Some(identity)) = (policy.identity.metadata(), &args.identity)
    {
        let mut key = vec!["metadata", "filter_metadata", namespace];
        key.extend(path.iter().map(String::as_str));
        host.properties
            .borrow_mut()
            .push((key.join("."), identity.as_bytes().to_vec()));
    }
    let route_header = policy.route_header.clone();
    let mut request = Request::new(&host, Some(Rc::new(policy)), Rc::default());
    request.on_request_headers(host.body.is_empty());
    request.on_request_body(host.body.len(), true);
    // Guards are not called from eval: each call gets the answer asked for.
    let calls = host.http_calls.borrow().len();
    let (status, answer) = args.guard_answer.status_and_body();
    for token in 0..calls {
        host.answer_call(status, &answer);
        if let Ok(token) = u32::try_from(token) {
            request.on_guard_answer(token, 1, answer.len());
        }
    }
    let forwarded = request.outcome().is_some_and(|outcome| outcome.forwarded);
    if let (true, Some(response)) = (forwarded, &response) {
        // The upstream answers with the whole body in one chunk, and the stream ends.
        request.on_response_headers(response.is_empty());
        if !response.is_empty() {
            request.on_response_body(response.len(), true);
        }
        request.on_log();
    }
    let Some(outcome) = request.outcome() else {
        return Err(CliError::Usage("the request was not decided".to_owned()));
    };
    let facts = &outcome.facts;
    let rules: Vec<Value> = facts
        .rules
        .iter()
        .map(|fired| {
            json!({"id": fired.rule, "action": fired.action.as_str(), "enforced": fired.enforced})
        })
        .collect();
    let (code, mut verdict) = match (&outcome.reply, outcome.forwarded) {
        (Some(reply), false) => (
            1,
            json!({
                "decision": "deny",
                "status": reply.status(),
                "code": reply.code.as_str(),
                "consumer": facts.consumer,
                "model": facts.model,
                "provider": facts.provider,
                "rules": rules,
                "reply": reply_json(reply),
            }),
        ),
        // Answered by the gateway itself (a model list): what the client receives.
        (None, false) => {
            let sent = host.answers.borrow().last().cloned();
            (
                0,
                json!({
                    "decision": "allow",
                    "answered_locally": true,
                    "status": sent.as_ref().map(|sent| sent.status),
                    "consumer": facts.consumer,
                    "api": facts.family,
                    "model": facts.model,
                    "answer": sent.map_or(Value::Null, |sent| {
                        serde_json::from_slice::<Value>(&sent.body).unwrap_or(Value::Null)
                    }),
                }),
            )
        }
        (audited, _) => {
            let new_body = host.new_body.borrow().clone();
            let forwarded_body = new_body
                .as_deref()
                .map(|new_body| serde_json::from_slice::<Value>(new_body).unwrap_or(Value::Null));
            (
                0,
                json!({
                    "decision": if audited.is_some() { "audit" } else { "allow" },
                    "cluster": host.header(&route_header),
                    "path": host.header(":path"),
                    "consumer": facts.consumer,
                    "model": facts.model,
                    "forwarded_model": facts.upstream_model,
                    "provider": facts.provider,
                    "rules": rules,
                    "redactions": facts.redactions,
                    "output_cap_clamped": facts.output_cap_clamped,
                    "output_cap_added": facts.output_cap_added,
                    "stream_usage_added": facts.stream_usage_added,
                    "usage_format": outcome.usage.map(usage_format_name),
                    "body_rewritten": new_body.is_some(),
                    "forwarded_body": forwarded_body,
                    "audited": audited.as_ref().map(|reply| json!({
                        "code": reply.code.as_str(),
                        "message": reply.message,
                    })),
                }),
            )
        }
    };
    // A pooled model: the plan each target's attempt applies.
    let plan = host
        .property_value(crate::policy::plan::PLAN_PROPERTY)
        .and_then(|plan| serde_json::from_str::<Value>(&plan).ok());
    if let (Some(plan), Some(object)) = (plan, verdict.as_object_mut()) {
        object.insert("plan".to_owned(), plan);
    }
    if let (false, Some(object)) = (facts.guards.is_empty(), verdict.as_object_mut()) {
        let guards: Vec<Value> = facts
            .guards
            .iter()
            .map(|(id, outcome)| json!({"id": id, "outcome": outcome}))
            .collect();
        object.insert("guards".to_owned(), Value::Array(guards));
    }
    if let (true, Some(object)) = (response.is_some() && forwarded, verdict.as_object_mut()) {
        object.insert("usage".to_owned(), usage_json(&host));
        object.insert("budget_charged".to_owned(), budget_charged(&host));
        // The answer's cost and what was charged in dollars, as the access log has them.
        for (field, key) in [
            ("cost_microusd", "posturio.cost_microusd"),
            ("charged_microusd", "posturio.charged_microusd"),
        ] {
            let value = host
                .property_value(key)
                .and_then(|value| value.parse::<u64>().ok());
            object.insert(field.to_owned(), json!(value));
        }
        if let Some(answer) = answer_json(&host) {
            object.insert("answer".to_owned(), answer);
        }
    }
    Ok(Output {
        code,
        stdout: serde_json::to_string_pretty(&verdict).unwrap_or_default(),
        stderr: String::new(),
    })
}

/// The upstream's headers: status 200 unless a `:status` header says otherwise.
fn upstream_headers(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut all = headers.to_vec();
    if !headers.iter().any(|(name, _)| name == ":status") {
        all.insert(0, (":status".to_owned(), b"200".to_vec()));
    }
    all
}

/// The usage the pipeline read from the answer, as it put it in filter state; `null` when
/// the answer reported none.
/// What answer inspection made of the response (rules with `direction` `response` or
/// `both`): its verdict, the rules that fired, and what the client receives.
fn answer_json(host: &FakeHost) -> Option<Value> {
    let verdict = host.property_value("posturio.response")?;
    let rules = host.property_value("posturio.response_rules");
    let replaced = host.answers.borrow().last().map(|sent| {
        json!({
            "status": sent.status,
            "body": serde_json::from_slice::<Value>(&sent.body).unwrap_or(Value::Null),
        })
    });
    let delivered = host.delivered.borrow().concat();
    let sent = match replaced {
        Some(replaced) => replaced,
        None => serde_json::from_slice::<Value>(&delivered)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&delivered).into_owned())),
    };
    Some(json!({
        "response": verdict,
        "rules": rules.map_or_else(Vec::new, |rules| {
            rules.split(',').map(str::to_owned).collect::<Vec<_>>()
        }),
        "sent": sent,
    }))
}

fn usage_json(host: &FakeHost) -> Value {
    let read = |key: &str| {
        host.property_value(key)
            .and_then(|value| value.parse::<u64>().ok())
    };
    match read("posturio.tokens") {
        None => Value::Null,
        Some(total) => json!({
            "input": read("posturio.input_tokens"),
            "output": read("posturio.output_tokens"),
            "cached": read("posturio.cached_tokens"),
            "total": total,
        }),
    }
}

/// The tokens charged to the consumer's budget (the largest of its windows: each is charged
/// the same); `null` when it has no budget.
fn budget_charged(host: &FakeHost) -> Value {
    host.shared
        .borrow()
        .iter()
        .filter(|(key, _)| !key.starts_with("posturio.budget.usd."))
        .map(|(_, (value, _))| Counter::decode(Some(value)).used)
        .max()
        .map_or(Value::Null, Value::from)
}

/// The response usage format, as eval prints it.
fn usage_format_name(format: UsageFormat) -> &'static str {
    match format {
        UsageFormat::OpenAiChat => "openai_chat",
        UsageFormat::OpenAiResponses => "openai_responses",
        UsageFormat::Anthropic => "anthropic",
        UsageFormat::Gemini => "gemini",
        UsageFormat::BedrockConverse => "bedrock_converse",
    }
}

fn reply_json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body()).unwrap_or(Value::Null)
}
