//! Accounts and their login sessions, as stored; the rules for names, passwords and logins
//! are [`crate::auth`]'s, which passes the lifetimes of a login in as [`SessionLimits`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::db::{Conn, Row, Value, args};
use super::{Store, StoreError};
use crate::attendance::Millis;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: the sites directory, meetings and their join codes, the chair in the studio.
    Organizer,
    /// Reads only: meetings without their join codes, attendance reports, the sites directory.
    Staff,
}

/// A logged-in account, as a request or a signalling session carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub role: Role,
}

/// An account as stored: the password only as its argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: Millis,
    pub disabled: bool,
}

/// A login session found by its token: whose it is and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    pub account: Account,
    pub csrf_token: String,
}

/// How long a login lasts: `idle` after its last use, `lifetime` after the login at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub lifetime: Duration,
}

/// Why a change to the accounts was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountChangeError {
    #[error("account {0} exists already")]
    Exists(String),
    #[error("no account {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Organizer => "organizer",
            Role::Staff => "staff",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "organizer" => Some(Role::Organizer),
            "staff" => Some(Role::Staff),
            _ => None,
        }
    }
}

impl Store {
    pub fn account_count(&self) -> Result<u64, StoreError> {
        self.reader()
            .query_one("SELECT COUNT(*) FROM accounts", &[])?
            .get(0)
    }

    /// Adds an account; refused if the username is taken.
    pub fn add_account(
        &self,
        username: &str,
        role: Role,
        password_hash: &str,
        now: Millis,
    ) -> Result<(), AccountChangeError> {
        let added = self.writer().execute(
            "INSERT INTO accounts (username, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(username) DO NOTHING",
            args![username, role.as_str(), password_hash, now],
        )?;
        if added == 0 {
            return Err(AccountChangeError::Exists(username.to_owned()));
        }
        Ok(())
    }

    pub fn account(&self, username: &str) -> Result<Option<StoredAccount>, StoreError> {
        self.reader()
            .query_opt(
                "SELECT username, role, password_hash, created_at, disabled FROM accounts
                 WHERE username = $1",
                args![username],
            )?
            .as_ref()
            .map(stored_account)
            .transpose()
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        self.reader()
            .query(
                "SELECT username, role, password_hash, created_at, disabled FROM accounts
                 ORDER BY username",
                &[],
            )?
            .iter()
            .map(stored_account)
            .collect()
    }

    /// Sets a new password and ends the account's login sessions.
    pub fn set_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<(), AccountChangeError> {
        self.change_account_ending_logins(
            username,
            "UPDATE accounts SET password_hash = $1 WHERE username = $2",
            args![password_hash, username],
        )
    }

    /// Disables an account (it can no longer log in) and ends its login sessions.
    pub fn disable_account(&self, username: &str) -> Result<(), AccountChangeError> {
        self.change_account_ending_logins(
            username,
            "UPDATE accounts SET disabled = 1 WHERE username = $1",
            args![username],
        )
    }

    /// Lets a disabled account log in again.
    pub fn enable_account(&self, username: &str) -> Result<(), AccountChangeError> {
        let updated = self.writer().execute(
            "UPDATE accounts SET disabled = 0 WHERE username = $1",
            args![username],
        )?;
        if updated == 0 {
            return Err(AccountChangeError::NotFound(username.to_owned()));
        }
        Ok(())
    }

    /// Records a new login session under the SHA-256 of its token; drops expired ones.
    pub fn create_login_session(
        &self,
        token_sha256: &str,
        username: &str,
        csrf_token: &str,
        now: Millis,
        limits: SessionLimits,
    ) -> Result<(), StoreError> {
        self.writer().write(|tx| {
            delete_expired_sessions(tx, now, limits)?;
            tx.execute(
                "INSERT INTO login_sessions
                   (token_sha256, username, csrf_token, created_at, last_seen)
                 VALUES ($1, $2, $3, $4, $4)",
                args![token_sha256, username, csrf_token, now],
            )?;
            Ok(())
        })
    }

