//! Token budgets per consumer: fixed windows of a minute, an hour or a day, counted per Envoy
//! instance in shared data. (Skeleton: the counting is being written.)

/// A budget window. Windows are aligned to the Unix epoch (a minute starts at :00, a day at
/// 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// One limit: at most `tokens` (input plus output) per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub window: Window,
    pub tokens: u64,
}

/// A consumer's budget: one to three limits, shortest window first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub limits: Vec<Limit>,
}
