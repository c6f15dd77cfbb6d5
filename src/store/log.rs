//! The attendance log: the [`Recorder`] that appends to it from its own thread, the liveness
//! marks of open sessions, and the closing of sessions a crash left open. The log itself is
//! append-only: triggers refuse any `UPDATE` or `DELETE`.

use diemcau_signaling::{MeetingId, SessionId, SiteCode};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::db::{Conn, Engine, Value, args};
use super::spool::{LogHealth, Spool};
use super::{Store, StoreError, now_millis};
use crate::attendance::{Event, EventKind, LeaveReason, Millis};

/// Appends to the attendance log from a dedicated thread, committing in groups. It runs from
/// [`Store::recorder`] until its last clone is dropped, then its thread ends.
#[derive(Debug, Clone)]
pub struct Recorder {
    requests: crossbeam_channel::Sender<Request>,
    health: Arc<LogHealth>,
}

/// Events a child hub sent up for one meeting, numbered in its own log: stored once each,
/// whatever is sent again (see [`Recorder::append_from_node`]).
#[derive(Debug, Clone)]
pub struct NodeBatch {
    pub node: String,
    pub meeting: MeetingId,
    /// The events, each with its number in the node's log, in order.
    pub events: Vec<(u64, Millis, EventKind)>,
    /// The node's log is covered up to this number by this batch (events it did not send up
    /// included).
    pub through: u64,
}

impl Recorder {
    /// A recorder writing on `conn`; with a `spool`, events the database cannot take for
    /// being unreachable wait there (see [`super::spool`]).
    pub(super) fn start(
        conn: Conn,
        spool: Option<Spool>,
        health: Arc<LogHealth>,
    ) -> Result<Recorder, StoreError> {
        let (requests, inbox) = crossbeam_channel::unbounded::<Request>();
        crate::essential::spawn("recorder", move || {
            Writer {
                conn,
                next_seq: HashMap::new(),
                spool,
                last_try: None,
            }
            .run(inbox)
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the recorder: {e}")))?;
        Ok(Recorder { requests, health })
    }

    /// Whether events wait on local disk for an unreachable database: how many, since when.
    pub fn buffered(&self) -> Option<(u64, Millis)> {
        self.health.buffered()
    }

    /// Appends an event; the returned future resolves once it is on disk: committed to the
    /// database, or, while the database is unreachable and the recorder has a buffer, written
    /// to that buffer (the event then has no number yet: `seq` 0). The event takes its place
    /// in the log when this is called, not when the future is polled, so events keep the
    /// order of the calls.
    pub fn append(
        &self,
        meeting: MeetingId,
        at: Millis,
        kind: EventKind,
    ) -> impl Future<Output = Result<Event, StoreError>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self
            .requests
            .send(Request::Append(Append {
                meeting,
                at,
                kind,
                done: Done::Async(done),
            }))
            .is_ok();
        async move {
            if !sent {
                return Err(StoreError::RecorderStopped);
            }
            wait.await
                .map_err(|_| StoreError::RecorderStopped)?
                .map_err(StoreError::Internal)
        }
    }

    /// [`Recorder::append`] for callers outside async code.
    pub fn append_blocking(
        &self,
        meeting: MeetingId,
        at: Millis,
        kind: EventKind,
    ) -> Result<Event, StoreError> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.requests
            .send(Request::Append(Append {
                meeting,
                at,
                kind,
                done: Done::Blocking(done),
            }))
            .map_err(|_| StoreError::RecorderStopped)?;
        wait.recv()
            .map_err(|_| StoreError::RecorderStopped)?
            .map_err(StoreError::Internal)
    }
}

impl Recorder {
    /// Stores a child hub's events in `batch.meeting`'s log, each once: those numbered at or
    /// below what the node already covered are skipped, in the same transaction that appends
    /// the rest and moves the node's mark to `batch.through`. Resolves, once on disk, to the
    /// node's mark: the number up to which its log is stored here.
    pub fn append_from_node(
        &self,
        batch: NodeBatch,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.requests.send(Request::FromNode(batch, done)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::RecorderStopped);
            }
            wait.await
                .map_err(|_| StoreError::RecorderStopped)?
                .map_err(StoreError::Internal)
        }
    }
}

