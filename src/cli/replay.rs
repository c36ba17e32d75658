//! `posturio replay OLD NEW LOG...`: what NEW would change for the recorded traffic. Each
//! record's decision facts (consumer, model, API, the rules and guards that fired, the tokens
//! charged) are judged again with NEW's own tables — its catalogue, each consumer's models,
//! mode, rule list, guards and budget — never by running a rule: prompts are never logged.
//! What depends on the prompt or on what the client presented is counted apart and said
//! plainly (`limits.rs` of this command lists it per consumer). OLD is the baseline those
//! limits are found against, and a check that the log was written under it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::access_log::{self, Record, Stats};
use super::replay_judge::{
    consumer_for, judge, later_checks, recorded_fate, unreplayable, Fate, Recorded, EARLY_CODES,
};
pub use super::replay_render::{render_json, render_text};
use super::report::{MAX_MODELS_PER_CONSUMER, NONE, OTHER_MODELS, REPLACED_CODES};
use super::{config_errors, read, CliError, Output};
use crate::pipeline::reservation_estimate;
use crate::policy::budget::{self, Counter, Reserve, Unit, Window};
use crate::policy::config::Mode;
use crate::policy::limits::AskedOutput;
use crate::policy::price::cost;
use crate::policy::usage::Usage;
use crate::policy::Policy;

/// Rows kept apart at most (models come from clients): beyond, a consumer's models fold.
const MAX_ROWS: usize = 100_000;

/// How far out of start-time order a record may come and still be simulated in its budget
/// window: Envoy writes a line when the request ends, so a long stream is logged after
/// shorter requests that started later. Windows that ended this long before the latest
/// start time seen are dropped; a record that starts before that is not simulated (counted
/// as `late`).
pub const REORDER_SECONDS: i64 = 900;

/// Records held back at most to be simulated in start-time order: past it, the earliest is
/// simulated at once (a dense log then runs in nearly start order, in bounded memory).
pub const MAX_PENDING: usize = 16_384;

/// What replay found for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    NowRefused,
    NowAllowed,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::NowRefused => "now_refused",
            Change::NowAllowed => "now_allowed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// Everything the replay counts; memory bounded by consumers, models and reasons.
#[derive(Debug, Default)]
pub struct Replay {
    /// (consumer, model, change, reason) → requests.
    pub rows: BTreeMap<(String, String, Change, String), u64>,
    /// Model rows per consumer, for `MAX_MODELS_PER_CONSUMER`.
    models: HashMap<String, usize>,
    /// (consumer, what cannot be replayed) → requests it concerns.
    pub cannot_replay: BTreeMap<(String, String), u64>,
    /// (consumer, model, code) → requests refused at an early step (approval) that NEW would
    /// let past it, into rules, guards or caps that never ran for them: not judged.
    pub later_checks_not_run: BTreeMap<(String, String, String), u64>,
    /// Records refused before their consumer or model was known, for the request itself
    /// (malformed, unreadable, identity): kept as recorded, by code.
    pub not_replayed: BTreeMap<String, u64>,
    /// Records OLD does not decide as the log says: the log was written under another policy
    /// (or a budget, a guard's answer or an identity the log cannot show).
    pub old_mismatch: u64,
    /// Records that went through NEW's budget simulation.
    pub budgeted: u64,
    /// Budgeted records that started more than `REORDER_SECONDS` before the latest start
    /// time simulated: their window was gone; judged without their budget.
    pub late: u64,
    /// Records refused before (so nothing was charged) that NEW lets past a budget: charged
    /// their reservation, as the filter charges a request whose usage is unknown.
    pub usage_unknown: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

/// What the log says a forwarded request was charged (or used).
#[derive(Debug, Clone, Copy, Default)]
struct Logged {
    /// The usage the provider reported.
    usage: Option<Usage>,
    /// What the filter charged (`posturio_charged_*`), for a usage it did not know.
    charged_tokens: Option<u64>,
    charged_microusd: Option<u64>,
    /// Forwarded under OLD: a record without usage or charge owed nothing (a provider error,
    /// no provider reached, a passthrough).
    forwarded: bool,
}

/// A record waiting for its turn in the budget simulation, ordered by start time, then by
/// the order it was read in.
#[derive(Debug)]
struct Pending {
    start: i64,
    seq: u64,
    /// The consumer as logged (the row), and the one NEW evaluates it as (the budget).
    consumer: String,
    evaluated: String,
    model: String,
    recorded: Fate,
    /// Forwarded under NEW, then the answer withheld with this code (still charged).
    replaced: Option<String>,
    logged: Logged,
    provider: Option<String>,
    body_bytes: u64,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.start, self.seq) == (other.start, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.start, self.seq).cmp(&(other.start, other.seq))
    }
}

