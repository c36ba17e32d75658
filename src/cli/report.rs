//! `posturio report LOG...`: what each consumer and model did over an access log — requests,
//! refusals by code, rule hits, guard outcomes, tokens, spend, what budgets were charged and
//! the providers that served — with totals and the time span covered. Text for people,
//! `--json` for tools (schema in docs/cli.md). Memory grows with the distinct consumers and
//! models, never with the log.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::access_log::{self, Decision, Entry, Record, Stats};
use super::{CliError, Output};
use crate::policy::rfc3339;

/// Groups kept apart at most; beyond, models of a consumer are folded into one row, so a
/// client sending endless made-up model names cannot make the report grow without bound.
pub const MAX_GROUPS: usize = 100_000;

/// Model rows one consumer keeps apart at most: model names come from clients (a made-up
/// name costs a client one free 403), so one consumer's junk must not fold another's models.
pub const MAX_MODELS_PER_CONSUMER: usize = 1_000;

/// The row name of models folded together once `MAX_MODELS_PER_CONSUMER` (or `MAX_GROUPS`)
/// is reached.
pub const OTHER_MODELS: &str = "(other models)";

/// The row name of a value the log does not have.
pub const NONE: &str = "-";

/// What one consumer and model (or the whole log) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    /// Decided `allow` or `audit`: the policy let them go to a provider.
    pub forwarded: u64,
    /// Decided `deny`, or forwarded and then answered with a refusal in place of the
    /// provider's answer (`replaced`).
    pub refused: u64,
    /// Forwarded, then the answer withheld: `response_blocked`, `response_unreadable` (logged
    /// `allow` with that code; the client got an error, the provider was paid).
    pub replaced: u64,
    /// A sum reached `u64::MAX` and stopped there: its figure is a floor, not the total.
    pub saturated: bool,
    pub audited: u64,
    /// No Posturio decision (refused before the filter, say).
    pub undecided: u64,
    /// `deny` by `posturio_code`.
    pub refusals: BTreeMap<String, u64>,
    /// `audit` by `posturio_code`.
    pub audits: BTreeMap<String, u64>,
    /// Request rules by `id:action`.
    pub rules: BTreeMap<String, u64>,
    /// Answer rules by `id:action`.
    pub response_rules: BTreeMap<String, u64>,
    /// Guards by `id:outcome`.
    pub guards: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Requests whose usage the log has.
    pub usage_known: u64,
    pub cost_microusd: u64,
    pub cost_known: u64,
    /// Forwarded requests without a cost (usage unknown, a model without a price, or a log
    /// written before costs were).
    pub cost_unknown: u64,
    pub charged_tokens: u64,
    pub charged_microusd: u64,
    /// The provider that served a forwarded request, by name.
    pub providers: BTreeMap<String, u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(count) => *count = count.saturating_add(1),
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Adds to a sum; `saturated` records a sum that hit `u64::MAX` (a hostile usage figure, say).
fn add(sum: &mut u64, value: Option<u64>, saturated: &mut bool) {
    let Some(value) = value else {
        return;
    };
    match sum.checked_add(value) {
        Some(total) => *sum = total,
        None => {
            *sum = u64::MAX;
            *saturated = true;
        }
    }
}

/// The codes of a forwarded request whose answer the filter replaced with a refusal.
pub const REPLACED_CODES: &[&str] = &["response_blocked", "response_unreadable"];

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        let slot = into.entry(key.clone()).or_insert(0);
        *slot = slot.saturating_add(*count);
    }
}

