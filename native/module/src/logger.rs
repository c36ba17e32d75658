//! The `log` crate's backend: each pipeline message becomes one line of Envoy's log,
//! `posturio: <message>`, at Envoy's level for dynamic modules
//! (`--component-log-level dynamic_modules:debug` shows the debug lines).

use envoy_abi::Level;

struct EnvoyLogger;

static LOGGER: EnvoyLogger = EnvoyLogger;

/// The prefix of every line, so that tests and operators find Posturio's lines.
pub const PREFIX: &str = "posturio: ";

fn envoy_level(level: log::Level) -> Level {
    match level {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        envoy_abi::log_enabled(envoy_level(metadata.level()))
    }

    fn log(&self, record: &log::Record) {
        let level = envoy_level(record.level());
        if envoy_abi::log_enabled(level) {
            envoy_abi::log(level, &format!("{PREFIX}{}", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process; later calls keep it) and follows Envoy's level.
pub fn install() {
    // Err only when already installed: by an earlier configuration of this same module.
    let _ = log::set_logger(&LOGGER);
    let most_verbose = [
        (Level::Trace, log::LevelFilter::Trace),
        (Level::Debug, log::LevelFilter::Debug),
        (Level::Info, log::LevelFilter::Info),
        (Level::Warn, log::LevelFilter::Warn),
        (Level::Error, log::LevelFilter::Error),
    ]
    .into_iter()
    .find(|(level, _)| envoy_abi::log_enabled(*level))
    .map_or(log::LevelFilter::Off, |(_, filter)| filter);
    log::set_max_level(most_verbose);
}
