//! Which hub runs each live meeting, when hubs share one PostgreSQL database: a lease, one row
//! per meeting with its owner and an expiry by the database's clock, renewed every second by
//! its owner. The database arbitrates: taking a lease and renewing it are single statements
//! that succeed for one hub only, so two hubs never hold one meeting, whatever the network
//! between them.
//!
//! An owner whose lease has expired still renews it if nobody took it meanwhile (the database
//! was out of reach of both hubs); another hub takes an expired lease only when the owner does
//! not answer either (see `crate::hub::standby`).

use std::collections::HashMap;

use super::db::{Conn, Engine, args};
use super::{Store, StoreError, now_millis};
use crate::attendance::Millis;
use diemcau_signaling::MeetingId;

/// A hub as a lease names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// Its `--hub-name`.
    pub hub: String,
    /// Where its pages are (its public URL).
    pub address: String,
    /// The run of the hub (when it started).
    pub run: Millis,
}

/// What taking a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This hub holds it now, until `expires_at` by the database's clock. `previous`: the
    /// lease it replaced, expired, if another hub or another run of this one held it.
    Taken {
        expires_at: Millis,
        previous: Option<LeaseHolder>,
    },
    /// Another hub holds it, for `remaining` milliseconds more unless renewed (negative once
    /// expired).
    Held {
        holder: LeaseHolder,
        remaining: Millis,
    },
}

impl Store {
    /// The database's clock, in milliseconds since the epoch: the same for every hub sharing
    /// it (SQLite's is this machine's).
    pub fn database_now(&self) -> Result<Millis, StoreError> {
        database_now(&mut self.writer())
    }

    /// Takes `meeting`'s lease for `me` for `ttl` milliseconds: if nobody holds it, if `me`
    /// holds it already (any run), or if it expired and `take_expired` allows it.
    pub fn take_lease(
        &self,
        meeting: MeetingId,
        me: &LeaseHolder,
        ttl: Millis,
        take_expired: bool,
    ) -> Result<LeaseOutcome, StoreError> {
        self.writer().write(|tx| {
            let now = database_now(tx)?;
            let lock = match tx.engine() {
                Engine::Postgres => " FOR UPDATE",
                Engine::Sqlite => "",
            };
            let current = read_lease_locked(tx, meeting, lock)?;
            if let Some((holder, expires_at)) = &current
                && holder.hub != me.hub
                && (*expires_at >= now || !take_expired)
            {
                return Ok(LeaseOutcome::Held {
                    holder: holder.clone(),
                    remaining: expires_at - now,
                });
            }
            let expires_at = now + ttl;
            // One statement that only one hub can win, whatever this transaction read.
            let won = tx
                .query_opt(
                    "INSERT INTO meeting_leases (meeting_id, owner, address, run, expires_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (meeting_id) DO UPDATE SET owner = excluded.owner,
                       address = excluded.address, run = excluded.run,
                       expires_at = excluded.expires_at
                     WHERE meeting_leases.owner = excluded.owner
                        OR meeting_leases.expires_at < $6
                     RETURNING owner",
                    args![meeting.0, me.hub, me.address, me.run, expires_at, now],
                )?
                .is_some();
            if !won {
                // Another hub took it between this transaction's read and its write: its row,
                // committed, is what the next statement sees.
                return match read_lease(tx, meeting)? {
                    Some((holder, expires_at)) => Ok(LeaseOutcome::Held {
                        holder,
                        remaining: expires_at - now,
                    }),
                    None => Err(StoreError::Internal(format!(
                        "the lease of meeting {meeting} changed hands while it was taken"
                    ))),
                };
            }
            let previous = current
                .map(|(holder, _)| holder)
                .filter(|holder| holder.hub != me.hub || holder.run != me.run);
            Ok(LeaseOutcome::Taken {
                expires_at,
                previous,
            })
        })
    }

    /// Renews `me`'s leases of `meetings` for `ttl` milliseconds, expired or not, as long as
    /// nobody else took them; returns those it still holds, and the database's time.
    pub fn renew_leases(
        &self,
        meetings: &[MeetingId],
        me: &LeaseHolder,
        ttl: Millis,
    ) -> Result<(Vec<MeetingId>, Millis), StoreError> {
        self.writer().write(|tx| {
            let now = database_now(tx)?;
            let mut held = Vec::with_capacity(meetings.len());
            for meeting in meetings {
                let renewed = tx.execute(
                    "UPDATE meeting_leases SET expires_at = $3, run = $4
                     WHERE meeting_id = $1 AND owner = $2",
                    args![meeting.0, me.hub, now + ttl, me.run],
                )?;
                if renewed == 1 {
                    held.push(*meeting);
                }
            }
            Ok((held, now))
        })
    }

    /// Gives up `me`'s lease of `meeting` (it ended, or the hub stops).
    pub fn release_lease(&self, meeting: MeetingId, me: &LeaseHolder) -> Result<(), StoreError> {
        self.writer().execute(
            "DELETE FROM meeting_leases WHERE meeting_id = $1 AND owner = $2",
            args![meeting.0, me.hub],
        )?;
        Ok(())
    }

