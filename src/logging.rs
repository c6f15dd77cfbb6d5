//! The hub's log: on standard error, for a person at a terminal, or for systemd's journal when
//! the hub runs as a service.
//!
//! systemd sets `JOURNAL_STREAM` for a service whose standard error goes to the journal. The
//! log is then written as the journal reads it: one line per event, its level as a syslog
//! prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), no colours and no time (the
//! journal stamps each line itself). Otherwise it is tracing's usual format, coloured on a
//! terminal.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the log for the process; `RUST_LOG` chooses what is logged (`info` by default).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.with_ansi(false).event_format(JournalFormat).init();
    } else {
        builder.init();
    }
}

/// One line per event, `<level>target: message fields`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalFormat;

/// The syslog priority the journal reads from a line's `<N>` prefix.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        write!(
            writer,
            "<{}>{}: ",
            syslog_priority(*metadata.level()),
            metadata.target()
        )?;
        // A field holding a line break would start a line the journal reads without a level:
        // format the fields first and keep them on one line.
        let mut fields = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut fields), event)?;
        writeln!(writer, "{}", fields.replace(['\n', '\r'], " "))
    }
}
