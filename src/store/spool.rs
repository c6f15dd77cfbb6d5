//! The attendance log's buffer on local disk, for a hub whose database (PostgreSQL, on another
//! machine) cannot be reached for a while: the meeting goes on, and what happens in it is
//! written here, in order, until the database is back; then the [`Recorder`](super::Recorder)
//! moves it into the log, ahead of anything newer.
//!
//! Each outage fills a file of its own (`events-<ms>-<random>.jsonl` in the buffer's
//! directory), one JSON line per event, numbered from 1 and flushed to disk before the event is
//! acknowledged. Moving a file's events into the database notes, in the same transaction, the
//! number up to which that file is stored (`event_spools`), so an event is stored once even if
//! the hub dies between the commit and the removal of the file: at its next start, the hub
//! skips what the database already has. A line cut short by a crash was never acknowledged and
//! is dropped.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use diemcau_signaling::MeetingId;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::db::{Conn, args};
use super::log::append_numbered;
use crate::attendance::{EventKind, Millis};

/// How many events the buffer holds at most by default: hours of a meeting of 190 sites.
pub const DEFAULT_LIMIT: usize = 200_000;

/// How many buffered events go into the database per transaction.
const CHUNK: usize = 500;

/// Whether the attendance log is being written to the database, as the hub shows it (the
/// chair's warning, `/api/health`, `/metrics`). Shared between the recorder and the hub.
#[derive(Debug, Default)]
pub struct LogHealth {
    buffered: AtomicU64,
    since: AtomicI64,
}

impl LogHealth {
    /// How many events wait on local disk for the database, and since when (the first of
    /// them was recorded); `None` while the log is written to the database.
    pub fn buffered(&self) -> Option<(u64, Millis)> {
        let since = self.since.load(Ordering::Acquire);
        (since != 0).then(|| (self.buffered.load(Ordering::Acquire), since))
    }

    fn set(&self, waiting: &VecDeque<Spooled>) {
        self.buffered.store(waiting.len() as u64, Ordering::Release);
        let since = waiting.front().map_or(0, |first| first.line.recorded_at);
        self.since.store(since, Ordering::Release);
    }
}

/// One buffered event as its line reads.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    n: u64,
    meeting: i64,
    at: Millis,
    recorded_at: Millis,
    kind: EventKind,
}

#[derive(Debug)]
struct Spooled {
    /// The file's name, which the database's mark of it uses too.
    file: String,
    line: Line,
}

/// The file new events go to.
struct Current {
    name: String,
    file: File,
    next: u64,
}

/// The buffer: its files, and every event in them not yet in the database, in order.
pub(super) struct Spool {
    dir: PathBuf,
    limit: usize,
    waiting: VecDeque<Spooled>,
    current: Option<Current>,
    health: Arc<LogHealth>,
}

impl Spool {
    /// The buffer in `dir` (made if missing), with the events a previous run left there.
    pub(super) fn open(dir: &Path, limit: usize, health: Arc<LogHealth>) -> Result<Spool, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the log buffer {}: {e}", dir.display()))?;
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read the log buffer {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("events-") && name.ends_with(".jsonl"))
            .collect();
        names.sort_by_key(|name| order_key(name));
        let mut waiting = VecDeque::new();
        for name in names {
            let path = dir.join(&name);
            let file = File::open(&path)
                .map_err(|e| format!("cannot read the log buffer {}: {e}", path.display()))?;
            for (index, text) in std::io::BufReader::new(file).lines().enumerate() {
                let parsed = text.map_err(|e| e.to_string()).and_then(|text| {
                    serde_json::from_str::<Line>(&text).map_err(|e| e.to_string())
                });
                match parsed {
                    Ok(line) => waiting.push_back(Spooled {
                        file: name.clone(),
                        line,
                    }),
                    Err(e) => {
                        // Only the last line can be cut short: it was never acknowledged.
                        tracing::warn!(file = %path.display(), line = index + 1, "a buffered event cut short is dropped: {e}");
                        break;
                    }
                }
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(
                events = waiting.len(),
                "attendance events buffered by a previous run wait for the database"
            );
        }
        health.set(&waiting);
        Ok(Spool {
            dir: dir.to_owned(),
            limit,
            waiting,
            current: None,
            health,
        })
    }