/// A budget window's counter: consumer, window, unit and the start of the window.
type WindowKey = (String, Window, Unit, u64);

/// The budget windows of NEW, simulated over the log in start-time order, from empty: each
/// request checked with its reservation as the filter computes it, then charged at once
/// what the filter charged (see `charge`). Each window is its own counter, so a record
/// released out of order counts in its own window and never resets a later one.
struct Budgets<'p> {
    policy: &'p Policy,
    windows: HashMap<WindowKey, u64>,
    queue: BinaryHeap<Reverse<Pending>>,
    latest: Option<i64>,
    /// The latest start time released: windows that ended `REORDER_SECONDS` before it go.
    released: Option<i64>,
    seq: u64,
}

impl<'p> Budgets<'p> {
    fn new(policy: &'p Policy) -> Self {
        Budgets {
            policy,
            windows: HashMap::new(),
            queue: BinaryHeap::new(),
            latest: None,
            released: None,
            seq: 0,
        }
    }

    /// The earliest start time a window may still be charged for.
    fn horizon(&self) -> Option<i64> {
        self.released
            .map(|released| released.saturating_sub(REORDER_SECONDS))
    }

    /// Queues a record NEW forwards past every other step, for a consumer with a budget.
    fn push(&mut self, pending: Pending, replay: &mut Replay) {
        self.latest = Some(self.latest.map_or(pending.start, |l| l.max(pending.start)));
        self.seq = self.seq.saturating_add(1);
        self.queue.push(Reverse(Pending {
            seq: self.seq,
            ..pending
        }));
        let horizon = self.latest.unwrap_or(0).saturating_sub(REORDER_SECONDS);
        while self
            .queue
            .peek()
            .is_some_and(|Reverse(next)| next.start < horizon || self.queue.len() > MAX_PENDING)
        {
            self.release_one(replay);
        }
    }

    fn finish(&mut self, replay: &mut Replay) {
        while !self.queue.is_empty() {
            self.release_one(replay);
        }
    }

    /// Drops the windows no record inside the reorder bound can fall in.
    fn evict(&mut self) {
        let Some(horizon) = self.horizon() else {
            return;
        };
        let horizon = u64::try_from(horizon).unwrap_or(0);
        self.windows
            .retain(|(_, window, _, start), _| *start >= window.start(horizon));
    }

