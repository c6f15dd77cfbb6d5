//! Accounts, passwords and login sessions: who may use the organizer's API and take a meeting's
//! chair.
//!
//! - this file: roles, account and password rules, argon2id hashing, session tokens, the
//!   first-start account, and [`Auth`], the login guard shared by the HTTP handlers;
//! - [`http`]: `/api/login`, `/api/logout`, `/api/session`, the CSRF and `Origin` checks and the
//!   extractors the API handlers take ([`http::Caller`], [`http::Organizer`]);
//! - [`cli`]: `diemcau account add|passwd|list|disable`.
//!
//! Passwords are stored as argon2id PHC strings with a random salt. A login session is a
//! 256-bit random token held by the browser in an `HttpOnly` cookie; the database keeps only
//! its SHA-256, so a copy of the database does not let anyone in. A session ends after
//! [`SESSION_IDLE`] without use, [`SESSION_LIFETIME`] after login, at logout, or when its
//! account's password changes or the account is disabled.

pub mod cli;
pub mod http;

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use crate::store::{Account, Role};
use crate::store::{AccountChangeError, SessionLimits, Store, StoreError, now_millis, random_text};

/// A login session ends this long after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// A login session ends this long after the login, however much it is used.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// [`SESSION_IDLE`] and [`SESSION_LIFETIME`], as the store takes them.
pub const SESSION_LIMITS: SessionLimits = SessionLimits {
    idle: SESSION_IDLE,
    lifetime: SESSION_LIFETIME,
};

/// Failed logins to one account from one client address in [`FAILED_LOGIN_WINDOW`] before
/// that account is refused to that address: a guesser is slowed, while the other people behind
/// the same address (a commune office's NAT) still log in to theirs.
pub const MAX_FAILED_LOGINS: usize = 10;

/// Failed logins from one client address, whatever the accounts, in [`FAILED_LOGIN_WINDOW`]
/// before every login from it is refused: a guesser cannot try every user name instead.
pub const MAX_FAILED_LOGINS_PER_ADDRESS: usize = 50;

pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Longest password accepted, in bytes (hashing a huge one would cost the hub for nothing).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The file, in the data directory, holding the first-start password of [`FIRST_ACCOUNT`]
/// until that password is changed.
pub const FIRST_PASSWORD_FILE: &str = "first-admin-password.txt";

/// Creates `path` with `contents`, readable and writable by its owner alone.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Name of the organizer account made on first start.
pub const FIRST_ACCOUNT: &str = "admin";

/// Why an account or password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("a username is 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadUsername,
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
    #[error("the password could not be hashed: {0}")]
    Hashing(String),
}

/// Usernames are compared in lower case: `Admin` and `admin` are one account.
pub fn normalize_username(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(AccountError::BadUsername);
    }
    Ok(name.to_ascii_lowercase())
}

/// The rules a new password must meet.
pub fn check_new_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::PasswordTooLong);
    }
    Ok(())
}

/// argon2id (version 19) with the crate's default cost: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hashing(e.to_string()));
    // argon2's 19 MiB go back to the system now, not kept for the process's life.
    crate::memory::trim();
    hash
}

/// Whether `password` matches the PHC string `hash`. argon2 compares the outputs in constant
/// time; an unreadable hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matches = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    crate::memory::trim();
    matches
}

/// A hash no password is known for: checked when the username is unknown, so that a refusal
/// costs the same whether the account exists or not.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = random_text(32).unwrap_or_else(|_| "x".repeat(32));
        hash_password(&password).unwrap_or_default()
    })
}

/// 256 random bits as 64 hex digits: a session token or a CSRF token.
pub fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Internal(format!("no random bytes for a token: {e}")))?;
    Ok(hex(&bytes))
}

/// What the database keeps of a session token.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The login guard shared by the HTTP handlers: failed logins per account and address and per
/// address, and a bound on password hashing running at once so that a flood of logins cannot
/// take every core.
#[derive(Debug)]
pub struct Auth {
    /// Whether the hub serves HTTPS (the session cookie is then `Secure`).
    pub secure_cookies: bool,
    /// The domain whose hosts share the login cookie (`--cookie-domain`), if any.
    pub cookie_domain: Option<String>,
    failures: Mutex<Failures>,
    hashing: Semaphore,
}

/// Why a login was refused before its password was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginLimited {
    #[error("too many failed logins to this account from this address; wait a minute")]
    Account,
    #[error("too many failed logins from this address; wait a minute")]
    Address,
}