    /// Whether events wait for the database: newer ones must then wait behind them.
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Writes `events` to the buffer, in order, on disk before this returns. Refused whole
    /// when the buffer is full or the disk fails.
    pub(super) fn push(
        &mut self,
        events: &[(MeetingId, Millis, &EventKind)],
        recorded_at: Millis,
    ) -> Result<(), String> {
        if self.waiting.len() + events.len() > self.limit {
            return Err(format!(
                "the database is unreachable and the local buffer of the attendance log is \
                 full ({} events)",
                self.limit
            ));
        }
        if self.current.is_none() {
            self.current = Some(self.create(recorded_at)?);
        }
        let Some(current) = self.current.as_mut() else {
            return Err("no buffer file".to_owned());
        };
        let mut text = String::new();
        let mut lines = Vec::with_capacity(events.len());
        for (offset, (meeting, at, kind)) in (0..).zip(events) {
            let line = Line {
                n: current.next + offset,
                meeting: meeting.0,
                at: *at,
                recorded_at,
                kind: (*kind).clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(|e| e.to_string())?);
            text.push('\n');
            lines.push(line);
        }
        current
            .file
            .write_all(text.as_bytes())
            .and_then(|()| current.file.sync_data())
            .map_err(|e| format!("cannot write the log buffer {}: {e}", current.name))?;
        current.next += events.len() as u64;
        let name = current.name.clone();
        self.waiting.extend(lines.into_iter().map(|line| Spooled {
            file: name.clone(),
            line,
        }));
        self.health.set(&self.waiting);
        Ok(())
    }

    /// Moves what waits into the database, in order, a chunk per transaction; stops at the
    /// first failure (the rest waits for the next try). A file all of whose events are stored
    /// is removed.
    pub(super) fn flush(
        &mut self,
        conn: &mut Conn,
        next_seq: &mut HashMap<MeetingId, u64>,
    ) -> Result<usize, StoreError> {
        let mut stored = 0;
        while let Some(first) = self.waiting.front() {
            let file = first.file.clone();
            let count = self
                .waiting
                .iter()
                .take(CHUNK)
                .take_while(|spooled| spooled.file == file)
                .count();
            let chunk: Vec<&Line> = self.waiting.iter().take(count).map(|s| &s.line).collect();
            let taken = store_chunk(conn, next_seq, &file, &chunk).inspect_err(|_| {
                next_seq.clear();
            })?;
            next_seq.extend(taken);
            self.waiting.drain(..count);
            stored += count;
            self.health.set(&self.waiting);
            let file_done = self.waiting.front().is_none_or(|next| next.file != file);
            if file_done {
                if self.current.as_ref().is_some_and(|c| c.name == file) {
                    self.current = None;
                }
                let path = self.dir.join(&file);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), "a stored log buffer could not be removed (its events are not stored twice): {e}");
                }
            }
        }
        Ok(stored)
    }

    fn create(&self, now: Millis) -> Result<Current, String> {
        let random = super::random_text(8).map_err(|e| format!("no randomness: {e}"))?;
        let name = format!("events-{now}-{random}.jsonl");
        let path = self.dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot create the log buffer {}: {e}", path.display()))?;
        // The file's name must survive a crash as its contents do.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        tracing::warn!(file = %path.display(), "the database is unreachable: attendance events are buffered on local disk");
        Ok(Current {
            name,
            file,
            next: 1,
        })
    }
}