    /// Who holds `meeting`'s lease, and for how many milliseconds more (negative once
    /// expired).
    pub fn lease(&self, meeting: MeetingId) -> Result<Option<(LeaseHolder, Millis)>, StoreError> {
        let mut conn = self.writer();
        let now = database_now(&mut conn)?;
        Ok(read_lease(&mut conn, meeting)?.map(|(holder, expires_at)| (holder, expires_at - now)))
    }
}

impl Store {
    /// The meetings some hub runs now (an unexpired lease), with that hub: what the pages of
    /// either hub of a pair show of where each live meeting is.
    pub fn running_hubs(&self) -> Result<HashMap<MeetingId, LeaseHolder>, StoreError> {
        if !self.is_shared() {
            return Ok(HashMap::new());
        }
        let mut conn = self.reader();
        let now = database_now(&mut conn)?;
        conn.query(
            "SELECT meeting_id, owner, address, run FROM meeting_leases WHERE expires_at > $1",
            args![now],
        )?
        .iter()
        .map(|r| {
            Ok((
                MeetingId(r.get(0)?),
                LeaseHolder {
                    hub: r.get(1)?,
                    address: r.get(2)?,
                    run: r.get(3)?,
                },
            ))
        })
        .collect()
    }
}

/// The lease of `meeting`: its holder and when it expires.
fn read_lease(
    conn: &mut Conn,
    meeting: MeetingId,
) -> Result<Option<(LeaseHolder, Millis)>, StoreError> {
    read_lease_locked(conn, meeting, "")
}

/// [`read_lease`], with `lock` after the query (PostgreSQL's `FOR UPDATE`).
fn read_lease_locked(
    conn: &mut Conn,
    meeting: MeetingId,
    lock: &str,
) -> Result<Option<(LeaseHolder, Millis)>, StoreError> {
    conn.query_opt(
        &format!(
            "SELECT owner, address, run, expires_at FROM meeting_leases WHERE meeting_id = $1{lock}"
        ),
        args![meeting.0],
    )?
    .map(|r| {
        Ok((
            LeaseHolder {
                hub: r.get(0)?,
                address: r.get(1)?,
                run: r.get(2)?,
            },
            r.get::<Millis>(3)?,
        ))
    })
    .transpose()
}

fn database_now(conn: &mut Conn) -> Result<Millis, StoreError> {
    match conn.engine() {
        Engine::Sqlite => Ok(now_millis()),
        Engine::Postgres => conn
            .query_one(
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                &[],
            )?
            .get(0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{meeting, temp_store};
    use super::*;

    fn hub(name: &str, run: Millis) -> LeaseHolder {
        LeaseHolder {
            hub: name.to_owned(),
            address: format!("https://{name}.example"),
            run,
        }
    }

    #[test]
    fn one_hub_holds_a_meeting_until_its_lease_expires_unrenewed() {
        let store = temp_store("leases");
        let id = meeting(&store, &["2269"]);
        let (a, b) = (hub("a", 1), hub("b", 1));
        assert!(matches!(
            store.take_lease(id, &a, 60_000, true).expect("taken"),
            LeaseOutcome::Taken { previous: None, .. }
        ));
        match store.take_lease(id, &b, 60_000, true).expect("asked") {
            LeaseOutcome::Held { holder, remaining } => {
                assert_eq!(holder, a);
                assert!(remaining > 50_000, "{remaining}");
            }
            taken => panic!("two owners: {taken:?}"),
        }
        // Renewed with a lease that has already run out: nobody took it, so `a` keeps it.
        let (held, _) = store.renew_leases(&[id], &a, -1).expect("renewed");
        assert_eq!(held, vec![id]);
        assert!(matches!(
            store.take_lease(id, &b, 60_000, false).expect("asked"),
            LeaseOutcome::Held { .. }
        ));
        // Expired, and `b` may take an expired lease: it does, and `a` lost it.
        match store.take_lease(id, &b, 60_000, true).expect("taken over") {
            LeaseOutcome::Taken { previous, .. } => assert_eq!(previous, Some(a.clone())),
            held => panic!("not taken: {held:?}"),
        }
        let (held, _) = store.renew_leases(&[id], &a, 60_000).expect("asked");
        assert!(held.is_empty(), "the old owner renews nothing");
        assert_eq!(
            store.lease(id).expect("read").map(|(h, _)| h),
            Some(b.clone())
        );
        // A new run of `b` takes its own lease back at once, and knows it was another run.
        match store
            .take_lease(id, &hub("b", 2), 60_000, false)
            .expect("taken")
        {
            LeaseOutcome::Taken { previous, .. } => assert_eq!(previous, Some(b.clone())),
            held => panic!("not taken: {held:?}"),
        }
        store.release_lease(id, &b).expect("released");
        assert_eq!(store.lease(id).expect("read"), None);
    }

    #[test]
    fn hubs_racing_for_one_lease_get_one_owner() {
        let store = temp_store("lease-race");
        let id = meeting(&store, &["2269"]);
        let owners: Vec<bool> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    scope.spawn(move || {
                        // A store of its own each, as separate hubs have.
                        let store = Store::connect(store.database()).expect("opened");
                        matches!(
                            store.take_lease(id, &hub(&format!("h{i}"), 1), 60_000, true),
                            Ok(LeaseOutcome::Taken { .. })
                        )
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("a racer"))
                .collect()
        });
        assert_eq!(owners.iter().filter(|o| **o).count(), 1, "{owners:?}");
    }
}