impl Tally {
    pub fn add(&mut self, record: &Record) {
        self.requests = self.requests.saturating_add(1);
        let code = record.code.as_deref().unwrap_or(NONE);
        match record.decision {
            None => self.undecided = self.undecided.saturating_add(1),
            Some(Decision::Deny) => {
                self.refused = self.refused.saturating_add(1);
                bump(&mut self.refusals, code);
            }
            Some(Decision::Audit) => {
                self.audited = self.audited.saturating_add(1);
                bump(&mut self.audits, code);
            }
            Some(Decision::Allow) => {
                if REPLACED_CODES.contains(&code) {
                    self.refused = self.refused.saturating_add(1);
                    self.replaced = self.replaced.saturating_add(1);
                    bump(&mut self.refusals, code);
                }
            }
        }
        if record.forwarded() {
            self.forwarded = self.forwarded.saturating_add(1);
            if record.cost_microusd.is_none() {
                self.cost_unknown = self.cost_unknown.saturating_add(1);
            }
        }
        let listed = |entries: &[Entry], map: &mut BTreeMap<String, u64>| {
            for entry in entries {
                bump(map, &format!("{}:{}", entry.id, entry.value));
            }
        };
        listed(&record.rules, &mut self.rules);
        listed(&record.response_rules, &mut self.response_rules);
        listed(&record.guards, &mut self.guards);
        if record.input_tokens.is_some() || record.output_tokens.is_some() {
            self.usage_known = self.usage_known.saturating_add(1);
        }
        let saturated = &mut self.saturated;
        add(&mut self.input_tokens, record.input_tokens, saturated);
        add(&mut self.output_tokens, record.output_tokens, saturated);
        add(&mut self.cached_tokens, record.cached_tokens, saturated);
        add(
            &mut self.reasoning_tokens,
            record.reasoning_tokens,
            saturated,
        );
        if record.cost_microusd.is_some() {
            self.cost_known = self.cost_known.saturating_add(1);
        }
        add(&mut self.cost_microusd, record.cost_microusd, saturated);
        add(&mut self.charged_tokens, record.charged_tokens, saturated);
        add(
            &mut self.charged_microusd,
            record.charged_microusd,
            saturated,
        );
        // A refused request's log names the provider its model would have gone to.
        if let (Some(provider), true) = (&record.provider, record.forwarded()) {
            bump(&mut self.providers, provider);
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        let mut saturated = self.saturated || other.saturated;
        let mut sum = |a: &mut u64, b: u64| add(a, Some(b), &mut saturated);
        sum(&mut self.requests, other.requests);
        sum(&mut self.replaced, other.replaced);
        sum(&mut self.forwarded, other.forwarded);
        sum(&mut self.refused, other.refused);
        sum(&mut self.audited, other.audited);
        sum(&mut self.undecided, other.undecided);
        sum(&mut self.input_tokens, other.input_tokens);
        sum(&mut self.output_tokens, other.output_tokens);
        sum(&mut self.cached_tokens, other.cached_tokens);
        sum(&mut self.reasoning_tokens, other.reasoning_tokens);
        sum(&mut self.usage_known, other.usage_known);
        sum(&mut self.cost_microusd, other.cost_microusd);
        sum(&mut self.cost_known, other.cost_known);
        sum(&mut self.cost_unknown, other.cost_unknown);
        sum(&mut self.charged_tokens, other.charged_tokens);
        sum(&mut self.charged_microusd, other.charged_microusd);
        merge(&mut self.refusals, &other.refusals);
        merge(&mut self.audits, &other.audits);
        merge(&mut self.rules, &other.rules);
        merge(&mut self.response_rules, &other.response_rules);
        merge(&mut self.guards, &other.guards);
        merge(&mut self.providers, &other.providers);
        self.saturated = saturated;
    }

    fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The order rows are shown in: what a reviewer looks at first — refusals and audits,
    /// then spend, tokens and requests.
    fn impact(&self) -> (u64, u64, u64, u64) {
        (
            self.refused.saturating_add(self.audited),
            self.cost_microusd,
            self.tokens(),
            self.requests,
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "forwarded": self.forwarded,
            "refused": self.refused,
            "replaced": self.replaced,
            "saturated": self.saturated,
            "audited": self.audited,
            "undecided": self.undecided,
            "refusals": self.refusals,
            "audits": self.audits,
            "rules": self.rules,
            "response_rules": self.response_rules,
            "guards": self.guards,
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cached": self.cached_tokens,
                "reasoning": self.reasoning_tokens,
                "usage_known": self.usage_known,
            },
            "spend": {
                "microusd": self.cost_microusd,
                "usd": dollars(self.cost_microusd).trim_start_matches('$').to_owned(),
                "known": self.cost_known,
                "unknown": self.cost_unknown,
            },
            "charged": {
                "tokens": self.charged_tokens,
                "microusd": self.charged_microusd,
            },
            "providers": self.providers,
        })
    }
}

/// Text from the log as a terminal line may show it: a control character (an escape
/// sequence, a line break) is written escaped, so a forged log line cannot forge output.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        std::borrow::Cow::Owned(text.escape_debug().to_string())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Micro-dollars as dollars: at least cents, up to the micro-dollar, never rounded.
pub fn dollars(microusd: u64) -> String {
    let whole = microusd.checked_div(1_000_000).unwrap_or(0);
    let fraction = microusd.checked_rem(1_000_000).unwrap_or(0);
    let digits = format!("{fraction:06}");
    let trimmed = digits.trim_end_matches('0');
    let shown = if trimmed.len() < 2 {
        digits.get(..2).unwrap_or("00")
    } else {
        trimmed
    };
    format!("${whole}.{shown}")
}

