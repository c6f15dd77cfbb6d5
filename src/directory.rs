//! The sites directory: every commune hall (and province or district studio) that can be
//! invited, with its official administrative code. Imported and exported as CSV in UTF-8.

use std::collections::HashSet;

use diemcau_signaling::text::human_text;
use serde::{Deserialize, Serialize};

use crate::attendance::export::{cell, cell_text};

/// Administrative level of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    District,
    Commune,
}

/// One site of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Official administrative code (digits).
    pub code: String,
    pub name: String,
    pub level: Level,
    /// The unit's own word for its kind: `tỉnh`, `xã`, `phường`, `đặc khu`...
    pub kind: String,
    pub parent_code: Option<String>,
    pub parent_name: Option<String>,
    /// Delegates usually present in the hall.
    pub delegates: u32,
}

/// Columns of the CSV, in order. `delegates` may be missing on import (then 0).
pub const CSV_HEADER: [&str; 6] = [
    "admin_code",
    "name",
    "level",
    "parent_code",
    "parent_name",
    "delegates",
];

/// Most delegates a hall may declare or be expected to hold.
pub const MAX_DELEGATES: u32 = 10_000;

/// A refused import: every problem found, with its line, so the file can be fixed at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} problem(s) in the file, first: line {}: {}", problems.len(), problems.first().map_or(0, |p| p.line), problems.first().map_or("", |p| p.message.as_str()))]
pub struct ImportError {
    pub problems: Vec<ImportProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportProblem {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

/// Reads a directory CSV (with or without a UTF-8 BOM). Nothing is returned unless every row
/// is valid.
pub fn parse_csv(input: &[u8]) -> Result<Vec<Site>, ImportError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(input);
    let fail = |line: u64, message: String| ImportError {
        problems: vec![ImportProblem { line, message }],
    };
    let headers = reader
        .headers()
        .map_err(|e| fail(1, format!("cannot read the header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let required = ["admin_code", "name", "level"];
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|c| column(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            1,
            format!(
                "missing column(s) {}; expected {}",
                missing.join(", "),
                CSV_HEADER.join(",")
            ),
        ));
    }
    let columns = Columns {
        code: column("admin_code"),
        name: column("name"),
        level: column("level"),
        parent_code: column("parent_code"),
        parent_name: column("parent_name"),
        delegates: column("delegates"),
    };

    let mut sites = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (index, record) in reader.records().enumerate() {
        let line = index as u64 + 2;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(ImportProblem {
                    line,
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        match columns.site(&record) {
            Ok(site) => {
                if !seen.insert(site.code.clone()) {
                    problems.push(ImportProblem {
                        line,
                        message: format!("duplicate admin_code {}", site.code),
                    });
                } else {
                    sites.push(site);
                }
            }
            Err(message) => problems.push(ImportProblem { line, message }),
        }
        if problems.len() >= 100 {
            break;
        }
    }
    if problems.is_empty() && sites.is_empty() {
        problems.push(ImportProblem {
            line: 2,
            message: "the file has no sites".into(),
        });
    }
    if problems.is_empty() {
        Ok(sites)
    } else {
        Err(ImportError { problems })
    }
}

/// Writes the directory as CSV in UTF-8 with a BOM (so Excel shows Vietnamese correctly).
/// Names that start like a formula are written as the report CSVs write them
/// ([`cell`]), and [`parse_csv`] reads them back as they were.
pub fn write_csv(sites: &[Site]) -> Vec<u8> {
    let mut out = Vec::from(&b"\xEF\xBB\xBF"[..]);
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        let _ = writer.write_record(CSV_HEADER);
        for s in sites {
            let delegates = s.delegates.to_string();
            let _ = writer.write_record([
                s.code.as_str(),
                &cell(&s.name),
                s.kind.as_str(),
                s.parent_code.as_deref().unwrap_or(""),
                &cell(s.parent_name.as_deref().unwrap_or("")),
                delegates.as_str(),
            ]);
        }
        let _ = writer.flush();
    }
    out
}

/// The level of an administrative kind, as written in official lists.
pub fn level_of(kind: &str) -> Option<Level> {
    let kind = kind.trim().to_lowercase();
    match kind.as_str() {
        "tỉnh" | "thành phố trung ương" | "province" => Some(Level::Province),
        "huyện" | "quận" | "thị xã" | "thành phố" | "district" => Some(Level::District),
        "xã" | "phường" | "thị trấn" | "đặc khu" | "commune" | "ward" => {
            Some(Level::Commune)
        }
        _ => None,
    }
}

struct Columns {
    code: Option<usize>,
    name: Option<usize>,
    level: Option<usize>,
    parent_code: Option<usize>,
    parent_name: Option<usize>,
    delegates: Option<usize>,
}

impl Columns {
    fn site(&self, record: &csv::StringRecord) -> Result<Site, String> {
        let field = |c: Option<usize>| c.and_then(|i| record.get(i)).unwrap_or("");
        let code = field(self.code);
        if code.is_empty() || code.len() > 12 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("admin_code `{code}` must be 1 to 12 digits"));
        }
        let name = human_text(cell_text(field(self.name)), MAX_NAME_CHARS)
            .map_err(|e| format!("name of {code} {e}"))?;
        let kind = field(self.level);
        let level = level_of(kind).ok_or_else(|| {
            format!("level `{kind}` of {code} is not one of tỉnh, thành phố trung ương, huyện, quận, thị xã, thành phố, xã, phường, thị trấn, đặc khu")
        })?;
        let parent_code = Some(field(self.parent_code)).filter(|p| !p.is_empty());
        if let Some(p) = parent_code {
            if !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 12 {
                return Err(format!("parent_code `{p}` of {code} must be digits"));
            }
            if p == code {
                return Err(format!("{code} cannot be its own parent"));
            }
        }
        let parent_name = Some(cell_text(field(self.parent_name)))
            .filter(|p| !p.is_empty())
            .map(|p| human_text(p, MAX_NAME_CHARS))
            .transpose()
            .map_err(|e| format!("parent_name of {code} {e}"))?;
        let delegates_text = field(self.delegates);
        let delegates = if delegates_text.is_empty() {
            0
        } else {
            parse_delegates(delegates_text).map_err(|e| format!("delegates of {code}: {e}"))?
        };
        Ok(Site {
            code: code.to_owned(),
            name,
            level,
            kind: kind.to_owned(),
            parent_code: parent_code.map(str::to_owned),
            parent_name,
            delegates,
        })
    }
}

/// Longest name in the directory, in characters.
const MAX_NAME_CHARS: usize = 200;

/// A number of delegates: a whole number from 0 to [`MAX_DELEGATES`].
pub fn parse_delegates(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if n < 0 {
        return Err(format!("{n} is negative"));
    }
    if n > i64::from(MAX_DELEGATES) {
        return Err(format!("{n} is more than {MAX_DELEGATES}"));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "admin_code,name,level,parent_code,parent_name\n\
        8,Tuyên Quang,tỉnh,,\n\
        2269,Xã Thượng Lâm,xã,8,Tuyên Quang\n\
        2317,Phường Minh Xuân,phường,8,Tuyên Quang\n";

    #[test]
    fn reads_official_list_and_round_trips_with_bom() {
        let sites = parse_csv(SAMPLE.as_bytes()).expect("valid");
        assert_eq!(sites.len(), 3);
        assert_eq!(sites[0].level, Level::Province);
        assert_eq!(sites[1].name, "Xã Thượng Lâm");
        assert_eq!(sites[1].parent_code.as_deref(), Some("8"));
        let csv = write_csv(&sites);
        assert!(csv.starts_with(b"\xEF\xBB\xBF"));
        let again = parse_csv(&csv[..]).expect("own export re-imports");
        assert_eq!(again, sites);
    }

    #[test]
    fn reports_every_bad_row_with_its_line() {
        let bad = "admin_code,name,level,parent_code,parent_name,delegates\n\
            8,Tuyên Quang,tỉnh,,,\n\
            x1,Xã Sai,xã,8,Tuyên Quang,10\n\
            2269,Xã Thượng Lâm,làng,8,Tuyên Quang,10\n\
            2270,Xã A,xã,8,Tuyên Quang,-3\n\
            2271,Xã B,xã,8,Tuyên Quang,999999\n\
            8,Trùng mã,tỉnh,,,\n";
        let err = parse_csv(bad.as_bytes()).expect_err("refused");
        let lines: Vec<u64> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        assert!(err.problems[0].message.contains("admin_code"));
        assert!(err.problems[1].message.contains("làng"));
        assert!(err.problems[2].message.contains("negative"));
        assert!(err.problems[3].message.contains("more than"));
        assert!(err.problems[4].message.contains("duplicate"));
    }

    #[test]
    fn refuses_missing_columns_and_empty_files() {
        assert!(parse_csv("code,name\n1,x\n".as_bytes()).is_err());
        assert!(parse_csv("admin_code,name,level\n".as_bytes()).is_err());
        assert!(parse_csv("".as_bytes()).is_err());
        assert!(parse_csv("admin_code,name,level\n1,x,xã,extra\n".as_bytes()).is_err());
    }

    #[test]
    fn names_that_start_like_a_formula_are_exported_as_text_and_read_back() {
        let mut sites = parse_csv(SAMPLE.as_bytes()).expect("valid");
        for (site, name) in sites
            .iter_mut()
            .zip(["=HYPERLINK(\"x\")", "+1", "@SUM(A1)"])
        {
            site.name = name.to_owned();
            site.parent_name = Some(format!("-{name}"));
        }
        let csv = write_csv(&sites);
        let text = String::from_utf8(csv.clone()).expect("UTF-8");
        for line in text.lines().skip(1) {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_bytes());
            let record = reader.records().next().expect("a row").expect("readable");
            for column in [1, 4] {
                let cell = record.get(column).unwrap_or("");
                assert!(
                    cell.is_empty() || cell.starts_with('\''),
                    "{cell:?} would run as a formula"
                );
            }
        }
        assert_eq!(parse_csv(&csv[..]).expect("re-imports"), sites);
    }

    #[test]
    fn parent_names_are_checked_like_names() {
        for bad in [
            "Tuyên\nQuang",
            "Tuyên\u{0}Quang",
            "Tuyên\u{7}Quang",
            "Tuyên\u{202E}Quang",
            "\u{200B}\u{200B}",
            &"x".repeat(100_000),
        ] {
            let csv = format!(
                "admin_code,name,level,parent_code,parent_name\n2269,Xã Thượng Lâm,xã,8,\"{bad}\"\n"
            );
            let err = parse_csv(csv.as_bytes()).expect_err("refused");
            assert_eq!(err.problems.len(), 1, "{bad:?}");
            assert!(
                err.problems[0].message.contains("parent_name"),
                "{}",
                err.problems[0].message
            );
        }
        let spoofed = "admin_code,name,level\n2269,Xã \u{2066}Thượng Lâm,xã\n";
        let err = parse_csv(spoofed.as_bytes()).expect_err("an isolate in a name");
        assert!(
            err.problems[0].message.contains("U+2066"),
            "{}",
            err.problems[0].message
        );
        let decomposed = "admin_code,name,level\n2269,Xã Thu\u{31B}o\u{31B}\u{323}ng Lâm,xã\n";
        let sites = parse_csv(decomposed.as_bytes()).expect("combining marks are fine");
        assert_eq!(sites[0].name, "Xã Thượng Lâm", "stored NFC");
        let without = "admin_code,name,level,parent_code,parent_name\n2269,Xã Thượng Lâm,xã,8,\n";
        assert_eq!(
            parse_csv(without.as_bytes()).expect("no parent name is fine")[0].parent_name,
            None
        );
    }

    #[test]
    fn delegates_must_be_sane() {
        assert_eq!(parse_delegates("120"), Ok(120));
        assert!(parse_delegates("-1").is_err());
        assert!(parse_delegates("10001").is_err());
        assert!(parse_delegates("many").is_err());
    }
}