    /// Counts the earliest queued record against its consumer's windows, with the filter's
    /// own estimate (`reservation_estimate`) and check (`budget::exceeded`).
    fn release_one(&mut self, replay: &mut Replay) {
        let Some(Reverse(pending)) = self.queue.pop() else {
            return;
        };
        let after_forward = pending
            .replaced
            .clone()
            .map_or(Fate::Forwarded, Fate::Refused);
        if self
            .horizon()
            .is_some_and(|horizon| pending.start < horizon)
        {
            replay.late = replay.late.saturating_add(1);
            replay.count(
                &pending.consumer,
                &pending.model,
                &pending.recorded,
                after_forward,
            );
            return;
        }
        replay.budgeted = replay.budgeted.saturating_add(1);
        let moved_on = self
            .released
            .is_none_or(|released| pending.start > released);
        if moved_on {
            self.released = Some(pending.start);
            if self.seq % 1024 == 0 || self.windows.len() > MAX_PENDING {
                self.evict();
            }
        }
        let now = u64::try_from(pending.start).unwrap_or(0);
        let name = pending.evaluated.as_str();
        let (Some(budget), Some(mode)) = (
            self.policy.budget_for(name),
            self.policy.consumer_mode(name),
        ) else {
            replay.count(
                &pending.consumer,
                &pending.model,
                &pending.recorded,
                after_forward,
            );
            return;
        };
        let body_bytes = usize::try_from(pending.body_bytes).unwrap_or(usize::MAX);
        // The log records no output-token value a request asked for: the consumer's cap, else
        // the budget's default, is reserved, as for a request that gives none.
        let reserve = reservation_estimate(
            self.policy,
            name,
            Some(&pending.model),
            body_bytes,
            AskedOutput::NOT_READ,
        );
        let windows = &self.windows;
        let exceeded = budget::exceeded(budget, now, reserve, |limit| {
            let window_start = limit.window.start(now);
            Counter {
                window_start,
                used: windows
                    .get(&(name.to_owned(), limit.window, limit.unit, window_start))
                    .copied()
                    .unwrap_or(0),
            }
        });
        let fate = match (exceeded, mode) {
            (Some(_), Mode::Enforce) => Fate::Refused("budget_exceeded".to_owned()),
            _ => after_forward,
        };
        if fate != Fate::Refused("budget_exceeded".to_owned()) {
            let charge = self.charge(&pending, reserve, replay);
            for limit in &budget.limits {
                let key = (
                    name.to_owned(),
                    limit.window,
                    limit.unit,
                    limit.window.start(now),
                );
                let used = self.windows.entry(key).or_insert(0);
                *used = used.saturating_add(charge.of(limit.unit));
            }
        }
        replay.count(&pending.consumer, &pending.model, &pending.recorded, fate);
    }

    /// What the filter charges a forwarded request (settle.rs): with usage known, the
    /// usage (tokens as reported, dollars at NEW's price for the provider that served);
    /// with usage unknown, what the log says was charged, or NEW's reservation when larger;
    /// nothing for what owed nothing (a provider error, no provider reached, a passthrough
    /// without usage). A request refused before has no usage: charged its reservation.
    fn charge(&self, pending: &Pending, reserve: Reserve, replay: &mut Replay) -> Reserve {
        let logged = pending.logged;
        if let Some(usage) = logged.usage {
            let price = self
                .policy
                .price(&pending.model, pending.provider.as_deref().unwrap_or(""));
            return Reserve {
                tokens: usage.input.saturating_add(usage.output),
                microusd: price.map_or(logged.charged_microusd.unwrap_or(0), |price| {
                    cost(&usage, &price)
                }),
            };
        }
        if logged.charged_tokens.is_some() || logged.charged_microusd.is_some() {
            return Reserve {
                tokens: logged.charged_tokens.unwrap_or(0).max(reserve.tokens),
                microusd: logged.charged_microusd.unwrap_or(0).max(reserve.microusd),
            };
        }
        if logged.forwarded {
            return Reserve::default();
        }
        replay.usage_unknown = replay.usage_unknown.saturating_add(1);
        reserve
    }
}

impl Replay {
    /// Counts one record's recorded and replayed fate under its row.
    fn count(&mut self, consumer: &str, model: &str, recorded: &Fate, now: Fate) {
        let (change, reason) = match (recorded, now) {
            (Fate::Forwarded, Fate::Refused(reason)) => (Change::NowRefused, reason),
            (Fate::Refused(reason), Fate::Forwarded) => (Change::NowAllowed, reason.clone()),
            (Fate::Forwarded, Fate::Forwarded) => (Change::Unchanged, "forwarded".to_owned()),
            (Fate::Refused(_), Fate::Refused(reason)) => (Change::Unchanged, reason),
        };
        let mut key = (consumer.to_owned(), model.to_owned(), change, reason);
        if !self.rows.contains_key(&key) {
            let models = self.models.entry(consumer.to_owned()).or_insert(0);
            if *models >= MAX_MODELS_PER_CONSUMER || self.rows.len() >= MAX_ROWS {
                key.1 = OTHER_MODELS.to_owned();
            } else {
                *models = models.saturating_add(1);
            }
        }
        let slot = self.rows.entry(key).or_insert(0);
        *slot = slot.saturating_add(1);
    }

    pub fn total(&self, change: Change) -> u64 {
        self.rows
            .iter()
            .filter(|((_, _, row_change, _), _)| *row_change == change)
            .fold(0u64, |sum, (_, count)| sum.saturating_add(*count))
    }