/// Recent failed logins (their times), by account and address and by address alone.
#[derive(Debug, Default)]
struct Failures {
    by_account: HashMap<(String, IpAddr), VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Auth {
    pub fn new(secure_cookies: bool) -> Auth {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Auth {
            secure_cookies,
            cookie_domain: None,
            failures: Mutex::new(Failures::default()),
            hashing: Semaphore::new(cores.clamp(1, 4)),
        }
    }

    /// The login cookie is valid on every host of `domain` (a standby pair's two host names).
    pub fn shared_by(mut self, domain: Option<String>) -> Auth {
        self.cookie_domain = domain;
        self
    }

    /// Counts a login attempt to `account` (its normalized name, or empty when the name is
    /// not valid) from `address` as failed until [`Auth::succeeded`] says otherwise; refused
    /// when the pair or the address has used up its failures for now. Counting before the
    /// password is checked keeps a burst of parallel guesses within the limits too.
    fn begin_attempt(
        &self,
        account: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), LoginLimited> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Failures {
            by_account,
            by_address,
        } = &mut *failures;
        // Clients that stopped trying are forgotten, so the maps stay small.
        if by_account.len() > 10_000 {
            by_account.retain(|_, recent| {
                forget_old(recent, now);
                !recent.is_empty()
            });
        }
        if by_address.len() > 10_000 {
            by_address.retain(|_, recent| {
                forget_old(recent, now);
                !recent.is_empty()
            });
        }
        let from_address = by_address.entry(address).or_default();
        forget_old(from_address, now);
        if from_address.len() >= MAX_FAILED_LOGINS_PER_ADDRESS {
            return Err(LoginLimited::Address);
        }
        let to_account = by_account.entry((account.to_owned(), address)).or_default();
        forget_old(to_account, now);
        if to_account.len() >= MAX_FAILED_LOGINS {
            return Err(LoginLimited::Account);
        }
        to_account.push_back(now);
        from_address.push_back(now);
        Ok(())
    }

    /// The attempt to `account` begun at `at` succeeded: it is not a failure.
    fn succeeded(&self, account: &str, address: IpAddr, at: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = (account.to_owned(), address);
        if let Some(recent) = failures.by_account.get_mut(&key) {
            forget_attempt(recent, at);
            if recent.is_empty() {
                failures.by_account.remove(&key);
            }
        }
        if let Some(recent) = failures.by_address.get_mut(&address) {
            forget_attempt(recent, at);
            if recent.is_empty() {
                failures.by_address.remove(&address);
            }
        }
    }

    /// Checks `password` for `username` off the async threads; `None` when the login is
    /// refused (unknown user, disabled account, wrong password: the caller cannot tell which).
    async fn check_login(
        &self,
        store: &Store,
        username: &str,
        password: &str,
    ) -> Result<Option<Account>, StoreError> {
        let found = match normalize_username(username) {
            Ok(name) => store.blocking(move |s| s.account(&name)).await?,
            Err(_) => None,
        };
        let (hash, account) = match &found {
            Some(stored) if !stored.disabled => (
                stored.password_hash.clone(),
                Some(Account {
                    username: stored.username.clone(),
                    role: stored.role,
                }),
            ),
            _ => (dummy_hash().to_owned(), None),
        };
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| StoreError::Internal("the hub is stopping".into()))?;
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| StoreError::Internal(format!("password check failed: {e}")))?;
        Ok(if matches { account } else { None })
    }
}

fn forget_attempt(recent: &mut VecDeque<Instant>, at: Instant) {
    if let Some(position) = recent.iter().rposition(|t| *t == at) {
        recent.remove(position);
    }
}

fn forget_old(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|at| now.duration_since(*at) >= FAILED_LOGIN_WINDOW)
    {
        recent.pop_front();
    }
}

/// Why the accounts could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An account given in the configuration is not valid.
    #[error("configured account {username:?}: {reason}")]
    Configured {
        username: String,
        reason: AccountError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountChangeError),
}