impl Store {
    /// The kind of the last event of `meeting` among `kinds` (as [`EventKind::name`] gives
    /// them), if any.
    pub fn last_event_kind(
        &self,
        meeting: MeetingId,
        kinds: &[&str],
    ) -> Result<Option<String>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let placeholders: Vec<String> = (2..kinds.len() + 2).map(|i| format!("${i}")).collect();
        let mut values = vec![Value::Int(meeting.0)];
        values.extend(kinds.iter().map(|kind| Value::Text((*kind).to_owned())));
        self.reader()
            .query_opt(
                &format!(
                    "SELECT kind FROM events WHERE meeting_id = $1 AND kind IN ({})
                     ORDER BY seq DESC LIMIT 1",
                    placeholders.join(", ")
                ),
                &values,
            )?
            .map(|r| r.get(0))
            .transpose()
    }

    /// The events of `meeting` numbered after `after`, at most `limit`, in order.
    pub fn events_after(
        &self,
        meeting: MeetingId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        read_events_after(
            &mut self.reader(),
            meeting,
            after,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
    }

    /// Notes that these sessions are alive now: after a crash, they are closed at the last
    /// such moment rather than at their last event.
    pub fn touch_sessions(
        &self,
        sessions: &[(MeetingId, SessionId)],
        at: Millis,
    ) -> Result<(), StoreError> {
        self.writer().write(|tx| {
            for (meeting, session) in sessions {
                tx.execute(
                    "INSERT INTO liveness (session, meeting_id, last_seen) VALUES ($1, $2, $3)
                     ON CONFLICT(session) DO UPDATE SET last_seen = excluded.last_seen",
                    args![session.0, meeting.0, at],
                )?;
            }
            Ok(())
        })
    }

    /// The last time a site left a meeting: its session and when.
    pub fn last_leave(
        &self,
        meeting: MeetingId,
        site: &SiteCode,
    ) -> Result<Option<(SessionId, Millis)>, StoreError> {
        self.reader()
            .query_opt(
                "SELECT session, at FROM events
                 WHERE meeting_id = $1 AND site_code = $2 AND kind = 'site_left'
                 ORDER BY seq DESC LIMIT 1",
                args![meeting.0, site.as_str()],
            )?
            .map(|r| Ok((SessionId(r.get(0)?), r.get(1)?)))
            .transpose()
    }

    /// The whole log of a meeting, in order.
    pub fn events(&self, meeting: MeetingId) -> Result<Vec<Event>, StoreError> {
        read_events(&mut self.reader(), meeting)
    }

    /// Parts of recordings the log shows started and never stopped (cut off by a crash), as
    /// (meeting, part, the meeting's last event time), `meeting` only or all.
    pub fn open_recordings(
        &self,
        meeting: Option<MeetingId>,
    ) -> Result<Vec<(MeetingId, u32, Millis)>, StoreError> {
        let meetings: Vec<(i64, Millis)> = self
            .reader()
            .query(
                "SELECT meeting_id, MAX(at) FROM events
                 WHERE $1 = 0 OR meeting_id = $1
                 GROUP BY meeting_id
                 HAVING COUNT(CASE WHEN kind = 'recording_started' THEN 1 END)
                      > COUNT(CASE WHEN kind = 'recording_stopped' THEN 1 END)",
                args![meeting.map_or(0, |m| m.0)],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut open = Vec::new();
        for (meeting, last) in meetings {
            let meeting = MeetingId(meeting);
            let mut parts: Vec<u32> = Vec::new();
            for event in self.events(meeting)? {
                match event.kind {
                    EventKind::RecordingStarted { part, .. } => parts.push(part),
                    EventKind::RecordingStopped { part, .. } => parts.retain(|p| *p != part),
                    _ => {}
                }
            }
            open.extend(parts.into_iter().map(|part| (meeting, part, last)));
        }
        Ok(open)
    }

    /// Closes every session, the studio's and the sites', that the log shows open in a meeting
    /// that has not ended, at the last moment the hub knew it alive (its last event or liveness
    /// mark). Run at start-up, before serving: after a crash these sessions were cut off without
    /// their leave. Returns how many were closed.
    pub fn close_interrupted_sessions(&self, recorder: &Recorder) -> Result<usize, StoreError> {
        Ok(self.close_open_sessions(recorder, None)?.len())
    }

    /// Closes the sessions the log shows open in `meeting`, at their last sign of life, when a
    /// hub takes the meeting over from another that stopped (or from its own run before a
    /// crash). Returns when each closed session was last alive.
    pub fn close_sessions_of(
        &self,
        recorder: &Recorder,
        meeting: MeetingId,
    ) -> Result<Vec<Millis>, StoreError> {
        self.close_open_sessions(recorder, Some(meeting))
    }

    fn close_open_sessions(
        &self,
        recorder: &Recorder,
        meeting: Option<MeetingId>,
    ) -> Result<Vec<Millis>, StoreError> {
        // Which seat each session was: 1 an encoder's, 2 a viewer's, 0 the studio's or a site's.
        let open: Vec<(i64, Option<String>, String, Millis, i64)> = self
            .reader()
            .query(
                "SELECT e.meeting_id, MAX(e.site_code), e.session, MAX(e.at),
                        COALESCE(MAX(l.last_seen), 0),
                        CAST(MAX(CASE e.kind WHEN 'encoder_joined' THEN 1
                                             WHEN 'viewer_joined' THEN 2 ELSE 0 END) AS BIGINT)
                 FROM events e LEFT JOIN liveness l ON l.session = e.session
                 WHERE e.session IS NOT NULL AND ($1 = 0 OR e.meeting_id = $1)
                 GROUP BY e.meeting_id, e.session
                 HAVING COUNT(CASE WHEN e.kind IN
                     ('site_left', 'studio_left', 'encoder_left', 'viewer_left') THEN 1 END) = 0
                 ORDER BY e.meeting_id, MIN(e.seq)",
                args![meeting.map_or(0, |m| m.0)],
            )?
            .iter()
            .map(|r| {
                let (last_event, last_seen): (Millis, Millis) = (r.get(3)?, r.get(4)?);
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    last_event.max(last_seen),
                    r.get(5)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut closed = Vec::with_capacity(open.len());
        for (meeting_id, site, session, last_alive, seat) in open {
            let reason = LeaveReason::HubCrash;
            let kind = match (site, seat) {
                (Some(site), _) => EventKind::SiteLeft {
                    site,
                    session,
                    reason,
                },
                (None, 1) => EventKind::EncoderLeft { session, reason },
                (None, 2) => EventKind::ViewerLeft { session, reason },
                (None, _) => EventKind::StudioLeft { session, reason },
            };
            recorder.append_blocking(MeetingId(meeting_id), last_alive, kind)?;
            closed.push(last_alive);
        }
        Ok(closed)
    }

    /// Notes that this run of the hub (started at `started_at`) begins, and returns when the
    /// previous run was last known alive if it stopped without warning (it never noted its
    /// stop). Run at start-up, before [`Store::close_interrupted_sessions`] writes anything.
    pub fn begin_run(&self, hub: &str, started_at: Millis) -> Result<Option<Millis>, StoreError> {
        let previous: Option<(Millis, Option<Millis>)> = self.writer().write(|tx| {
            let previous = tx
                .query_opt(
                    "SELECT last_seen, stopped_at FROM hub_runs WHERE hub = $1
                     ORDER BY started_at DESC LIMIT 1",
                    args![hub],
                )?
                .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
                .transpose()?;
            tx.execute(
                "INSERT INTO hub_runs (started_at, last_seen, stopped_at, hub) VALUES ($1, $1, NULL, $2)
                 ON CONFLICT(started_at) DO UPDATE SET last_seen = excluded.last_seen,
                   stopped_at = NULL, hub = excluded.hub",
                args![started_at, hub],
            )?;
            Ok::<_, StoreError>(previous)
        })?;
        Ok(previous.and_then(|(last_seen, stopped)| stopped.is_none().then_some(last_seen)))
    }

    /// This run is alive at `at` (with the liveness marks).
    pub fn touch_run(&self, started_at: Millis, at: Millis) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE hub_runs SET last_seen = $2 WHERE started_at = $1",
            args![started_at, at],
        )?;
        Ok(())
    }

    /// This run stops cleanly at `at`.
    pub fn end_run(&self, started_at: Millis, at: Millis) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE hub_runs SET last_seen = $2, stopped_at = $2 WHERE started_at = $1",
            args![started_at, at],
        )?;
        Ok(())
    }

    /// Meetings started and not ended, those a stop of the hub interrupts, each with the time
    /// of its latest event.
    pub fn meetings_in_progress(&self) -> Result<Vec<(MeetingId, Millis)>, StoreError> {
        self.reader()
            .query(
                "SELECT meeting_id, MAX(at) FROM events GROUP BY meeting_id
                 HAVING COUNT(CASE WHEN kind = 'meeting_started' THEN 1 END) > 0
                    AND COUNT(CASE WHEN kind = 'meeting_ended' THEN 1 END) = 0
                 ORDER BY meeting_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((MeetingId(r.get(0)?), r.get(1)?)))
            .collect()
    }
}

