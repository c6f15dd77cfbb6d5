//! The attendance record: an append-only event log per meeting, and the reports computed from
//! it.

pub mod event;
pub mod export;
pub mod report;
pub mod wording;
pub mod xlsx;

pub use event::{Event, EventKind, LeaveReason, Millis, Reception, RecordingStop};
pub use report::{ExpectedSite, MeetingPlan, Report, ReportRules, Status};
