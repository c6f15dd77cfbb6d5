//! `diemcau account ...`: adding accounts, changing a password, listing, disabling and
//! enabling accounts, on the data directory the hub uses (stop nothing: SQLite lets the hub
//! run meanwhile).

use std::io::Read;

use super::{check_new_password, hash_password, normalize_username};
use crate::config::{AccountCommand, DataDir};
use crate::store::{Store, now_millis};

/// Runs one account command; `Ok` holds what to print.
pub fn run(command: AccountCommand) -> Result<String, String> {
    match command {
        AccountCommand::Add {
            username,
            role,
            password_stdin,
            data,
        } => {
            let (store, username, exists) = open_for(&data, &username)?;
            if exists {
                return Err(format!("account {username} exists already"));
            }
            let hash = new_password_hash(password_stdin)?;
            store
                .add_account(&username, role, &hash, now_millis())
                .map_err(|e| e.to_string())?;
            Ok(format!("account {username} added ({})", role.as_str()))
        }
        AccountCommand::Passwd {
            username,
            password_stdin,
            data,
        } => {
            let (store, username, exists) = open_for(&data, &username)?;
            if !exists {
                return Err(format!("no account {username}"));
            }
            let hash = new_password_hash(password_stdin)?;
            store
                .set_password(&username, &hash)
                .map_err(|e| e.to_string())?;
            if username == super::FIRST_ACCOUNT {
                // The first-start password is no longer the password.
                let file = data.data_dir.join(super::FIRST_PASSWORD_FILE);
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(format!(
                        "password changed, but {} could not be removed: {e}",
                        file.display()
                    ));
                }
            }
            Ok(format!(
                "password of {username} changed; its login sessions have ended"
            ))
        }
        AccountCommand::List { data } => {
            let store = open(&data)?;
            let accounts = store.accounts().map_err(|e| e.to_string())?;
            let mut out = format!("{:<24} {:<10} {:<20} state", "username", "role", "created");
            for account in accounts {
                let created = time::OffsetDateTime::from_unix_timestamp(account.created_at / 1000)
                    .ok()
                    .and_then(|t| {
                        t.format(time::macros::format_description!(
                            "[year]-[month]-[day] [hour]:[minute] UTC"
                        ))
                        .ok()
                    })
                    .unwrap_or_default();
                out.push_str(&format!(
                    "\n{:<24} {:<10} {:<20} {}",
                    account.username,
                    account.role.as_str(),
                    created,
                    if account.disabled {
                        "disabled"
                    } else {
                        "active"
                    }
                ));
            }
            Ok(out)
        }
        AccountCommand::Disable { username, data } => {
            let (store, username, _) = open_for(&data, &username)?;
            store
                .disable_account(&username)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "account {username} disabled; its login sessions have ended"
            ))
        }
        AccountCommand::Enable { username, data } => {
            let (store, username, _) = open_for(&data, &username)?;
            store.enable_account(&username).map_err(|e| e.to_string())?;
            Ok(format!("account {username} enabled"))
        }
    }
}

fn open(data: &DataDir) -> Result<Store, String> {
    data.open_store()
}

/// The store, the account name as stored, and whether that account exists.
fn open_for(data: &DataDir, username: &str) -> Result<(Store, String, bool), String> {
    let store = open(data)?;
    let username = normalize_username(username).map_err(|e| e.to_string())?;
    let exists = store
        .account(&username)
        .map_err(|e| e.to_string())?
        .is_some();
    Ok((store, username, exists))
}

/// The hash of a new password read as [`read_new_password`] reads it.
fn new_password_hash(from_stdin: bool) -> Result<String, String> {
    let password = read_new_password(from_stdin)?;
    hash_password(&password).map_err(|e| e.to_string())
}

/// The new password: standard input's text without its final line break, or typed twice on
/// the terminal without echo.
fn read_new_password(from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .take(super::MAX_PASSWORD_BYTES as u64 + 2)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ")
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        check_new_password(&first).map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Repeat it: ")
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        if first != second {
            return Err("the two passwords differ; nothing was changed".into());
        }
        first
    };
    check_new_password(&password).map_err(|e| e.to_string())?;
    Ok(password)
}