/// Per consumer and model, and in total, over a log.
#[derive(Debug, Default)]
pub struct Report {
    pub groups: HashMap<(String, String), Tally>,
    /// Model rows per consumer, for `MAX_MODELS_PER_CONSUMER`.
    pub models: HashMap<String, usize>,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl Report {
    pub fn add(&mut self, record: &Record) {
        if let Some(start) = record.start {
            self.first = Some(self.first.map_or(start, |first| first.min(start)));
            self.last = Some(self.last.map_or(start, |last| last.max(start)));
        }
        let consumer = record.consumer.as_deref().unwrap_or(NONE);
        let model = record.model.as_deref().unwrap_or(NONE);
        let key = (consumer.to_owned(), model.to_owned());
        let key = if self.groups.contains_key(&key) {
            key
        } else {
            let models = self.models.entry(consumer.to_owned()).or_insert(0);
            if *models >= MAX_MODELS_PER_CONSUMER || self.groups.len() >= MAX_GROUPS {
                (consumer.to_owned(), OTHER_MODELS.to_owned())
            } else {
                *models = models.saturating_add(1);
                key
            }
        };
        self.groups.entry(key).or_default().add(record);
    }

    pub fn totals(&self) -> Tally {
        let mut totals = Tally::default();
        for tally in self.groups.values() {
            totals.merge(tally);
        }
        totals
    }

    /// The rows, most impact first, then by name.
    pub fn rows(&self) -> Vec<(&(String, String), &Tally)> {
        let mut rows: Vec<_> = self.groups.iter().collect();
        rows.sort_by(|(a_key, a), (b_key, b)| {
            b.impact().cmp(&a.impact()).then_with(|| a_key.cmp(b_key))
        });
        rows
    }
}

struct ReportArgs {
    json: bool,
    logs: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<ReportArgs, CliError> {
    let mut json = false;
    let mut logs = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--json" => json = true,
            "-" => logs.push(arg.clone()),
            flag if flag.starts_with('-') => {
                return Err(CliError::Usage(format!(
                    "report: unknown option \"{flag}\""
                )))
            }
            _ => logs.push(arg.clone()),
        }
    }
    if logs.is_empty() {
        return Err(CliError::Usage(
            "report takes one or more ACCESS_LOG files ('-' for standard input)".to_owned(),
        ));
    }
    Ok(ReportArgs { json, logs })
}

pub fn report(args: &[String]) -> Result<Output, CliError> {
    let args = parse_args(args)?;
    let mut report = Report::default();
    let stats = access_log::read_all(&args.logs, |record| report.add(&record))?;
    let stdout = if args.json {
        render_json(&report, &stats).to_string()
    } else {
        render_text(&report, &stats)
    };
    let unreadable = access_log::unreadable_note(&stats);
    Ok(Output {
        code: if unreadable.is_some() { 2 } else { 0 },
        stdout,
        stderr: unreadable.unwrap_or_default(),
    })
}

fn time(seconds: Option<i64>) -> Value {
    seconds.map_or(Value::Null, |seconds| json!(rfc3339::format(seconds)))
}

pub fn render_json(report: &Report, stats: &Stats) -> Value {
    let groups: Vec<Value> = report
        .rows()
        .into_iter()
        .map(|((consumer, model), tally)| {
            let mut row = tally.to_json();
            if let Some(object) = row.as_object_mut() {
                object.insert("consumer".to_owned(), json!(consumer));
                object.insert("model".to_owned(), json!(model));
            }
            row
        })
        .collect();
    json!({
        "schema": "posturio.report.v1",
        "input": input_json(stats),
        "span": {"first": time(report.first), "last": time(report.last)},
        "totals": report.totals().to_json(),
        "groups": groups,
    })
}