    /// Requests refused at approval that NEW lets into checks that never ran for them.
    pub fn later_checks_total(&self) -> u64 {
        self.later_checks_not_run
            .values()
            .fold(0u64, |sum, count| sum.saturating_add(*count))
    }

    pub fn not_replayed_total(&self) -> u64 {
        self.not_replayed
            .values()
            .fold(0u64, |sum, count| sum.saturating_add(*count))
    }
}

/// Replays the records of the logs, in start-time order across files.
pub fn replay_logs(
    old: &Policy,
    new: &Policy,
    logs: &[String],
) -> Result<(Replay, Stats), CliError> {
    let mut replay = Replay::default();
    let mut budgets = Budgets::new(new);
    // What each consumer's records cannot show under NEW: the same for all its records.
    let mut limits: HashMap<String, Vec<String>> = HashMap::new();
    let ordered = oldest_first(logs)?;
    let stats = access_log::read_all(&ordered, |record| {
        replay_one(old, new, &record, &mut replay, &mut budgets, &mut limits);
    })?;
    budgets.finish(&mut replay);
    Ok((replay, stats))
}

fn replay_one(
    old: &Policy,
    new: &Policy,
    record: &Record,
    replay: &mut Replay,
    budgets: &mut Budgets<'_>,
    limits: &mut HashMap<String, Vec<String>>,
) {
    if let Some(start) = record.start {
        replay.first = Some(replay.first.map_or(start, |first| first.min(start)));
        replay.last = Some(replay.last.map_or(start, |last| last.max(start)));
    }
    let recorded = match recorded_fate(record) {
        Recorded::Judged(fate) => fate,
        Recorded::Kept(code) => {
            let slot = replay.not_replayed.entry(code).or_insert(0);
            *slot = slot.saturating_add(1);
            return;
        }
    };
    let consumer = record.consumer.as_deref().unwrap_or(NONE);
    let model = record.model.as_deref().unwrap_or(NONE);
    if recorded != Fate::Refused("budget_exceeded".to_owned())
        && judge(old, old, record) != recorded
    {
        replay.old_mismatch = replay.old_mismatch.saturating_add(1);
    }
    let notes = limits
        .entry(consumer.to_owned())
        .or_insert_with(|| unreplayable(old, new, consumer));
    for note in notes.iter() {
        let slot = replay
            .cannot_replay
            .entry((consumer.to_owned(), note.clone()))
            .or_insert(0);
        *slot = slot.saturating_add(1);
    }
    let fate = judge(new, old, record);
    if let (Fate::Refused(code), Fate::Forwarded) = (&recorded, &fate) {
        // Refused at approval: its rules, guards and caps never ran, so the log has no
        // facts for them. Now allowed only when NEW has none for this consumer.
        if EARLY_CODES.contains(&code.as_str()) && later_checks(new, consumer) {
            let slot = replay
                .later_checks_not_run
                .entry((consumer.to_owned(), model.to_owned(), code.clone()))
                .or_insert(0);
            *slot = slot.saturating_add(1);
            return;
        }
    }
    // An answer withheld after forwarding was still forwarded: budgets see it.
    let (fate, replaced) = match fate {
        Fate::Refused(code) if REPLACED_CODES.contains(&code.as_str()) => {
            (Fate::Forwarded, Some(code))
        }
        fate => (fate, None),
    };
    let budgeted = consumer_for(new, consumer).filter(|entry| entry.budget.is_some());
    match (fate, budgeted) {
        (Fate::Forwarded, Some(evaluated)) => {
            let start = record.start.or(budgets.latest).unwrap_or(0);
            let forwarded = match &recorded {
                Fate::Forwarded => true,
                Fate::Refused(code) => REPLACED_CODES.contains(&code.as_str()),
            };
            let usage = record
                .input_tokens
                .zip(record.output_tokens)
                .filter(|_| forwarded)
                .map(|(input, output)| Usage {
                    input,
                    output,
                    cached: record.cached_tokens.unwrap_or(0),
                    reasoning: record.reasoning_tokens.unwrap_or(0),
                    cache_write: 0,
                });
            let logged = Logged {
                usage,
                // Logs written before charged figures: the token total, if any.
                charged_tokens: record
                    .charged_tokens
                    .or(record.tokens)
                    .filter(|_| forwarded),
                charged_microusd: record.charged_microusd.filter(|_| forwarded),
                forwarded,
            };
            budgets.push(
                Pending {
                    start,
                    seq: 0,
                    consumer: consumer.to_owned(),
                    evaluated: evaluated.name.clone(),
                    model: model.to_owned(),
                    recorded,
                    replaced,
                    logged,
                    provider: record.provider.clone(),
                    body_bytes: record.bytes_received.unwrap_or(0),
                },
                replay,
            );
        }
        (fate, _) => {
            let fate = replaced.map_or(fate, Fate::Refused);
            replay.count(consumer, model, &recorded, fate);
        }
    }
}