enum Request {
    Append(Append),
    FromNode(NodeBatch, oneshot::Sender<Result<u64, String>>),
}

struct Append {
    meeting: MeetingId,
    at: Millis,
    kind: EventKind,
    done: Done,
}

enum Done {
    Async(oneshot::Sender<Result<Event, String>>),
    Blocking(crossbeam_channel::Sender<Result<Event, String>>),
}

/// How often the recorder tries the database again while events wait in its buffer.
const RETRY: Duration = Duration::from_secs(1);

/// The recorder thread's state: its connection, the next number of each meeting's events
/// (SQLite), and the buffer for an unreachable database.
struct Writer {
    conn: Conn,
    next_seq: HashMap<MeetingId, u64>,
    spool: Option<Spool>,
    last_try: Option<Instant>,
}

impl Writer {
    /// Takes everything queued, writes it in one transaction, then acknowledges; while events
    /// wait in the buffer, tries the database again every [`RETRY`].
    fn run(mut self, inbox: crossbeam_channel::Receiver<Request>) {
        loop {
            let waiting = self.spool.as_ref().is_some_and(|spool| !spool.is_empty());
            let first = if waiting {
                match inbox.recv_timeout(RETRY) {
                    Ok(request) => Some(request),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        self.flush_buffer(true);
                        return;
                    }
                }
            } else {
                match inbox.recv() {
                    Ok(request) => Some(request),
                    Err(_) => return,
                }
            };
            self.flush_buffer(false);
            let first = match first {
                None => continue,
                Some(Request::Append(append)) => append,
                Some(Request::FromNode(batch, done)) => {
                    let _ = done.send(self.node_batch(&batch));
                    continue;
                }
            };
            let mut batch = vec![first];
            let mut from_node = None;
            while batch.len() < 1024 {
                match inbox.try_recv() {
                    Ok(Request::Append(more)) => batch.push(more),
                    Ok(Request::FromNode(node_batch, done)) => {
                        // After the appends queued before it, in order.
                        from_node = Some((node_batch, done));
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.appends(batch);
            if let Some((node_batch, done)) = from_node {
                let _ = done.send(self.node_batch(&node_batch));
            }
        }
    }

    /// Writes a batch of appends and acknowledges each: to the database, or to the buffer
    /// behind what waits there or when the database cannot be reached.
    fn appends(&mut self, batch: Vec<Append>) {
        let recorded_at = now_millis();
        let buffer_now = self.spool.as_ref().is_some_and(|spool| !spool.is_empty());
        let result = if buffer_now {
            Err(StoreError::Unreachable(
                "events wait in the buffer".to_owned(),
            ))
        } else {
            write_batch(&mut self.conn, &mut self.next_seq, &batch, recorded_at)
        };
        let result = match (result, self.spool.as_mut()) {
            (Err(StoreError::Unreachable(why)), Some(spool)) => {
                if !buffer_now {
                    self.next_seq.clear();
                    self.last_try = Some(Instant::now());
                    tracing::warn!("the attendance log cannot reach the database: {why}");
                }
                let events: Vec<(MeetingId, Millis, &EventKind)> = batch
                    .iter()
                    .map(|append| (append.meeting, append.at, &append.kind))
                    .collect();
                spool
                    .push(&events, recorded_at)
                    .map(|()| {
                        batch
                            .iter()
                            .map(|append| Event {
                                seq: 0,
                                at: append.at,
                                recorded_at,
                                kind: append.kind.clone(),
                            })
                            .collect()
                    })
                    .map_err(StoreError::Internal)
            }
            (result, _) => result,
        };
        match result {
            Ok(events) => {
                for (append, event) in batch.into_iter().zip(events) {
                    reply(append.done, Ok(event));
                }
            }
            Err(e) => {
                // Nothing of the batch was written: the sequence cache may be ahead.
                self.next_seq.clear();
                tracing::error!("attendance log write failed: {e}");
                for append in batch {
                    reply(append.done, Err(e.to_string()));
                }
            }
        }
    }

    /// Moves the buffered events into the database if any wait and the last try is a
    /// [`RETRY`] old (or `now`).
    fn flush_buffer(&mut self, now: bool) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        if spool.is_empty() {
            return;
        }
        if !now && self.last_try.is_some_and(|at| at.elapsed() < RETRY) {
            return;
        }
        self.last_try = Some(Instant::now());
        match spool.flush(&mut self.conn, &mut self.next_seq) {
            Ok(stored) => {
                tracing::info!(
                    events = stored,
                    "the database is back: the buffered attendance events are in the log"
                );
            }
            Err(StoreError::Unreachable(_)) => {}
            Err(e) => tracing::error!("the buffered attendance events could not be stored: {e}"),
        }
    }

    /// A child hub's batch, after what waits in the buffer; refused while the database
    /// cannot be reached (the child sends it again).
    fn node_batch(&mut self, batch: &NodeBatch) -> Result<u64, String> {
        if self.spool.as_ref().is_some_and(|spool| !spool.is_empty()) {
            return Err("the database is unreachable; send again later".to_owned());
        }
        store_node_batch(&mut self.conn, &mut self.next_seq, batch)
    }
}

/// One transaction: the node's mark read, its new events appended, the mark moved.
fn store_node_batch(
    conn: &mut Conn,
    next_seq: &mut HashMap<MeetingId, u64>,
    batch: &NodeBatch,
) -> Result<u64, String> {
    let recorded_at = now_millis();
    let result = conn.write(|tx| {
        let mark: u64 = tx
            .query_opt(
                "SELECT through FROM node_streams WHERE node = $1 AND meeting_id = $2",
                args![batch.node, batch.meeting.0],
            )?
            .map(|r| r.get::<u64>(0))
            .transpose()?
            .unwrap_or(0);
        let first = next_seq_of(tx, next_seq, batch.meeting)?;
        let new: Vec<NewEvent<'_>> = batch
            .events
            .iter()
            .filter(|(node_seq, _, _)| *node_seq > mark)
            .zip(first..)
            .map(|((_, at, kind), seq)| NewEvent {
                meeting: batch.meeting,
                seq,
                at: *at,
                recorded_at,
                kind,
            })
            .collect();
        insert_events(tx, &new)?;
        let seq = first + new.len() as u64;
        let through = mark.max(batch.through);
        tx.execute(
            "INSERT INTO node_streams (node, meeting_id, through) VALUES ($1, $2, $3)
             ON CONFLICT(node, meeting_id) DO UPDATE SET through = excluded.through",
            args![batch.node, batch.meeting.0, through],
        )?;
        Ok::<_, StoreError>((through, seq))
    });
    let result = result.map(|(through, seq)| {
        next_seq.insert(batch.meeting, seq);
        through
    });
    result.map_err(|e| {
        next_seq.clear();
        tracing::error!(node = %batch.node, "events of a node not stored: {e}");
        e.to_string()
    })
}

fn reply(done: Done, result: Result<Event, String>) {
    match done {
        Done::Async(tx) => {
            let _ = tx.send(result);
        }
        Done::Blocking(tx) => {
            let _ = tx.send(result);
        }
    }
}

fn write_batch(
    conn: &mut Conn,
    next_seq: &mut HashMap<MeetingId, u64>,
    batch: &[Append],
    recorded_at: Millis,
) -> Result<Vec<Event>, StoreError> {
    // The numbers are taken in the cache only once the transaction has committed: a
    // failed one leaves it as it was.
    let (seqs, taken) = conn.write(|tx| {
        append_numbered(
            tx,
            next_seq,
            batch
                .iter()
                .map(|append| (append.meeting, append.at, recorded_at, &append.kind)),
        )
    })?;
    next_seq.extend(taken);
    Ok(batch
        .iter()
        .zip(seqs)
        .map(|(append, seq)| Event {
            seq,
            at: append.at,
            recorded_at,
            kind: append.kind.clone(),
        })
        .collect())
}

/// Numbers `events` after the last of each meeting's log and appends them, in one statement
/// per [`ROWS_PER_INSERT`]. Returns each event's number, and each meeting's next number (for
/// the cache, once committed).
pub(super) fn append_numbered<'a>(
    tx: &mut Conn,
    next_seq: &HashMap<MeetingId, u64>,
    events: impl Iterator<Item = (MeetingId, Millis, Millis, &'a EventKind)>,
) -> Result<(Vec<u64>, HashMap<MeetingId, u64>), StoreError> {
    let mut taken: HashMap<MeetingId, u64> = HashMap::new();
    let mut rows = Vec::new();
    for (meeting, at, recorded_at, kind) in events {
        let seq = match taken.get(&meeting) {
            Some(seq) => *seq,
            None => next_seq_of(tx, next_seq, meeting)?,
        };
        taken.insert(meeting, seq + 1);
        rows.push(NewEvent {
            meeting,
            seq,
            at,
            recorded_at,
            kind,
        });
    }
    insert_events(tx, &rows)?;
    Ok((rows.iter().map(|row| row.seq).collect(), taken))
}

/// The number the next event of `meeting` takes: after the last in the log. SQLite has one
/// writer, this recorder, which keeps the numbers in a cache; in PostgreSQL, shared by hubs,
/// the log is read each time under a lock on the meeting's numbers held to the commit, so that
/// two hubs appending to one meeting (its lease changing hands) never take the same number.
pub(super) fn next_seq_of(
    tx: &mut Conn,
    next_seq: &HashMap<MeetingId, u64>,
    meeting: MeetingId,
) -> Result<u64, StoreError> {
    match tx.engine() {
        Engine::Sqlite => {
            if let Some(seq) = next_seq.get(&meeting) {
                return Ok(*seq);
            }
        }
        Engine::Postgres => {
            tx.execute(
                "SELECT pg_advisory_xact_lock(7032, CAST($1 AS INTEGER))",
                args![meeting.0],
            )?;
        }
    }
    let max: Option<u64> = tx
        .query_one(
            "SELECT MAX(seq) FROM events WHERE meeting_id = $1",
            args![meeting.0],
        )?
        .get(0)?;
    Ok(max.map_or(1, |m| m + 1))
}

/// One event as it goes into the log.
pub(super) struct NewEvent<'a> {
    pub meeting: MeetingId,
    pub seq: u64,
    pub at: Millis,
    pub recorded_at: Millis,
    pub kind: &'a EventKind,
}