pub fn input_json(stats: &Stats) -> Value {
    json!({
        "files": stats.files,
        "lines": stats.lines,
        "records": stats.records,
        "skipped_lines": stats.skipped,
        "unreadable_files": stats.unreadable,
    })
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|(a_key, a), (b_key, b)| b.cmp(a).then_with(|| a_key.cmp(b_key)));
    entries
        .iter()
        .map(|(key, count)| format!("{} {count}", shown(key)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines of one tally below its heading, indented.
fn details(tally: &Tally, indent: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "{indent}requests {}: forwarded {}, refused {}{}, audited {}{}",
        tally.requests,
        tally.forwarded,
        tally.refused,
        if tally.replaced > 0 {
            format!(
                " ({} of them forwarded, then the answer replaced by a refusal)",
                tally.replaced
            )
        } else {
            String::new()
        },
        tally.audited,
        if tally.undecided > 0 {
            format!(", not decided by Posturio {}", tally.undecided)
        } else {
            String::new()
        }
    )];
    lines.push(format!(
        "{indent}tokens: input {}, output {}, cached {}, reasoning {} (usage of {})",
        tally.input_tokens,
        tally.output_tokens,
        tally.cached_tokens,
        tally.reasoning_tokens,
        plural(tally.usage_known, "request")
    ));
    lines.push(format!(
        "{indent}spend: {} (cost of {}; unknown for {} forwarded)",
        dollars(tally.cost_microusd),
        plural(tally.cost_known, "request"),
        tally.cost_unknown
    ));
    if tally.charged_tokens > 0 || tally.charged_microusd > 0 {
        lines.push(format!(
            "{indent}charged (as budgets would be): {} tokens, {}",
            tally.charged_tokens,
            dollars(tally.charged_microusd)
        ));
    }
    let named = [
        ("refused", &tally.refusals),
        ("audited", &tally.audits),
        ("rules", &tally.rules),
        ("answer rules", &tally.response_rules),
        ("guards", &tally.guards),
        ("providers", &tally.providers),
    ];
    for (name, map) in named {
        if !map.is_empty() {
            lines.push(format!("{indent}{name}: {}", counts(map)));
        }
    }
    lines
}

/// `n thing` or `n things`.
pub fn plural(count: u64, thing: &str) -> String {
    if count == 1 {
        format!("1 {thing}")
    } else {
        format!("{count} {thing}s")
    }
}

/// One line of the overview table.
fn table_line(cells: [&str; 7], widths: [usize; 2]) -> String {
    let [consumer, model, requests, refused, audited, tokens, spend] = cells;
    let [consumer_width, model_width] = widths;
    format!(
        "  {consumer:<consumer_width$}  {model:<model_width$}  {requests:>9}  {refused:>8}  \
         {audited:>8}  {tokens:>12}  {spend:>14}"
    )
}

/// The rows at a glance, in the order of the details below.
fn overview(rows: &[(&(String, String), &Tally)]) -> Vec<String> {
    let width = |pick: fn(&(String, String)) -> usize, title: &str| {
        rows.iter()
            .map(|(key, _)| pick(key))
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [
        width(|key| key.0.chars().count(), "consumer"),
        width(|key| key.1.chars().count(), "model"),
    ];
    let mut lines = vec![table_line(
        [
            "consumer", "model", "requests", "refused", "audited", "tokens", "spend",
        ],
        widths,
    )];
    for ((consumer, model), tally) in rows {
        lines.push(table_line(
            [
                &shown(consumer),
                &shown(model),
                &tally.requests.to_string(),
                &tally.refused.to_string(),
                &tally.audited.to_string(),
                &tally.tokens().to_string(),
                &dollars(tally.cost_microusd),
            ],
            widths,
        ));
    }
    lines
}

pub fn render_text(report: &Report, stats: &Stats) -> String {
    let mut lines = vec![format!(
        "{} from {} in {}; {} skipped (not Posturio access-log lines)",
        plural(stats.records, "record"),
        plural(stats.lines, "line"),
        plural(stats.files, "file"),
        plural(stats.skipped, "line")
    )];
    match (report.first, report.last) {
        (Some(first), Some(last)) => lines.push(format!(
            "span: {} to {} (request start times, UTC)",
            rfc3339::format(first),
            rfc3339::format(last)
        )),
        _ => lines.push("span: no start times".to_owned()),
    }
    let totals = report.totals();
    if report.groups.keys().any(|(_, model)| model == OTHER_MODELS) {
        lines.push(format!(
            "models past the first {MAX_MODELS_PER_CONSUMER} of a consumer are folded into its \
             row \"{OTHER_MODELS}\"; model names are shown as logged (a lookalike name is the \
             client's text: its code says whether the catalogue knew it)"
        ));
    }
    if totals.saturated {
        lines.push(
            "warning: a sum reached 18446744073709551615 and stopped: the figures marked are \
             floors (a usage or cost figure in the log is absurd)"
                .to_owned(),
        );
    }
    lines.push(String::new());
    lines.push("totals".to_owned());
    lines.extend(details(&totals, "  "));
    let rows = report.rows();
    lines.push(String::new());
    lines.push("by consumer and model, most refused and audited first, then by spend".to_owned());
    lines.extend(overview(&rows));
    for ((consumer, model), tally) in rows {
        lines.push(String::new());
        lines.push(format!(
            "consumer {}, model {}",
            shown(consumer),
            shown(model)
        ));
        lines.extend(details(tally, "  "));
    }
    lines.join("\n")
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
