//! The throwaway PostgreSQL cluster `scripts/test` starts (its URL in `DIEMCAU_TEST_POSTGRES`):
//! a fresh database for each test, and reads of what the hub wrote there.
//!
//! Include it with `#[path = "common/postgres.rs"] mod postgres;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's `postgres` database, as `scripts/test` gives it.
pub fn admin_url() -> String {
    std::env::var("DIEMCAU_TEST_POSTGRES").expect(
        "DIEMCAU_TEST_POSTGRES names the test PostgreSQL cluster: run the tests with \
         scripts/test, which starts one",
    )
}

/// A new, empty database of the cluster; returns its URL.
pub async fn fresh_database(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let database = format!(
        "{name}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("a database for the test");
    admin_url().replacen("/postgres?", &format!("/{database}?"), 1)
}

/// A connection to the database at `url`.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test cluster answers");
    tokio::spawn(connection);
    client
}

/// The one integer `sql` answers.
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    connect(url)
        .await
        .query_one(sql, &[])
        .await
        .expect("the query runs")
        .get(0)
}