/// How many events one `INSERT` carries: fewer round trips to PostgreSQL, within SQLite's
/// limit on a statement's parameters.
const ROWS_PER_INSERT: usize = 64;

/// Appends `events` to the log, several to a statement.
pub(super) fn insert_events(tx: &mut Conn, events: &[NewEvent<'_>]) -> Result<(), StoreError> {
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO events (meeting_id, seq, at, recorded_at, kind, site_code, session, body)
             VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 8);
        for (index, event) in chunk.iter().enumerate() {
            let first = index * 8;
            if index > 0 {
                sql.push_str(", ");
            }
            let placeholders: Vec<String> =
                (first + 1..=first + 8).map(|n| format!("${n}")).collect();
            sql.push_str(&format!("({})", placeholders.join(", ")));
            let body = serde_json::to_string(event.kind).map_err(|e| {
                StoreError::Internal(format!("an event that cannot be written: {e}"))
            })?;
            values.extend_from_slice(args![
                event.meeting.0,
                event.seq,
                event.at,
                event.recorded_at,
                event.kind.name(),
                event.kind.site(),
                event.kind.session(),
                body
            ]);
        }
        tx.execute(&sql, &values)?;
    }
    Ok(())
}

fn read_events(conn: &mut Conn, meeting: MeetingId) -> Result<Vec<Event>, StoreError> {
    read_events_after(conn, meeting, 0, i64::MAX)
}

