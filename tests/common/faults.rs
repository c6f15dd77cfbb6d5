//! Faults a test inflicts on a hub from outside, as a failing disk would.

/// Drops `table` of the hub's database behind its back.
pub fn break_table(data_dir: &std::path::Path, table: &str) {
    let conn = rusqlite::Connection::open(data_dir.join(diemcau::store::DATABASE_FILE))
        .expect("a second connection");
    conn.execute_batch(&format!("PRAGMA foreign_keys = OFF; DROP TABLE {table};"))
        .expect("the table is dropped");
}