    /// The live session with this token hash, of an account that is not disabled; notes its
    /// use. An expired session is deleted and not returned.
    pub fn login_session(
        &self,
        token_sha256: &str,
        now: Millis,
        limits: SessionLimits,
    ) -> Result<Option<LoginSession>, StoreError> {
        let found: Option<(String, String, String, Millis, Millis, bool)> = self
            .reader()
            .query_opt(
                "SELECT s.username, a.role, s.csrf_token, s.created_at, s.last_seen, a.disabled
                 FROM login_sessions s JOIN accounts a ON a.username = s.username
                 WHERE s.token_sha256 = $1",
                args![token_sha256],
            )?
            .map(|r| {
                Ok::<_, StoreError>((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .transpose()?;
        let Some((username, role, csrf_token, created_at, last_seen, disabled)) = found else {
            return Ok(None);
        };
        let role = Role::parse(&role);
        if disabled || role.is_none() || session_expired(created_at, last_seen, now, limits) {
            self.delete_login_session(token_sha256)?;
            return Ok(None);
        }
        // One write a minute at most per session, not one per request.
        if now - last_seen >= 60_000 {
            self.writer().execute(
                "UPDATE login_sessions SET last_seen = $1 WHERE token_sha256 = $2",
                args![now, token_sha256],
            )?;
        }
        Ok(role.map(|role| LoginSession {
            account: Account { username, role },
            csrf_token,
        }))
    }

    pub fn delete_login_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        self.writer().execute(
            "DELETE FROM login_sessions WHERE token_sha256 = $1",
            args![token_sha256],
        )?;
        Ok(())
    }

    /// Runs `update` on the account's row and ends its login sessions, in one transaction.
    fn change_account_ending_logins(
        &self,
        username: &str,
        update: &str,
        args: &[Value],
    ) -> Result<(), AccountChangeError> {
        self.writer().write(|tx| {
            if tx.execute(update, args)? == 0 {
                return Err(AccountChangeError::NotFound(username.to_owned()));
            }
            tx.execute(
                "DELETE FROM login_sessions WHERE username = $1",
                args![username],
            )?;
            Ok(())
        })
    }
}

fn stored_account(r: &Row) -> Result<StoredAccount, StoreError> {
    let role: String = r.get(1)?;
    Ok(StoredAccount {
        username: r.get(0)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("an account of unknown role {role}")))?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
        disabled: r.get(4)?,
    })
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

fn session_expired(
    created_at: Millis,
    last_seen: Millis,
    now: Millis,
    limits: SessionLimits,
) -> bool {
    now - last_seen >= millis(limits.idle) || now - created_at >= millis(limits.lifetime)
}

fn delete_expired_sessions(
    conn: &mut Conn,
    now: Millis,
    limits: SessionLimits,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM login_sessions WHERE last_seen <= $1 OR created_at <= $2",
        args![
            now.saturating_sub(millis(limits.idle)),
            now.saturating_sub(millis(limits.lifetime))
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{drop_table, temp_store};
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        idle: Duration::from_secs(60 * 60),
        lifetime: Duration::from_secs(24 * 60 * 60),
    };

    const HOUR: Millis = 60 * 60 * 1000;

    #[test]
    fn account_changes_say_what_was_wrong() {
        let store = temp_store("accounts");
        store
            .add_account("organizer", Role::Organizer, "$hash", 1)
            .expect("added");
        assert!(matches!(
            store.add_account("organizer", Role::Staff, "$other", 2),
            Err(AccountChangeError::Exists(name)) if name == "organizer"
        ));
        assert!(matches!(
            store.set_password("nobody", "$hash"),
            Err(AccountChangeError::NotFound(name)) if name == "nobody"
        ));
        assert!(matches!(
            store.enable_account("nobody"),
            Err(AccountChangeError::NotFound(_))
        ));
        let stored = store.account("organizer").expect("read").expect("there");
        assert_eq!(
            (stored.role, stored.password_hash.as_str()),
            (Role::Organizer, "$hash")
        );
        drop_table(&store, "accounts");
        assert!(matches!(
            store.add_account("staff", Role::Staff, "$hash", 3),
            Err(AccountChangeError::Store(StoreError::Database(_)))
        ));
    }

    #[test]
    fn a_login_lasts_as_long_as_the_limits_passed_in() {
        let store = temp_store("logins");
        store
            .add_account("organizer", Role::Organizer, "$hash", 0)
            .expect("added");
        let start = 1_000 * HOUR;
        store
            .create_login_session("token", "organizer", "csrf", start, LIMITS)
            .expect("logged in");
        let session = store
            .login_session("token", start + HOUR / 2, LIMITS)
            .expect("read")
            .expect("live");
        assert_eq!(session.account.role, Role::Organizer);
        assert_eq!(session.csrf_token, "csrf");
        // Used every half hour: alive until its lifetime ends.
        let mut now = start + HOUR / 2;
        while now + HOUR / 2 < start + 24 * HOUR {
            now += HOUR / 2;
            assert!(
                store
                    .login_session("token", now, LIMITS)
                    .expect("read")
                    .is_some(),
                "alive at {}",
                now - start
            );
        }
        assert!(
            store
                .login_session("token", start + 24 * HOUR, LIMITS)
                .expect("read")
                .is_none(),
            "over its lifetime"
        );

        store
            .create_login_session("idle", "organizer", "csrf", start, LIMITS)
            .expect("logged in");
        assert!(
            store
                .login_session("idle", start + HOUR, LIMITS)
                .expect("read")
                .is_none(),
            "idle for an hour"
        );
        let longer = SessionLimits {
            idle: Duration::from_secs(2 * 60 * 60),
            ..LIMITS
        };
        store
            .create_login_session("patient", "organizer", "csrf", start, longer)
            .expect("logged in");
        assert!(
            store
                .login_session("patient", start + HOUR, longer)
                .expect("read")
                .is_some(),
            "other limits, other lifetimes"
        );
    }
}