/// The events of `meeting` numbered after `after`, `limit` at most, in order.
fn read_events_after(
    conn: &mut Conn,
    meeting: MeetingId,
    after: u64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = conn.query(
        "SELECT seq, at, recorded_at, body FROM events WHERE meeting_id = $1 AND seq > $2
         ORDER BY seq LIMIT $3",
        args![meeting.0, after, limit],
    )?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let (seq, at, recorded_at, body): (i64, i64, i64, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let kind: EventKind = serde_json::from_str(&body).map_err(|e| {
            StoreError::Internal(format!(
                "event {seq} of meeting {meeting} is unreadable: {e}"
            ))
        })?;
        events.push(Event {
            seq: seq as u64,
            at,
            recorded_at,
            kind,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{meeting as new_meeting, temp_store};
    use super::*;

    fn joined(site: &str, session: &str) -> EventKind {
        EventKind::SiteJoined {
            site: site.to_owned(),
            session: session.to_owned(),
            client: String::new(),
            address: String::new(),
        }
    }

    fn left(site: &str, session: &str) -> EventKind {
        EventKind::SiteLeft {
            site: site.to_owned(),
            session: session.to_owned(),
            reason: LeaveReason::Closed,
        }
    }

    #[test]
    fn the_first_event_of_a_meeting_is_written_while_the_writer_commits_beside_it() {
        // The recorder reads the meeting's last number, then inserts; the hub's writer
        // connection commits every few milliseconds meanwhile (liveness marks). Neither may
        // fail the other.
        let store = temp_store("log-beside");
        let recorder = store.recorder().expect("recorder");
        let meetings: Vec<MeetingId> = (0..40)
            .map(|i| new_meeting(&store, &[&format!("{}", 3000 + i)]))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                store.begin_run("hub", 1).expect("a run");
                let mut at = 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    at += 1;
                    store.touch_run(1, at).expect("the writer's commit");
                    // A pause, as between the hub's real commits: SQLite's busy wait polls
                    // and never queues, so a writer committing back to back with no gap at
                    // all could hold the lock at every poll for the whole busy timeout.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        for meeting in &meetings {
            recorder
                .append_blocking(*meeting, 1, EventKind::MeetingStarted)
                .expect("the first event of a meeting, written beside the writer");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("the writer");
    }

    #[tokio::test]
    async fn events_are_acknowledged_in_order_and_never_rewritten() {
        let store = temp_store("log");
        let recorder = store.recorder().expect("recorder");
        let meeting = new_meeting(&store, &["2269"]);
        let pending: Vec<_> = (0..20)
            .map(|i| recorder.append(meeting, i, joined("2269", &format!("s{i}"))))
            .collect();
        let mut seqs = Vec::new();
        for logged in pending {
            seqs.push(logged.await.expect("acknowledged").seq);
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
        let events = store.events(meeting).expect("read");
        assert_eq!(
            events.iter().map(|e| e.at).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert!(
            store
                .events(MeetingId(meeting.0 + 1))
                .expect("read")
                .is_empty()
        );
        let mut conn = super::super::testing::second_connection(&store);
        assert!(conn.execute("UPDATE events SET at = 0", &[]).is_err());
        assert!(conn.execute("DELETE FROM events", &[]).is_err());
    }

    #[test]
    fn the_last_leave_and_the_sessions_a_crash_left_open() {
        let store = temp_store("crash");
        let recorder = store.recorder().expect("recorder");
        let meeting = new_meeting(&store, &["2269"]);
        let site = SiteCode::try_from("2269").expect("site code");
        recorder
            .append_blocking(meeting, 10, joined("2269", "a"))
            .expect("joined");
        recorder
            .append_blocking(meeting, 20, left("2269", "a"))
            .expect("left");
        recorder
            .append_blocking(meeting, 30, joined("2269", "b"))
            .expect("joined again");
        assert_eq!(
            store.last_leave(meeting, &site).expect("read"),
            Some((SessionId("a".to_owned()), 20))
        );
        store
            .touch_sessions(&[(meeting, SessionId("b".to_owned()))], 45)
            .expect("alive");
        assert_eq!(
            store.close_interrupted_sessions(&recorder).expect("closed"),
            1
        );
        assert_eq!(
            store.last_leave(meeting, &site).expect("read"),
            Some((SessionId("b".to_owned()), 45)),
            "closed at its last sign of life"
        );
        assert_eq!(
            store.close_interrupted_sessions(&recorder).expect("none"),
            0
        );
    }

    #[test]
    fn a_run_that_never_noted_its_stop_is_a_crash_and_the_studio_session_is_closed_too() {
        let store = temp_store("runs");
        let recorder = store.recorder().expect("recorder");
        assert_eq!(store.begin_run("hub", 1_000).expect("first run"), None);
        store.touch_run(1_000, 1_500).expect("alive");
        store.end_run(1_000, 2_000).expect("clean stop");
        assert_eq!(
            store.begin_run("hub", 3_000).expect("second run"),
            None,
            "a clean stop"
        );
        store.touch_run(3_000, 3_700).expect("alive");
        assert_eq!(
            store.begin_run("hub", 9_000).expect("third run"),
            Some(3_700),
            "the second run crashed: last known alive at its last mark"
        );
        assert_eq!(
            store
                .begin_run("other-hub", 9_500)
                .expect("another hub's run"),
            None,
            "another hub sharing the database has runs of its own"
        );

        let meeting = new_meeting(&store, &["2269"]);
        recorder
            .append_blocking(meeting, 10, EventKind::MeetingStarted)
            .expect("started");
        recorder
            .append_blocking(
                meeting,
                11,
                EventKind::StudioJoined {
                    session: "studio".into(),
                    client: String::new(),
                    address: String::new(),
                },
            )
            .expect("studio joined");
        assert_eq!(
            store.meetings_in_progress().expect("read"),
            vec![(meeting, 11)]
        );
        for (at, kind) in [
            (
                12,
                EventKind::EncoderJoined {
                    session: "encoder".into(),
                    client: String::new(),
                    address: String::new(),
                },
            ),
            (
                13,
                EventKind::ViewerJoined {
                    session: "viewer".into(),
                    client: String::new(),
                    address: String::new(),
                },
            ),
        ] {
            recorder.append_blocking(meeting, at, kind).expect("joined");
        }
        store
            .touch_sessions(&[(meeting, SessionId("studio".to_owned()))], 40)
            .expect("alive");
        assert_eq!(
            store.close_interrupted_sessions(&recorder).expect("closed"),
            3
        );
        let events = store.events(meeting).expect("read");
        let closed: Vec<(i64, EventKind)> = events
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|e| (e.at, e.kind.clone()))
            .collect();
        let reason = LeaveReason::HubCrash;
        assert_eq!(
            closed,
            vec![
                (
                    40,
                    EventKind::StudioLeft {
                        session: "studio".into(),
                        reason
                    }
                ),
                (
                    12,
                    EventKind::EncoderLeft {
                        session: "encoder".into(),
                        reason
                    }
                ),
                (
                    13,
                    EventKind::ViewerLeft {
                        session: "viewer".into(),
                        reason
                    }
                ),
            ],
            "each seat's session is closed with its own kind, at its last sign of life"
        );
        recorder
            .append_blocking(meeting, 50, EventKind::MeetingEnded)
            .expect("ended");
        assert!(store.meetings_in_progress().expect("read").is_empty());
    }
}