/// Makes sure the hub can be logged into: creates the configured accounts that do not exist
/// yet, or, on a first start with no account at all, an organizer `admin` with a random
/// password, kept in [`FIRST_PASSWORD_FILE`] in `data_dir` (readable by the hub's user alone)
/// until it is changed, and shown on standard error when that is a terminal. Under a service
/// manager standard error goes to a log that keeps it, so it is not written there.
pub fn ensure_accounts(
    store: &Store,
    data_dir: &Path,
    configured: &[(String, String, Role)],
) -> Result<(), SetupError> {
    // Made now, so the first refused login costs what every other one does; without it an
    // unknown user name would be refused at once, which tells it apart from a known one.
    if dummy_hash().is_empty() {
        return Err(
            StoreError::Internal("cannot hash passwords: no random bytes".to_owned()).into(),
        );
    }
    if !configured.is_empty() {
        for (username, password, role) in configured {
            let username =
                normalize_username(username).map_err(|reason| SetupError::Configured {
                    username: username.clone(),
                    reason,
                })?;
            if store.account(&username)?.is_none() {
                let hash =
                    hash_password(password).map_err(|e| StoreError::Internal(e.to_string()))?;
                store.add_account(&username, *role, &hash, now_millis())?;
            }
        }
        return Ok(());
    }
    if store.account_count()? > 0 {
        return Ok(());
    }
    let password =
        random_text(20).map_err(|e| StoreError::Internal(format!("no random bytes: {e}")))?;
    let hash = hash_password(&password).map_err(|e| StoreError::Internal(e.to_string()))?;
    let file = data_dir.join(FIRST_PASSWORD_FILE);
    write_private(&file, &format!("{password}\n"))
        .map_err(|e| StoreError::Internal(format!("cannot write {}: {e}", file.display())))?;
    store.add_account(FIRST_ACCOUNT, Role::Organizer, &hash, now_millis())?;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "\n==========================================================================\n\
             diemcau: first start: created organizer account {FIRST_ACCOUNT} with password\n\n    \
             {password}\n\n\
             Log in at /login.html and change it with\n    \
             diemcau account passwd {FIRST_ACCOUNT}\n\
             ==========================================================================\n"
        );
    }
    tracing::warn!(
        "first start: created organizer account {FIRST_ACCOUNT}; its password is in {} until \
         it is changed with `diemcau account passwd {FIRST_ACCOUNT}`",
        file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(hash, hash_password("correct horse battery").expect("hash"));
    }

    #[test]
    fn usernames_and_passwords_have_rules() {
        assert_eq!(normalize_username(" Admin ").as_deref(), Ok("admin"));
        assert!(normalize_username("").is_err());
        assert!(normalize_username("a b").is_err());
        assert!(normalize_username(&"a".repeat(65)).is_err());
        assert_eq!(
            check_new_password("short"),
            Err(AccountError::PasswordTooShort)
        );
        assert!(check_new_password("mười ký tự đủ").is_ok());
        assert_eq!(
            check_new_password(&"x".repeat(2000)),
            Err(AccountError::PasswordTooLong)
        );
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn failed_logins_are_limited_per_account_and_address() {
        let auth = Auth::new(false);
        let now = Instant::now();
        let one: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let success = now + Duration::from_millis(1);
        assert!(auth.begin_attempt("staff", one, success).is_ok());
        auth.succeeded("staff", one, success);
        for _ in 0..MAX_FAILED_LOGINS {
            assert!(auth.begin_attempt("staff", one, now).is_ok());
        }
        assert_eq!(
            auth.begin_attempt("staff", one, now),
            Err(LoginLimited::Account)
        );
        assert!(auth.begin_attempt("staff", other, now).is_ok());
        assert!(
            auth.begin_attempt("organizer", one, now).is_ok(),
            "another account behind the same address still logs in"
        );
        assert!(
            auth.begin_attempt("staff", one, now + FAILED_LOGIN_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn an_address_trying_many_accounts_is_refused_for_all() {
        let auth = Auth::new(false);
        let now = Instant::now();
        let guesser: IpAddr = [10, 0, 0, 1].into();
        let neighbour: IpAddr = [10, 0, 0, 2].into();
        // Failures spread so thin that no account reaches its own limit.
        for n in 0..MAX_FAILED_LOGINS_PER_ADDRESS {
            assert!(
                auth.begin_attempt(&format!("user{n}"), guesser, now)
                    .is_ok()
            );
        }
        assert_eq!(
            auth.begin_attempt("organizer", guesser, now),
            Err(LoginLimited::Address)
        );
        assert!(auth.begin_attempt("organizer", neighbour, now).is_ok());
        assert!(
            auth.begin_attempt("organizer", guesser, now + FAILED_LOGIN_WINDOW)
                .is_ok()
        );
    }
}