/// Files in the order they were begun: by the time in their name.
fn order_key(name: &str) -> (u64, String) {
    let time = name
        .strip_prefix("events-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    (time, name.to_owned())
}

/// One transaction: the events of `file` numbered after its mark appended, the mark moved.
/// Returns the meetings' next numbers.
fn store_chunk(
    conn: &mut Conn,
    next_seq: &HashMap<MeetingId, u64>,
    file: &str,
    chunk: &[&Line],
) -> Result<HashMap<MeetingId, u64>, StoreError> {
    conn.write(|tx| {
        let mark: u64 = tx
            .query_opt(
                "SELECT through FROM event_spools WHERE name = $1",
                args![file],
            )?
            .map(|r| r.get::<u64>(0))
            .transpose()?
            .unwrap_or(0);
        let new = chunk.iter().filter(|line| line.n > mark);
        let through = new.clone().map(|line| line.n).max().unwrap_or(0).max(mark);
        let (_, taken) = append_numbered(
            tx,
            next_seq,
            new.map(|line| {
                (
                    MeetingId(line.meeting),
                    line.at,
                    line.recorded_at,
                    &line.kind,
                )
            }),
        )?;
        tx.execute(
            "INSERT INTO event_spools (name, through) VALUES ($1, $2)
             ON CONFLICT(name) DO UPDATE SET through = excluded.through",
            args![file, through],
        )?;
        Ok(taken)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("diemcau-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A hub that died with events in its buffer, after storing part of a file: at its next
    /// start, the rest is stored once, in order, after what the log had; a line cut short by
    /// the crash is dropped; the file is removed.
    #[test]
    fn a_buffer_left_by_a_crash_is_stored_once_in_order() {
        let store = testing::temp_store("spool-crash");
        let meeting = testing::meeting(&store, &["2269"]);
        let recorder = store.recorder().expect("recorder");
        recorder
            .append_blocking(meeting, 10, EventKind::MeetingStarted)
            .expect("logged");
        let dir = temp_dir("crash");
        std::fs::create_dir_all(&dir).expect("made");
        let kinds = [
            EventKind::FloorRequested {
                site: "2269".to_owned(),
            },
            EventKind::FloorGiven {
                site: "2269".to_owned(),
            },
            EventKind::MeetingEnded,
        ];
        let mut text = String::new();
        for (n, kind) in (1..).zip(&kinds) {
            let line = Line {
                n,
                meeting: meeting.0,
                at: 20 + n as i64,
                recorded_at: 30,
                kind: kind.clone(),
            };
            text.push_str(&serde_json::to_string(&line).expect("written"));
            text.push('\n');
        }
        text.push_str("{\"n\":4,\"meeting\":");
        let name = "events-30-abc.jsonl";
        std::fs::write(dir.join(name), text).expect("written");
        // The first line was stored before the crash, in the same transaction as its mark.
        store
            .writer()
            .write(|tx| {
                crate::store::log::insert_events(
                    tx,
                    &[crate::store::log::NewEvent {
                        meeting,
                        seq: 2,
                        at: 21,
                        recorded_at: 30,
                        kind: &kinds[0],
                    }],
                )?;
                tx.execute(
                    "INSERT INTO event_spools (name, through) VALUES ($1, 1)",
                    args![name],
                )
            })
            .expect("the first stored");

        let health = Arc::new(LogHealth::default());
        let mut spool = Spool::open(&dir, 100, health.clone()).expect("opened");
        assert_eq!(health.buffered(), Some((3, 30)));
        let stored = spool
            .flush(&mut store.writer(), &mut HashMap::new())
            .expect("flushed");
        assert_eq!(stored, 3);
        assert!(spool.is_empty());
        assert_eq!(health.buffered(), None);
        let logged: Vec<(u64, String)> = store
            .events(meeting)
            .expect("read")
            .into_iter()
            .map(|e| (e.seq, e.kind.name().to_owned()))
            .collect();
        assert_eq!(
            logged,
            [
                (1, "meeting_started".to_owned()),
                (2, "floor_requested".to_owned()),
                (3, "floor_given".to_owned()),
                (4, "meeting_ended".to_owned())
            ]
        );
        assert!(!dir.join(name).exists(), "the stored file is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Events are refused whole once the buffer holds its limit; what it holds stays.
    #[test]
    fn a_full_buffer_refuses_more() {
        let dir = temp_dir("full");
        let health = Arc::new(LogHealth::default());
        let mut spool = Spool::open(&dir, 2, health.clone()).expect("opened");
        let kind = EventKind::MeetingStarted;
        spool
            .push(&[(MeetingId(1), 1, &kind), (MeetingId(1), 2, &kind)], 5)
            .expect("two fit");
        let refused = spool.push(&[(MeetingId(1), 3, &kind)], 6);
        assert!(refused.is_err_and(|e| e.contains("full")));
        assert_eq!(health.buffered(), Some((2, 5)));
        // A restart finds both.
        let again = Spool::open(&dir, 2, Arc::default()).expect("opened again");
        assert_eq!(again.waiting.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
