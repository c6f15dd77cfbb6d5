//! The sites directory: every hall that can be invited, by its administrative code.

use super::db::args;
use super::{Store, StoreError};
use crate::directory::{Level, Site};

impl Store {
    /// Adds or updates every site, in one transaction.
    pub fn import_sites(&self, sites: &[Site]) -> Result<usize, StoreError> {
        self.writer().write(|tx| {
            for s in sites {
                tx.execute(
                    "INSERT INTO sites (code, name, level, kind, parent_code, parent_name, delegates)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT(code) DO UPDATE SET name = excluded.name, level = excluded.level,
                       kind = excluded.kind, parent_code = excluded.parent_code,
                       parent_name = excluded.parent_name, delegates = excluded.delegates",
                    args![
                        s.code,
                        s.name,
                        level_name(s.level),
                        s.kind,
                        s.parent_code,
                        s.parent_name,
                        s.delegates
                    ],
                )?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(sites.len())
    }

    /// The whole directory: provinces first, then each parent's sites by name.
    pub fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.reader()
            .query(
                "SELECT code, name, level, kind, parent_code, parent_name, delegates FROM sites
                 ORDER BY parent_code IS NOT NULL, parent_code, name",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Site {
                    code: r.get(0)?,
                    name: r.get(1)?,
                    level: level_from(&r.get::<String>(2)?),
                    kind: r.get(3)?,
                    parent_code: r.get(4)?,
                    parent_name: r.get(5)?,
                    delegates: r.get(6)?,
                })
            })
            .collect()
    }

    pub fn site_count(&self) -> Result<u64, StoreError> {
        self.reader()
            .query_one("SELECT COUNT(*) FROM sites", &[])?
            .get(0)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Province => "province",
        Level::District => "district",
        Level::Commune => "commune",
    }
}

fn level_from(name: &str) -> Level {
    match name {
        "province" => Level::Province,
        "district" => Level::District,
        _ => Level::Commune,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{site, temp_store};
    use super::*;

    #[test]
    fn an_import_adds_and_updates_sites() {
        let store = temp_store("sites");
        store
            .import_sites(&[site("2269", "Xã Thượng Lâm", 40)])
            .expect("imported");
        store
            .import_sites(&[
                site("2269", "Xã Thượng Lâm mới", 45),
                site("2317", "Phường Minh Xuân", 60),
            ])
            .expect("imported again");
        let sites = store.sites().expect("read");
        assert_eq!(store.site_count().expect("counted"), 2);
        let updated = sites
            .iter()
            .find(|s| s.code == "2269")
            .expect("still there");
        assert_eq!(updated.name, "Xã Thượng Lâm mới");
        assert_eq!(updated.delegates, 45);
        assert_eq!(updated.level, Level::Commune);
    }
}