/// The logs sorted by the start time of their first record (rotated files given newest
/// first, as a shell glob lists them, are read oldest first); standard input stays first.
fn oldest_first(logs: &[String]) -> Result<Vec<String>, CliError> {
    let mut keyed = Vec::with_capacity(logs.len());
    for (index, name) in logs.iter().enumerate() {
        let first = if name == "-" {
            Some(i64::MIN)
        } else {
            let mut source = access_log::open(name)?;
            let mut line = Vec::new();
            let mut stats = Stats::default();
            let mut first = None;
            while let Some(record) = source.next_record(&mut line, &mut stats)? {
                if record.start.is_some() {
                    first = record.start;
                    break;
                }
            }
            first
        };
        keyed.push((first.unwrap_or(i64::MAX), index, name.clone()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, _, name)| name).collect())
}

struct ReplayArgs {
    json: bool,
    fail_on_change: bool,
    old: String,
    new: String,
    logs: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<ReplayArgs, CliError> {
    let mut json = false;
    let mut fail_on_change = false;
    let mut positional = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--json" => json = true,
            "--fail-on-change" => fail_on_change = true,
            "-" => positional.push(arg.clone()),
            flag if flag.starts_with('-') => {
                return Err(CliError::Usage(format!(
                    "replay: unknown option \"{flag}\""
                )))
            }
            _ => positional.push(arg.clone()),
        }
    }
    let mut positional = positional.into_iter();
    let (Some(old), Some(new)) = (positional.next(), positional.next()) else {
        return Err(CliError::Usage(
            "replay takes OLD and NEW policy files, then one or more ACCESS_LOG files".to_owned(),
        ));
    };
    let logs: Vec<String> = positional.collect();
    if logs.is_empty() {
        return Err(CliError::Usage(
            "replay takes one or more ACCESS_LOG files after OLD and NEW ('-' for standard input)"
                .to_owned(),
        ));
    }
    Ok(ReplayArgs {
        json,
        fail_on_change,
        old,
        new,
        logs,
    })
}

pub fn replay(args: &[String]) -> Result<Output, CliError> {
    let args = parse_args(args)?;
    let mut policies = Vec::with_capacity(2);
    let mut errors = Vec::new();
    for path in [&args.old, &args.new] {
        match Policy::from_json(&read(path)?) {
            Ok(policy) => policies.push(policy),
            Err(found) => errors.push(config_errors(path, &found)),
        }
    }
    let (Some(old), Some(new), true) = (policies.first(), policies.get(1), errors.is_empty())
    else {
        return Ok(Output {
            code: 2,
            stdout: String::new(),
            stderr: errors.join("\n"),
        });
    };
    let (replay, stats) = replay_logs(old, new, &args.logs)?;
    let changed = replay.total(Change::NowRefused) > 0 || replay.total(Change::NowAllowed) > 0;
    let unreadable = access_log::unreadable_note(&stats);
    let stdout = if args.json {
        render_json(&replay, &stats).to_string()
    } else {
        render_text(&replay, &stats, &args.old, &args.new)
    };
    let code = if unreadable.is_some() {
        2
    } else {
        i32::from(args.fail_on_change && changed)
    };
    Ok(Output {
        code,
        stdout,
        stderr: unreadable.unwrap_or_default(),
    })
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
